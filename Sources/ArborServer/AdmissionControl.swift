import ArborWire

/// Who may hold a connection, a session slot or a place in the queue: pure bookkeeping, no
/// sockets and no clock of its own (times come in as arguments), so every rule is tested directly.
///
/// Three kinds of connection are counted apart, so that peers who never authenticate cannot take
/// what authenticated clients need:
///
/// - **pending**: accepted, hello not yet accepted; they end at the handshake deadline. At most
///   `maxPendingPerAddress` per source address and `maxConnections` in all: beyond either, a new
///   connection evicts the *oldest pending* one (of that address, or of all) — an idle peer has
///   had its chance; a real client sends hello at once.
/// - **active**: past hello, holding one of `maxSessions` slots.
/// - **queued**: past hello, waiting for a slot in arrival order, at most `maxQueue`, each until
///   its deadline.
///
/// Authenticated connections (active + queued) are bounded by `maxSessions + maxQueue`, and
/// `maxConnections` must leave room for them, so a flood of pending connections can delay an
/// authenticated client by at most one eviction.
struct AdmissionControl {
    struct Limits: Equatable {
        var maxConnections: Int
        var maxPendingPerAddress: Int
        var maxSessions: Int
        var maxQueue: Int
        /// Longest a queued connection waits for a slot, ms.
        var maxQueueWaitMilliseconds: Double
    }

    enum ConnectDecision: Equatable {
        case accept
        /// Accept, and close this oldest pending connection to make room.
        case acceptEvicting(UInt64)
        /// Refuse with this error; `reason` names the rule for the metrics.
        case refuse(ErrorFrame, reason: String)
    }

    enum HelloDecision: Equatable {
        /// A slot is taken: answer with `serverInfo`.
        case admit
        /// Wait in the queue: answer with this `admission` frame.
        case queue(Admission)
        /// No slot and no room in the queue: this `admission` frame, then the fatal error.
        case refuse(Admission, ErrorFrame)
    }

    private enum Kind: Equatable {
        case pending
        /// Since (ms), for the mean hold time behind wait estimates.
        case active(since: Double)
        /// Queued at (ms).
        case queued(at: Double)
    }

    private struct Entry {
        var address: String
        var kind: Kind
    }

    let limits: Limits
    private var entries: [UInt64: Entry] = [:]
    /// Pending connections in arrival order (ids; closed ones are skipped lazily).
    private var pendingOrder: [UInt64] = []
    private var pendingByAddress: [String: Int] = [:]
    /// Queued connections in arrival order.
    private(set) var queue: [UInt64] = []
    private(set) var activeCount = 0
    /// Mean time a slot is held (ms), an exponential moving average; the first guess is 10 s.
    private(set) var meanHoldMilliseconds = 10_000.0

    init(limits: Limits) {
        self.limits = limits
    }

    var pendingCount: Int { pendingByAddress.values.reduce(0, +) }
    var connectionCount: Int { entries.count }
    func pending(from address: String) -> Int { pendingByAddress[address] ?? 0 }
    func isQueued(_ id: UInt64) -> Bool { if case .queued = entries[id]?.kind { true } else { false } }
    func isActive(_ id: UInt64) -> Bool { if case .active = entries[id]?.kind { true } else { false } }

    /// A TCP connection from `address` was accepted.
    ///
    /// At its address's budget, the address's own oldest pending connection makes room; at the
    /// server's connection limit, the oldest pending connection of any address does. Evicting
    /// rather than refusing matters when many users share an address (NAT, a proxy): a real
    /// client's hello follows its connect within a round trip, so a flooder would have to open a
    /// whole budget of connections inside that window to push it out.
    mutating func connect(_ id: UInt64, address: String) -> ConnectDecision {
        var evicted: UInt64?
        if pending(from: address) >= limits.maxPendingPerAddress, let oldest = oldestPending(from: address) {
            remove(oldest)
            evicted = oldest
        } else if entries.count >= limits.maxConnections {
            guard let oldest = oldestPending(from: nil) else {
                return .refuse(ErrorFrame(code: .serverBusy, message: "the server is at its limit of \(limits.maxConnections) connections"),
                               reason: "max_connections")
            }
            remove(oldest)
            evicted = oldest
        }
        entries[id] = Entry(address: address, kind: .pending)
        pendingOrder.append(id)
        pendingByAddress[address, default: 0] += 1
        return evicted.map { .acceptEvicting($0) } ?? .accept
    }

    /// Connection `id` sent an accepted hello at `now` (ms).
    mutating func hello(_ id: UInt64, now: Double) -> HelloDecision {
        guard let e = entries[id] else {
            // Evicted or closed meanwhile: its channel is going away.
            return .refuse(Admission(state: .full, position: 0, waitMilliseconds: 0, deadlineMilliseconds: 0),
                           ErrorFrame(code: .timeout, message: "the connection was closed before its hello was accepted"))
        }
        guard e.kind == .pending else { return .admit }
        dropPending(id, address: e.address)
        if activeCount < limits.maxSessions && queue.isEmpty {
            entries[id]?.kind = .active(since: now)
            activeCount += 1
            return .admit
        }
        guard queue.count < limits.maxQueue else {
            entries[id] = nil
            let retry = estimatedWait(position: 1)
            return .refuse(Admission(state: .full, position: 0, waitMilliseconds: UInt32(clamping: Int(retry)), deadlineMilliseconds: 0),
                           ErrorFrame(code: .serverBusy, message: "the server is at its limit of \(limits.maxSessions) sessions and its queue of \(limits.maxQueue) is full; retry after \(Int(retry / 1000)) s"))
        }
        entries[id]?.kind = .queued(at: now)
        queue.append(id)
        let position = queue.count
        return .queue(Admission(state: .queued, position: UInt32(position), waitMilliseconds: UInt32(clamping: Int(estimatedWait(position: position))),
                                deadlineMilliseconds: UInt32(clamping: Int(limits.maxQueueWaitMilliseconds))))
    }

    /// Connection `id` closed at `now`. Returns the queued connections that now hold a slot, in
    /// order, with how long each waited (ms).
    mutating func close(_ id: UInt64, now: Double) -> [(id: UInt64, waited: Double)] {
        guard let e = entries[id] else { return [] }
        if case let .active(since) = e.kind {
            // Weight 0.2: a few sessions move the estimate, one outlier does not own it.
            meanHoldMilliseconds += 0.2 * (max(0, now - since) - meanHoldMilliseconds)
        }
        remove(id)
        return promote(now: now)
    }

    /// Queued connections whose deadline passed at `now`: they leave the queue (the caller refuses
    /// them with `serverBusy`).
    mutating func expire(now: Double) -> [UInt64] {
        var gone: [UInt64] = []
        queue.removeAll { id in
            guard case let .queued(at) = entries[id]?.kind, now - at >= limits.maxQueueWaitMilliseconds else { return false }
            gone.append(id)
            return true
        }
        for id in gone { entries[id] = nil }
        return gone
    }

    /// The wait, ms, of the `position`th in the queue: slots free at `maxSessions` per mean hold.
    func estimatedWait(position: Int) -> Double {
        let rounds = (Double(max(position, 1)) / Double(max(limits.maxSessions, 1))).rounded(.up)
        return rounds * meanHoldMilliseconds
    }

    private mutating func promote(now: Double) -> [(id: UInt64, waited: Double)] {
        var admitted: [(id: UInt64, waited: Double)] = []
        while activeCount < limits.maxSessions, !queue.isEmpty {
            let id = queue.removeFirst()
            guard case let .queued(at) = entries[id]?.kind else { continue }
            entries[id]?.kind = .active(since: now)
            activeCount += 1
            admitted.append((id, now - at))
        }
        return admitted
    }

    /// The oldest connection still in its handshake (from `address`, or from anyone).
    private func oldestPending(from address: String?) -> UInt64? {
        pendingOrder.first { id in
            guard let e = entries[id], e.kind == .pending else { return false }
            return address == nil || e.address == address
        }
    }

    private mutating func dropPending(_ id: UInt64, address: String) {
        pendingByAddress[address, default: 1] -= 1
        if pendingByAddress[address] == 0 { pendingByAddress[address] = nil }
        // Trim closed or promoted ids off the front so the order list stays short.
        while let first = pendingOrder.first, first == id || entries[first]?.kind != .pending {
            pendingOrder.removeFirst()
        }
    }

    private mutating func remove(_ id: UInt64) {
        guard let e = entries.removeValue(forKey: id) else { return }
        switch e.kind {
        case .pending:
            dropPending(id, address: e.address)
        case .active:
            activeCount -= 1
        case .queued:
            queue.removeAll { $0 == id }
        }
    }
}
