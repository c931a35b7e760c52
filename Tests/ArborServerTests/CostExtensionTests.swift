import ArborEngine
import ArborRemote
import ArborServer
import ArborTestSupport
import ArborWire
import Foundation
import Testing

/// The cost extension over real sockets: per-round costs and server details for new clients,
/// plain results for old clients, and a new client that keeps working against an old server.
/// Also the pipelined `send`/`receive` of `RemoteVerifier`, with a connection lost in between.
@Suite(.serialized) struct CostExtensionTests {
    /// A chain of the expected continuation with one wrong node at the end.
    func chain(_ expected: ArraySlice<Int32>, wrong: Int32) -> TokenTree {
        var tree = TokenTree()
        var parent = -1
        for t in expected { parent = tree.append(token: t, parent: parent) }
        _ = tree.append(token: wrong, parent: parent)
        return tree
    }

    /// Runs rounds of chains drafted from `expected` on `verifier` and on a local verifier; their
    /// verdicts must agree. `between(i)` runs between `send` and `receive` of round i.
    func rounds(_ t: TestServer, _ verifier: RemoteVerifier, count: Int, pipelined: Bool = false,
                between: (Int) throws -> Void = { _ in }) throws -> [VerificationResult] {
        let prompt = t.prompt(0)
        let expected = try t.local(prompt, maxTokens: 40)
        let request = VerificationRequest(prompt: prompt, sampling: .greedy, capacity: 128)
        let local = LocalVerifier(model: t.bundle.model)
        try local.begin(request)
        try verifier.begin(request)
        defer { verifier.end() }
        var out: [VerificationResult] = []
        var at = 0
        for i in 0..<count {
            let tree = chain(expected[min(at, expected.count)..<min(at + 3, expected.count)], wrong: 1)
            let r: VerificationResult
            if pipelined {
                try verifier.send(tree)
                try between(i)
                r = try verifier.receive()
            } else {
                r = try verifier.verify(tree)
            }
            let l = try local.verify(tree)
            #expect(r.acceptedNodes == l.acceptedNodes && r.nextToken == l.nextToken, "round \(i)")
            at += r.acceptedNodes.count + 1
            out.append(r)
        }
        return out
    }

    @Test func newClientAndServerReportEachRoundsCost() throws {
        let t = try TestServer {
            $0.pricePerHour = 1.5
            $0.wattsPerCore = 4
        }
        let v = try t.remote()
        let details = try #require(v.serverDetails)
        #expect(details == t.server.details)
        #expect(details.pricePerHour == 1.5 && details.targetProfile.isEmpty)
        let measured = EnergyMeter().source == .measured
        #expect(details.energySource == (measured ? .measured : .modelled))
        #expect(details.wattsPerCore == (measured ? 0 : 4))
        let results = try rounds(t, v, count: 6)
        let stats = v.stats
        for (r, transport) in zip(results, stats.perRound) {
            let c = r.cost
            #expect(c.targetEnergySource == (measured ? .measured : .modelled))
            #expect(c.targetCPUMilliseconds > 0 && c.targetJoules > 0)
            if !measured { #expect(abs(c.targetJoules - c.targetCPUMilliseconds / 1000 * 4) < 1e-3 * max(1, c.targetJoules)) }
            #expect(c.targetMilliseconds > 0 && c.roundTripMilliseconds >= c.targetMilliseconds)
            #expect(c.queueMilliseconds >= 0 && c.queueMilliseconds == transport.queueMilliseconds)
            // Exact frame sizes: verify without distributions 14 + 8n, resultCost 39 + 2k.
            #expect(c.bytesUp == 14 + 8 * transport.nodes && c.bytesDown == 39 + 2 * r.acceptedNodes.count)
            #expect(c.bytesUp == transport.bytesSent && c.bytesDown == transport.bytesReceived)
        }
        #expect(stats.rounds == 6 && stats.roundTrips == 6 + 2)
    }

    @Test func newClientWorksWithAnOldServer() throws {
        // The extension off: the server answers capabilities with unknownType, like an old one.
        let t = try TestServer { $0.costExtension = false }
        #expect(t.server.details == nil)
        let v = try t.remote()
        #expect(v.serverDetails == nil)
        for r in try rounds(t, v, count: 5) {
            #expect(r.cost.targetEnergySource == nil && r.cost.targetJoules == 0 && r.cost.targetCPUMilliseconds == 0)
            #expect(r.cost.bytesDown == 30 + 2 * r.acceptedNodes.count)  // Plain results.
            #expect(r.cost.targetMilliseconds > 0)
        }
        // Whole generations too, and after a restart of the (old) server.
        let prompt = t.prompt(1)
        let expected = try t.local(prompt, maxTokens: 30)
        let drafter = ScriptedDrafter(expected: expected, promptCount: prompt.count, seed: 7, vocabulary: t.bundle.tokenizer.vocabularySize)
        drafter.onRound = { if $0 == 3 { try t.restart() } }
        let g = SpeculativeGenerator(verifier: v, drafter: drafter, tokenizer: t.bundle.tokenizer)
        #expect(try g.generate(promptTokens: prompt, parameters: t.parameters(30)).tokens == expected)
        #expect(v.serverDetails == nil)
    }

    @Test func oldClientGetsPlainResults() throws {
        let t = try TestServer { $0.pricePerHour = 2 }
        let prompt = t.prompt(2).map { UInt32($0) }
        // An old client: no capabilities frame, plain results.
        let old = try RawClient(port: t.port)
        #expect(old.startSession(prompt: prompt))
        old.send(.verify(Verify(round: 1, tokens: [5], parents: [-1])))
        guard case let .message(.result(r)) = old.read() else { Issue.record("no plain result"); return }
        #expect(r.round == 1 && r.batchSize == 2)
        // A new client asking for costs, on a raw socket: details, then costed results.
        let new = try RawClient(port: t.port)
        #expect(new.handshake() != nil)
        new.send(.capabilities(.roundCosts))
        guard case let .message(.serverDetails(d)) = new.read() else { Issue.record("no details"); return }
        #expect(d.pricePerHour == 2)
        new.send(.openSession(OpenSession(sampling: SamplingParameters.greedy.wire, capacity: 128)))
        guard case .message(.sessionOpened) = new.read() else { Issue.record("no session"); return }
        // Once a session is open, capabilities are refused (non-fatal).
        new.send(.capabilities([]))
        #expect(new.errorCode() == .unexpectedMessage)
        new.send(.prefill(Prefill(isFinal: true, tokens: prompt)))
        guard case .message(.prefilled) = new.read() else { Issue.record("no prefill"); return }
        new.send(.verify(Verify(round: 1, tokens: [5], parents: [-1])))
        guard case let .message(.resultCost(c)) = new.read() else { Issue.record("no costed result"); return }
        #expect(c.result.round == 1 && c.result.nextToken == r.nextToken && c.energySource != .none && c.targetJoules > 0)
    }

    @Test func pipelinedRoundsEqualBlockingOnes() throws {
        let t = try TestServer()
        let v = try t.remote()
        let results = try rounds(t, v, count: 4, pipelined: true) { _ in
            // The caller drafts here; the reply arrives meanwhile.
            usleep(250_000)
        }
        for r in results { #expect(r.cost.bytesDown == 39 + 2 * r.acceptedNodes.count) }
        // The round trip ends when the reply arrived, not when the caller collected it.
        #expect(results.contains { $0.cost.roundTripMilliseconds < 250 }, "\(results.map(\.cost.roundTripMilliseconds))")
        // Calls out of order are refused clearly.
        try v.begin(VerificationRequest(prompt: t.prompt(0), sampling: .greedy, capacity: 64))
        #expect(throws: RemoteError.self) { _ = try v.receive() }
        try v.send(TokenTree())
        #expect(throws: RemoteError.self) { try v.send(TokenTree()) }
        #expect(throws: RemoteError.self) { try v.ping() }
        #expect(try v.receive().batchSize == 1)
        // A round abandoned by `end` does not confuse the next request.
        try v.send(TokenTree())
        v.end()
        try v.begin(VerificationRequest(prompt: t.prompt(1), sampling: .greedy, capacity: 64))
        #expect(try v.verify(TokenTree()).nextToken == (try t.local(t.prompt(1), maxTokens: 1))[0])
        v.end()
    }

    @Test func aConnectionLostBetweenSendAndReceiveIsResumed() throws {
        let t = try TestServer()
        let v = try t.remote()
        _ = try rounds(t, v, count: 8, pipelined: true) { i in
            switch i {
            case 2: v.close()  // The reply can no longer arrive on this connection.
            case 5: try t.restart()  // The server goes away and comes back.
            default: break
            }
        }
        #expect(v.stats.reconnects >= 1)
        #expect(v.serverDetails != nil)
    }

    @Test func theTargetIsProfiledAtStartUp() throws {
        let t = try TestServer(lazy: true) {
            $0.profileTarget = true
            $0.maxTreeNodes = 15
        }
        #expect(t.server.host.isLoaded)  // Profiling loads the model despite lazy loading.
        let profile = try #require(t.server.details?.targetProfile)
        #expect(profile.map(\.batchSize) == Array(1...16))
        #expect(profile.allSatisfy { $0.milliseconds > 0 && $0.milliseconds.isFinite })
        #expect(try t.remote().serverDetails?.targetProfile == profile)
    }
}
