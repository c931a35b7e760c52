import Foundation

/// Admits one holder at a time, in arrival order. A waiter that is cancelled leaves the line
/// without blocking those behind it.
final class FairGate: @unchecked Sendable {
    private let condition = NSCondition()
    private var nextTicket: UInt64 = 0
    private var serving: UInt64 = 0
    private var abandoned: Set<UInt64> = []
    private var waitingCount = 0
    private var busy = false

    /// Requests waiting for their turn, and whether one holds the gate.
    var state: (waiting: Int, running: Bool) {
        condition.lock()
        defer { condition.unlock() }
        return (waitingCount, busy)
    }

    /// Blocks until it is this caller's turn; throws `.cancelled` (leaving the line) as soon as
    /// `isCancelled` says so.
    func enter(isCancelled: () -> Bool) throws(RuntimeError) {
        condition.lock()
        defer { condition.unlock() }
        let ticket = nextTicket
        nextTicket += 1
        waitingCount += 1
        defer { waitingCount -= 1 }
        while serving != ticket {
            if isCancelled() {
                abandoned.insert(ticket)
                throw .cancelled
            }
            // A bounded wait: cancellation is noticed within 50 ms even if nobody signals.
            _ = condition.wait(until: Date().addingTimeInterval(0.05))
        }
        busy = true
    }

    /// Lets the next caller in line through.
    func leave() {
        condition.lock()
        defer { condition.unlock() }
        busy = false
        serving += 1
        while abandoned.remove(serving) != nil { serving += 1 }
        condition.broadcast()
    }
}

/// A flag set from any thread.
final class AtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return value
    }

    func set() {
        lock.lock()
        value = true
        lock.unlock()
    }
}
