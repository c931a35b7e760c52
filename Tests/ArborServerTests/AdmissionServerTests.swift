import ArborEngine
import ArborRemote
import ArborServer
import ArborWire
import Foundation
import NIOCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Admission over real loopback sockets: floods of idle and slow peers cannot lock out an
/// authenticated client; clients beyond the session slots queue and all finish correctly; a
/// full or waited-out queue is a clear `serverBusy`.
@Suite(.serialized) struct AdmissionServerTests {
    /// One client generating `maxTokens` greedily with drafts through `t`; returns its output
    /// and transport stats.
    func generate(_ t: TestServer, prompt i: Int, maxTokens: Int = 24, target: RemoteTarget? = nil) throws -> ([Int32], TransportStats) {
        let prompt = t.prompt(i)
        let expected = try t.local(prompt, maxTokens: maxTokens)
        let verifier = try RemoteVerifier(target: target ?? t.target(), expectedVocabularyHash: t.bundle.tokenizer.vocabularyFingerprint)
        defer { verifier.close() }
        let drafter = ScriptedDrafter(expected: expected, promptCount: prompt.count, seed: UInt64(i), vocabulary: t.bundle.tokenizer.vocabularySize)
        let r = try SpeculativeGenerator(verifier: verifier, drafter: drafter, tokenizer: t.bundle.tokenizer)
            .generate(promptTokens: prompt, parameters: t.parameters(maxTokens))
        return (r.tokens, r.stats.speculative?.remote ?? TransportStats())
    }

    @Test("48 concurrent clients against 16 session slots: every one is queued or served, none fails, each output identical to local")
    func clientsBeyondTheSlotsQueue() throws {
        let t = try TestServer { $0.maxSessions = 16 }
        let n = 48
        let expected = try (0..<n).map { try t.local(t.prompt($0), maxTokens: 40) }
        final class Box: @unchecked Sendable {
            let lock = NSLock()
            var outputs: [Int: [Int32]] = [:]
            var stats: [Int: TransportStats] = [:]
            var errors: [String] = []
        }
        let box = Box()
        let start = DispatchSemaphore(value: 0)
        let done = DispatchGroup()
        for i in 0..<n {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                start.wait()
                do {
                    let (tokens, stats) = try generate(t, prompt: i, maxTokens: 40)
                    box.lock.withLock { box.outputs[i] = tokens; box.stats[i] = stats }
                } catch {
                    box.lock.withLock { box.errors.append("client \(i): \(error)") }
                }
            }
            thread.start()
        }
        for _ in 0..<n { start.signal() }
        #expect(done.wait(timeout: .now() + 120) == .success)
        #expect(box.errors.isEmpty, "\(box.errors)")
        for i in 0..<n { #expect(box.outputs[i] == expected[i], "client \(i)") }
        let queued = box.stats.values.filter { $0.queuedConnections > 0 }
        #expect(!queued.isEmpty, "with 48 clients and 16 slots some must have queued")
        #expect(queued.allSatisfy { $0.queueWaitMilliseconds > 0 })
        #expect(box.stats.values.allSatisfy { $0.reconnects == 0 }, "queued, not refused and retried")
        let s = t.metrics.snapshot
        #expect(s.queueWait.count == n && s.refused.values.reduce(0, +) == 0)
        #expect(eventually { t.metrics.snapshot.activeConnections == 0 && t.metrics.snapshot.queuedConnections == 0 })
    }

    @Test("A full queue refuses with a retry-after; a waited-out queue says how long it waited; the client's error says busy")
    func fullAndExpiredQueue() throws {
        let t = try TestServer {
            $0.maxSessions = 1
            $0.maxQueue = 1
            $0.maxQueueWait = .milliseconds(600)
        }
        let holder = try RawClient(port: t.port)
        #expect(holder.handshake() != nil)
        let waiting = try RawClient(port: t.port)
        waiting.send(.hello(Hello(authToken: "", clientName: "second")))
        guard case let .message(.admission(q)) = waiting.read() else { Issue.record("no admission frame"); return }
        #expect(q.state == .queued && q.position == 1 && q.deadlineMilliseconds == 600)
        #expect(waiting.answersPing(), "a queued connection still answers pings")
        // The queue is full: a real client is refused with busy, after its attempts, quickly.
        var target = t.target(reconnects: 1)
        target.initialBackoff = .milliseconds(10)
        let began = Date()
        #expect {
            _ = try RemoteVerifier(target: target, expectedVocabularyHash: nil)
        } throws: { error in
            guard let e = error as? RemoteError, case .busy = e else { return false }
            return "\(e)".contains("busy") && "\(e)".contains("queue")
        }
        #expect(Date().timeIntervalSince(began) < 30)
        // The queued one waits out its deadline.
        guard case let .message(.error(e)) = waiting.read(seconds: 5) else { Issue.record("no busy error"); return }
        #expect(e.code == .serverBusy && e.message.contains("waited"))
        #expect(waiting.closesWithin(seconds: 2))
        // When the holder leaves, the next hello gets the slot at once.
        shutdown(holder.fd, Int32(SHUT_RDWR))
        #expect(eventually { t.metrics.snapshot.activeConnections == 0 })
        let next = try RawClient(port: t.port)
        #expect(next.handshake() != nil)
        let s = t.metrics.snapshot
        // The refused client's retry (after the retry-after) found room, queued and waited out too.
        #expect(s.refused["queue_full", default: 0] >= 1 && s.refused["queue_timeout", default: 0] >= 1)
    }

    @Test("A client whose server shut down says so (not 'connection refused')")
    func shutDownIsReported() throws {
        let t = try TestServer()
        var target = t.target(reconnects: 2)
        target.initialBackoff = .milliseconds(20)
        let v = try RemoteVerifier(target: target, expectedVocabularyHash: nil)
        t.shutdown()
        #expect {
            try v.begin(VerificationRequest(prompt: t.prompt(0), sampling: .greedy, capacity: 64))
        } throws: { error in
            guard let e = error as? RemoteError, case .serverShutDown = e else { return false }
            return "\(e)".contains("shut down")
        }
    }

    @Test("Idle and slow-loris floods for 30 s (200 idle connections re-opened every 50 ms from the client's own address, 100 trickling ones from another) cannot keep an authenticated client waiting 2 s")
    func floodsCannotLockOut() throws {
        let t = try TestServer { $0.authToken = "secret" }
        let stop = Date().addingTimeInterval(30)
        let hello = Array(WireCodec.encode(.hello(Hello(authToken: "secret", clientName: "slowloris"))).readableBytesView)
        final class Flood: @unchecked Sendable {
            let lock = NSLock()
            var opened = 0
        }
        let flood = Flood()
        let floods = DispatchGroup()
        // A peer that holds 200 idle connections and re-opens every one the server closes.
        func idlePeer(_ source: String, count: Int) {
            floods.enter()
            Thread {
                defer { floods.leave() }
                var clients: [RawClient?] = Array(repeating: nil, count: count)
                while Date() < stop {
                    for i in clients.indices where clients[i] == nil || isClosed(clients[i]!.fd) {
                        clients[i] = try? RawClient(port: t.port, source: source)
                        flood.lock.withLock { flood.opened += 1 }
                    }
                    Thread.sleep(forTimeInterval: 0.05)
                }
            }.start()
        }
        // A peer that trickles a hello one byte every 300 ms on 100 connections.
        func slowPeer(_ source: String, count: Int) {
            floods.enter()
            Thread {
                defer { floods.leave() }
                var clients: [(RawClient, Int)?] = Array(repeating: nil, count: count)
                while Date() < stop {
                    for i in clients.indices {
                        if clients[i] == nil || isClosed(clients[i]!.0.fd) {
                            clients[i] = (try? RawClient(port: t.port, source: source)).map { ($0, 0) }
                            flood.lock.withLock { flood.opened += 1 }
                        }
                        if let (c, sent) = clients[i], sent < hello.count - 1 {
                            c.send([hello[sent]])
                            clients[i] = (c, sent + 1)
                        }
                    }
                    Thread.sleep(forTimeInterval: 0.3)
                }
            }.start()
        }
        idlePeer("127.0.0.1", count: 200)
        slowPeer("127.0.0.3", count: 100)
        Thread.sleep(forTimeInterval: 1)
        var waits: [Double] = []
        var i = 0
        while Date().addingTimeInterval(3) < stop {
            let began = Date()
            let (tokens, _) = try generate(t, prompt: i, maxTokens: 16, target: t.target(token: "secret"))
            waits.append(Date().timeIntervalSince(began))
            #expect(tokens == (try t.local(t.prompt(i), maxTokens: 16)))
            i += 1
            Thread.sleep(forTimeInterval: 1)
        }
        floods.wait()
        #expect(waits.count >= 10)
        #expect(waits.allSatisfy { $0 < 2 }, "served within 2 s each time: \(waits.map { String(format: "%.2f", $0) })")
        let s = t.metrics.snapshot
        print("flood: served \(waits.count) times, longest \(String(format: "%.3f", waits.max() ?? 0)) s, median \(String(format: "%.3f", waits.sorted()[waits.count / 2])) s; the flood opened \(flood.opened) connections; evicted \(s.refused["evicted", default: 0]), handshake timeouts \(s.refused["handshake_timeout", default: 0])")
        #expect(flood.opened > 300, "the flood really re-opened connections (\(flood.opened))")
        #expect(s.refused["evicted", default: 0] > 0 || s.refused["handshake_timeout", default: 0] > 0)
        #expect(eventually(seconds: 10) { t.metrics.connections == 0 })
    }
}

/// Whether the server closed the socket (readable with nothing to read, or an error).
private func isClosed(_ fd: Int32) -> Bool {
    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    guard poll(&p, 1, 0) > 0 else { return false }
    var byte: UInt8 = 0
    // Drain an error frame if one came first; a closed socket then reads 0.
    while true {
        let n = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
        if n == 0 { return true }
        if n < 0 { return errno != EAGAIN && errno != EWOULDBLOCK }
    }
}
