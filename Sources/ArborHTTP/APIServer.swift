import ArborEngine
import ArborProfiles
import ArborRuntime
import ArborWire
import Foundation
import Hummingbird
import Logging

/// Where `arbor api` listens and who may call it.
public struct APIConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Requests to `/v1/…` must carry `Authorization: Bearer <key>` when set.
    public var apiKey: String?
    /// Largest request body accepted, bytes.
    public var maxBodyBytes: Int
    /// The web UI's server catalog (SQLite).
    public var catalogPath: String
    /// Where to find Chart.js for the UI's charts, first found wins (Debian's libjs-chart.js).
    public var chartJSPaths: [String]

    public init(host: String = "127.0.0.1", port: Int = 8080, apiKey: String? = nil, maxBodyBytes: Int = 4 << 20,
                catalogPath: String, chartJSPaths: [String] = APIConfiguration.debianChartJS) {
        self.host = host
        self.port = port
        self.apiKey = apiKey
        self.maxBodyBytes = maxBodyBytes
        self.catalogPath = catalogPath
        self.chartJSPaths = chartJSPaths
    }

    /// Where Debian's `libjs-chart.js` puts Chart.js.
    public static let debianChartJS = ["/usr/share/javascript/chart.js/chart.umd.min.js", "/usr/share/javascript/chart.js/chart.min.js",
                                       "/usr/share/javascript/chart.js/Chart.min.js", "/usr/share/javascript/chart.js/chart.js"]
}

/// The current runtime (requests before it is ready get 503, as llama.cpp's server answers)
/// and how to build another.
final class RuntimeSlot: @unchecked Sendable {
    enum State { case loading, ready(Runtime), failed(String) }
    private let lock = NSLock()
    private var state = State.loading
    private var names: [String] = []
    /// Loads started; only the newest may install its runtime.
    private var loads = 0
    var factory: (@Sendable (RuntimeOptions) throws -> Runtime)?
    /// The options the server was started with (the UI's "local" target).
    var base: RuntimeOptions?

    var current: State {
        lock.lock()
        defer { lock.unlock() }
        return state
    }

    /// Names a request's `model` may use for the target.
    var modelNames: [String] {
        lock.lock()
        defer { lock.unlock() }
        return names
    }

    func beginLoading() -> Int {
        lock.lock()
        defer { lock.unlock() }
        loads += 1
        state = .loading
        return loads
    }

    func finishLoading(_ load: Int, _ s: State, names: [String]) {
        lock.lock()
        defer { lock.unlock() }
        guard load == loads else { return }
        state = s
        self.names = names
    }

    func runtime() throws(APIError) -> Runtime {
        switch current {
        case let .ready(r): return r
        case .loading: throw APIError(status: 503, message: "Loading model", type: "unavailable_error")
        case let .failed(why): throw APIError(status: 503, message: "the target could not be started: \(why)", type: "unavailable_error")
        }
    }
}

/// The OpenAI-compatible HTTP API on Hummingbird: `/v1/chat/completions`, `/v1/completions`
/// (streamed as server-sent events or whole), `/v1/models` and `/health`.
///
/// The runtime does the generating; this type only translates requests and responses, so the
/// HTTP layer adds no work to a token.
public final class APIServer: Sendable {
    public let configuration: APIConfiguration
    let slot = RuntimeSlot()
    let metrics = APIMetrics()
    let catalogBox = LazyBox<ServerCatalog>()
    let logger: Logger

    public init(configuration: APIConfiguration, logger: Logger = Logger(label: "arbor.api")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Serves until SIGINT or SIGTERM (then finishes the requests in flight). The runtime is
    /// built from `options` by `makeRuntime` on a thread of its own while the server already
    /// answers `/health` with 503 (and rebuilt when the UI starts another target); `onListening`
    /// is told the bound port.
    public func run(options: RuntimeOptions, makeRuntime: @escaping @Sendable (RuntimeOptions) throws -> Runtime,
                    onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        slot.factory = makeRuntime
        slot.base = options
        load(options)
        let app = Application(
            router: makeRouter(),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "arbor"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
        try await app.runService()
    }

    /// Builds a runtime from `options` in the background and makes it the current one; requests
    /// get 503 meanwhile (those already running finish on the runtime they started with).
    func load(_ options: RuntimeOptions) {
        let generation = slot.beginLoading()
        let thread = Thread { [self] in
            do {
                guard let factory = slot.factory else { throw RuntimeError.noDraftModel }
                let runtime = try factory(options)
                let file = URL(fileURLWithPath: runtime.options.model).lastPathComponent
                var names = [runtime.target.targetName, runtime.options.model, file, file.replacingOccurrences(of: ".gguf", with: "")]
                names = names.reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
                slot.finishLoading(generation, .ready(runtime), names: names)
                logger.info("model ready", metadata: ["target": "\(runtime.target.targetName)", "server": "\(runtime.target.serverName)"])
            } catch {
                slot.finishLoading(generation, .failed("\(error)"), names: [])
                logger.error("could not start the target: \(error)")
            }
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: CORSMiddleware(allowOrigin: .originBased, allowHeaders: [.accept, .authorization, .contentType, .origin],
                                              allowMethods: [.get, .post, .options]))
        router.add(middleware: ErrorMiddleware())
        router.get("/health") { [slot] _, _ -> Response in
            switch slot.current {
            case let .ready(runtime):
                // llama.cpp's `{"status": "ok"}`, plus the request queue (a generation that is
                // cancelled leaves it at once).
                let q = runtime.queue
                return Self.json(JSON.object(["status": "ok", "requests_running": .int(q.running), "requests_waiting": .int(q.waiting)]), status: .ok)
            case .loading: return Self.json(APIError(status: 503, message: "Loading model", type: "unavailable_error"), status: .serviceUnavailable)
            case let .failed(why): return Self.json(APIError(status: 503, message: "the target could not be started: \(why)", type: "unavailable_error"), status: .serviceUnavailable)
            }
        }
        let v1 = router.group("v1").add(middleware: APIKeyMiddleware(key: configuration.apiKey))
        v1.get("models") { [self] _, _ in try models() }
        v1.post("chat/completions") { [self] request, _ in try await counted("chat") { try await complete(request, chat: true) } }
        v1.post("completions") { [self] request, _ in try await counted("completion") { try await complete(request, chat: false) } }
        router.group("metrics").add(middleware: APIKeyMiddleware(key: configuration.apiKey)).get { [self] _, _ -> Response in
            let runtime: Runtime? = if case let .ready(r) = slot.current { r } else { nil }
            let merged = runtime?.hostMetrics.map { (passes: $0.mergedPasses, rounds: $0.mergedRounds) }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.exposition(queue: runtime?.queue, merged: merged))))
        }
        addUI(to: router)
        return router
    }

    /// Runs an endpoint, counting its answer by status.
    func counted(_ endpoint: String, _ body: () async throws -> Response) async throws -> Response {
        do {
            let response = try await body()
            metrics.answered(endpoint: endpoint, status: response.status.code)
            return response
        } catch {
            metrics.answered(endpoint: endpoint, status: Self.apiError(error).status)
            throw error
        }
    }

    // MARK: Endpoints

    func models() throws -> Response {
        let runtime = try slot.runtime()
        let created = Int(Date().timeIntervalSince1970)
        var data: [JSON] = []
        let drafters = JSON.array((["none", "ngram", "suffix"] + runtime.draftModels.map { "model:\($0)" }).map(JSON.string))
        // The target in use, then the server's other target models (start one from the UI, or
        // run `arbor api --target-host … --target-model NAME`).
        let targets = runtime.target.models.isEmpty
            ? [ServedModel(name: runtime.target.targetName, vocabularyHash: 0, vocabularySize: UInt32(runtime.target.verifier.vocabularySize),
                           contextLength: UInt32(runtime.contextLength), loaded: true, fileBytes: 0)]
            : runtime.target.models.sorted { a, _ in a.name == runtime.target.targetName }
        for m in targets {
            let current = m.name == runtime.target.targetName
            data.append([
                "id": .string(m.name), "object": "model", "created": .int(created), "owned_by": "arbor",
                "meta": [
                    "role": "target", "server": .string(runtime.target.serverName), "in_use": .bool(current), "loaded": .bool(m.loaded),
                    "n_vocab": .int(Int(m.vocabularySize)), "n_ctx_train": .int(Int(m.contextLength)),
                    "size": m.fileBytes > 0 ? .int(Int(m.fileBytes)) : nil,
                    "drafters": current ? drafters : [],
                ],
            ])
        }
        for d in runtime.draftModels {
            // Ids stay unique: a model that is both a target and a draft is listed once, marked so.
            if let i = targets.firstIndex(where: { $0.name == d }), case var .object(entry) = data[i], case var .object(meta)? = entry["meta"] {
                meta["draft"] = true
                entry["meta"] = .object(meta)
                data[i] = .object(entry)
                continue
            }
            data.append(["id": .string(d), "object": "model", "created": .int(created), "owned_by": "arbor",
                         "meta": ["role": "draft", "draft": true, "n_vocab": .int(runtime.local.tokenizer.vocabularySize)]])
        }
        return Self.json(JSON.object(["object": "list", "data": .array(data)]), status: .ok)
    }

    func complete(_ request: Request, chat: Bool) async throws -> Response {
        let runtime = try slot.runtime()
        let decoded: CompletionRequest = try await Self.decode(request, limit: configuration.maxBodyBytes)
        let v = try decoded.validated(chat: chat, runtime: runtime, modelNames: slot.modelNames)
        let id = (chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24)
        let created = Int(Date().timeIntervalSince1970)
        let model = runtime.target.targetName
        let target = runtime.target.serverName
        let events = runtime.stream(prompt: v.prompt, parameters: v.parameters, settings: v.settings)
        let started = ContinuousClock.now
        let metrics = metrics
        @Sendable func seconds() -> Double {
            let d = ContinuousClock.now - started
            return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        }
        guard v.stream else {
            for try await event in events {
                if case let .finished(result) = event {
                    metrics.finished(result, seconds: seconds())
                    return Self.json(Shapes.completion(chat: chat, id: id, created: created, model: model, result: result, target: target), status: .ok)
                }
            }
            throw APIError(status: 500, message: "the generation ended without a result", type: "server_error")
        }
        let logger = logger
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                func send(_ value: JSON) async throws {
                    try await writer.write(ByteBuffer(string: "data: " + String(decoding: value.data, as: UTF8.self) + "\n\n"))
                }
                do {
                    if chat { try await send(Shapes.chunk(chat: chat, id: id, created: created, model: model, role: true, content: "")) }
                    for try await event in events {
                        switch event {
                        case let .piece(p):
                            try await send(Shapes.chunk(chat: chat, id: id, created: created, model: model, content: p.text, drafted: p.drafted))
                        case .round:
                            break
                        case let .finished(result):
                            metrics.finished(result, seconds: seconds())
                            try await send(Shapes.chunk(chat: chat, id: id, created: created, model: model, content: chat ? nil : "", finish: finishReason(result)))
                            if v.includeUsage {
                                try await send(Shapes.usageChunk(chat: chat, id: id, created: created, model: model, result: result, target: target))
                            }
                        }
                    }
                    try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                } catch let error as APIError {
                    try? await send(JSON(encoding: error))
                } catch {
                    // The client went away (a failed write) or the generation failed: either way
                    // the stream ends here, which cancels the generation and frees its cache.
                    logger.info("stream ended early: \(error)")
                    try? await send(JSON(encoding: Self.apiError(error)))
                }
                try await writer.finish(nil)
            })
    }

    // MARK: Helpers

    static func json(_ value: some Encodable, status: HTTPResponse.Status) -> Response {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? e.encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// The API error an engine error becomes.
    static func apiError(_ error: any Error) -> APIError {
        switch error {
        case let e as APIError: return e
        case let e as GenerationError: return .badRequest(e.description)
        case let e as RuntimeError: return e == .cancelled ? APIError(status: 499, message: e.description, type: "cancelled") : .badRequest(e.description)
        case let e as ControlError: return .badRequest(e.description)
        default: return APIError(status: 500, message: "\(error)", type: "server_error")
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ c: DecodingError.Context) -> String {
            let p = c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return p.isEmpty ? "" : " at \(p.hasPrefix(".") ? String(p.dropFirst()) : p)"
        }
        switch error {
        case let .dataCorrupted(c): return "not valid JSON\(path(c))"
        case let .keyNotFound(k, c): return "missing field '\(k.stringValue)'\(path(c))"
        case let .typeMismatch(t, c): return "expected \(t)\(path(c))"
        case let .valueNotFound(t, c): return "expected \(t)\(path(c)), found null"
        @unknown default: return "\(error)"
        }
    }
}

/// Turns every error a handler throws into the OpenAI error shape.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as any HTTPResponseError {
            let status = error.status
            let message = status == .notFound ? "no route for \(request.method) \(request.uri.path)" : "\(error)"
            return APIServer.json(APIError(status: status.code, message: message, type: status == .notFound ? "not_found_error" : "invalid_request_error"), status: status)
        } catch {
            let e = APIServer.apiError(error)
            return APIServer.json(e, status: HTTPResponse.Status(code: e.status))
        }
    }
}

/// `Authorization: Bearer <key>` on `/v1/…` when a key is configured.
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let key: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let key else { return try await next(request, context) }
        guard request.method == .options || request.headers[.authorization] == "Bearer \(key)" else {
            return APIServer.json(APIError.unauthorized, status: .unauthorized)
        }
        return try await next(request, context)
    }
}
