import ArborEngine
import ArborHost
import ArborModels
@testable import ArborServer
import ArborTestSupport
import Foundation
import Testing

/// Rounds of several sessions scored in one target pass give exactly the verdicts and logits of
/// separate passes.
@Suite struct MergedRoundsTests {
    func withModel<T>(_ arch: TinyModel.Architecture, _ body: (ModelBundle) throws -> T) throws -> T {
        let dir = try TemporaryDirectory()
        var tiny = TinyModel(arch)
        tiny.weightScale = 1.5
        return try body(ModelBundle.load(path: try tiny.write(to: dir), threads: 2))
    }

    /// A random tree of `n` nodes (seeded).
    func tree(_ n: Int, seed: UInt64, vocabulary: Int) -> TokenTree {
        var rng = SplitMix64(seed: seed)
        var t = TokenTree()
        for i in 0..<n {
            t.append(token: Int32(rng.next() % UInt64(vocabulary)), parent: i == 0 ? -1 : Int(rng.next() % UInt64(i + 1)) - 1)
        }
        return t
    }

    @Test(arguments: TinyModel.Architecture.allCases)
    func segmentsEqualSeparatePasses(arch: TinyModel.Architecture) throws {
        try withModel(arch) { b in
            let model = b.model
            let prompts: [[Int32]] = [b.promptTokens("the cat sat"), b.promptTokens("in the beginning was"), b.promptTokens("a")]
            func caches() throws -> [any KVCache] {
                try prompts.map { p in
                    let c = model.makeCache(capacity: 64)
                    try model.prefill(p, cache: c)
                    return c
                }
            }
            let batches = prompts.enumerated().map { i, p in
                let n = 3 + i
                return ForwardBatch(tokens: (0..<n).map { Int32(($0 * 7 + i) % 200) }, positions: (0..<n).map { Int32(p.count + $0) }, mask: .causal)
            }
            let alone = try caches()
            let separate = try zip(batches, alone).map { try model.forward($0, cache: $1) }
            let together = try caches()
            let merged = try model.forward(segments: Array(zip(batches, together)))
            for i in batches.indices {
                #expect(merged[i].values == separate[i].values, "segment \(i)")
                #expect(together[i].count == alone[i].count)
            }
            // A refused segment leaves every cache as it was.
            let counts = together.map(\.count)
            #expect(throws: ModelError.self) {
                _ = try model.forward(segments: [(batches[0], together[0]), (ForwardBatch(tokens: [100_000], positions: [0], mask: .causal), together[1])])
            }
            #expect(together.map(\.count) == counts)
        }
    }

    @Test func verifiersTogetherEqualAlone() throws {
        try withModel(.qwen2) { b in
            let v = b.tokenizer.vocabularySize
            let sampling = [SamplingParameters.greedy, SamplingParameters(temperature: 0.8, topK: 0, topP: 0.9, minP: 0, seed: 3)]
            func verifiers() throws -> [LocalVerifier] {
                try (0..<4).map { i in
                    let verifier = LocalVerifier(model: b.model)
                    try verifier.begin(VerificationRequest(prompt: b.promptTokens("prompt number \(i)"), sampling: sampling[i % 2], capacity: 128))
                    return verifier
                }
            }
            let alone = try verifiers(), together = try verifiers()
            for round in 0..<6 {
                let trees = (0..<4).map { tree(1 + ($0 + round) % 5, seed: UInt64(round * 10 + $0), vocabulary: v) }
                let a = try zip(alone, trees).map { try $0.verify($1) }
                let t = LocalVerifier.verify(together: Array(zip(together, trees))).map { try? $0.get() }
                for i in 0..<4 {
                    #expect(t[i]?.acceptedNodes == a[i].acceptedNodes && t[i]?.nextToken == a[i].nextToken, "round \(round) session \(i)")
                }
            }
            #expect(alone.map(\.committed) == together.map(\.committed))
        }
    }

    @Test func queuedRoundsShareOnePass() throws {
        let dir = try TemporaryDirectory()
        var tiny = TinyModel(.llama)
        tiny.weightScale = 1.5
        let path = try tiny.write(to: dir)
        let b = try ModelBundle.load(path: path, threads: 1)
        let host = try TargetHost(path: path, threads: 1, lazy: false)
        defer { host.stop() }
        let metrics = host.metrics
        let setup = SessionSetup(sampling: .greedy, capacity: 64, suppressedTokens: [])
        let sessions = (0..<3).map { ServerSession(id: UInt32($0), setup: setup, metrics: metrics, host: host) }
        let reference = (0..<3).map { _ in LocalVerifier(model: b.model) }
        let started = DispatchSemaphore(value: 0)
        for (i, s) in sessions.enumerated() {
            let prompt = b.promptTokens("session \(i)")
            host.submit { model, _ in _ = try? s.prefill(prompt, model: try model.get(), meter: host.meter); started.signal() }
            try reference[i].begin(VerificationRequest(prompt: prompt, sampling: .greedy, capacity: 64))
        }
        for _ in 0..<3 { started.wait() }
        // Hold the model thread so the three rounds queue up behind the gate.
        let gate = DispatchSemaphore(value: 0)
        host.submit { _, _ in gate.wait() }
        let box = ResultBox(count: 3)
        let trees = (0..<3).map { tree(2 + $0, seed: UInt64($0), vocabulary: b.tokenizer.vocabularySize) }
        for i in 0..<3 {
            host.submitVerify(sessions[i], trees[i]) { r, _ in box.set(i, r.map { [$0.nextToken] + $0.acceptedNodes.map(Int32.init) }) }
        }
        gate.signal()
        #expect(eventually { box.done == 3 })
        #expect(metrics.mergedPasses == 1 && metrics.mergedRounds == 3)
        for i in 0..<3 {
            let expected = try reference[i].verify(trees[i])
            #expect(try box.get(i)?.get() == [expected.nextToken] + expected.acceptedNodes.map(Int32.init))
        }
    }
}
