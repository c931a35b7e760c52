import ArborEngine
import ArborRuntime
import ArborStore
import Foundation

/// `arbor eval --set humaneval`: completions from plain decoding and from each drafter, greedy
/// and sampled, each run against the problem's tests in the sandbox; pass@1 with its 95%
/// interval, tokens/s, and whether greedy speculative outputs equal plain ones.
///
/// Speculative decoding is lossless, so greedy pass@1 must be identical (the same completions),
/// and sampled pass@1 must agree within the intervals (the same distribution, other draws).
public struct HumanEvalEvaluation {
    public var problems: [HumanEvalProblem]
    public var drafters: [String]
    public var maxTokens: Int
    public var sampled: Bool
    public var seed: UInt64 = 1234
    public var sandbox: HumanEvalSandbox
    /// Builds the runtime of a drafter choice (`none` for plain decoding).
    public var makeRuntime: (String) throws -> Runtime
    public var progress: (_ setting: String, _ mode: String, _ index: Int, _ passed: Bool) -> Void = { _, _, _, _ in }

    public init(problems: [HumanEvalProblem], drafters: [String], maxTokens: Int, sampled: Bool, sandbox: HumanEvalSandbox,
                makeRuntime: @escaping (String) throws -> Runtime) {
        self.problems = problems
        self.drafters = drafters
        self.maxTokens = maxTokens
        self.sampled = sampled
        self.sandbox = sandbox
        self.makeRuntime = makeRuntime
    }

    /// One (setting, mode) over every problem.
    public struct Row: Codable, Sendable {
        public var setting: String
        public var mode: String
        public var passAt1: PassAtOne
        public var tokensPerSecond: Double
        public var generatedTokens: Int
        /// Greedy speculative rows: problems whose completion equals plain decoding's, token for token.
        public var identicalToPlain: Int?
        /// Whether pass@1 agrees with plain decoding's (greedy: equal; sampled: intervals overlap).
        public var agreesWithPlain: Bool?
        /// Task ids that passed (to compare rows problem by problem).
        public var passed: [String]

        enum CodingKeys: String, CodingKey {
            case setting, mode, passAt1 = "pass_at_1", tokensPerSecond = "tokens_per_second", generatedTokens = "generated_tokens"
            case identicalToPlain = "identical_to_plain", agreesWithPlain = "agrees_with_plain", passed
        }
    }

    /// A closing fence on its own line (an opening one carries the language, ```` ```python ````).
    public static let stopAfterCode = "\n```\n"

    public func run() throws -> [Row] {
        var rows: [Row] = []
        let modes = sampled ? [false, true] : [false]
        for isSampled in modes {
            var plainOutputs: [[Int32]] = []
            var plainRow: Row?
            for setting in ["none"] + drafters.filter({ $0 != "none" }) {
                let runtime = try makeRuntime(setting)
                var outputs: [[Int32]] = []
                var passed: [String] = []
                var tokens = 0, decodeTokens = 0
                var decodeMs = 0.0
                for (i, problem) in problems.enumerated() {
                    let prompt = try runtime.chatTokens([ChatMessage(role: "user", content: PromptSets.humanEvalUserMessage(prompt: problem.prompt))])
                    var sampling = SamplingParameters.greedy
                    if isSampled {
                        sampling = .benchmarkSampled(seed: seed &+ UInt64(i))
                    }
                    // Generation ends with the reply's first closed code block (its fence on a line of its
                    // own): what follows is prose the tests never read. The stop rule is the engine's
                    // own, the same for plain and speculative decoding.
                    let parameters = GenerationParameters(maxTokens: maxTokens, sampling: sampling, stopStrings: [Self.stopAfterCode])
                    let result = try runtime.generate(prompt: prompt, parameters: parameters)
                    outputs.append(result.tokens)
                    tokens += result.tokens.count
                    decodeTokens += max(result.stats.generatedTokens - 1, 0)
                    decodeMs += result.stats.decodeMilliseconds
                    let outcome = try sandbox.check(problem: problem, completion: result.text)
                    if outcome.isPassed { passed.append(problem.taskID) }
                    progress(setting == "none" ? "plain" : setting, isSampled ? "sampled" : "greedy", i, outcome.isPassed)
                }
                let pass = PassAtOne(passed: passed.count, total: problems.count)
                var row = Row(setting: setting == "none" ? "plain" : setting, mode: isSampled ? "sampled" : "greedy", passAt1: pass,
                              tokensPerSecond: decodeMs > 0 ? Double(decodeTokens) / (decodeMs / 1000) : 0, generatedTokens: tokens,
                              passed: passed)
                if setting == "none" {
                    plainOutputs = outputs
                    plainRow = row
                } else if let plain = plainRow {
                    if !isSampled {
                        row.identicalToPlain = zip(plainOutputs, outputs).filter { $0 == $1 }.count
                        row.agreesWithPlain = plain.passed == passed
                    } else {
                        row.agreesWithPlain = plain.passAt1.agrees(with: pass)
                    }
                }
                rows.append(row)
            }
        }
        return rows
    }
}
