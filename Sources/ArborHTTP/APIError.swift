/// An error answered in the OpenAI API's shape: `{"error": {"message", "type", "param", "code"}}`
/// with an HTTP status.
struct APIError: Error, Encodable, Sendable, CustomStringConvertible {
    var status: Int
    var message: String
    var type: String
    var param: String?
    var code: String?

    init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    static func badRequest(_ message: String, param: String? = nil) -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", param: param)
    }

    static let unauthorized = APIError(
        status: 401, message: "Incorrect API key provided. Give it as 'Authorization: Bearer <key>'.",
        type: "invalid_request_error", code: "invalid_api_key")

    var description: String { "\(status) \(type): \(message)" }

    enum CodingKeys: CodingKey { case error }
    enum Inner: String, CodingKey { case message, type, param, code }

    func encode(to encoder: any Encoder) throws {
        var outer = encoder.container(keyedBy: CodingKeys.self)
        var c = outer.nestedContainer(keyedBy: Inner.self, forKey: .error)
        try c.encode(message, forKey: .message)
        try c.encode(type, forKey: .type)
        try c.encode(param, forKey: .param)
        try c.encode(code, forKey: .code)
    }
}
