import ArborEngine
import Foundation

/// Server-side speculation in run-ahead rounds (`arbor serve --decode-drafter`): every session on
/// the first model gets its own drafter, which reads the prompt with the target; when the client
/// asks the server to decode several tokens by itself, the server drafts and verifies round after
/// round within that one exchange (`RunAheadSpeculator`). The tokens are the target's own, so
/// clients see no difference but the speed; the drafting is billed as the server's time, like the
/// target's (the prompt's reading, like the target's, is prefill).
///
/// The policy's profile is the server's: each session starts from what earlier sessions learned
/// and hands back what it learned when it ends.
public final class DecodeDrafting: @unchecked Sendable {
    /// The drafter's name (for logs).
    public let name: String
    /// Limits of the speculation (the objective is speed: the drafter runs on the server's cores).
    public let configuration: SpeculationConfiguration
    private let make: () throws -> any Drafter
    private let lock = NSLock()
    private var learned: CostProfile

    /// `makeDrafter` builds one session's drafter (called on the model thread; drafters may share
    /// a model, since that thread runs one job at a time).
    public init(name: String, configuration: SpeculationConfiguration = SpeculationConfiguration(),
                profile: CostProfile = CostProfile(), makeDrafter: @escaping () throws -> any Drafter) {
        self.name = name
        var c = configuration
        c.preferences = CostPreferences(objective: .tps, rates: c.preferences.rates)
        self.configuration = c
        learned = profile
        make = makeDrafter
    }

    /// What the sessions have learned so far.
    public var profile: CostProfile { lock.withLock { learned } }

    /// Target times measured at start-up (`--profile-target`), for batch sizes not yet learned.
    func seedTargetTimings(_ timings: [(batch: Int, milliseconds: Double)]) {
        lock.withLock { learned.seedTargetTimings(timings) }
    }

    /// A speculator for a new session (model thread).
    func makeSpeculator() throws -> RunAheadSpeculator {
        RunAheadSpeculator(drafter: try make(), configuration: configuration, profile: profile)
    }

    /// A session's speculator is done: keep what it learned.
    func learn(from speculator: RunAheadSpeculator) {
        let p = speculator.policy.profile
        lock.withLock { learned = p }
    }
}
