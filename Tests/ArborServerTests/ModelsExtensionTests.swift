import ArborEngine
import ArborHost
import ArborRemote
@testable import ArborServer
import ArborTestSupport
import ArborWire
import Foundation
import Testing

/// Several target models on one server: the models extension in the protocol logic and over real
/// sockets — choosing a model, lazy loading, the memory budget, unloading idle models.
@Suite struct ModelsExtensionTests {
    let validator = RequestValidator(vocabularySize: 100, contextLength: 64, maxTreeNodes: 8, maxSessionTokens: 32)

    func info(_ name: String, vocabulary: UInt32) -> ServerInfo {
        ServerInfo(serverName: "s", modelName: name, vocabularyHash: UInt64(vocabulary), vocabularySize: vocabulary, contextLength: 64,
                   maxTreeNodes: 8, maxSessionTokens: 32, maxFrameBytes: 1 << 20)
    }

    @Test func selectingAModelChangesTheLimitsSessionsAreCheckedAgainst() {
        let small = RequestValidator(vocabularySize: 10, contextLength: 64, maxTreeNodes: 8, maxSessionTokens: 32)
        var m = ConnectionStateMachine(validator: validator, authToken: nil, models: [
            ModelChoice(info: info("big", vocabulary: 100), validator: validator),
            ModelChoice(info: info("small", vocabulary: 10), validator: small),
        ])
        _ = m.receive(.hello(Hello(authToken: "", clientName: "t")))
        #expect(m.receive(.listModels) == .listModels)
        #expect(m.receive(.selectModel(SelectModel(name: "small"))) == .send(.serverInfo(info("small", vocabulary: 10))))
        #expect(m.selected == 1)
        if case let .send(.error(e)) = m.receive(.selectModel(SelectModel(name: "nope"))) {
            #expect(e.code == .unknownModel && e.message.contains("big, small"))
        } else {
            Issue.record("an unknown model must be a non-fatal error")
        }
        #expect(m.selected == 1 && m.phase == .ready)
        // Sessions now use the small model's vocabulary.
        if case let .send(.error(e)) = m.receive(.openSession(OpenSession(sampling: SamplingParameters.greedy.wire, capacity: 16, suppressedTokens: [50]))) {
            #expect(e.code == .tokenOutOfVocabulary)
        } else {
            Issue.record("token 50 is outside the small model's vocabulary")
        }
        _ = m.receive(.openSession(OpenSession(sampling: SamplingParameters.greedy.wire, capacity: 16)))
        // With a session open, the model cannot change under it.
        if case let .send(.error(e)) = m.receive(.selectModel(SelectModel(name: "big"))) { #expect(e.code == .unexpectedMessage) }
        if case let .send(.error(e)) = m.receive(.listModels) { #expect(e.code == .unexpectedMessage) }
    }

    @Test func withoutModelsTheFramesAreUnknownAsFromAnOlderServer() {
        var m = ConnectionStateMachine(validator: validator, authToken: nil)
        _ = m.receive(.hello(Hello(authToken: "", clientName: "t")))
        for f in [WireMessage.listModels, .selectModel(SelectModel(name: "x")), .modelList(ModelList(selected: 0, models: []))] {
            if case let .send(.error(e)) = m.receive(f) { #expect(e.code == .unknownType) } else { Issue.record("\(f) must be unknown") }
        }
    }

    /// A server for a tiny Qwen2 model (the default) and a tiny Llama model (loaded on first use).
    func withTwoModels<T>(_ configure: (inout ServerConfiguration) -> Void = { _ in },
                          _ body: (TestServer, String, ModelBundle) throws -> T) throws -> T {
        let dir = try TemporaryDirectory()
        var tiny = TinyModel(.llama)
        tiny.weightScale = 1.5
        let llamaPath = try tiny.write(to: dir)
        let llama = try ModelBundle.load(path: llamaPath, threads: 1)
        let t = try TestServer { c in
            c.extraModels = [(name: "tiny-llama", path: llamaPath)]
            configure(&c)
        }
        return try withExtendedLifetime(dir) { try body(t, llamaPath, llama) }
    }

    func generate(_ v: RemoteVerifier, _ bundle: ModelBundle, _ prompt: [Int32]) throws -> [Int32] {
        try SpeculativeGenerator(verifier: v, drafter: nil, tokenizer: bundle.tokenizer)
            .generate(promptTokens: prompt, parameters: GenerationParameters(maxTokens: 12, sampling: .greedy, stopAtEndOfText: false)).tokens
    }

    @Test func aClientChoosesTheSecondModelWhichLoadsOnFirstUseAndAnswersAsLocally() throws {
        try withTwoModels { t, _, llama in
            #expect(!t.server.hosts[1].isLoaded)
            var target = t.target()
            let list = try RemoteVerifier(target: target, expectedVocabularyHash: nil).listModels()
            #expect(list.models.map(\.name) == ["tiny-qwen2", "tiny-llama"] && list.selected == 0)
            #expect(list.models.map(\.loaded) == [true, false] && list.models.allSatisfy { $0.fileBytes > 0 })
            target.model = "tiny-llama"
            let v = try RemoteVerifier(target: target, expectedVocabularyHash: llama.tokenizer.vocabularyFingerprint)
            #expect(v.serverInfo.modelName == "tiny-llama")
            let prompt = llama.promptTokens("the cat sat")
            let local = try TextGenerator(model: llama.model, tokenizer: llama.tokenizer)
                .generate(promptTokens: prompt, parameters: GenerationParameters(maxTokens: 12, sampling: .greedy, stopAtEndOfText: false)).tokens
            #expect(try generate(v, llama, prompt) == local)
            #expect(t.server.hosts[1].isLoaded)
            // The default model still answers its own clients.
            let q = try t.remote()
            #expect(try generate(q, t.bundle, t.prompt(0)) == t.local(t.prompt(0), maxTokens: 12))
            // A model the server does not serve: a clear error naming what it serves.
            target.model = "nope"
            do {
                _ = try RemoteVerifier(target: target, expectedVocabularyHash: nil)
                Issue.record("an unknown model must be refused")
            } catch let RemoteError.server(e) {
                #expect(e.code == .unknownModel && e.message.contains("tiny-qwen2, tiny-llama"))
            }
        }
    }

    @Test func theMemoryBudgetUnloadsIdleModelsAndRefusesWhatCannotFit() throws {
        try withTwoModels({ c in
            // Room for one model at a time.
            let a = (try? FileManager.default.attributesOfItem(atPath: c.modelPath)[.size] as? NSNumber)?.uint64Value ?? 0
            c.modelMemoryBudget = a + a / 2
        }) { t, _, llama in
            let q = try t.remote()
            try q.begin(VerificationRequest(prompt: t.prompt(0), sampling: .greedy, capacity: 64))  // Holds the default model.
            var target = t.target(reconnects: 0)
            target.model = "tiny-llama"
            let l = try RemoteVerifier(target: target, expectedVocabularyHash: llama.tokenizer.vocabularyFingerprint)
            do {
                try l.begin(VerificationRequest(prompt: llama.promptTokens("the cat"), sampling: .greedy, capacity: 64))
                Issue.record("the second model cannot fit while the first is in use")
            } catch let RemoteError.server(e) {
                #expect(e.code == .internalError && e.message.contains("memory budget") && e.message.contains("tiny-qwen2"))
            }
            q.end()
            // Now the idle default model is unloaded to make room.
            let deadline = Date().addingTimeInterval(10)
            var done = false
            while !done, Date() < deadline {
                do {
                    try l.begin(VerificationRequest(prompt: llama.promptTokens("the cat"), sampling: .greedy, capacity: 64))
                    done = true
                } catch {
                    Thread.sleep(forTimeInterval: 0.05)
                }
            }
            #expect(done)
            #expect(t.server.hosts[1].isLoaded)
            Thread.sleep(forTimeInterval: 0.2)
            #expect(!t.server.hosts[0].isLoaded)
            l.end()
        }
    }

    @Test func anIdleModelIsUnloadedAfterTheTimeoutAndReloadsOnDemand() throws {
        try withTwoModels({ c in c.modelIdleTimeout = .milliseconds(300) }) { t, _, llama in
            var target = t.target()
            target.model = "tiny-llama"
            let v = try RemoteVerifier(target: target, expectedVocabularyHash: llama.tokenizer.vocabularyFingerprint)
            let prompt = llama.promptTokens("the cat sat")
            let first = try generate(v, llama, prompt)
            #expect(t.server.hosts[1].isLoaded)
            let deadline = Date().addingTimeInterval(10)
            while t.server.hosts[1].isLoaded, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            #expect(!t.server.hosts[1].isLoaded)
            #expect(try generate(v, llama, prompt) == first)
        }
    }
}
