/// How many tensors of one type a file holds and how many bytes they take.
public struct GGUFTypeTally: Sendable, Equatable {
    public let type: GGMLType
    public let count: Int
    public let bytes: Int

    public init(type: GGMLType, count: Int, bytes: Int) {
        self.type = type
        self.count = count
        self.bytes = bytes
    }
}

extension GGUFFile {
    /// Tensors grouped by type, most bytes first (ties by type name).
    public var tensorTypeTally: [GGUFTypeTally] {
        var byType: [GGMLType: (count: Int, bytes: Int)] = [:]
        for t in tensors {
            byType[t.type, default: (0, 0)].count += 1
            byType[t.type, default: (0, 0)].bytes += t.byteCount
        }
        return byType
            .map { GGUFTypeTally(type: $0.key, count: $0.value.count, bytes: $0.value.bytes) }
            .sorted { ($0.bytes, $1.type.description) > ($1.bytes, $0.type.description) }
    }
}

// MARK: Rendering values for people

extension GGUFValue {
    /// The type as `arbor inspect` shows it: `u32`, `string`, or `[string]` for an array.
    public var typeSummary: String {
        if case let .array(a) = self { return "[\(a.elementType)]" }
        return type.description
    }

    /// A one-line rendering for people. Strings are quoted and escaped, and cut to
    /// `maxCharacters` characters (with their byte length) when longer; arrays are listed inline
    /// when they have at most `maxElements` elements, else summarized as `[string × 151936]`
    /// followed by their first three elements. `nil` limits show everything.
    public func summary(maxElements: Int? = 8, maxCharacters: Int? = 60) -> String {
        switch self {
        case let .string(s): GGUFValue.quote(s, maxCharacters: maxCharacters)
        case let .array(a): a.summary(maxElements: maxElements, maxCharacters: maxCharacters)
        default: description
        }
    }

    /// `s` in double quotes with `"`, `\\`, tabs, newlines and other control characters escaped
    /// (`\n`, `\u{1B}`), cut to `maxCharacters` characters (noting the byte length) if longer.
    public static func quote(_ s: String, maxCharacters: Int? = nil) -> String {
        var out = "\""
        let cut = maxCharacters.map { s.count > $0 } ?? false
        for u in (cut ? Substring(s.prefix(maxCharacters!)) : Substring(s)).unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            // Invisible characters are shown (zero-width joiners stay: emoji sequences need them).
            case _ where u.properties.generalCategory == .control
                || (u.properties.generalCategory == .format && u.value != 0x200D):
                out += "\\u{\(String(u.value, radix: 16, uppercase: true))}"
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
        return cut ? out + "… (\(s.utf8.count) bytes)" : out
    }
}

extension GGUFArray {
    /// See `GGUFValue.summary(maxElements:maxCharacters:)`.
    public func summary(maxElements: Int? = 8, maxCharacters: Int? = 60) -> String {
        if let limit = maxElements, count > limit {
            let head = elementSummaries(range: 0..<min(3, count), maxElements: maxElements, maxCharacters: maxCharacters)
            return "[\(elementType) × \(count)] [" + head.joined(separator: ", ") + ", …]"
        }
        return "[" + elementSummaries(range: 0..<count, maxElements: maxElements, maxCharacters: maxCharacters)
            .joined(separator: ", ") + "]"
    }

    /// Each element in `range` rendered as by `summary` (nested arrays summarized in turn).
    public func elementSummaries(range: Range<Int>? = nil, maxElements: Int? = 8, maxCharacters: Int? = 60) -> [String] {
        let r = range ?? 0..<count
        func fmt<T>(_ a: [T], _ f: (T) -> String) -> [String] { a[r].map(f) }
        return switch self {
        case let .uint8(a): fmt(a) { "\($0)" }
        case let .int8(a): fmt(a) { "\($0)" }
        case let .uint16(a): fmt(a) { "\($0)" }
        case let .int16(a): fmt(a) { "\($0)" }
        case let .uint32(a): fmt(a) { "\($0)" }
        case let .int32(a): fmt(a) { "\($0)" }
        case let .float32(a): fmt(a) { "\($0)" }
        case let .bool(a): fmt(a) { "\($0)" }
        case let .string(a): fmt(a) { GGUFValue.quote($0, maxCharacters: maxCharacters) }
        case let .uint64(a): fmt(a) { "\($0)" }
        case let .int64(a): fmt(a) { "\($0)" }
        case let .float64(a): fmt(a) { "\($0)" }
        case let .array(a): fmt(a) { $0.summary(maxElements: maxElements, maxCharacters: maxCharacters) }
        }
    }
}
