import ArborModels

/// The target's verdict on one drafted tree.
public struct VerificationResult: Sendable, Equatable {
    /// Tree nodes accepted, root to leaf (empty when even the first drafted token was rejected).
    public var acceptedNodes: [Int]
    /// The target's own next token after the accepted path: the correction when a draft was
    /// rejected, the bonus token when the whole path was accepted. Always emitted.
    public var nextToken: Int32
    /// Tokens the target scored in its forward pass (the pending token plus the tree).
    public var batchSize: Int
    /// What the round cost: target compute, sampling, round trip, queue, bytes, energy.
    public var cost: RoundCost
    /// Tokens the target decoded by itself after `nextToken` (a run-ahead round; empty for a
    /// tree round).
    public var decodedTokens: [Int32] = []

    public init(acceptedNodes: [Int], nextToken: Int32, batchSize: Int, targetMilliseconds: Double = 0, samplingMilliseconds: Double = 0, roundMilliseconds: Double = 0) {
        self.acceptedNodes = acceptedNodes
        self.nextToken = nextToken
        self.batchSize = batchSize
        cost = RoundCost()
        cost.targetMilliseconds = targetMilliseconds
        cost.samplingMilliseconds = samplingMilliseconds
        cost.roundTripMilliseconds = roundMilliseconds
    }

    /// Time the target spent on the forward pass, as measured where it ran (for a remote target:
    /// the server's compute time, not the round trip).
    public var targetMilliseconds: Double { cost.targetMilliseconds }
    /// Time spent turning logits into the verdict (distributions, acceptance tests, the draw).
    public var samplingMilliseconds: Double { cost.samplingMilliseconds }
    /// The whole round as the caller waited for it (for a remote target: the round trip,
    /// including the network and the server's queue); 0 when it is just the local computation.
    public var roundMilliseconds: Double { cost.roundTripMilliseconds }
    /// Target passes the round took (more than one for a run-ahead round).
    public var passes: Int { 1 + decodedTokens.count }
    /// Tokens the round commits: the accepted nodes, then one per pass.
    public var committedCount: Int { acceptedNodes.count + passes }
}

/// What a verifier needs to know at the start of a request.
public struct VerificationRequest: Sendable {
    /// The prompt; at least one token.
    public var prompt: [Int32]
    /// The target's sampling configuration (applied to the target's logits exactly as in plain
    /// generation).
    public var sampling: SamplingParameters
    /// Tokens the target must never produce (e.g. end-of-generation tokens when the caller wants
    /// to run to the token limit): their logits are set to -inf before sampling.
    public var suppressedTokens: [Int32]
    /// Most tokens the request may reach (prompt + output + one tree), for cache sizing.
    public var capacity: Int

    public init(prompt: [Int32], sampling: SamplingParameters, suppressedTokens: [Int32] = [], capacity: Int) {
        self.prompt = prompt
        self.sampling = sampling
        self.suppressedTokens = suppressedTokens
        self.capacity = capacity
    }
}

/// Scores drafted trees against the target model and decides what to keep.
///
/// The verifier owns the target's state for one request: its KV cache holds every committed
/// token except the newest (the *pending* token), which is scored together with each tree so
/// that its logits give the distribution of the tree's roots. After each verdict the cache keeps
/// exactly the accepted path and the returned `nextToken` becomes the new pending token.
/// A local model and a remote server are two conformers.
public protocol Verifier: AnyObject {
    /// Vocabulary size of the target (drafts must use the same ids).
    var vocabularySize: Int { get }
    /// Largest total number of tokens (context + tree) the target can hold.
    var contextLength: Int { get }
    /// Starts a request: reads the prompt (all but its last token, which becomes pending).
    func begin(_ request: VerificationRequest) throws
    /// Scores `tree` (roots continue the committed context) in one target pass and returns the
    /// accepted path and the target's next token. The output distribution of the committed tokens
    /// equals plain sampling from the target (identical tokens when greedy).
    func verify(_ tree: TokenTree) throws -> VerificationResult
    /// Ends the request and releases its state.
    func end()
    /// What reaching the target cost during the current (or last) request; nil for a local target.
    var transport: TransportStats? { get }
    /// Most nodes one tree may have (a server's limit); plans never exceed it.
    var maxTreeNodes: Int { get }
}

extension Verifier {
    public var transport: TransportStats? { nil }
    public var maxTreeNodes: Int { Int.max }
}

/// A verifier that can let the caller work while the target verifies: `send` starts the round
/// and returns at once, `receive` waits for its verdict. Between the two the generator drafts the
/// next tree ahead (proactive drafting). `verify(t)` is `send(t)` then `receive()`.
public protocol PipelinedVerifier: Verifier {
    /// Starts verifying `tree`; exactly one `receive` must follow before the next `send`.
    func send(_ tree: TokenTree) throws
    /// The verdict on the tree last sent.
    func receive() throws -> VerificationResult
}

/// A verifier whose target can decode several tokens by itself in one exchange (a *run-ahead*
/// round): worth it where each exchange costs a network round trip and drafting does not pay.
/// The tokens are the target's own plain decoding (its sampling, its distribution), so output
/// is unchanged.
public protocol RunAheadVerifier: Verifier {
    /// Most tokens one run-ahead may ask for; 0 when the target does not offer it.
    var maxRunAhead: Int { get }
    /// Has the target decode up to `count` tokens after the committed context (it may stop early
    /// after an end-of-generation token): `nextToken` is the first, `decodedTokens` the rest,
    /// `cost` sums the passes.
    func runAhead(_ count: Int) throws -> VerificationResult
    /// `runAhead(count)`, running `whileWaiting` on this thread after the request is sent and
    /// before its result is awaited (errors from `whileWaiting` are the caller's to ignore).
    func runAhead(_ count: Int, whileWaiting: () -> Void) throws -> VerificationResult
}

extension RunAheadVerifier {
    public func runAhead(_ count: Int, whileWaiting: () -> Void) throws -> VerificationResult {
        whileWaiting()
        return try runAhead(count)
    }
}

/// Errors of speculative generation.
public enum SpeculativeError: Error, CustomStringConvertible, Equatable {
    case notStarted
    case vocabularyMismatch(draft: String, target: String, reason: String)
    case treeTooLarge(nodes: Int, limit: Int)
    case invalidTree(String)

    public var description: String {
        switch self {
        case .notStarted: "verify called before begin"
        case let .vocabularyMismatch(d, t, reason): "draft model \(d) cannot draft for \(t) token for token: \(reason) (a model of another vocabulary drafts through text with --drafter cross)"
        case let .treeTooLarge(n, limit): "a tree of \(n) nodes does not fit (limit \(limit))"
        case let .invalidTree(s): "invalid draft tree: \(s)"
        }
    }
}
