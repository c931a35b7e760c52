import ArborEngine
import ArborRemote
import ArborServer
import ArborTestSupport
import ArborWire
import Foundation
import Testing

/// Remote verification over real loopback sockets against a tiny model: outputs, accounting,
/// many sessions, a server that goes away.
@Suite(.serialized) struct RemoteVerificationTests {
    func remoteRun(_ t: TestServer, prompt: [Int32], maxTokens: Int, drafter: (any Drafter)?, sampling: SamplingParameters = .greedy,
                   verifier: RemoteVerifier? = nil, configuration: SpeculationConfiguration = SpeculationConfiguration()) throws -> GenerationResult {
        let v = try verifier ?? t.remote()
        let g = SpeculativeGenerator(verifier: v, drafter: drafter, tokenizer: t.bundle.tokenizer, configuration: configuration)
        return try g.generate(promptTokens: prompt, parameters: t.parameters(maxTokens, sampling: sampling))
    }

    @Test func greedyRemoteOutputEqualsLocal() throws {
        let t = try TestServer()
        for i in 0..<3 {
            let prompt = t.prompt(i)
            let expected = try t.local(prompt, maxTokens: 40)
            let drafter = ScriptedDrafter(expected: expected, promptCount: prompt.count, seed: UInt64(i), vocabulary: t.bundle.tokenizer.vocabularySize)
            // Drafted rounds only (run-ahead rounds have their own tests): verdicts that accept and reject.
            let r = try remoteRun(t, prompt: prompt, maxTokens: 40, drafter: drafter, configuration: SpeculationConfiguration(maxRunAhead: 0))
            #expect(r.tokens == expected)
            let spec = try #require(r.stats.speculative)
            let remote = try #require(spec.remote)
            #expect(spec.acceptedNodes > 0 && spec.acceptedNodes < spec.draftedNodes)  // Accepts and rejects.
            // Exchanges: one per round, except that a run-ahead round's passes share one.
            let exchanges = spec.rounds - spec.runAheadTokens + spec.runAheadRounds
            #expect(remote.rounds == exchanges && remote.perRound.count == exchanges)
            #expect(remote.bytesSent > 0 && remote.bytesReceived > 0 && remote.serverBusyMilliseconds > 0)
            #expect(remote.roundTrips == remote.rounds + 2)  // Open session, prefill, the rounds.
            #expect((remote.minimumPingMilliseconds ?? -1) >= 0)  // The ping after the handshake.
            // No drafter at all: one token per round trip, same output.
            #expect(try remoteRun(t, prompt: prompt, maxTokens: 40, drafter: nil).tokens == expected)
            // A real drafter from the engine.
            #expect(try remoteRun(t, prompt: prompt, maxTokens: 40, drafter: SuffixDrafter()).tokens == expected)
        }
        #expect(eventually { t.metrics.sessions == 0 && t.metrics.liveCaches == 0 })
    }

    @Test func sampledRemoteOutputEqualsLocalSpeculative() throws {
        // The server runs the same acceptance code with the same seed: identical draws.
        let t = try TestServer()
        let sampling = SamplingParameters(temperature: 0.9, topK: 0, topP: 0.95, minP: 0, seed: 1234)
        let prompt = t.prompt(1)
        // A draft model identical to the target, drawing sampled chains (the p/q rule, with its
        // distributions carried on the wire).
        func drafter() throws -> ModelDrafter {
            let draft = try ModelBundle.load(path: t.modelPath, threads: 1)
            return try ModelDrafter(model: draft.model, tokenizer: draft.tokenizer, name: "same", targetTokenizer: t.bundle.tokenizer, targetName: "tiny")
        }
        // Fixed trees: adaptive sizing depends on measured times, which differ between the two.
        let fixed = SpeculationConfiguration(budget: DraftBudget(maxNodes: 4, maxDepth: 4, maxWidth: 1), adaptive: false)
        let local = try SpeculativeGenerator(verifier: LocalVerifier(model: t.bundle.model), drafter: try drafter(), tokenizer: t.bundle.tokenizer,
                                             configuration: fixed)
            .generate(promptTokens: prompt, parameters: t.parameters(30, sampling: sampling))
        let remote = try SpeculativeGenerator(verifier: try t.remote(), drafter: try drafter(), tokenizer: t.bundle.tokenizer, configuration: fixed)
            .generate(promptTokens: prompt, parameters: t.parameters(30, sampling: sampling))
        #expect(local.stats.speculative!.acceptedNodes > 10)
        #expect(remote.tokens == local.tokens)
    }

    @Test func sampledDraftDistributionsCrossTheWire() throws {
        // A tree carrying q (sparse on the wire, dense again on the server) verifies like locally.
        let t = try TestServer()
        let v = t.bundle.tokenizer.vocabularySize
        var q = [Float](repeating: 0, count: v)
        q[10] = 0.5; q[20] = 0.25; q[30] = 0.25
        let dist = ProposalDistribution(q)
        var tree = TokenTree()
        tree.append(token: 10, parent: -1, proposal: dist)
        tree.append(token: 20, parent: -1, proposal: dist)
        tree.append(token: 7, parent: 0)
        let frame = WireCodec.encode(RemoteVerifier.verifyFrame(tree, round: 1))
        #expect(frame.readableBytes < 100)  // Three entries, not the whole vocabulary.
        let sampling = SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 0, seed: 9)
        let prompt = t.prompt(0)
        let request = VerificationRequest(prompt: prompt, sampling: sampling, capacity: 64)
        let local = LocalVerifier(model: t.bundle.model)
        try local.begin(request)
        let remote = try t.remote()
        try remote.begin(request)
        let a = try local.verify(tree), b = try remote.verify(tree)
        #expect(a.acceptedNodes == b.acceptedNodes && a.nextToken == b.nextToken)
        remote.end()
    }

    @Test func thirtyTwoConcurrentSessions() throws {
        let t = try TestServer()
        let n = 32
        let prompts = (0..<n).map { t.prompt($0) }
        let expected = try prompts.map { try t.local($0, maxTokens: 24) }
        let results = ResultBox(count: n)
        var threads: [Thread] = []
        for i in 0..<n {
            let thread = Thread {
                do {
                    let drafter = ScriptedDrafter(expected: expected[i], promptCount: prompts[i].count, seed: UInt64(i), vocabulary: t.bundle.tokenizer.vocabularySize)
                    let verifier = try t.remote()
                    let g = SpeculativeGenerator(verifier: verifier, drafter: i % 4 == 0 ? nil : drafter, tokenizer: t.bundle.tokenizer)
                    results.set(i, .success(try g.generate(promptTokens: prompts[i], parameters: t.parameters(24)).tokens))
                } catch {
                    results.set(i, .failure(error))
                }
            }
            thread.start()
            threads.append(thread)
        }
        #expect(eventually(seconds: 120) { results.done == n })
        for i in 0..<n {
            switch results.get(i) {
            case let .success(tokens)?: #expect(tokens == expected[i], "session \(i)")
            case let .failure(e)?: Issue.record("session \(i) failed: \(e)")
            case nil: Issue.record("session \(i) did not finish")
            }
        }
        #expect(eventually { t.metrics.sessions == 0 && t.metrics.liveCaches == 0 })
    }

    @Test func vocabularyMismatchIsRefused() throws {
        let t = try TestServer()
        #expect {
            _ = try RemoteVerifier(target: t.target(), expectedVocabularyHash: t.bundle.tokenizer.vocabularyFingerprint ^ 1)
        } throws: { e in
            guard case .vocabularyMismatch? = e as? RemoteError else { return false }
            return "\(e)".contains("vocabulary")
        }
    }

    @Test func lazyLoadBuildsTheModelOnFirstSession() throws {
        let t = try TestServer(lazy: true)
        #expect(!t.server.host.isLoaded)
        let v = try t.remote()
        #expect(v.vocabularySize == t.bundle.tokenizer.vocabularySize)  // Hello works before the model exists.
        #expect(!t.server.host.isLoaded)
        let prompt = t.prompt(2)
        #expect(try remoteRun(t, prompt: prompt, maxTokens: 10, drafter: nil, verifier: v).tokens == (try t.local(prompt, maxTokens: 10)))
        #expect(t.server.host.isLoaded)
    }

    @Test func authTokenIsRequired() throws {
        let t = try TestServer { $0.authToken = "open sesame" }
        #expect(throws: RemoteError.self) { _ = try t.remote(reconnects: 0, token: "wrong") }
        let prompt = t.prompt(0)
        let v = try t.remote(token: "open sesame")
        #expect(try remoteRun(t, prompt: prompt, maxTokens: 8, drafter: nil, verifier: v).tokens == (try t.local(prompt, maxTokens: 8)))
    }

    @Test func serverGoneForGoodIsAClearErrorNotAHang() throws {
        let t = try TestServer()
        let prompt = t.prompt(3)
        let expected = try t.local(prompt, maxTokens: 40)
        let drafter = ScriptedDrafter(expected: expected, promptCount: prompt.count, seed: 3, vocabulary: t.bundle.tokenizer.vocabularySize)
        drafter.onRound = { if $0 == 4 { t.shutdown() } }
        let start = Date()
        #expect {
            _ = try remoteRun(t, prompt: prompt, maxTokens: 40, drafter: drafter)
        } throws: { e in
            // The server said it was shutting down: the error says so, not "connection refused".
            guard case let .serverShutDown(_, _, attempts, _)? = e as? RemoteError else { return false }
            return attempts == 3 && "\(e)".contains("shut down")
        }
        #expect(Date().timeIntervalSince(start) < 20)
    }

    @Test func restartedServerResumesTheGeneration() throws {
        let t = try TestServer()
        let prompt = t.prompt(1)
        let expected = try t.local(prompt, maxTokens: 40)
        let drafter = ScriptedDrafter(expected: expected, promptCount: prompt.count, seed: 4, vocabulary: t.bundle.tokenizer.vocabularySize)
        drafter.onRound = { if $0 == 5 { try t.restart() } }
        // Drafted rounds only, so that round 5 comes mid-generation (RunAheadTests restarts between run-ahead rounds).
        let r = try remoteRun(t, prompt: prompt, maxTokens: 40, drafter: drafter, configuration: SpeculationConfiguration(maxRunAhead: 0))
        #expect(r.tokens == expected)
        #expect(r.stats.speculative?.remote?.reconnects == 1)
    }
}

/// Thread-safe slots for results produced on other threads.
final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Result<[Int32], any Error>?]
    init(count: Int) { values = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ v: Result<[Int32], any Error>) { lock.withLock { values[i] = v } }
    func get(_ i: Int) -> Result<[Int32], any Error>? { lock.withLock { values[i] } }
    var done: Int { lock.withLock { values.filter { $0 != nil }.count } }
}
