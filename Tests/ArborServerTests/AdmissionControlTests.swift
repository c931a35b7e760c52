import ArborEngine
@testable import ArborServer
import ArborWire
import Testing

/// The admission rules without sockets: pending budgets and eviction, slots, the queue's order,
/// deadlines and estimates; and the connection state machine's queued phase.
struct AdmissionControlTests {
    func control(connections: Int = 100, perAddress: Int = 3, sessions: Int = 2, queue: Int = 2, wait: Double = 1000) -> AdmissionControl {
        AdmissionControl(limits: .init(maxConnections: connections, maxPendingPerAddress: perAddress, maxSessions: sessions,
                                       maxQueue: queue, maxQueueWaitMilliseconds: wait))
    }

    @Test("An address over its pending budget loses its own oldest handshake, never another address's")
    func perAddressBudget() {
        var a = control()
        for id in 1...3 { #expect(a.connect(UInt64(id), address: "10.0.0.1") == .accept) }
        #expect(a.connect(10, address: "10.0.0.2") == .accept)
        #expect(a.connect(4, address: "10.0.0.1") == .acceptEvicting(1))
        #expect(a.connect(5, address: "10.0.0.1") == .acceptEvicting(2))
        #expect(a.pending(from: "10.0.0.1") == 3 && a.pending(from: "10.0.0.2") == 1)
        // A connection past hello no longer counts against its address.
        #expect(a.hello(3, now: 0) == .admit)
        #expect(a.pending(from: "10.0.0.1") == 2)
        #expect(a.connect(6, address: "10.0.0.1") == .accept)
    }

    @Test("At the connection limit the oldest handshake makes room; authenticated connections are never evicted")
    func connectionLimit() {
        var a = control(connections: 4, perAddress: 10, sessions: 2, queue: 1)
        #expect(a.connect(1, address: "a") == .accept)
        #expect(a.connect(2, address: "b") == .accept)
        #expect(a.hello(1, now: 0) == .admit)
        #expect(a.hello(2, now: 0) == .admit)
        #expect(a.connect(3, address: "c") == .accept)
        #expect(a.connect(4, address: "d") == .accept)
        #expect(a.connect(5, address: "e") == .acceptEvicting(3))
        #expect(a.connect(6, address: "f") == .acceptEvicting(4))
        #expect(a.isActive(1) && a.isActive(2))
        #expect(a.connectionCount == 4)
    }

    @Test("Beyond the slots hellos queue in arrival order; a freed slot goes to the head; a full queue refuses with a retry-after")
    func queueOrder() {
        var a = control(sessions: 2, queue: 2, wait: 60_000)
        for id in 1...5 { _ = a.connect(UInt64(id), address: "x\(id)") }
        #expect(a.hello(1, now: 0) == .admit)
        #expect(a.hello(2, now: 0) == .admit)
        guard case let .queue(q3) = a.hello(3, now: 10), case let .queue(q4) = a.hello(4, now: 20) else {
            Issue.record("not queued")
            return
        }
        #expect(q3.position == 1 && q4.position == 2 && q3.deadlineMilliseconds == 60_000)
        #expect(q3.waitMilliseconds > 0 && q4.waitMilliseconds >= q3.waitMilliseconds)
        guard case let .refuse(full, error) = a.hello(5, now: 30) else {
            Issue.record("a full queue must refuse")
            return
        }
        #expect(full.state == .full && full.waitMilliseconds > 0 && error.code == .serverBusy)
        // Slot 1 frees at 1 s: the head of the queue (3) takes it, having waited 990 ms.
        let admitted = a.close(1, now: 1000)
        #expect(admitted.map(\.id) == [3] && admitted[0].waited == 990)
        #expect(a.isActive(3) && a.isQueued(4))
        // A queued connection that leaves gives up its place.
        #expect(a.close(4, now: 1100).isEmpty)
        #expect(a.queue.isEmpty && a.activeCount == 2)
    }

    @Test("A newcomer does not overtake the queue even when a slot is free at that instant")
    func noOvertaking() {
        var a = control(sessions: 1, queue: 4)
        for id in 1...3 { _ = a.connect(UInt64(id), address: "x") }
        #expect(a.hello(1, now: 0) == .admit)
        if case .queue = a.hello(2, now: 0) {} else { Issue.record("2 must queue") }
        // 1 leaves: 2 is promoted in the same step, so 3 queues behind nobody but takes no slot.
        #expect(a.close(1, now: 5).map(\.id) == [2])
        if case .queue = a.hello(3, now: 6) {} else { Issue.record("3 must queue while 2 holds the slot") }
    }

    @Test("Queued connections past their deadline leave the queue; others stay")
    func deadlines() {
        var a = control(sessions: 1, queue: 4, wait: 1000)
        for id in 1...3 { _ = a.connect(UInt64(id), address: "x") }
        _ = a.hello(1, now: 0)
        _ = a.hello(2, now: 0)
        _ = a.hello(3, now: 600)
        #expect(a.expire(now: 999).isEmpty)
        #expect(a.expire(now: 1000) == [2])
        #expect(a.queue == [3])
        #expect(a.expire(now: 1600) == [3])
        #expect(a.close(1, now: 2000).isEmpty)
    }

    @Test("The wait estimate follows the measured hold time of slots")
    func estimate() {
        var a = control(sessions: 2, queue: 10)
        let first = a.estimatedWait(position: 1)
        #expect(first == 10_000)
        #expect(a.estimatedWait(position: 3) == 2 * first)
        _ = a.connect(1, address: "x")
        _ = a.hello(1, now: 0)
        _ = a.close(1, now: 500)
        #expect(a.meanHoldMilliseconds < 10_000 && a.meanHoldMilliseconds > 500)
    }

    @Test("Queued: only ping is answered; close and error are ignored; admitted returns to ready")
    func stateMachineQueued() {
        let validator = RequestValidator(vocabularySize: 100, contextLength: 256, maxTreeNodes: 16, maxSessionTokens: 256)
        var m = ConnectionStateMachine(validator: validator, authToken: nil)
        #expect(m.receive(.hello(Hello(authToken: "", clientName: "c"))) == .acceptHello(clientName: "c"))
        m.queued()
        #expect(m.phase == .queued)
        #expect(m.receive(.ping(nonce: 3)) == .send(.pong(nonce: 3)))
        #expect(m.receive(.close) == .none)
        guard case let .send(.error(e)) = m.receive(.openSession(OpenSession(sampling: SamplingParameters.greedy.wire, capacity: 64))) else {
            Issue.record("openSession while queued must be refused")
            return
        }
        #expect(e.code == .unexpectedMessage && e.message.contains("queued"))
        m.admitted()
        #expect(m.phase == .ready)
        guard case .openSession = m.receive(.openSession(OpenSession(sampling: SamplingParameters.greedy.wire, capacity: 64))) else {
            Issue.record("openSession after admission must open")
            return
        }
    }

    @Test("The admission frame round-trips through the codec; a bad state byte is malformed")
    func admissionFrame() throws {
        for a in [Admission(state: .queued, position: 7, waitMilliseconds: 1234, deadlineMilliseconds: 60_000),
                  Admission(state: .full, position: 0, waitMilliseconds: 5000, deadlineMilliseconds: 0)] {
            var buffer = WireCodec.encode(.admission(a))
            #expect(buffer.readableBytes == 6 + 13)
            guard case let .message(m, _)? = try WireFrameReader().next(from: &buffer) else {
                Issue.record("no frame")
                return
            }
            #expect(m == .admission(a))
        }
        var bad = rawFrame(type: WireMessageType.admission.rawValue, payload: [3] + Array(repeating: 0, count: 12))
        #expect(throws: ErrorFrame.self) { _ = try WireFrameReader().next(from: &bad) }
    }
}
