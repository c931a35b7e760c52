import ArborEngine
import ArborRemote

/// The target a speculating command talks to — a model in this process or an `arbor serve` —
/// with what the profile key and the cost model need to know about it.
struct TargetSetup {
    let verifier: any Verifier
    /// The target model's name and the server's (`local` in this process).
    let targetName: String
    let serverName: String
    /// The server's advertised price per hour, if any.
    let advertisedPrice: Double?
    /// The server's start-up timing of target passes, (batch size, ms).
    let targetTimings: [(batch: Int, milliseconds: Double)]

    /// Connects to `remote` when it names a host (checking the vocabulary against `local`'s),
    /// else wraps `local`, whose model is then the target.
    init(remote: RemoteOptions, local: ModelBundle, localName: String) throws {
        if remote.isRemote {
            let r = try remote.connect(vocabularyHash: local.tokenizer.vocabularyFingerprint)
            verifier = r
            targetName = r.serverInfo.modelName
            serverName = "\(r.serverInfo.serverName)@\(remote.targetHost ?? ""):\(remote.targetPort)"
            advertisedPrice = r.serverDetails?.pricePerHour.map(Double.init)
            targetTimings = (r.serverDetails?.targetProfile ?? []).map { (Int($0.batchSize), Double($0.milliseconds)) }
        } else {
            verifier = LocalVerifier(model: local.model)
            targetName = localName
            serverName = "local"
            advertisedPrice = nil
            targetTimings = []
        }
    }

    /// `profile`, with the server's advertised target timings filled in where it has measured
    /// nothing itself (so the first rounds are sized from the server's own numbers).
    func seeded(_ profile: CostProfile) -> CostProfile {
        var p = profile
        p.seedTargetTimings(targetTimings)
        return p
    }
}
