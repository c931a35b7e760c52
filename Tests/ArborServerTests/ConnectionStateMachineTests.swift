import ArborEngine
@testable import ArborServer
import ArborWire
import Testing

/// The server's protocol logic without sockets or a model.
@Suite struct ConnectionStateMachineTests {
    let validator = RequestValidator(vocabularySize: 100, contextLength: 64, maxTreeNodes: 8, maxSessionTokens: 32)
    let greedy = SamplingParameters.greedy.wire

    let details = ServerDetails(pricePerHour: 0.75, energySource: .modelled, wattsPerCore: 6,
                                targetProfile: [TargetTiming(batchSize: 1, milliseconds: 3)])

    func machine(token: String? = nil, details: ServerDetails? = nil) -> ConnectionStateMachine {
        ConnectionStateMachine(validator: validator, authToken: token, details: details)
    }

    func errorCode(_ a: ConnectionStateMachine.Action) -> WireErrorCode? {
        switch a {
        case let .send(.error(e)), let .fail(e): e.code
        default: nil
        }
    }

    /// hello, (capabilities,) open (capacity 16), prompt of `n` tokens.
    func ready(prompt n: Int = 4, details: ServerDetails? = nil, capabilities: ClientCapabilities? = nil) -> ConnectionStateMachine {
        var m = machine(details: details)
        _ = m.receive(.hello(Hello(authToken: "", clientName: "t")))
        if let capabilities { _ = m.receive(.capabilities(capabilities)) }
        _ = m.receive(.openSession(OpenSession(sampling: greedy, capacity: 16)))
        _ = m.receive(.prefill(Prefill(isFinal: true, tokens: Array(repeating: 1, count: n))))
        _ = m.prefillCompleted(count: n, milliseconds: 1)
        return m
    }

    @Test func theHappyPath() {
        var m = machine(token: "k")
        #expect(m.receive(.hello(Hello(authToken: "k", clientName: "c"))) == .acceptHello(clientName: "c"))
        #expect(m.receive(.ping(nonce: 3)) == .send(.pong(nonce: 3)))
        guard case .openSession(let s) = m.receive(.openSession(OpenSession(sampling: greedy, capacity: 16, suppressedTokens: [5]))) else {
            Issue.record("no session"); return
        }
        #expect(s.capacity == 16 && s.suppressedTokens == [5] && s.sampling == .greedy)
        #expect(m.receive(.prefill(Prefill(isFinal: false, tokens: [1, 2]))) == .none)
        #expect(m.receive(.prefill(Prefill(isFinal: true, tokens: [3]))) == .prefill([1, 2, 3]))
        #expect(m.phase == .waiting)
        #expect(m.prefillCompleted(count: 3, milliseconds: 2) == .prefilled(Prefilled(committedTokens: 3, computeMilliseconds: 2)))
        guard case .verify(let tree, 7) = m.receive(.verify(Verify(round: 7, tokens: [4, 5, 6], parents: [-1, 0, 0]))) else {
            Issue.record("no verify"); return
        }
        #expect(tree.parents == [-1, 0, 0] && tree.tokens == [4, 5, 6])
        let reply = m.verifyCompleted(VerificationResult(acceptedNodes: [0, 2], nextToken: 9, batchSize: 4, targetMilliseconds: 5), round: 7, queueMilliseconds: 1)
        #expect(reply == .result(RoundResult(round: 7, acceptedNodes: [0, 2], nextToken: 9, batchSize: 4, targetMilliseconds: 5, samplingMilliseconds: 0, queueMilliseconds: 1)))
        #expect(m.committed == 6)
        #expect(m.receive(.close) == .endSession)
        #expect(m.phase == .ready && !m.hasSession)
    }

    @Test func helloComesFirstAndChecksTheToken() {
        var m = machine(token: "secret")
        #expect(errorCode(m.receive(.openSession(OpenSession(sampling: greedy, capacity: 8)))) == .unauthorized)
        #expect(m.phase == .closed)
        #expect(m.receive(.ping(nonce: 1)) == .none)  // Nothing after a fatal error.
        var w = machine(token: "secret")
        #expect(errorCode(w.receive(.hello(Hello(authToken: "secreT", clientName: "")))) == .unauthorized)
        var n = machine()
        _ = n.receive(.hello(Hello(authToken: "anything", clientName: "")))
        #expect(errorCode(n.receive(.hello(Hello(authToken: "", clientName: "")))) == .unexpectedMessage)
        #expect(ConnectionStateMachine.constantTimeEqual("abc", "abc"))
        #expect(!ConnectionStateMachine.constantTimeEqual("abc", "abcd") && !ConnectionStateMachine.constantTimeEqual("", "a"))
    }

    @Test func oneRequestInFlight() {
        var m = ready()
        _ = m.receive(.verify(Verify(round: 1, tokens: [1], parents: [-1])))
        #expect(m.phase == .waiting)
        #expect(errorCode(m.receive(.verify(Verify(round: 2, tokens: [1], parents: [-1])))) == .unexpectedMessage)
        #expect(m.receive(.ping(nonce: 1)) == .send(.pong(nonce: 1)))  // Pings are answered meanwhile.
        // Closing while the model works: the session ends, a later completion is the handler's to drop.
        #expect(m.receive(.close) == .endSession)
        #expect(m.phase == .ready)
    }

    @Test func treesAreValidated() {
        var m = ready(prompt: 10)
        let cases: [(Verify, WireErrorCode)] = [
            (Verify(round: 1, tokens: Array(repeating: 1, count: 9), parents: (0..<9).map { Int32($0) - 1 }), .treeTooLarge),
            (Verify(round: 2, tokens: [1, 1, 1, 1, 1, 1, 1], parents: [-1, 0, 1, 2, 3, 4, 5]), .treeTooLarge),  // 10 + 7 > 16.
            (Verify(round: 3, tokens: [100], parents: [-1]), .tokenOutOfVocabulary),
            (Verify(round: 4, tokens: [1, 2], parents: [0, -1]), .notATree),
            (Verify(round: 5, tokens: [1], parents: [-3]), .notATree),
            (Verify(round: 6, tokens: [1], parents: [-1], distributions: [SparseDistribution(tokens: [2], probabilities: [1])], distributionIndex: [0]), .invalidParameters),
            (Verify(round: 7, tokens: [1], parents: [-1], distributions: [SparseDistribution(tokens: [1, 1], probabilities: [0.5, 0.5])], distributionIndex: [0]), .invalidParameters),
            (Verify(round: 8, tokens: [1], parents: [-1], distributions: [SparseDistribution(tokens: [1], probabilities: [.nan])], distributionIndex: [0]), .invalidParameters),
            (Verify(round: 9, tokens: [1], parents: [-1], distributions: [SparseDistribution(tokens: [1], probabilities: [1])], distributionIndex: [3]), .invalidParameters),
        ]
        for (v, code) in cases {
            let a = m.receive(.verify(v))
            #expect(errorCode(a) == code, "round \(v.round): \(a)")
            if case let .send(.error(e)) = a { #expect(e.round == v.round) }
            #expect(m.phase == .active)  // Request errors keep the session.
        }
        // Six nodes fit exactly (10 committed + 6 = 16).
        guard case .verify(let tree, _) = m.receive(.verify(Verify(
            round: 10, tokens: [1, 2, 3, 4, 5, 6], parents: [-1, 0, 1, 2, 3, 4],
            distributions: [SparseDistribution(tokens: [1, 7], probabilities: [0.75, 0.25])],
            distributionIndex: [0, Verify.deterministic, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]))) else {
            Issue.record("valid tree refused"); return
        }
        #expect(tree.proposals[0]?.probabilities[7] == 0.25 && tree.proposals[1] == nil)
    }

    @Test func sessionsAndPromptsAreBounded() {
        var m = machine()
        _ = m.receive(.hello(Hello(authToken: "", clientName: "")))
        #expect(errorCode(m.receive(.openSession(OpenSession(sampling: greedy, capacity: 33)))) == .sessionLimit)
        #expect(errorCode(m.receive(.openSession(OpenSession(sampling: greedy, capacity: 1)))) == .invalidParameters)
        var hot = greedy
        hot.temperature = -1
        #expect(errorCode(m.receive(.openSession(OpenSession(sampling: hot, capacity: 8)))) == .invalidParameters)
        #expect(errorCode(m.receive(.verify(Verify(round: 1, tokens: [], parents: [])))) == .unexpectedMessage)
        #expect(errorCode(m.receive(.prefill(Prefill(isFinal: true, tokens: [1])))) == .unexpectedMessage)
        guard case .openSession = m.receive(.openSession(OpenSession(sampling: greedy, capacity: 8))) else { Issue.record("no session"); return }
        #expect(errorCode(m.receive(.prefill(Prefill(isFinal: true, tokens: [])))) == .invalidParameters)
        #expect(errorCode(m.receive(.prefill(Prefill(isFinal: false, tokens: Array(repeating: 1, count: 8))))) == .promptTooLarge)
        #expect(errorCode(m.receive(.prefill(Prefill(isFinal: false, tokens: [100])))) == .tokenOutOfVocabulary)
        #expect(m.receive(.prefill(Prefill(isFinal: true, tokens: Array(repeating: 1, count: 7)))) == .prefill(Array(repeating: 1, count: 7)))
    }

    @Test func failedWorkEndsTheSession() {
        var m = ready()
        _ = m.receive(.verify(Verify(round: 4, tokens: [1], parents: [-1])))
        let actions = m.workFailed("boom", round: 4)
        #expect(actions.first == .endSession)
        #expect(actions.last.map(errorCode) == .internalError)
        #expect(m.phase == .ready && !m.hasSession)
    }

    /// A round's verdict with its measured costs, as `LocalVerifier` fills them.
    func costedResult() -> VerificationResult {
        var r = VerificationResult(acceptedNodes: [0], nextToken: 9, batchSize: 3, targetMilliseconds: 5, samplingMilliseconds: 0.5)
        r.cost.targetCPUMilliseconds = 9.5
        r.cost.targetJoules = 0.0625
        r.cost.targetEnergySource = .modelled
        return r
    }

    @Test func capabilitiesAreAnsweredWithDetailsAndSwitchResultsToCosts() {
        var m = machine(details: details)
        _ = m.receive(.hello(Hello(authToken: "", clientName: "c")))
        #expect(!m.sendsRoundCosts)
        #expect(m.receive(.capabilities(.roundCosts)) == .send(.serverDetails(details)))
        #expect(m.sendsRoundCosts && m.phase == .ready)
        // Sent again (still without a session), the last one counts.
        #expect(m.receive(.capabilities([])) == .send(.serverDetails(details)))
        #expect(!m.sendsRoundCosts)
        #expect(m.receive(.capabilities(ClientCapabilities(rawValue: 0xFFFF_FFFF))) == .send(.serverDetails(details)))  // Unknown bits ignored.
        #expect(m.sendsRoundCosts)

        var costed = ready(details: details, capabilities: .roundCosts)
        _ = costed.receive(.verify(Verify(round: 3, tokens: [4, 5], parents: [-1, 0])))
        let plain = RoundResult(round: 3, acceptedNodes: [0], nextToken: 9, batchSize: 3, targetMilliseconds: 5, samplingMilliseconds: 0.5, queueMilliseconds: 2)
        #expect(costed.verifyCompleted(costedResult(), round: 3, queueMilliseconds: 2)
            == .resultCost(ResultCost(result: plain, targetCPUMilliseconds: 9.5, targetJoules: 0.0625, energySource: .modelled)))
        #expect(costed.committed == 6 && costed.phase == .active)
        // Costs stay on for the connection's later sessions.
        _ = costed.receive(.close)
        #expect(costed.sendsRoundCosts)
        // A round without energy figures: zeros and source none.
        var bare = ready(details: details, capabilities: .roundCosts)
        _ = bare.receive(.verify(Verify(round: 1, tokens: [], parents: [])))
        #expect(bare.verifyCompleted(VerificationResult(acceptedNodes: [], nextToken: 2, batchSize: 1), round: 1, queueMilliseconds: 0)
            == .resultCost(ResultCost(result: RoundResult(round: 1, acceptedNodes: [], nextToken: 2, batchSize: 1, targetMilliseconds: 0,
                                                          samplingMilliseconds: 0, queueMilliseconds: 0),
                                      targetCPUMilliseconds: 0, targetJoules: 0, energySource: .none)))
    }

    @Test func aClientThatNeverAsksGetsPlainResults() {
        for caps: ClientCapabilities? in [nil, []] {
            var m = ready(details: details, capabilities: caps)
            _ = m.receive(.verify(Verify(round: 3, tokens: [4, 5], parents: [-1, 0])))
            #expect(m.verifyCompleted(costedResult(), round: 3, queueMilliseconds: 2)
                == .result(RoundResult(round: 3, acceptedNodes: [0], nextToken: 9, batchSize: 3, targetMilliseconds: 5, samplingMilliseconds: 0.5, queueMilliseconds: 2)))
        }
    }

    @Test func capabilitiesOnlyAfterHelloAndWithoutASession() {
        var first = machine(details: details)
        #expect(errorCode(first.receive(.capabilities(.roundCosts))) == .unauthorized)  // Hello comes first.
        #expect(first.phase == .closed)
        var m = machine(details: details)
        _ = m.receive(.hello(Hello(authToken: "", clientName: "c")))
        guard case .openSession = m.receive(.openSession(OpenSession(sampling: greedy, capacity: 16))) else { Issue.record("no session"); return }
        #expect(errorCode(m.receive(.capabilities(.roundCosts))) == .unexpectedMessage)  // Prefilling.
        _ = m.receive(.prefill(Prefill(isFinal: true, tokens: [1, 2])))
        #expect(errorCode(m.receive(.capabilities(.roundCosts))) == .unexpectedMessage)  // Waiting.
        _ = m.prefillCompleted(count: 2, milliseconds: 1)
        #expect(errorCode(m.receive(.capabilities(.roundCosts))) == .unexpectedMessage)  // Active.
        #expect(m.phase == .active && !m.sendsRoundCosts)
        _ = m.receive(.close)
        #expect(m.receive(.capabilities(.roundCosts)) == .send(.serverDetails(details)))
        // The extension's server frames are not for clients to send.
        #expect(errorCode(m.receive(.serverDetails(details))) == .unexpectedMessage)
        let r = RoundResult(round: 1, acceptedNodes: [], nextToken: 0, batchSize: 1, targetMilliseconds: 0, samplingMilliseconds: 0, queueMilliseconds: 0)
        #expect(errorCode(m.receive(.resultCost(ResultCost(result: r, targetCPUMilliseconds: 0, targetJoules: 0, energySource: .none)))) == .unexpectedMessage)
        #expect(m.phase == .ready)
    }

    @Test func withoutDetailsTheServerActsLikeOneFromBeforeTheExtension() {
        // Each new type is an unknown type, in every phase, non-fatal — as an old frame reader
        // would answer it (before hello too: unknown types are skipped, not refused).
        var m = machine()
        #expect(errorCode(m.receive(.capabilities(.roundCosts))) == .unknownType)
        #expect(m.phase == .awaitingHello)
        #expect(m.receive(.hello(Hello(authToken: "", clientName: "old"))) == .acceptHello(clientName: "old"))
        let r = RoundResult(round: 1, acceptedNodes: [], nextToken: 0, batchSize: 1, targetMilliseconds: 0, samplingMilliseconds: 0, queueMilliseconds: 0)
        for frame: WireMessage in [.capabilities(.roundCosts), .serverDetails(details),
                                   .resultCost(ResultCost(result: r, targetCPUMilliseconds: 0, targetJoules: 0, energySource: .none))] {
            guard case let .send(.error(e)) = m.receive(frame) else { Issue.record("\(frame.type) not refused"); continue }
            #expect(e.code == .unknownType && e.round == 0 && !e.code.isFatal)
        }
        #expect(m.phase == .ready && !m.sendsRoundCosts)
        var session = ready()
        #expect(errorCode(session.receive(.capabilities(.roundCosts))) == .unknownType)
        _ = session.receive(.verify(Verify(round: 2, tokens: [4], parents: [-1])))
        guard case .result = session.verifyCompleted(costedResult(), round: 2, queueMilliseconds: 0) else { Issue.record("not a plain result"); return }
    }
}
