import ArborHost
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// `arbor serve --metrics-port`: `GET /health` (200 `ok` while serving, 503 while shutting
/// down; what a load balancer checks) and `GET /metrics` (Prometheus text format 0.0.4) on a
/// small HTTP/1.1 listener of its own, apart from the verification protocol's port.
final class MetricsEndpoint: @unchecked Sendable {
    private let channel: any Channel
    let port: Int?

    private init(channel: any Channel) {
        self.channel = channel
        port = channel.localAddress?.port
    }

    static func start(host: String, port: Int, group: any EventLoopGroup, metrics: ServerMetrics, configuration: ServerConfiguration,
                      hosts: [TargetHost], isStopping: @escaping @Sendable () -> Bool) throws -> MetricsEndpoint {
        let names = [configuration.modelName] + configuration.extraModels.map(\.name)
        let render: @Sendable () -> String = {
            MetricsText.render(metrics.snapshot, configuration: configuration,
                               models: zip(names, hosts).map { ($0, $1.isLoaded) })
        }
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(render: render, isStopping: isStopping))
                }
            }
        return MetricsEndpoint(channel: try bootstrap.bind(host: host, port: port).wait())
    }

    func close() {
        try? channel.close().wait()
    }
}

/// Answers one HTTP request at a time: `/health`, `/metrics`, else 404.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let render: @Sendable () -> String
    private let isStopping: @Sendable () -> Bool
    private var head: HTTPRequestHead?

    init(render: @escaping @Sendable () -> String, isStopping: @escaping @Sendable () -> Bool) {
        self.render = render
        self.isStopping = isStopping
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(h): head = h
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            let (status, type, body): (HTTPResponseStatus, String, String) =
                switch (head.method, path) {
                case (.GET, "/health"), (.HEAD, "/health"):
                    isStopping() ? (.serviceUnavailable, "text/plain", "shutting down\n") : (.ok, "text/plain", "ok\n")
                case (.GET, "/metrics"):
                    (.ok, "text/plain; version=0.0.4; charset=utf-8", render())
                case (_, "/health"), (_, "/metrics"):
                    (.methodNotAllowed, "text/plain", "use GET\n")
                default:
                    (.notFound, "text/plain", "not found: \(path) (try /health or /metrics)\n")
                }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: type)
            headers.add(name: "Content-Length", value: String(body.utf8.count))
            let keepAlive = head.isKeepAlive
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
            if head.method != .HEAD {
                context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
            }
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                if !keepAlive { channel.close(promise: nil) }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// The Prometheus text exposition of the server's counters.
enum MetricsText {
    static func render(_ s: ServerMetrics.Snapshot, configuration: ServerConfiguration, models: [(String, Bool)]) -> String {
        var w = Writer()
        w.metric("arbor_serve_connections", "gauge", "Open connections by state: handshake (not yet past hello), active (holding a session slot), queued (waiting for one).",
                 [(["state": "handshake"], Double(s.pendingConnections)), (["state": "active"], Double(s.activeConnections)),
                  (["state": "queued"], Double(s.queuedConnections))])
        w.metric("arbor_serve_connections_accepted_total", "counter", "TCP connections accepted.", [([:], Double(s.connectionsAccepted))])
        let reasons = ["evicted", "max_connections", "handshake_timeout", "queue_full", "queue_timeout", "shutting_down"]
        w.metric("arbor_serve_connections_refused_total", "counter", "Connections refused or closed by admission control, by reason.",
                 (reasons + s.refused.keys.filter { !reasons.contains($0) }.sorted()).map { (["reason": $0], Double(s.refused[$0] ?? 0)) })
        w.metric("arbor_serve_sessions", "gauge", "Open sessions (each with its own KV cache).", [([:], Double(s.sessions))])
        w.metric("arbor_serve_sessions_opened_total", "counter", "Sessions opened.", [([:], Double(s.sessionsOpened))])
        w.metric("arbor_serve_kv_cache_reserved_tokens", "gauge", "Tokens of KV cache capacity reserved by open sessions.", [([:], Double(s.reservedTokens))])
        w.metric("arbor_serve_queue_length", "gauge", "Authenticated connections waiting for a session slot.", [([:], Double(s.queuedConnections))])
        w.histogram("arbor_serve_queue_wait_seconds", "Seconds from an accepted hello to a session slot (0 when one was free).", s.queueWait)
        w.metric("arbor_serve_rounds_total", "counter", "Rounds answered (verify and decode requests; a decode request may take several target passes).", [([:], Double(s.rounds))])
        w.metric("arbor_serve_target_busy_seconds_total", "counter", "Seconds the target model spent on requests (prefills and rounds).",
                 [([:], s.busyMilliseconds / 1000)])
        w.metric("arbor_serve_merged_passes_total", "counter", "Target passes that scored several sessions' rounds at once.", [([:], Double(s.mergedPasses))])
        w.metric("arbor_serve_merged_rounds_total", "counter", "Rounds scored in merged passes.", [([:], Double(s.mergedRounds))])
        w.histogram("arbor_serve_pass_rounds", "Sessions' rounds per verify pass.", s.passRounds)
        w.histogram("arbor_serve_pass_tokens", "Tokens per verify pass (pending tokens plus tree nodes, all merged rounds).", s.passTokens)
        w.metric("arbor_serve_decode_speculative_rounds_total", "counter", "Rounds the server ran inside run-ahead requests with its own drafter (--decode-drafter; a round may draft nothing).",
                 [([:], Double(s.decodeSpeculativeRounds))])
        w.metric("arbor_serve_decode_draft_tokens_total", "counter", "Tokens the server's own drafter proposed in run-ahead requests (scored by the target).",
                 [([:], Double(s.decodeDraftedTokens))])
        w.metric("arbor_serve_decode_accepted_tokens_total", "counter", "Of the server's drafted tokens, those the target accepted.",
                 [([:], Double(s.decodeAcceptedTokens))])
        w.metric("arbor_serve_decode_draft_seconds_total", "counter", "Seconds the server's own drafter spent drafting in run-ahead requests.",
                 [([:], s.decodeDraftMilliseconds / 1000)])
        w.metric("arbor_serve_received_bytes_total", "counter", "Protocol bytes received (frames, after TLS).", [([:], Double(s.bytesReceived))])
        w.metric("arbor_serve_sent_bytes_total", "counter", "Protocol bytes sent (frames, after TLS).", [([:], Double(s.bytesSent))])
        w.metric("arbor_serve_errors_total", "counter", "Error frames sent, by code.",
                 s.errors.keys.sorted().map { (["code": $0], Double(s.errors[$0]!)) })
        w.metric("arbor_serve_model_loaded", "gauge", "Whether each target model is loaded (1) or not (0).",
                 models.map { (["model": $0.0], $0.1 ? 1 : 0) })
        w.metric("arbor_serve_max_sessions", "gauge", "Session slots (--max-sessions).", [([:], Double(configuration.maxSessions))])
        w.metric("arbor_serve_max_queue", "gauge", "Queue places (--max-queue).", [([:], Double(configuration.maxQueue))])
        return w.text
    }

    private struct Writer {
        var text = ""

        mutating func metric(_ name: String, _ type: String, _ help: String, _ samples: [([String: String], Double)]) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, value) in samples { text += "\(name)\(Self.labels(labels)) \(Self.number(value))\n" }
        }

        mutating func histogram(_ name: String, _ help: String, _ h: ServerMetrics.Histogram) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
            var cumulative = 0
            for (i, bound) in h.bounds.enumerated() {
                cumulative += h.counts[i]
                text += "\(name)_bucket{le=\"\(Self.number(bound))\"} \(cumulative)\n"
            }
            text += "\(name)_bucket{le=\"+Inf\"} \(h.count)\n\(name)_sum \(Self.number(h.sum))\n\(name)_count \(h.count)\n"
        }

        static func labels(_ l: [String: String]) -> String {
            guard !l.isEmpty else { return "" }
            let parts = l.keys.sorted().map { k in
                let v = l[k]!.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                    .replacingOccurrences(of: "\n", with: "\\n")
                return "\(k)=\"\(v)\""
            }
            return "{\(parts.joined(separator: ","))}"
        }

        static func number(_ x: Double) -> String {
            if x == x.rounded(), abs(x) < 1e15 { return String(Int64(x)) }
            return String(x)
        }
    }
}
