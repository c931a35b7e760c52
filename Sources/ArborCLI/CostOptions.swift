import ArborEngine
import ArgumentParser

/// What the user pays for: the objective, the cs knob, service levels, prices, the device's
/// power, and proactive drafting. Shared by `generate` and `tradeoff`.
struct CostOptions: ParsableArguments {
    @Option(help: "What a round's cost is measured in: tps, total_cost, api_cost, energy_total, draft_energy or target_energy.")
    var objective: Objective = .tps
    @Option(help: ArgumentHelp("Speed (0) against cost (1): tps, balanced, cost, a fraction 0…1 or a percentage 0…100.", valueName: "cs"))
    var cs: String = "tps"
    @Option(name: .customLong("min-tokens-per-second"), help: "Hard SLO: the cheapest plan that keeps this speed.")
    var minTokensPerSecond: Double?
    @Option(name: .customLong("max-cost-per-million-tokens"), help: "Hard SLO: the fastest plan within this cost (objective's unit) per million tokens.")
    var maxCostPerMillionTokens: Double?
    @Option(name: .customLong("target-price-per-hour"), help: "Dollars per hour of target compute (default: the server's advertised price, else 1.208).")
    var targetPricePerHour: Double?
    @Option(name: .customLong("electricity-per-kwh"), help: "Dollars per kWh of this device's electricity.")
    var electricityPerKWh = CostRates().electricityPerKWh
    @Option(name: .customLong("user-comm-per-gb"), help: "Dollars per GB on this device's link (both ways).")
    var userCommPerGB = CostRates().userCommPerGB
    @Option(name: .customLong("cloud-outbound-per-gb"), help: "Dollars per GB of the cloud's outbound traffic.")
    var cloudOutboundPerGB = CostRates().cloudOutboundPerGB
    @Option(name: .customLong("watts-per-core"), help: "Active power of one busy core of this device, W, for modelled energy (used where RAPL is not readable).")
    var wattsPerCore = EnergyMeter.defaultWattsPerCore
    @Flag(inversion: .prefixedNo, help: "Draft the next tree while the server verifies this one, when it is expected to pay (remote targets, greedy).")
    var proactive = true

    func validate() throws {
        do { _ = try CostSensitivity(parsing: cs) } catch { throw ValidationError("\(error)") }
        if minTokensPerSecond != nil && maxCostPerMillionTokens != nil {
            throw ValidationError("give at most one of --min-tokens-per-second and --max-cost-per-million-tokens")
        }
        if let x = minTokensPerSecond, !(x > 0 && x.isFinite) { throw ValidationError("--min-tokens-per-second must be positive") }
        if let y = maxCostPerMillionTokens, !(y > 0 && y.isFinite) { throw ValidationError("--max-cost-per-million-tokens must be positive") }
        if maxCostPerMillionTokens != nil && objective == .tps {
            throw ValidationError("--max-cost-per-million-tokens needs a cost --objective (total_cost, api_cost, energy_total, …)")
        }
        for (name, v) in [("--target-price-per-hour", targetPricePerHour ?? 0), ("--electricity-per-kwh", electricityPerKWh),
                          ("--user-comm-per-gb", userCommPerGB), ("--cloud-outbound-per-gb", cloudOutboundPerGB), ("--watts-per-core", wattsPerCore)]
        where !(v >= 0 && v.isFinite) {
            throw ValidationError("\(name) must be a non-negative number")
        }
    }

    /// The preferences, with the target's price from the flag, else `advertisedPrice`, else the default.
    func preferences(advertisedPrice: Double? = nil) -> CostPreferences {
        let level: ServiceLevel? = minTokensPerSecond.map { .minTokensPerSecond($0) } ?? maxCostPerMillionTokens.map { .maxCostPerMillionTokens($0) }
        let rates = CostRates(targetPerHour: targetPricePerHour ?? advertisedPrice ?? CostRates().targetPerHour,
                              electricityPerKWh: electricityPerKWh, userCommPerGB: userCommPerGB, cloudOutboundPerGB: cloudOutboundPerGB)
        return CostPreferences(objective: objective, cs: (try? CostSensitivity(parsing: cs)) ?? .speed, serviceLevel: level, rates: rates)
    }

    /// `configuration` with these preferences applied.
    func apply(to configuration: SpeculationConfiguration, advertisedPrice: Double? = nil) -> SpeculationConfiguration {
        var c = configuration
        c.preferences = preferences(advertisedPrice: advertisedPrice)
        c.proactive = proactive
        c.wattsPerCore = wattsPerCore
        return c
    }
}

extension Objective: ExpressibleByArgument {}
