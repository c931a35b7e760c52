import ArborTestSupport
import ArborTokenizers
import Foundation
import Testing

@Suite("Encoding speed")
struct PerformanceTests {
    /// ~10k characters of the corpus (code, prose, CJK, emoji, whitespace runs).
    static func text() throws -> String {
        let fixture = try Fixtures.load("qwen2.tokens.json", as: TokenFixture.self)
        var s = ""
        var i = 0
        while s.unicodeScalars.count < 10_000 {
            s += fixture.cases[i % fixture.cases.count].text
            i += 1
        }
        return String(s.unicodeScalars.prefix(10_000))
    }

    static func measure(_ alias: String) throws {
        let tokenizer = try ModelTokenizers.get(alias)
        // Unique text per run so the word cache does not hide the cost.
        let text = try Self.text() + "\(alias) \(UInt64.random(in: 0...UInt64.max))"
        let clock = ContinuousClock()
        var ids: [Int32] = []
        let elapsed = clock.measure { ids = tokenizer.encode(text, addSpecial: true, parseSpecial: true) }
        let ms = Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000
        print("[\(alias)] encoded \(text.unicodeScalars.count) characters to \(ids.count) tokens in \(String(format: "%.1f", ms)) ms")
        #if DEBUG
        let limit = 2000.0  // unoptimized build
        #else
        let limit = 100.0
        #endif
        #expect(ms < limit)
    }

    @Test(.enabled(if: ModelFiles.available(ModelFiles.smollm2), "smollm2-135m.gguf is not in the models directory"))
    func smolLM2() throws { try Self.measure(ModelFiles.smollm2) }

    @Test(.enabled(if: ModelFiles.available(ModelFiles.qwenDraft), "qwen2.5-coder-0.5b.gguf is not in the models directory"))
    func qwen() throws { try Self.measure(ModelFiles.qwenDraft) }

    @Test(.enabled(if: ModelFiles.available(ModelFiles.gemma3), "gemma3-270m.gguf is not in the models directory"))
    func gemma3() throws { try Self.measure(ModelFiles.gemma3) }
}
