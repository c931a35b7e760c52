import ArborEngine
import ArborProfiles
import ArborRemote
import Foundation

extension TradeoffReport {
    /// The newest stored trade-off run (under `<data dir>/tradeoff/`) for this drafter, server,
    /// target and objective, if any.
    public static func latest(drafter: String, server: String, target: String, objective: Objective) -> (URL, TradeoffReport)? {
        let root = ArborPaths.dataDirectory().appendingPathComponent("tradeoff")
        let dirs = (try? FileManager.default.contentsOfDirectory(at: root, includingPropertiesForKeys: nil)) ?? []
        let decoder = JSONDecoder()
        for dir in dirs.sorted(by: { $0.lastPathComponent > $1.lastPathComponent }) {
            let file = dir.appendingPathComponent("tradeoff.json")
            guard let data = try? Data(contentsOf: file), let r = try? decoder.decode(TradeoffReport.self, from: data) else { continue }
            if r.drafter == drafter, r.server == server, r.target == target, r.objective == objective { return (file, r) }
        }
        return nil
    }
}

/// What probing an `arbor serve` found.
public struct ServerProbe: Codable, Sendable, Equatable {
    public var reachable: Bool
    public var serverName: String?
    public var model: String?
    public var vocabularySize: Int?
    /// Whether its vocabulary is the local drafter's (nil: nothing to compare with).
    public var vocabularyMatches: Bool?
    /// The network round trip (a ping, no server work), ms.
    public var roundTripMilliseconds: Double?
    public var pricePerHour: Double?
    /// Every model the server offers: name, loaded now, and whether its vocabulary is the drafter's.
    public var models: [Model] = []
    /// Why it is unusable, in words.
    public var problem: String?

    public struct Model: Codable, Sendable, Equatable {
        public var name: String
        public var loaded: Bool
        public var vocabularyMatches: Bool?
        public var megabytes: Int

        enum CodingKeys: String, CodingKey { case name, loaded, vocabularyMatches = "vocabulary_matches", megabytes }
    }

    enum CodingKeys: String, CodingKey {
        case reachable, serverName = "server_name", model, vocabularySize = "vocabulary_size", vocabularyMatches = "vocabulary_matches"
        case roundTripMilliseconds = "round_trip_ms", pricePerHour = "price_per_hour", models, problem
    }

    /// Connects once (no retries), reads the server's info, pings, and closes.
    public static func probe(_ target: RemoteTarget, vocabularyHash: UInt64?) -> ServerProbe {
        var t = target
        t.reconnectAttempts = 0
        t.connectTimeout = .seconds(3)
        t.requestTimeout = .seconds(10)
        do {
            let r = try RemoteVerifier(target: t, expectedVocabularyHash: nil)
            defer { r.close() }
            let info = r.serverInfo
            let matches = vocabularyHash.map { $0 == info.vocabularyHash }
            let models = ((try? r.listModels().models) ?? []).map { m in
                Model(name: m.name, loaded: m.loaded, vocabularyMatches: vocabularyHash.map { $0 == m.vocabularyHash }, megabytes: Int(m.fileBytes >> 20))
            }
            return ServerProbe(
                reachable: true, serverName: info.serverName, model: info.modelName, vocabularySize: Int(info.vocabularySize),
                vocabularyMatches: matches, roundTripMilliseconds: r.networkMilliseconds ?? (try? r.ping()),
                pricePerHour: r.serverDetails?.pricePerHour.map(Double.init), models: models,
                problem: matches == false ? "its vocabulary differs from the draft model's: speculation with this drafter cannot verify against it" : nil)
        } catch {
            return ServerProbe(reachable: false, problem: "\(error)")
        }
    }
}
