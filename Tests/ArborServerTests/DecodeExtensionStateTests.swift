import ArborEngine
@testable import ArborServer
import ArborWire
import Testing

/// The decode extension (run-ahead rounds) in the server's protocol logic, without sockets.
@Suite struct DecodeExtensionStateTests {
    let validator = RequestValidator(vocabularySize: 100, contextLength: 64, maxTreeNodes: 8, maxSessionTokens: 32)

    func machine(maxDecode: Int) -> ConnectionStateMachine {
        ConnectionStateMachine(validator: validator, authToken: nil, maxDecodeTokens: maxDecode)
    }

    /// hello, open (capacity 16), a prompt of `n` tokens.
    func active(maxDecode: Int = 8, prompt n: Int = 4) -> ConnectionStateMachine {
        var m = machine(maxDecode: maxDecode)
        _ = m.receive(.hello(Hello(authToken: "", clientName: "t")))
        _ = m.receive(.openSession(OpenSession(sampling: SamplingParameters.greedy.wire, capacity: 16)))
        _ = m.receive(.prefill(Prefill(isFinal: true, tokens: Array(repeating: 1, count: n))))
        _ = m.prefillCompleted(count: n, milliseconds: 1)
        return m
    }

    func errorCode(_ a: ConnectionStateMachine.Action) -> WireErrorCode? {
        if case let .send(.error(e)) = a { return e.code }
        if case let .fail(e) = a { return e.code }
        return nil
    }

    @Test func theOfferAndARunAheadRound() {
        var m = machine(maxDecode: 8)
        _ = m.receive(.hello(Hello(authToken: "", clientName: "t")))
        #expect(m.receive(.decodeQuery) == .send(.decodeOffer(DecodeOffer(maxTokens: 8))))
        var s = active()
        #expect(s.receive(.decode(Decode(round: 5, count: 6))) == .decode(count: 6, round: 5))
        #expect(s.phase == .waiting)
        #expect(errorCode(s.receive(.decode(Decode(round: 6, count: 1)))) == .unexpectedMessage)  // One request at a time.
        var cost = RoundCost()
        cost.targetMilliseconds = 12
        cost.samplingMilliseconds = 1
        cost.queueMilliseconds = 3
        cost.targetCPUMilliseconds = 12
        cost.targetJoules = 0.07
        cost.targetEnergySource = .modelled
        #expect(s.decodeCompleted([7, 8, 9], cost: cost, round: 5)
            == .decoded(Decoded(round: 5, tokens: [7, 8, 9], targetMilliseconds: 12, samplingMilliseconds: 1, queueMilliseconds: 3,
                                targetCPUMilliseconds: 12, targetJoules: 0.07, energySource: .modelled)))
        #expect(s.committed == 7 && s.phase == .active)
        // Verify rounds go on from the new length.
        guard case .verify = s.receive(.verify(Verify(round: 6, tokens: [1], parents: [-1]))) else { Issue.record("no verify"); return }
    }

    @Test func badRequestsAreClearErrorsAndTheSessionGoesOn() {
        var s = active(maxDecode: 32)
        for (count, code) in [(0, WireErrorCode.invalidParameters), (33, .invalidParameters)] {
            let a = s.receive(.decode(Decode(round: 2, count: UInt16(count))))
            guard case let .send(.error(e)) = a else { Issue.record("count \(count) accepted"); continue }
            #expect(e.code == code && e.round == 2 && !e.code.isFatal)
        }
        // 4 committed of 16: the last pass of 14 would need a 17th slot; 13 fit exactly.
        #expect(errorCode(s.receive(.decode(Decode(round: 3, count: 14)))) == .treeTooLarge)
        #expect(s.receive(.decode(Decode(round: 4, count: 13))) == .decode(count: 13, round: 4))
        // Before a session, and the offer while one is open.
        var fresh = machine(maxDecode: 8)
        _ = fresh.receive(.hello(Hello(authToken: "", clientName: "t")))
        #expect(errorCode(fresh.receive(.decode(Decode(round: 1, count: 2)))) == .unexpectedMessage)
        var open = active()
        #expect(errorCode(open.receive(.decodeQuery)) == .unexpectedMessage)
        // Server frames are not for clients to send.
        #expect(errorCode(open.receive(.decodeOffer(DecodeOffer(maxTokens: 1)))) == .unexpectedMessage)
        #expect(open.phase == .active)
    }

    @Test func offTheServerActsLikeOneFromBeforeTheExtension() {
        var m = active(maxDecode: 0)
        let d = Decoded(round: 1, tokens: [1], targetMilliseconds: 0, samplingMilliseconds: 0, queueMilliseconds: 0,
                        targetCPUMilliseconds: 0, targetJoules: 0, energySource: .none)
        for frame: WireMessage in [.decodeQuery, .decodeOffer(DecodeOffer(maxTokens: 4)), .decode(Decode(round: 1, count: 2)), .decoded(d)] {
            guard case let .send(.error(e)) = m.receive(frame) else { Issue.record("\(frame.type) not refused"); continue }
            #expect(e.code == .unknownType && !e.code.isFatal)
        }
        #expect(m.phase == .active)
    }
}
