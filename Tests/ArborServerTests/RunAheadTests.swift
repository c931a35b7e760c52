import ArborEngine
import ArborRemote
import ArborServer
import ArborTestSupport
import ArborWire
import Foundation
import Testing

/// Run-ahead rounds over real sockets: the server decodes several tokens by itself in one
/// exchange. Output equals plain decoding (greedy: the same tokens; sampled: the same draws, since
/// the server's sampler draws once per pass either way), old servers and restarts included.
@Suite(.serialized) struct RunAheadTests {
    @Test func theServerOffersRunAheadAndDecodesTheTargetsOwnTokens() throws {
        let t = try TestServer()
        let v = try t.remote()
        #expect(v.decodeOffer == 64 && v.maxRunAhead == 64)
        let prompt = t.prompt(0)
        let expected = try t.local(prompt, maxTokens: 24)
        try v.begin(VerificationRequest(prompt: prompt, sampling: .greedy, capacity: 128))
        defer { v.end() }
        let roundsBefore = t.metrics.rounds, passesBefore = t.metrics.snapshot.passRounds.count
        let r = try v.runAhead(10)
        #expect([r.nextToken] + r.decodedTokens == Array(expected[0..<10]))
        #expect(r.passes == 10 && r.acceptedNodes.isEmpty && r.batchSize == 1)
        // Exact frame sizes: decode 12 bytes, decoded 33 + 4 per token.
        #expect(r.cost.bytesUp == 12 && r.cost.bytesDown == 33 + 4 * 10)
        #expect(r.cost.targetMilliseconds > 0 && r.cost.roundTripMilliseconds >= r.cost.targetMilliseconds)
        #expect(r.cost.targetJoules > 0 && r.cost.targetEnergySource != nil)
        // One round answered (as the client counts it), ten target passes.
        #expect(t.metrics.rounds - roundsBefore == 1 && t.metrics.snapshot.passRounds.count - passesBefore == 10)
        // Verify rounds continue from the decoded tokens.
        var tree = TokenTree()
        tree.append(token: expected[10], parent: -1)
        let next = try v.verify(tree)
        #expect(next.acceptedNodes == [0] && next.nextToken == expected[11])
        // More than offered is cut to the offer, not refused. This prompt reaches an
        // end-of-generation token within 64 tokens: the server stops after it.
        // (`t.local` suppresses end-of-generation tokens, as a run to the token limit does.)
        let window = Array(try t.local(prompt, maxTokens: 12 + 64)[12...])
        let eog = t.bundle.tokenizer.endOfGenerationTokens
        let big = try v.runAhead(500)
        let tokens = [big.nextToken] + big.decodedTokens
        #expect(big.passes < 64 && eog.contains(tokens.last!), "\(tokens)")
        #expect(Array(tokens.dropLast()) == Array(window.prefix(tokens.count - 1)))
        v.end()
        // With end-of-generation suppressed, the whole offer, exactly the suppressed run's tokens.
        try v.begin(VerificationRequest(prompt: prompt + Array(expected[0..<12]), sampling: .greedy, suppressedTokens: eog.sorted(), capacity: 128))
        let whole = try v.runAhead(500)
        #expect(whole.passes == 64 && [whole.nextToken] + whole.decodedTokens == window)
    }

    @Test(arguments: [SamplingParameters.greedy, SamplingParameters(temperature: 0.9, seed: 42)])
    func generationWithRunAheadEqualsPlainRounds(sampling: SamplingParameters) throws {
        let t = try TestServer()
        let prompt = t.prompt(1)
        var outputs: [[Int32]] = []
        for maxRunAhead in [0, 32] {
            let v = try t.remote()
            let g = SpeculativeGenerator(verifier: v, drafter: nil, tokenizer: t.bundle.tokenizer,
                                         configuration: SpeculationConfiguration(maxRunAhead: maxRunAhead))
            let r = try g.generate(promptTokens: prompt, parameters: t.parameters(40, sampling: sampling))
            let spec = try #require(r.stats.speculative)
            #expect(r.tokens.count == 40 && spec.emittedTokens == 40 && spec.rounds == 40)
            if maxRunAhead == 0 {
                #expect(spec.runAheadRounds == 0)
            } else {
                // Loopback still costs a little per exchange: once measured, running ahead pays.
                #expect(spec.runAheadRounds > 0 && spec.runAheadTokens > 20, "\(spec.plans.map(\.runAhead))")
                #expect(spec.cost?.tokens == 40)
            }
            outputs.append(r.tokens)
        }
        #expect(outputs[0] == outputs[1])
        if sampling.isGreedy { #expect(outputs[0] == (try t.local(prompt, maxTokens: 40))) }
    }

    @Test(arguments: [true, false])
    func aServerWithADecodeDrafterSpeculatesInsideRunAheadRounds(sameModel: Bool) throws {
        // The draft: the target's own weights (every draft accepted) or another model of its
        // vocabulary (some accepted, some not). Either way the tokens are the target's.
        let dir = try TemporaryDirectory()
        var tiny = TinyModel(.qwen2)
        tiny.weightScale = 1.5
        if !sameModel { tiny.seed = 7 }
        let draft = try ModelBundle.load(path: try tiny.write(to: dir), threads: 1)
        let t = try TestServer { c in
            // Fixed chains: on tiny models a draft step costs as much as a target pass, so an
            // adaptive policy would rightly stop drafting.
            c.decodeDrafting = DecodeDrafting(name: "tiny-draft", configuration: SpeculationConfiguration(budget: .chain(4), adaptive: false)) {
                try ModelDrafter(model: draft.model, tokenizer: draft.tokenizer, name: "tiny-draft", targetTokenizer: draft.tokenizer, targetName: "tiny")
            }
        }
        let eog = t.bundle.tokenizer.endOfGenerationTokens.sorted()
        for i in 0..<2 {
            let prompt = t.prompt(i)
            let expected = try t.local(prompt, maxTokens: 64)
            let v = try t.remote()
            try v.begin(VerificationRequest(prompt: prompt, sampling: .greedy, suppressedTokens: eog, capacity: 128))
            let passesBefore = t.metrics.snapshot.passRounds.count
            var got: [Int32] = []
            let first = try v.runAhead(30)
            got += [first.nextToken] + first.decodedTokens
            #expect(got.count == 30 && first.cost.targetMilliseconds > 0 && first.cost.targetJoules > 0)
            // A round of the client's own in between: the server's drafter catches up after it.
            var tree = TokenTree()
            tree.append(token: expected[30], parent: -1)
            let mid = try v.verify(tree)
            #expect(mid.acceptedNodes == [0])
            got += [expected[30], mid.nextToken]
            let second = try v.runAhead(32)
            got += [second.nextToken] + second.decodedTokens
            #expect(got == expected, "prompt \(i)")
            let passes = t.metrics.snapshot.passRounds.count - passesBefore
            // 63 tokens: with every draft accepted, far fewer target passes than tokens.
            if sameModel { #expect(passes < 30, "\(passes) passes") } else { #expect(passes <= 63, "\(passes) passes") }
            v.end()
        }
        if sameModel {
            // End-of-generation not suppressed: the run stops at it even inside an accepted chain,
            // and the session goes on from exactly the tokens sent (what a round accepted after
            // it is dropped).
            let prompt = t.prompt(0) + Array(try t.local(t.prompt(0), maxTokens: 12))
            let v = try t.remote()
            try v.begin(VerificationRequest(prompt: prompt, sampling: .greedy, capacity: 160))
            let r = try v.runAhead(64)
            let tokens = [r.nextToken] + r.decodedTokens
            #expect(tokens.count < 64 && Set(eog).contains(tokens.last!), "\(tokens)")
            #expect(Array(tokens.dropLast()) == Array(try t.local(prompt, maxTokens: tokens.count - 1)))
            let reference = LocalVerifier(model: t.bundle.model)
            try reference.begin(VerificationRequest(prompt: prompt + tokens, sampling: .greedy, capacity: 160))
            #expect(try v.verify(TokenTree()).nextToken == (try reference.verify(TokenTree())).nextToken)
            reference.end()
            v.end()
        }
        // A sampled session gets the number of tokens it asked for (the distribution is the
        // target's: the verifier's acceptance rule, tested with χ² in the engine's tests).
        let v = try t.remote()
        try v.begin(VerificationRequest(prompt: t.prompt(2), sampling: SamplingParameters(temperature: 0.8, seed: 3), suppressedTokens: eog, capacity: 128))
        let r = try v.runAhead(40)
        #expect(r.passes == 40 && ([r.nextToken] + r.decodedTokens).allSatisfy { $0 >= 0 && Int($0) < t.bundle.tokenizer.vocabularySize })
        v.end()
        #expect(eventually { t.metrics.sessions == 0 && t.metrics.liveCaches == 0 })
    }

    @Test(arguments: [true, false])
    func aFailingDecodeDrafterLeavesPlainPasses(failsToBegin: Bool) throws {
        // A server drafter that cannot read the prompt, or cannot draft: the run-ahead rounds
        // still answer with the target's own tokens, and the session goes on.
        let t = try TestServer { c in
            c.decodeDrafting = DecodeDrafting(name: "failing", configuration: SpeculationConfiguration(budget: .chain(4), adaptive: false)) {
                FailingDrafter(failsToBegin: failsToBegin)
            }
        }
        let prompt = t.prompt(1)
        let expected = try t.local(prompt, maxTokens: 30)
        let v = try t.remote()
        try v.begin(VerificationRequest(prompt: prompt, sampling: .greedy, suppressedTokens: t.bundle.tokenizer.endOfGenerationTokens.sorted(), capacity: 128))
        let r = try v.runAhead(20)
        var got = [r.nextToken] + r.decodedTokens
        var tree = TokenTree()
        tree.append(token: expected[20], parent: -1)
        let next = try v.verify(tree)
        got += [expected[20], next.nextToken]
        let more = try v.runAhead(8)
        got += [more.nextToken] + more.decodedTokens
        #expect(got == expected)
        #expect(t.metrics.snapshot.decodeDraftedTokens == 0 && t.metrics.snapshot.decodeSpeculativeRounds == 28)
        v.end()
    }

    @Test func anOldServerGetsPlainRounds() throws {
        let t = try TestServer { $0.maxDecodeTokens = 0 }
        let v = try t.remote()
        #expect(v.decodeOffer == 0 && v.serverDetails != nil)
        let prompt = t.prompt(2)
        let expected = try t.local(prompt, maxTokens: 30)
        try v.begin(VerificationRequest(prompt: prompt, sampling: .greedy, capacity: 64))
        // Asked anyway: a plain round, one token.
        let r = try v.runAhead(8)
        #expect(r.passes == 1 && r.nextToken == expected[0])
        v.end()
        let g = SpeculativeGenerator(verifier: v, drafter: nil, tokenizer: t.bundle.tokenizer)
        let out = try g.generate(promptTokens: prompt, parameters: t.parameters(30))
        #expect(out.tokens == expected && out.stats.speculative?.runAheadRounds == 0)
    }

    @Test func aRestartedServerResumesBetweenRunAheadRounds() throws {
        let t = try TestServer()
        let v = try t.remote()
        let prompt = t.prompt(3)
        let expected = try t.local(prompt, maxTokens: 20)
        try v.begin(VerificationRequest(prompt: prompt, sampling: .greedy, capacity: 64))
        defer { v.end() }
        var got: [Int32] = []
        for i in 0..<4 {
            if i == 2 { try t.restart() }
            let r = try v.runAhead(5)
            got += [r.nextToken] + r.decodedTokens
        }
        #expect(got == expected)
        #expect(v.stats.reconnects >= 1)
    }
}

/// A server-side drafter that fails: at `begin` (it cannot read the prompt) or at every draft.
final class FailingDrafter: Drafter {
    let failsToBegin: Bool
    var name: String { "failing" }
    var costsTimePerStep: Bool { true }
    init(failsToBegin: Bool) { self.failsToBegin = failsToBegin }
    func begin(prompt: [Int32], sampling: SamplingParameters) throws {
        if failsToBegin { throw SpeculativeError.invalidTree("this drafter cannot read the prompt") }
    }
    func draft(context: [Int32], budget: DraftBudget) throws -> Draft { throw SpeculativeError.invalidTree("this drafter cannot draft") }
}
