import ArborEngine
import ArborHost
import ArborModels
import ArborProfiles
import ArborRemote
import ArborStore
import ArborTokenizers
import Foundation

/// What a runtime is built from: the target (a model here, or an `arbor serve`), the drafters it
/// may use, and the speculation settings every request starts from.
public struct RuntimeOptions: Sendable {
    /// The target model (alias or GGUF path). With a remote target it names the model whose
    /// tokenizer this process uses when there is no draft model.
    public var model: String
    /// The draft model (alias or path) the `model` drafter uses, if any.
    public var draftModel: String?
    /// The drafter of requests that do not choose one.
    public var drafter: DrafterChoice
    /// An `arbor serve` holding the target, or nil for a target in this process.
    public var remote: RemoteTarget?
    public var threads: Int
    /// Budget, objective and cs, prices, proactive drafting: each request may override parts.
    public var configuration: SpeculationConfiguration
    /// Dollars per hour of target compute set by the user; nil takes the server's advertised
    /// price, else the configuration's.
    public var targetPricePerHour: Double?
    /// The profile database (default `<data dir>/profiles.sqlite`) and whether to use it at all.
    public var profileDatabase: String?
    public var persistProfiles: Bool
    /// Serve concurrent requests on a local target: the model runs on a `TargetHost` thread that
    /// merges their rounds into shared passes (`arbor api`). Off: requests run one at a time on
    /// the caller's thread, the model used directly (`arbor generate`, benchmarks).
    public var sharedTarget = false
    /// More draft models requests may choose (`model:<alias>`), beside `draftModel`; each must
    /// have the target's vocabulary (checked when first used).
    public var extraDraftModels: [String] = []
    /// VocabTrim: the head of a same-vocabulary draft model scores only the K tokens the target
    /// produces most (counts from `arbor profile vocab` in the profile database); nil scores the
    /// whole vocabulary.
    public var draftVocabulary: Int?

    public init(model: String, draftModel: String? = nil, drafter: DrafterChoice? = nil, remote: RemoteTarget? = nil,
                threads: Int = ModelRegistry.defaultThreadCount, configuration: SpeculationConfiguration = SpeculationConfiguration(),
                targetPricePerHour: Double? = nil, profileDatabase: String? = nil, persistProfiles: Bool = true) {
        self.model = model
        self.draftModel = draftModel
        self.drafter = drafter ?? (draftModel.map { .model($0) } ?? .none)
        self.remote = remote
        self.threads = threads
        self.configuration = configuration
        self.targetPricePerHour = targetPricePerHour
        self.profileDatabase = profileDatabase
        self.persistProfiles = persistProfiles
    }
}

/// One request's choices on top of the runtime's settings (nil: the runtime's).
public struct RequestSettings: Sendable, Equatable {
    public var drafter: DrafterChoice?
    public var objective: Objective?
    public var cs: CostSensitivity?
    /// Most drafted nodes per round (llama.cpp's `speculative.n_max`).
    public var maxDraftNodes: Int?
    /// Fewest nodes worth sending (llama.cpp's `speculative.n_min`).
    public var minDraftNodes: Int?
    public var proactive: Bool?
    /// False: draft and send the full budget every round (no adaptive sizing).
    public var adaptive: Bool?

    public init(drafter: DrafterChoice? = nil, objective: Objective? = nil, cs: CostSensitivity? = nil,
                maxDraftNodes: Int? = nil, minDraftNodes: Int? = nil, proactive: Bool? = nil, adaptive: Bool? = nil) {
        self.adaptive = adaptive
        self.drafter = drafter
        self.objective = objective
        self.cs = cs
        self.maxDraftNodes = maxDraftNodes
        self.minDraftNodes = minDraftNodes
        self.proactive = proactive
    }
}

/// What a running generation reports, in order: pieces of text and rounds as they happen, then
/// the result.
public enum GenerationEvent: Sendable {
    case piece(TextPiece)
    case round(RoundEvent)
    case finished(GenerationResult)
}

/// One speculative round, as a client would chart it.
public struct RoundEvent: Sendable, Equatable, Codable {
    /// Drafted nodes sent to the target, and how many it accepted.
    public var sent: Int
    public var accepted: Int
    /// Tokens the round committed (accepted + the target's own + any it ran ahead).
    public var committed: Int
    public var milliseconds: Double
    public var bytesUp: Int
    public var bytesDown: Int

    init(_ r: RoundRecord) {
        sent = r.sent.count
        accepted = r.result.acceptedNodes.count
        committed = r.result.acceptedNodes.count + 1 + r.result.decodedTokens.count
        milliseconds = r.milliseconds
        bytesUp = Int(r.use.bytesUp)
        bytesDown = Int(r.use.bytesDown)
    }
}

/// The composition of a speculating generator: a target (in this process or an `arbor serve`),
/// its drafters, and per drafter a learned profile that outlives every request and persists in
/// SQLite. Requests run on the caller's thread (`generate`) or a thread of their own (`stream`).
///
/// With `sharedTarget` and a local target, requests run at once: each gets its own KV cache on
/// the `TargetHost`, which merges their rounds into shared passes; a drafter that keeps state
/// across requests (suffix index, draft model) serves one request at a time, in arrival order.
/// Otherwise requests run one at a time, in arrival order.
///
/// The CLI and the HTTP server build one of these and do nothing else of speculation's.
public final class Runtime: @unchecked Sendable {
    public let options: RuntimeOptions
    /// The model in this process whose tokenizer and chat format requests use: the target when it
    /// is local; with a remote target the draft model (else the target's file, for its tokenizer).
    public let local: ModelBundle
    public let target: TargetConnection
    /// The settings requests start from (the server's advertised price applied).
    public let configuration: SpeculationConfiguration
    public var tokenizer: any Tokenizer { local.tokenizer }

    private let resolveModel: (String) throws -> String
    private let warn: @Sendable (String) -> Void
    private let gate = FairGate()
    /// The shared target thread (`sharedTarget`, local target only).
    private let host: TargetHost?
    /// One line per stateful drafter (shared target only).
    private var drafterGates: [DrafterChoice: FairGate] = [:]
    /// What each drafter's policy learned last (shared target only: every request starts from it).
    private var learned: [String: CostProfile] = [:]
    private var running = 0
    private let lock = NSLock()
    /// Built on first use, then kept (a draft model is loaded once).
    private var drafters: [DrafterChoice: any Drafter] = [:]
    /// Draft models loaded so far, by name.
    private var draftBundles: [String: ModelBundle] = [:]
    private var policies: [String: (policy: RoundPolicy, persistence: ProfilePersistence)] = [:]
    private let profiles: ProfilePersistence

    /// Loads the local model, connects to a remote target (checking its vocabulary) and opens the
    /// profile database. `resolveModel` turns an alias or path into a GGUF path (by default the
    /// model store, which pulls known aliases); `warn` hears about problems that do not stop a
    /// generation (a corrupt profile database, say).
    public init(options: RuntimeOptions,
                resolveModel: @escaping (String) throws -> String = { try ModelStore().resolve($0) },
                warn: @escaping @Sendable (String) -> Void = { _ in }) throws {
        self.options = options
        self.resolveModel = resolveModel
        self.warn = warn
        // With a remote target the local model supplies the target's tokenizer: the draft model
        // when it shares the target's vocabulary, else the target's own file (mapped, not run).
        let crossDraft = options.drafter.usesCrossVocabulary
        let localName = options.remote != nil && !crossDraft ? (options.draftModel ?? options.model) : options.model
        local = try ModelBundle.load(path: try resolveModel(localName), threads: options.threads)
        if options.remote != nil, !crossDraft, let d = options.draftModel { draftBundles[d] = local }
        if let remote = options.remote {
            target = try .remote(remote, vocabularyHash: local.tokenizer.vocabularyFingerprint)
            host = nil
        } else {
            target = .local(local, name: options.model)
            // The host takes over the model: from here on only its thread runs it.
            host = options.sharedTarget
                ? TargetHost(model: local.model, tokenizer: local.tokenizer, path: local.path, threads: options.threads,
                             wattsPerCore: options.configuration.wattsPerCore)
                : nil
        }
        var c = options.configuration
        c.preferences.rates.targetPerHour = options.targetPricePerHour ?? target.advertisedPrice ?? c.preferences.rates.targetPerHour
        configuration = c
        profiles = ProfilePersistence(database: options.profileDatabase, enabled: options.persistProfiles,
                                      drafter: "none", server: target.serverName, target: target.targetName, warn: warn)
        // Not prompt lookup: the suffix tree indexes the prompt too, and was as fast or faster on
        // every prompt set measured (docs/bench), so trying both only costs exploration.
        var candidates: [DrafterChoice] = [.suffix]
        // With a draft model: it alone, and merged with the suffix tree (both trees in one round).
        if let d = options.draftModel { candidates += [.model(d), .composite([.suffix, .model(d)])] }
        candidates.append(.none)
        router = DrafterRouter(candidates: candidates, store: profiles.store,
                               scope: "\(ProfileKey.thisDevice)|\(target.serverName)|\(target.targetName)", warn: warn)
    }

    deinit {
        // No request holds the runtime any more: let the host finish what is queued and stop.
        host?.stop()
    }

    /// The shared target's counters (passes that merged several requests' rounds), if any.
    public var hostMetrics: ServerMetrics? { host?.metrics }

    /// Requests waiting for their turn, and those running.
    public var queue: (waiting: Int, running: Int) {
        guard host != nil else {
            let s = gate.state
            return (s.waiting, s.running ? 1 : 0)
        }
        lock.lock()
        defer { lock.unlock() }
        return (drafterGates.values.reduce(0) { $0 + $1.state.waiting }, running)
    }

    /// The draft models this runtime can draft with.
    public var draftModels: [String] {
        (options.draftModel.map { [$0] } ?? []) + options.extraDraftModels.filter { $0 != options.draftModel }
    }

    /// Token ids of a chat, rendered with the local model's template.
    public func chatTokens(_ messages: [ChatMessage]) throws -> [Int32] { try local.chatTokens(messages) }
    /// Token ids of a raw prompt.
    public func promptTokens(_ text: String) -> [Int32] { local.promptTokens(text) }
    /// The target's context length.
    public var contextLength: Int { target.verifier.contextLength }

    /// The configuration a request runs with.
    public func configuration(for settings: RequestSettings) -> SpeculationConfiguration {
        var c = configuration
        if let o = settings.objective { c.preferences.objective = o }
        if let cs = settings.cs { c.preferences.cs = cs }
        if let n = settings.maxDraftNodes {
            c.budget.maxNodes = max(1, n)
            c.budget.maxDepth = min(c.budget.maxDepth, max(1, n))
        }
        if let n = settings.minDraftNodes { c.minDraftNodes = max(0, n) }
        if let p = settings.proactive { c.proactive = p }
        if let a = settings.adaptive { c.adaptive = a }
        return c
    }

    /// Generates on this thread, after the requests that came before it. `onEvent` hears every
    /// piece and round (return false to stop early: the result then ends where it stopped);
    /// `isCancelled` is asked while waiting for a turn.
    public func generate(prompt: [Int32], parameters: GenerationParameters, settings: RequestSettings = RequestSettings(),
                         isCancelled: () -> Bool = { false }, onEvent: (GenerationEvent) -> Bool = { _ in true }) throws -> GenerationResult {
        // Before queueing: a bad request fails at once, not after the ones ahead of it.
        var choice = settings.drafter ?? options.drafter
        var features: PromptFeatures? = nil
        if choice == .auto {
            let f = PromptFeatures(tokens: prompt, text: local.tokenizer.decode(prompt))
            choice = router.choose(f)
            features = f
        }
        var routed: RoutedDrafter? = nil
        let result = try generate(prompt: prompt, parameters: parameters, settings: settings, choice: choice,
                                  routing: features, routed: &routed, isCancelled: isCancelled, onEvent: onEvent)
        if let features {
            if let r = routed, let before = r.rateBeforeSwitch {
                // A switched request is evidence about both: the pick until the switch, the
                // alternative after it.
                router.record(choice, features: features, tokensPerSecond: before)
                if let after = r.rateAfterSwitch { router.record(r.fallbackChoice, features: features, tokensPerSecond: after) }
            } else {
                router.record(choice, features: features, tokensPerSecond: result.stats.tokensPerSecond)
            }
        }
        return result
    }

    /// The router of `--drafter auto`: the runtime's drafters (prompt lookup, the suffix tree, the
    /// draft model when there is one, and plain decoding), its statistics in the profile database.
    public let router: DrafterRouter

    /// `routing`: the request's features when the router chose `choice`; the drafter may then
    /// switch to the bucket's best alternative if it under-delivers (`RoutedDrafter`).
    private func generate(prompt: [Int32], parameters: GenerationParameters, settings: RequestSettings, choice: DrafterChoice,
                          routing: PromptFeatures?, routed: inout RoutedDrafter?,
                          isCancelled: () -> Bool, onEvent: (GenerationEvent) -> Bool) throws -> GenerationResult {
        guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
        try parameters.sampling.validate()
        guard prompt.count + parameters.maxTokens <= contextLength else {
            throw GenerationError.tooLong(promptTokens: prompt.count, maxTokens: parameters.maxTokens, contextLength: contextLength)
        }
        // Only draft models the runtime was started with (a request must not load arbitrary files).
        if let name = choice.draftModels.first(where: { !draftModels.contains($0) }) {
            throw RuntimeError.draftModelNotLoaded(name, available: draftModels)
        }
        if let host {
            return try generateShared(on: host, prompt: prompt, parameters: parameters, settings: settings, choice: choice,
                                      bucket: routing?.bucket, isCancelled: isCancelled, onEvent: onEvent)
        }
        try gate.enter(isCancelled: isCancelled)
        defer { gate.leave() }
        var drafter = try self.drafter(for: choice)
        // A request the router is exploring with (its pick is not the bucket's best estimate) may
        // switch once, to the best, when the pick lags (plain decoding too: it then runs through
        // the speculative loop with no drafts). A pick that is the best estimate keeps the
        // request: when it runs slow, the prompt is hard, and the others would be slow too.
        if let routing, let (alternative, rate) = router.bestAlternative(to: choice, routing),
           rate > router.estimate(choice, routing) {
            let r = RoutedDrafter(primary: drafter, fallback: try self.drafter(for: alternative), fallbackChoice: alternative, fallbackRate: rate)
            routed = r
            drafter = r
        }
        if drafter == nil, !target.isRemote {
            // Plain decoding: the reference path, no speculative loop.
            return try TextGenerator(model: local.model, tokenizer: local.tokenizer)
                .generate(promptTokens: prompt, parameters: parameters, onPiece: { onEvent(.piece($0)) })
        }
        let (policy, persistence) = policy(for: drafter, bucket: routing?.bucket)
        policy.configuration = configuration(for: settings)
        let result = try run(SpeculativeGenerator(verifier: target.verifier, drafter: drafter, tokenizer: local.tokenizer, policy: policy),
                             prompt: prompt, parameters: parameters, onEvent: onEvent)
        persistence.save(policy.profile)
        return result
    }

    /// A request on the shared target: its own verifier (KV cache) on the host and its own policy,
    /// started from what the drafter's policy learned last (in the router's `bucket`, if routed).
    private func generateShared(on host: TargetHost, prompt: [Int32], parameters: GenerationParameters, settings: RequestSettings,
                                choice: DrafterChoice, bucket: String?, isCancelled: () -> Bool,
                                onEvent: (GenerationEvent) -> Bool) throws -> GenerationResult {
        let lookup = choice == .ngram
        // A stateful drafter serves one request at a time; prompt lookup is built per request.
        let line: FairGate? = choice == .none || lookup ? nil : lock.withLock {
            if let g = drafterGates[choice] { return g }
            let g = FairGate()
            drafterGates[choice] = g
            return g
        }
        lock.withLock { running += 1 }
        defer { lock.withLock { running -= 1 } }
        try line?.enter(isCancelled: isCancelled)
        defer { line?.leave() }
        let drafter: (any Drafter)? = lookup ? NGramDrafter() : try self.drafter(for: choice)
        let name = Self.profileName(drafter, bucket: bucket)
        let persistence = profiles.with(drafter: name)
        let start = lock.withLock { learned[name] } ?? startingProfile(persistence, drafter: drafter, bucket: bucket) {
            lock.withLock { learned[Self.profileName(drafter, bucket: nil)] }
        }
        let policy = RoundPolicy(configuration: configuration(for: settings), drafterCostsTime: drafter?.costsTimePerStep ?? false, profile: start)
        let result = try run(SpeculativeGenerator(verifier: HostedVerifier(host: host), drafter: drafter, tokenizer: local.tokenizer, policy: policy),
                             prompt: prompt, parameters: parameters, onEvent: onEvent)
        lock.withLock { learned[name] = policy.profile }
        persistence.save(policy.profile)
        return result
    }

    /// Runs `generator`, telling `onEvent` of every round and piece until it asks to stop.
    private func run(_ generator: SpeculativeGenerator, prompt: [Int32], parameters: GenerationParameters,
                     onEvent: (GenerationEvent) -> Bool) throws -> GenerationResult {
        var stopped = false
        return try generator.generate(
            promptTokens: prompt, parameters: parameters,
            onRound: { if !stopped { stopped = !onEvent(.round(RoundEvent($0))) } },
            onPiece: { !stopped && onEvent(.piece($0)) })
    }

    /// Generates on a thread of its own; the stream yields the pieces and rounds as they happen,
    /// then `.finished`. Cancelling the consuming task (or dropping the stream) stops the
    /// generation at its next piece and frees its cache; a request still waiting for its turn
    /// leaves the line.
    public func stream(prompt: [Int32], parameters: GenerationParameters,
                       settings: RequestSettings = RequestSettings()) -> AsyncThrowingStream<GenerationEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: GenerationEvent.self)
        let cancelled = AtomicFlag()
        continuation.onTermination = { _ in cancelled.set() }
        let thread = Thread { [self] in
            do {
                let result = try generate(prompt: prompt, parameters: parameters, settings: settings, isCancelled: { cancelled.isSet }) { event in
                    guard !cancelled.isSet else { return false }
                    continuation.yield(event)
                    return true
                }
                continuation.yield(.finished(result))
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        thread.name = "arbor-generate"
        thread.stackSize = 8 << 20
        thread.start()
        return stream
    }

    /// The drafter for `choice`, built on first use (nil for `.none`).
    public func drafter(for choice: DrafterChoice) throws -> (any Drafter)? {
        if choice == .none { return nil }
        lock.lock()
        defer { lock.unlock() }
        if let d = drafters[choice] { return d }
        let d = try choice.makeDrafter(targetTokenizer: local.tokenizer, targetName: target.targetName, loadModel: { name in
            if let b = draftBundles[name] { return b }
            let b = try ModelBundle.load(path: try resolveModel(name), threads: options.threads)
            draftBundles[name] = b
            return b
        }, trimHead: options.draftVocabulary.map { keep in
            { [local, profiles] draft in
                guard let store = profiles.store else { throw RuntimeError.draftVocabularyNeedsProfiles }
                return try VocabTrim.trimmedDraft(draft, keep: keep, targetTokenizer: local.tokenizer, store: store)
            }
        })
        drafters[choice] = d
        return d
    }

    /// The policy of a drafter (in the router's `bucket`, if routed), started from its stored profile.
    private func policy(for drafter: (any Drafter)?, bucket: String? = nil) -> (RoundPolicy, ProfilePersistence) {
        let name = Self.profileName(drafter, bucket: bucket)
        lock.lock()
        defer { lock.unlock() }
        if let p = policies[name] { return p }
        let persistence = profiles.with(drafter: name)
        let start = startingProfile(persistence, drafter: drafter, bucket: bucket) {
            policies[Self.profileName(drafter, bucket: nil)]?.policy.profile
        }
        let policy = RoundPolicy(configuration: configuration, drafterCostsTime: drafter?.costsTimePerStep ?? false, profile: start)
        policies[name] = (policy, persistence)
        return (policy, persistence)
    }

    /// The profile key of `drafter`'s policy: its name, and for a routed request the router's
    /// bucket (`suffix#repeats-code-short`). Acceptance differs by kind of prompt far more than by
    /// request (the suffix tree's drafts on code are accepted six deep, on prose rarely two), and
    /// one calibration averaged over a mixed workload drafts too shallow on code and too deep on
    /// prose; the router knows the kind, so its requests keep one calibration per bucket.
    static func profileName(_ drafter: (any Drafter)?, bucket: String?) -> String {
        let name = drafter?.name ?? "none"
        return bucket.map { "\(name)#\($0)" } ?? name
    }

    /// The stored profile of `persistence`'s key; a bucket's first profile starts from the
    /// drafter's own (`general`, in memory, else stored), its costs kept and its acceptance
    /// evidence lightened to a prior the bucket's rounds soon outweigh.
    private func startingProfile(_ persistence: ProfilePersistence, drafter: (any Drafter)?, bucket: String?,
                                 general: () -> CostProfile?) -> CostProfile {
        let stored = persistence.load()
        guard bucket != nil, stored.rounds == 0 else { return target.seeded(stored) }
        let base = general() ?? profiles.with(drafter: Self.profileName(drafter, bucket: nil)).load()
        return target.seeded(base.withLightAcceptance())
    }

    /// Where the profile of `drafter` with this runtime's target is stored.
    public func persistence(for drafter: (any Drafter)?) -> ProfilePersistence {
        profiles.with(drafter: drafter?.name ?? "none")
    }
}
