import ArborEngine
import ArborProfiles
import ArborRemote
import ArborRuntime
import Foundation
import Hummingbird

/// The web chat UI: static files (no build step) and the small JSON API behind them — the
/// server catalog, probing, starting a target, the trade-off curve. Chatting itself goes through
/// `/v1/chat/completions`, like any client.
extension APIServer {
    func addUI(to router: Router<BasicRequestContext>) {
        let ui = router.group("ui/api").add(middleware: APIKeyMiddleware(key: configuration.apiKey))
        ui.get("state") { [self] _, _ in Self.json(state(), status: .ok) }
        ui.get("servers") { [self] _, _ -> Response in
            let catalog = try catalog()
            let list = try catalog.all().map { s -> JSON in
                ["name": .string(s.name), "host": .string(s.host), "port": .int(s.port), "has_token": .bool(!s.token.isEmpty)]
            }
            return Self.json(JSON.array(list), status: .ok)
        }
        ui.post("servers") { [self] request, _ -> Response in
            struct Body: Decodable { var name: String; var host: String; var port: Int; var token: String? }
            let body: Body = try await Self.decode(request, limit: 16 << 10)
            do {
                try catalog().save(CatalogServer(name: body.name, host: body.host, port: body.port, token: body.token ?? ""))
            } catch let e as ServerCatalogError {
                throw APIError.badRequest(e.description)
            }
            return Self.json(JSON.object(["saved": .string(body.name)]), status: .created)
        }
        ui.delete("servers/:name") { [self] _, context -> Response in
            let name = try context.parameters.require("name")
            guard try catalog().remove(named: name) else { throw APIError(status: 404, message: "no server named '\(name)'", type: "not_found_error") }
            return Self.json(JSON.object(["removed": .string(name)]), status: .ok)
        }
        ui.post("servers/:name/probe") { [self] _, context -> Response in
            let name = try context.parameters.require("name")
            guard let server = try catalog().server(named: name) else {
                throw APIError(status: 404, message: "no server named '\(name)'", type: "not_found_error")
            }
            let hash: UInt64? = if case let .ready(r) = slot.current { r.tokenizer.vocabularyFingerprint } else { nil }
            let target = RemoteTarget(host: server.host, port: server.port, authToken: server.token, clientName: "arbor-ui")
            let probe = await Self.offload { ServerProbe.probe(target, vocabularyHash: hash) }
            return Self.json(probe, status: .ok)
        }
        ui.post("start") { [self] request, _ -> Response in
            struct Body: Decodable { var server: String; var model: String? }
            let body: Body = try await Self.decode(request, limit: 16 << 10)
            guard var options = slot.base else { throw APIError(status: 503, message: "the server is starting", type: "unavailable_error") }
            if body.server != "local" {
                guard let s = try catalog().server(named: body.server) else {
                    throw APIError.badRequest("no server named '\(body.server)' in the catalog", param: "server")
                }
                guard options.draftModel != nil || options.remote != nil else {
                    throw APIError.badRequest("a remote target needs a draft model on this side (start arbor api with --draft)", param: "server")
                }
                options.remote = RemoteTarget(host: s.host, port: s.port, authToken: s.token, clientName: "arbor-ui")
                // The server's target model (a server may serve several; nil: its default).
                options.remote?.model = body.model.flatMap { $0.isEmpty ? nil : $0 }
            } else {
                options.remote = slot.base?.remote
            }
            load(options)
            return Self.json(JSON.object(["status": "loading", "server": .string(body.server)]), status: .accepted)
        }
        ui.get("tradeoff") { [self] request, _ -> Response in
            let runtime = try slot.runtime()
            let objective = request.uri.queryParameters.get("objective").flatMap(Objective.init(rawValue:)) ?? .totalCost
            let drafter = request.uri.queryParameters.get("drafter") ?? runtime.options.drafter.description
            guard let (file, curve) = TradeoffReport.latest(drafter: drafter, server: runtime.target.serverName,
                                                             target: runtime.target.targetName, objective: objective) else {
                return Self.json(JSON.object(["points": [], "note": .string("no trade-off curve for \(drafter) → \(runtime.target.targetName) on \(runtime.target.serverName) under \(objective.rawValue) yet (run arbor tradeoff)")]), status: .ok)
            }
            let points = curve.points.map { p -> JSON in
                ["name": .string(p.name), "kind": .string(p.kind.rawValue), "cs": p.cs.map(JSON.double) ?? nil,
                 "tokens_per_second": .double(p.tokensPerSecond), "cost_per_million_tokens": .double(p.costPerMillionTokens(objective, rates: curve.rates))]
            }
            return Self.json(JSON.object(["points": .array(points), "file": .string(file.path), "unit": .string(objective.unit)]), status: .ok)
        }
        // Chart.js from Debian's libjs-chart.js (not vendored): the UI says so when it is missing.
        router.get("vendor/chart.js") { [configuration] _, _ -> Response in
            guard let path = configuration.chartJSPaths.first(where: FileManager.default.fileExists(atPath:)),
                  let data = FileManager.default.contents(atPath: path) else {
                throw APIError(status: 404, message: "Chart.js is not installed (apt install libjs-chart.js)", type: "not_found_error")
            }
            return Response(status: .ok, headers: [.contentType: "application/javascript", .cacheControl: "max-age=3600"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
        }
        if let root = Self.uiDirectory {
            router.add(middleware: FileMiddleware(root, searchForIndexHtml: true, logger: logger))
        }
    }

    /// The UI's files, shipped as a resource of this module.
    static var uiDirectory: String? {
        Bundle.module.url(forResource: "UI", withExtension: nil)?.path
    }

    func state() -> JSON {
        var out: [String: JSON] = [:]
        switch slot.current {
        case .loading: out["status"] = "loading"
        case let .failed(why): out["status"] = "failed"; out["error"] = .string(why)
        case let .ready(r):
            out["status"] = "ready"
            out["target"] = ["model": .string(r.target.targetName), "server": .string(r.target.serverName), "remote": .bool(r.target.isRemote)]
            out["drafters"] = .array((["none", "ngram", "suffix"] + r.draftModels.map { "model:\($0)" }).map(JSON.string))
            out["drafter"] = .string(r.options.drafter.description)
            let p = r.configuration.preferences
            out["objective"] = .string(p.objective.rawValue)
            out["cs"] = .double(p.cs.value)
            out["proactive"] = .bool(r.configuration.proactive)
        }
        out["objectives"] = .array(Objective.allCases.map { .string($0.rawValue) })
        out["draft_model"] = slot.base?.draftModel.map(JSON.string) ?? nil
        out["auth"] = .bool(configuration.apiKey != nil)
        return .object(out)
    }

    /// The catalog, opened on first use (a broken file is moved aside, with a log line).
    func catalog() throws -> ServerCatalog {
        try catalogBox.get {
            let (c, warning) = try ServerCatalog.openOrRecover(path: configuration.catalogPath)
            if let warning { logger.warning("\(warning)") }
            return c
        }
    }

    static func decode<T: Decodable>(_ request: Request, limit: Int) async throws -> T {
        var body: ByteBuffer
        do { body = try await request.body.collect(upTo: limit) } catch {
            throw APIError(status: 413, message: "the request body exceeds \(limit) bytes", type: "invalid_request_error")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.readBytes(length: body.readableBytes) ?? []))
        } catch let e as DecodingError {
            throw APIError.badRequest("malformed request: \(describe(e))")
        }
    }

    /// Runs blocking work (sockets with waits, model loading) off the server's threads.
    static func offload<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            let thread = Thread { continuation.resume(returning: work()) }
            thread.start()
        }
    }
}

/// A value built once, on first use, from any thread.
final class LazyBox<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T?

    func get(_ make: () throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        if let value { return value }
        let v = try make()
        value = v
        return v
    }
}
