import ArborEngine
import ArborServer
import ArborWire
import Foundation
import NIOCore
import Testing

/// Bad input and misbehaving clients, over real sockets: each gets a clear error code, fatal
/// ones lose their connection, and the server keeps serving everyone else.
@Suite(.serialized) struct ServerFaultTests {
    /// A well-behaved client generating while `body` misbehaves; its output must be right.
    func whileAnotherClientGenerates(_ t: TestServer, _ body: @escaping () throws -> Void) throws {
        let prompt = t.prompt(0)
        let expected = try t.local(prompt, maxTokens: 30)
        let verifier = try t.remote()
        let drafter = ScriptedDrafter(expected: expected, promptCount: prompt.count, seed: 1, vocabulary: t.bundle.tokenizer.vocabularySize)
        drafter.onRound = { if $0 == 2 { try body() } }
        let r = try SpeculativeGenerator(verifier: verifier, drafter: drafter, tokenizer: t.bundle.tokenizer)
            .generate(promptTokens: prompt, parameters: t.parameters(30))
        #expect(r.tokens == expected)
    }

    @Test func framingErrorsCloseTheConnection() throws {
        let t = try TestServer()
        try whileAnotherClientGenerates(t) {
            let cases: [(String, [UInt8], WireErrorCode)] = [
                ("wrong length (too short)", [0, 0, 0, 1, 1], .malformedFrame),
                ("oversized frame", [0x7F, 0xFF, 0xFF, 0xFF, 1, 9], .frameTooLarge),
                ("wrong version", Array(rawFrame(version: 9, type: 0x09, payload: Array(repeating: 0, count: 8)).readableBytesView), .unsupportedVersion),
                ("truncated payload", Array(rawFrame(type: 0x01, payload: [0, 5, 65]).readableBytesView), .malformedFrame),
                ("garbage", Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8), .frameTooLarge),
            ]
            for (name, bytes, code) in cases {
                let c = try RawClient(port: t.port)
                c.send(bytes)
                #expect(c.errorCode() == code, "\(name)")
                #expect(c.closesWithin(seconds: 5), "\(name)")
            }
        }
    }

    @Test func authAndHandshakeErrors() throws {
        let t = try TestServer { $0.authToken = "tok" }
        let missing = try RawClient(port: t.port)
        missing.send(.hello(Hello(authToken: "", clientName: "x")))
        #expect(missing.errorCode() == .unauthorized)
        #expect(missing.closesWithin(seconds: 5))
        let wrong = try RawClient(port: t.port)
        wrong.send(.hello(Hello(authToken: "tok2", clientName: "x")))
        #expect(wrong.errorCode() == .unauthorized)
        #expect(wrong.closesWithin(seconds: 5))
        let noHello = try RawClient(port: t.port)
        noHello.send(.openSession(OpenSession(sampling: SamplingParameters.greedy.wire, capacity: 64)))
        #expect(noHello.errorCode() == .unauthorized)
        #expect(noHello.closesWithin(seconds: 5))
        let good = try RawClient(port: t.port)
        #expect(good.handshake(token: "tok")?.modelName == "tiny-qwen2")
    }

    @Test func requestErrorsKeepTheConnection() throws {
        let t = try TestServer { $0.maxTreeNodes = 8 }
        let vocab = UInt32(t.bundle.tokenizer.vocabularySize)
        try whileAnotherClientGenerates(t) {
            let c = try RawClient(port: t.port)
            let prompt = t.prompt(1).map { UInt32($0) }
            #expect(c.startSession(prompt: prompt, capacity: 64))
            let cases: [(String, WireMessage, WireErrorCode)] = [
                ("unknown type", .ping(nonce: 0), .unknownType),  // Replaced below by a raw frame.
                ("oversized tree", .verify(Verify(round: 1, tokens: Array(repeating: 1, count: 9), parents: (0..<9).map { Int32($0) - 1 })), .treeTooLarge),
                ("token out of vocabulary", .verify(Verify(round: 2, tokens: [vocab], parents: [-1])), .tokenOutOfVocabulary),
                ("parent after child", .verify(Verify(round: 3, tokens: [1, 2], parents: [1, -1])), .notATree),
                ("parent below -1", .verify(Verify(round: 4, tokens: [1], parents: [-2])), .notATree),
                ("self parent", .verify(Verify(round: 5, tokens: [1, 2], parents: [-1, 1])), .notATree),
                ("bad distribution", .verify(Verify(round: 7, tokens: [1], parents: [-1], distributions: [SparseDistribution(tokens: [1], probabilities: [0.5])], distributionIndex: [0])), .invalidParameters),
                ("second open", .openSession(OpenSession(sampling: SamplingParameters.greedy.wire, capacity: 64)), .unexpectedMessage),
                ("prefill after start", .prefill(Prefill(isFinal: true, tokens: [1])), .unexpectedMessage),
                ("server-only message", .result(RoundResult(round: 1, acceptedNodes: [], nextToken: 0, batchSize: 1, targetMilliseconds: 0, samplingMilliseconds: 0, queueMilliseconds: 0)), .unexpectedMessage),
            ]
            for (name, message, code) in cases {
                if code == .unknownType {
                    c.send(rawFrame(type: 0x42, payload: [1, 2, 3]))
                } else {
                    c.send(message)
                }
                guard case let .message(.error(e)) = c.read() else { Issue.record("\(name): no error"); continue }
                #expect(e.code == code, "\(name): \(e)")
                if case let .verify(v) = message { #expect(e.round == v.round, "\(name)") }
                #expect(c.answersPing(), "\(name): connection lost")
            }
            // The session still works after all that: a real round.
            c.send(.verify(Verify(round: 10, tokens: [5], parents: [-1])))
            guard case let .message(.result(r)) = c.read() else { Issue.record("no result"); return }
            #expect(r.round == 10 && r.batchSize == 2)
        }
    }

    @Test func sessionLimitsAreEnforced() throws {
        let t = try TestServer { $0.maxSessionTokens = 64 }
        let c = try RawClient(port: t.port)
        #expect(c.handshake() != nil)
        c.send(.openSession(OpenSession(sampling: SamplingParameters.greedy.wire, capacity: 65)))
        #expect(c.errorCode() == .sessionLimit)
        c.send(.openSession(OpenSession(sampling: SamplingParameters.greedy.wire, capacity: 64, suppressedTokens: [1 << 30])))
        #expect(c.errorCode() == .tokenOutOfVocabulary)
        var bad = SamplingParameters.greedy.wire
        bad.topP = 2
        c.send(.openSession(OpenSession(sampling: bad, capacity: 16)))
        #expect(c.errorCode() == .invalidParameters)
        c.send(.openSession(OpenSession(sampling: SamplingParameters.greedy.wire, capacity: 16)))
        guard case .message(.sessionOpened) = c.read() else { Issue.record("no session"); return }
        c.send(.prefill(Prefill(isFinal: false, tokens: Array(repeating: 3, count: 10))))
        c.send(.prefill(Prefill(isFinal: true, tokens: Array(repeating: 3, count: 6))))
        #expect(c.errorCode() == .promptTooLarge)
        c.send(.prefill(Prefill(isFinal: true, tokens: [UInt32(t.bundle.tokenizer.vocabularySize)])))
        #expect(c.errorCode() == .tokenOutOfVocabulary)
        c.send(.prefill(Prefill(isFinal: true, tokens: [1, 2, 3])))
        guard case .message(.prefilled(let p)) = c.read() else { Issue.record("no prefill"); return }
        #expect(p.committedTokens == 13)
        // 13 committed of 16: a 4-node tree does not fit, a 3-node one does.
        c.send(.verify(Verify(round: 1, tokens: [1, 1, 1, 1], parents: [-1, 0, 1, 2])))
        #expect(c.errorCode() == .treeTooLarge)
        c.send(.verify(Verify(round: 2, tokens: [1, 1, 1], parents: [-1, 0, 1])))
        guard case .message(.result) = c.read() else { Issue.record("no result"); return }
    }

    @Test func disconnectMidVerifyReleasesTheSession() throws {
        let t = try TestServer()
        for _ in 0..<5 {
            let c = try RawClient(port: t.port)
            #expect(c.startSession(prompt: t.prompt(2).map { UInt32($0) }, capacity: 200))
            #expect(t.metrics.sessions == 1 && t.metrics.liveCaches == 1)
            c.send(.verify(Verify(round: 1, tokens: Array(repeating: 7, count: 64), parents: (0..<64).map { Int32($0) - 1 })))
        }  // Each client closes its socket right after sending (deinit).
        #expect(eventually { t.metrics.sessions == 0 && t.metrics.liveCaches == 0 && t.metrics.connections == 0 })
        #expect(t.metrics.reservedTokens == 0)
    }

    @Test func slowClientsCannotPinTheServer() throws {
        let t = try TestServer {
            $0.frameTimeout = .milliseconds(300)
            $0.handshakeTimeout = .milliseconds(500)
            $0.maxSessions = 2
            $0.maxQueue = 0
            $0.maxConnections = 4
        }
        // A frame trickled byte by byte is cut off at the frame deadline.
        let slow = try RawClient(port: t.port)
        let hello = Array(WireCodec.encode(.hello(Hello(authToken: "", clientName: "slowloris"))).readableBytesView)
        slow.send(Array(hello[0..<3]))
        #expect(slow.errorCode() == .timeout)
        #expect(slow.closesWithin(seconds: 2))
        // Connecting and saying nothing ends at the handshake deadline.
        let silent = try RawClient(port: t.port)
        #expect(silent.errorCode() == .timeout)
        // Sessions and connections are capped; the capped clients are told why. (No queue here:
        // the admission tests cover it.)
        let a = try RawClient(port: t.port), b = try RawClient(port: t.port)
        #expect(a.handshake() != nil && b.handshake() != nil)
        let c = try RawClient(port: t.port)
        c.send(.hello(Hello(authToken: "", clientName: "third")))
        guard case let .message(.admission(full)) = c.read() else { Issue.record("no admission frame"); return }
        #expect(full.state == .full && full.waitMilliseconds > 0)
        #expect(c.errorCode() == .serverBusy)
        #expect(c.closesWithin(seconds: 2))
        #expect(eventually { t.metrics.connections == 2 })
        // At the connection limit a new connection evicts the oldest one still in its handshake,
        // never an authenticated one.
        let d = try RawClient(port: t.port), e = try RawClient(port: t.port)
        #expect(eventually { t.metrics.connections == 4 })
        let f = try RawClient(port: t.port)
        _ = e
        #expect(d.errorCode() == .serverBusy)
        #expect(d.closesWithin(seconds: 2))
        #expect(f.answersPing())
        #expect(a.answersPing() && b.answersPing())
    }

    @Test func idleSessionsAreDroppedAndFreed() throws {
        let t = try TestServer { $0.idleTimeout = .milliseconds(500) }
        let idle = try RawClient(port: t.port)
        #expect(idle.startSession(prompt: [1, 2, 3]))
        #expect(t.metrics.liveCaches == 1)
        #expect(idle.errorCode() == .timeout)
        #expect(idle.closesWithin(seconds: 2))
        #expect(eventually { t.metrics.liveCaches == 0 && t.metrics.sessions == 0 && t.metrics.connections == 0 })
    }

    @Test func shutdownTellsClientsAndFinishes() throws {
        let t = try TestServer()
        let c = try RawClient(port: t.port)
        #expect(c.startSession(prompt: [1, 2, 3]))
        let start = Date()
        t.shutdown()
        #expect(c.errorCode() == .shuttingDown)
        #expect(c.closesWithin(seconds: 2))
        #expect(Date().timeIntervalSince(start) < 5)
        #expect(throws: (any Error).self) { _ = try RawClient(port: t.port) }
    }
}
