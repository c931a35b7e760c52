/// What reaching a remote target cost, per request: the inputs a cost-aware controller needs
/// (bytes, round trips, server time). Filled by remote verifiers; local verifiers have none.
///
/// Times are measured on one clock each: round trips on the client, server time on the server
/// (reported in each result), so no clocks are compared across machines.
public struct TransportStats: Codable, Sendable, Equatable {
    /// Application bytes sent to the server (whole frames: header and payload).
    public var bytesSent = 0
    /// Application bytes received from the server.
    public var bytesReceived = 0
    /// Request/response exchanges (handshake, session, prefill, verify, ping).
    public var roundTrips = 0
    /// Sum of the round-trip times of those exchanges, measured on the client.
    public var roundTripMilliseconds = 0.0
    /// Server compute spent on this request (prefill, target passes, acceptance), as reported by
    /// the server.
    public var serverBusyMilliseconds = 0.0
    /// Time the request's work waited on the server behind other sessions.
    public var serverQueueMilliseconds = 0.0
    /// Verify rounds.
    public var rounds = 0
    /// Bytes of the verify rounds alone (up + down), for bytes-per-round estimates.
    public var roundBytes = 0
    /// Sum of the verify rounds' round-trip times.
    public var roundMilliseconds = 0.0
    /// Smallest ping round trip seen (the network's own latency, without server work).
    public var minimumPingMilliseconds: Double?
    /// Connections re-established after a failure (the session was rebuilt from the committed
    /// tokens each time).
    public var reconnects = 0
    /// Sessions rebuilt from the committed tokens on a new connection (after a reconnect: the
    /// same server restarted, or another replica behind a load balancer).
    public var resumedSessions = 0
    /// Connections that waited in the server's admission queue for a session slot, and the time
    /// they waited (from hello to `serverInfo`).
    public var queuedConnections = 0
    public var queueWaitMilliseconds = 0.0
    /// One entry per verify round, in order.
    public var perRound: [RoundTransport] = []

    public init() {}

    enum CodingKeys: String, CodingKey {
        case bytesSent = "bytes_sent", bytesReceived = "bytes_received", roundTrips = "round_trips"
        case roundTripMilliseconds = "round_trip_ms", serverBusyMilliseconds = "server_busy_ms"
        case serverQueueMilliseconds = "server_queue_ms", rounds, roundBytes = "round_bytes"
        case roundMilliseconds = "round_ms", minimumPingMilliseconds = "min_ping_ms", reconnects
        case resumedSessions = "resumed_sessions", queuedConnections = "queued_connections", queueWaitMilliseconds = "queue_wait_ms"
        case perRound = "per_round"
    }
}

/// The cost of one verify round.
public struct RoundTransport: Codable, Sendable, Equatable {
    public var nodes: Int
    public var accepted: Int
    public var bytesSent: Int
    public var bytesReceived: Int
    public var roundTripMilliseconds: Double
    public var serverMilliseconds: Double
    public var queueMilliseconds: Double

    public init(nodes: Int, accepted: Int, bytesSent: Int, bytesReceived: Int, roundTripMilliseconds: Double, serverMilliseconds: Double, queueMilliseconds: Double) {
        self.nodes = nodes
        self.accepted = accepted
        self.bytesSent = bytesSent
        self.bytesReceived = bytesReceived
        self.roundTripMilliseconds = roundTripMilliseconds
        self.serverMilliseconds = serverMilliseconds
        self.queueMilliseconds = queueMilliseconds
    }

    enum CodingKeys: String, CodingKey {
        case nodes, accepted, bytesSent = "bytes_sent", bytesReceived = "bytes_received"
        case roundTripMilliseconds = "rtt_ms", serverMilliseconds = "server_ms", queueMilliseconds = "queue_ms"
    }
}
