import ArborEngine

extension WireEnergySource {
    /// The wire form of an engine energy source (nil: `.none`).
    public init(_ source: EnergySource?) {
        switch source {
        case .measured?: self = .measured
        case .modelled?: self = .modelled
        case nil: self = .none
        }
    }

    /// The engine's energy source (nil for `.none`).
    public var energySource: EnergySource? {
        switch self {
        case .none: nil
        case .measured: .measured
        case .modelled: .modelled
        }
    }
}

extension ServerDetails {
    /// The profile as the engine's cost model reads it: target pass milliseconds by batch size.
    public var targetMillisecondsByBatchSize: [Int: Double] {
        Dictionary(targetProfile.map { (Int($0.batchSize), Double($0.milliseconds)) }, uniquingKeysWith: { a, _ in a })
    }
}
