import ArborGGUF
import ArborTestSupport
import ArborTokenizers
import Foundation

/// Reference fixtures written by scripts/fixtures/make_tokenizer_fixtures.py.
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func load<T: Decodable>(_ name: String, as: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(contentsOf: directory.appendingPathComponent(name)))
    }
}

struct TokenFixture: Decodable {
    struct Case: Decodable {
        let text: String
        /// add_special = false, parse_special = false.
        let plain: [Int32]
        /// add_special = true, parse_special = true.
        let special: [Int32]
        /// Whether the reference's detokenization of `plain` is `text`.
        let roundtrip: Bool
    }

    let reference: String
    let models: [String]
    let bos: Int32?
    let eos: Int32?
    let eot: Int32?
    let eog: [Int32]
    let cases: [Case]
}

/// Tokenizers of the real models, loaded once per process.
enum ModelTokenizers {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var loaded: [String: any Tokenizer] = [:]

    static func get(_ alias: String) throws -> any Tokenizer {
        lock.lock()
        defer { lock.unlock() }
        if let t = loaded[alias] { return t }
        let t = try makeTokenizer(GGUFFile(path: ModelFiles.path(alias)))
        loaded[alias] = t
        return t
    }
}

/// Which fixture covers which model file.
let fixtureOfModel: [String: String] = [
    ModelFiles.smollm2: "smollm2.tokens.json",
    ModelFiles.qwenDraft: "qwen2.tokens.json",
    ModelFiles.qwenTarget: "qwen2.tokens.json",
    ModelFiles.gemma3: "gemma3.tokens.json",
]

func utf8Equal(_ a: String, _ b: String) -> Bool { Array(a.utf8) == Array(b.utf8) }
