/// What a user pays for, and how much: the objectives a round's plan can minimise, the prices
/// that turn measured seconds, joules and bytes into dollars, and the service levels that bound
/// the choice.
///
/// Defaults are AutoDraft's example values: 1.208 $/h for the target, 0.2 $/kWh for the user's
/// electricity, 0.33 $/GB for the user's link and 0.09 $/GB of cloud egress.

/// The quantity a plan's cost is measured in.
public enum Objective: String, Codable, Sendable, CaseIterable {
    /// Speed only: every plan costs nothing, so the fastest wins whatever `cs` says.
    case tps
    /// Target time, draft electricity, and bytes both ways, in dollars.
    case totalCost = "total_cost"
    /// What the cloud bills: target time and the downlink, in dollars.
    case apiCost = "api_cost"
    /// Energy of both sides, in joules.
    case energyTotal = "energy_total"
    /// Energy of the user's device (drafting), in joules.
    case draftEnergy = "draft_energy"
    /// Energy of the server (verification), in joules.
    case targetEnergy = "target_energy"

    /// The unit `cost(of:)` returns.
    public var unit: String {
        switch self {
        case .tps: "-"
        case .totalCost, .apiCost: "$"
        case .energyTotal, .draftEnergy, .targetEnergy: "J"
        }
    }
}

/// Prices that turn a round's resources into dollars.
public struct CostRates: Codable, Sendable, Equatable {
    /// Dollars per hour of target compute (`TARGET_PER_HOUR_COST`).
    public var targetPerHour: Double
    /// Dollars per kWh the user's device draws (`DRAFT_ELECTRICITY_COST_PER_KWH`).
    public var electricityPerKWh: Double
    /// Dollars per GB on the user's link, both ways (`USER_COMM_COST_PER_GB`).
    public var userCommPerGB: Double
    /// Dollars per GB the cloud charges for outbound traffic (`CLOUD_OUTBOUND_COST_PER_GB`).
    public var cloudOutboundPerGB: Double

    public init(targetPerHour: Double = 1.208, electricityPerKWh: Double = 0.2, userCommPerGB: Double = 0.33, cloudOutboundPerGB: Double = 0.09) {
        self.targetPerHour = targetPerHour
        self.electricityPerKWh = electricityPerKWh
        self.userCommPerGB = userCommPerGB
        self.cloudOutboundPerGB = cloudOutboundPerGB
    }

    enum CodingKeys: String, CodingKey {
        case targetPerHour = "target_per_hour", electricityPerKWh = "electricity_per_kwh"
        case userCommPerGB = "user_comm_per_gb", cloudOutboundPerGB = "cloud_outbound_per_gb"
    }
}

/// The resources of one round (or of a whole request: they add up), measured or predicted.
public struct ResourceUse: Codable, Sendable, Equatable {
    /// Target compute the server spent (forward pass and acceptance), ms.
    public var targetMilliseconds = 0.0
    /// Energy of that compute on the server, J.
    public var targetJoules = 0.0
    /// Energy of drafting on the user's device, J.
    public var draftJoules = 0.0
    /// Application bytes user → server and server → user.
    public var bytesUp = 0.0
    public var bytesDown = 0.0

    public init(targetMilliseconds: Double = 0, targetJoules: Double = 0, draftJoules: Double = 0, bytesUp: Double = 0, bytesDown: Double = 0) {
        self.targetMilliseconds = targetMilliseconds
        self.targetJoules = targetJoules
        self.draftJoules = draftJoules
        self.bytesUp = bytesUp
        self.bytesDown = bytesDown
    }

    public static func + (a: ResourceUse, b: ResourceUse) -> ResourceUse {
        ResourceUse(targetMilliseconds: a.targetMilliseconds + b.targetMilliseconds, targetJoules: a.targetJoules + b.targetJoules,
                    draftJoules: a.draftJoules + b.draftJoules, bytesUp: a.bytesUp + b.bytesUp, bytesDown: a.bytesDown + b.bytesDown)
    }

    enum CodingKeys: String, CodingKey {
        case targetMilliseconds = "target_ms", targetJoules = "target_j", draftJoules = "draft_j"
        case bytesUp = "bytes_up", bytesDown = "bytes_down"
    }
}

/// A round's (or request's) cost split into the terms of `total_cost`.
public struct CostBreakdown: Codable, Sendable, Equatable {
    /// Target seconds × $/h ÷ 3600.
    public var targetDollars: Double
    /// Draft energy (kWh) × $/kWh.
    public var draftDollars: Double
    /// Bytes up × user $/GB.
    public var uplinkDollars: Double
    /// Bytes down × (user + cloud outbound) $/GB.
    public var downlinkDollars: Double

    public init(_ use: ResourceUse, rates: CostRates) {
        targetDollars = use.targetMilliseconds / 3_600_000 * rates.targetPerHour
        draftDollars = use.draftJoules / 3_600_000 * rates.electricityPerKWh
        uplinkDollars = use.bytesUp / 1e9 * rates.userCommPerGB
        downlinkDollars = use.bytesDown / 1e9 * (rates.userCommPerGB + rates.cloudOutboundPerGB)
    }

    /// `total_cost`.
    public var total: Double { targetDollars + draftDollars + uplinkDollars + downlinkDollars }
    /// `api_cost`: what the cloud bills (target time and the downlink).
    public var api: Double { targetDollars + downlinkDollars }

    enum CodingKeys: String, CodingKey {
        case targetDollars = "target_usd", draftDollars = "draft_usd", uplinkDollars = "uplink_usd", downlinkDollars = "downlink_usd"
    }
}

extension Objective {
    /// The cost of `use` in this objective's unit (0 for `tps`).
    public func cost(of use: ResourceUse, rates: CostRates) -> Double {
        switch self {
        case .tps: 0
        case .totalCost: CostBreakdown(use, rates: rates).total
        case .apiCost: CostBreakdown(use, rates: rates).api
        case .energyTotal: use.draftJoules + use.targetJoules
        case .draftEnergy: use.draftJoules
        case .targetEnergy: use.targetJoules
        }
    }
}

/// The knob between speed (0) and cost (1): the seed's forms `tps`, `balanced`, `cost`, a
/// fraction `0…1`, or a percentage `0…100`.
public struct CostSensitivity: Codable, Sendable, Equatable, CustomStringConvertible {
    /// 0: fastest plan, 1: cheapest plan.
    public var value: Double

    public init(_ value: Double) { self.value = min(max(value, 0), 1) }

    public static let speed = CostSensitivity(0)
    public static let balanced = CostSensitivity(0.5)
    public static let cost = CostSensitivity(1)

    /// Parses `tps`, `balanced`, `cost`, `0…1` or `1…100` (a percentage: a value above 1).
    public init(parsing text: String) throws(ControlError) {
        switch text.lowercased() {
        case "tps", "speed": self = .speed
        case "balanced": self = .balanced
        case "cost": self = .cost
        default:
            guard let v = Double(text), v.isFinite, v >= 0, v <= 100 else {
                throw .invalidSetting("cs must be tps, balanced, cost, a fraction 0…1 or a percentage 0…100; got \"\(text)\"")
            }
            self.init(v > 1 ? v / 100 : v)
        }
    }

    public var description: String { value == 0 ? "0 (tps)" : value == 1 ? "1 (cost)" : String(format: "%.2f", value) }

    public init(from decoder: any Decoder) throws { self.init(try decoder.singleValueContainer().decode(Double.self)) }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(value)
    }
}

/// A hard service level: instead of weighing speed against cost, hold one and optimise the other.
public enum ServiceLevel: Codable, Sendable, Equatable {
    /// The cheapest plan that keeps at least this many tokens per second.
    case minTokensPerSecond(Double)
    /// The fastest plan that costs at most this much (in the objective's unit) per million tokens.
    case maxCostPerMillionTokens(Double)
}

/// How the policy weighs each round: the objective, the knob, an optional service level, and
/// the prices.
public struct CostPreferences: Codable, Sendable, Equatable {
    public var objective: Objective
    public var cs: CostSensitivity
    public var serviceLevel: ServiceLevel?
    public var rates: CostRates

    public init(objective: Objective = .tps, cs: CostSensitivity = .speed, serviceLevel: ServiceLevel? = nil, rates: CostRates = CostRates()) {
        self.objective = objective
        self.cs = cs
        self.serviceLevel = serviceLevel
        self.rates = rates
    }
}

/// Errors of round control settings and profiles.
public enum ControlError: Error, CustomStringConvertible, Equatable {
    case invalidSetting(String)

    public var description: String {
        switch self {
        case let .invalidSetting(s): s
        }
    }
}
