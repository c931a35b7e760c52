import ArborEngine
import ArborProfiles
import ArborTestSupport
import Foundation
import Testing
@testable import ArborRuntime

@Suite("Runtime: composition, events, cancellation, fair queueing")
struct RuntimeTests {
    func withRuntime<T>(_ body: (Runtime) throws -> T) throws -> T {
        try TemporaryDirectory.with { dir in
            let path = try TinyModel(.qwen2).write(to: dir)
            let runtime = try Runtime(options: RuntimeOptions(model: path, drafter: .ngram, threads: 2, persistProfiles: false),
                                      resolveModel: { $0 })
            return try body(runtime)
        }
    }

    @Test("Greedy output is the same with every drafter; pieces add up to the text; drafted pieces only where drafts were accepted")
    func drafterChoicesAgree() throws {
        try withRuntime { runtime in
            let prompt = runtime.promptTokens("the cat in the hat sat on the mat; the cat in the hat")
            let parameters = GenerationParameters(maxTokens: 24, sampling: .greedy, stopAtEndOfText: false)
            let plain = try runtime.generate(prompt: prompt, parameters: parameters, settings: RequestSettings(drafter: DrafterChoice.none))
            for drafter in [DrafterChoice.ngram, .suffix] {
                for adaptive in [true, false] {
                    var text = "", drafted = 0, rounds = 0
                    let r = try runtime.generate(prompt: prompt, parameters: parameters, settings: RequestSettings(drafter: drafter, adaptive: adaptive), onEvent: { event in
                        switch event {
                        case let .piece(p): text += p.text; drafted += p.drafted ? 1 : 0
                        case .round: rounds += 1
                        case .finished: break
                        }
                        return true
                    })
                    #expect(r.tokens == plain.tokens, "\(drafter) adaptive \(adaptive)")
                    #expect(text == r.text)
                    #expect(rounds > 0)
                    // A piece is marked drafted only when its token came from an accepted draft.
                    if drafted > 0 { #expect((r.stats.speculative?.acceptedNodes ?? 0) > 0) }
                }
            }
        }
    }

    @Test("A model drafter that was not loaded, and a bad request, fail before queueing")
    func refusals() throws {
        try withRuntime { runtime in
            #expect(throws: RuntimeError.draftModelNotLoaded("x", available: [])) {
                try runtime.generate(prompt: [1, 2], parameters: GenerationParameters(maxTokens: 2), settings: RequestSettings(drafter: .model("x")))
            }
            #expect(throws: GenerationError.emptyPrompt) { try runtime.generate(prompt: [], parameters: GenerationParameters()) }
            #expect(throws: RuntimeError.unknownDrafter("magic")) { try DrafterChoice(parsing: "magic") }
            let parsed = try DrafterChoice(parsing: "model:foo")
            #expect(parsed == .model("foo"))
            #expect(try DrafterChoice(parsing: "cross", draftModel: "smollm2-135m") == .cross("smollm2-135m"))
            let composite = try DrafterChoice(parsing: "suffix+cross:smol")
            #expect(composite == .composite([.suffix, .cross("smol")]) && composite.description == "suffix+cross:smol")
            #expect(composite.usesCrossVocabulary && composite.isModel && composite.draftModel == "smol")
            #expect(throws: RuntimeError.noDraftModel) { try DrafterChoice(parsing: "suffix+cross") }
            #expect(throws: RuntimeError.unknownDrafter("suffix+")) { try DrafterChoice(parsing: "suffix+") }
            #expect(throws: RuntimeError.unknownDrafter("none+ngram")) { try DrafterChoice(parsing: "none+ngram") }
        }
    }

    @Test("Dropping a stream stops its generation; the next request runs")
    func cancellation() async throws {
        let dir = try TemporaryDirectory()
        let path = try TinyModel(.qwen2).write(to: dir)
        let runtime = try Runtime(options: RuntimeOptions(model: path, threads: 2, persistProfiles: false), resolveModel: { $0 })
        let prompt = runtime.promptTokens("the cat")
        // As long as the context allows: far longer than the test waits.
        let long = GenerationParameters(maxTokens: runtime.contextLength - prompt.count, sampling: .greedy, stopAtEndOfText: false)
        var pieces = 0
        do {
            let stream = runtime.stream(prompt: prompt, parameters: long)
            for try await event in stream {
                if case .piece = event { pieces += 1 }
                if pieces == 3 { break }
            }
        }
        #expect(pieces == 3)
        // The abandoned generation leaves the gate within a bounded time.
        let deadline = Date().addingTimeInterval(20)
        while runtime.queue.running > 0, Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(runtime.queue.running == 0)
        let r = try runtime.generate(prompt: prompt, parameters: GenerationParameters(maxTokens: 4, sampling: .greedy))
        #expect(r.tokens.count <= 4)
    }

    @Test("On a shared target, concurrent requests give what each gives alone, and share target passes")
    func sharedTarget() throws {
        try TemporaryDirectory.with { dir in
            let path = try TinyModel(.qwen2).write(to: dir)
            var options = RuntimeOptions(model: path, drafter: .ngram, threads: 1, persistProfiles: false)
            options.sharedTarget = true
            let runtime = try Runtime(options: options, resolveModel: { $0 })
            let prompts = ["the cat in the hat", "a b c a b c a b", "once upon a time", "the end of the"].map { runtime.promptTokens($0) }
            let drafters: [DrafterChoice] = [.none, .ngram, .suffix, .ngram]
            let parameters = GenerationParameters(maxTokens: 40, sampling: .greedy, stopAtEndOfText: false)
            let alone = try zip(prompts, drafters).map { try runtime.generate(prompt: $0, parameters: parameters, settings: RequestSettings(drafter: $1)).tokens }
            let together = LockedResults(count: prompts.count)
            let threads = prompts.indices.map { i in
                Thread {
                    together.set(i, Result { try runtime.generate(prompt: prompts[i], parameters: parameters, settings: RequestSettings(drafter: drafters[i])).tokens })
                }
            }
            threads.forEach { $0.start() }
            let deadline = Date().addingTimeInterval(60)
            while !together.complete, Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
            for i in prompts.indices { #expect(try together.get(i) == alone[i]) }
            #expect((runtime.hostMetrics?.mergedPasses ?? 0) > 0)
            #expect(runtime.queue.running == 0)
        }
    }

    @Test("FairGate admits in arrival order; a cancelled waiter does not block those behind it")
    func fairGate() throws {
        let gate = FairGate()
        try gate.enter(isCancelled: { false })
        let order = LockedArray()
        let cancelledSecond = AtomicFlag()
        var threads: [Thread] = []
        for i in 1...3 {
            let t = Thread {
                do {
                    try gate.enter(isCancelled: { i == 2 && cancelledSecond.isSet })
                    order.append(i)
                    gate.leave()
                } catch {
                    order.append(-i)
                }
            }
            threads.append(t)
            t.start()
            Thread.sleep(forTimeInterval: 0.05)  // arrival order 1, 2, 3
        }
        #expect(gate.state.waiting == 3)
        cancelledSecond.set()
        Thread.sleep(forTimeInterval: 0.2)
        gate.leave()
        let deadline = Date().addingTimeInterval(5)
        while order.values.count < 3, Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #expect(order.values == [-2, 1, 3])
        #expect(gate.state.waiting == 0 && !gate.state.running)
    }
}

final class LockedArray: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Int] = []
    var values: [Int] { lock.lock(); defer { lock.unlock() }; return items }
    func append(_ x: Int) { lock.lock(); items.append(x); lock.unlock() }
}

final class LockedResults: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Result<[Int32], any Error>?]
    init(count: Int) { items = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result<[Int32], any Error>) { lock.lock(); items[i] = r; lock.unlock() }
    var complete: Bool { lock.lock(); defer { lock.unlock() }; return items.allSatisfy { $0 != nil } }
    func get(_ i: Int) throws -> [Int32]? { lock.lock(); defer { lock.unlock() }; return try items[i]?.get() }
}

extension RuntimeTests {
    @Test("--draft-vocab: the draft model's head trimmed to the target's most produced tokens, output unchanged; no counts or no database: a clear error")
    func trimmedDraftHead() throws {
        try TemporaryDirectory.with { dir in
            let path = try TinyModel(.qwen2).write(to: dir)
            let db = dir.file("p.sqlite").path
            var options = RuntimeOptions(model: path, draftModel: path, drafter: .model(path), threads: 1, profileDatabase: db)
            options.draftVocabulary = 16
            let prompt: [Int32] = [5, 9, 17, 5, 9, 17, 5]
            let parameters = GenerationParameters(maxTokens: 16, sampling: .greedy, stopAtEndOfText: false)
            // No counts yet: the drafter cannot be built, and the error says what to run.
            let empty = try Runtime(options: options, resolveModel: { $0 })
            #expect(throws: VocabTrimError.self) { try empty.generate(prompt: prompt, parameters: parameters) }
            // Counts of what the target produces (as `arbor profile vocab` stores them).
            let plain = try empty.generate(prompt: prompt, parameters: parameters, settings: RequestSettings(drafter: DrafterChoice.none))
            var counts: [Int32: Int] = [:]
            for t in plain.tokens { counts[t, default: 0] += 1 }
            try ProfileStore(path: db).addTokenCounts(vocabulary: VocabTrim.vocabularyKey(empty.tokenizer), counts)
            let runtime = try Runtime(options: options, resolveModel: { $0 })
            let r = try runtime.generate(prompt: prompt, parameters: parameters)
            #expect(r.tokens == plain.tokens)
            let name = try #require(r.stats.speculative?.drafter)
            #expect(name.hasPrefix("model:" + path + "@"), "the drafter's name says how many tokens its head scores: \(name)")
            // Without the profile database there are no counts to trim by.
            options.persistProfiles = false
            let off = try Runtime(options: options, resolveModel: { $0 })
            #expect(throws: RuntimeError.draftVocabularyNeedsProfiles) { try off.generate(prompt: prompt, parameters: parameters) }
        }
    }
}
