import ArborEngine
import ArborRemote
import ArborWire
import Foundation

/// The target a generation talks to — a model in this process or an `arbor serve` — with what
/// the profile key and the cost model need to know about it.
public struct TargetConnection {
    public let verifier: any Verifier
    /// The target model's name, and the server's (`local` in this process).
    public let targetName: String
    public let serverName: String
    /// The server's advertised price per hour, if any.
    public let advertisedPrice: Double?
    /// The server's start-up timing of target passes, (batch size, ms).
    public let targetTimings: [(batch: Int, milliseconds: Double)]
    /// Every target model the server offers (one, for a local target or a single-model server).
    public var models: [ServedModel] = []

    /// The model of `bundle`, in this process.
    public static func local(_ bundle: ModelBundle, name: String) -> TargetConnection {
        TargetConnection(verifier: LocalVerifier(model: bundle.model), targetName: name, serverName: "local",
                         advertisedPrice: nil, targetTimings: [],
                         models: [ServedModel(name: name, vocabularyHash: bundle.tokenizer.vocabularyFingerprint,
                                              vocabularySize: UInt32(bundle.model.configuration.vocabularySize),
                                              contextLength: UInt32(bundle.model.configuration.contextLength), loaded: true,
                                              fileBytes: ((try? FileManager.default.attributesOfItem(atPath: bundle.path)[.size]) as? NSNumber)?.uint64Value ?? 0)])
    }

    /// Connects to an `arbor serve`, refusing one whose vocabulary differs from `vocabularyHash`.
    public static func remote(_ target: RemoteTarget, vocabularyHash: UInt64) throws -> TargetConnection {
        let r = try RemoteVerifier(target: target, expectedVocabularyHash: vocabularyHash)
        return TargetConnection(
            verifier: r, targetName: r.serverInfo.modelName, serverName: "\(r.serverInfo.serverName)@\(target.host):\(target.port)",
            advertisedPrice: r.serverDetails?.pricePerHour.map(Double.init),
            targetTimings: (r.serverDetails?.targetProfile ?? []).map { (Int($0.batchSize), Double($0.milliseconds)) },
            models: (try? r.listModels().models) ?? [])
    }

    /// Whether the target runs in another process.
    public var isRemote: Bool { serverName != "local" }

    /// `profile`, with the server's advertised target timings filled in where it has measured
    /// nothing itself (so the first rounds are sized from the server's own numbers).
    public func seeded(_ profile: CostProfile) -> CostProfile {
        var p = profile
        p.seedTargetTimings(targetTimings)
        return p
    }
}
