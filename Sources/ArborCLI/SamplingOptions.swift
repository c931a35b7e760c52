import ArborEngine
import ArgumentParser

/// Sampling flags shared by every command that generates.
struct SamplingOptions: ParsableArguments {
    @Option(help: "Temperature; 0 means greedy.")
    var temperature: Float = 0
    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (0 = off).")
    var topK: Int = 0
    @Option(name: .customLong("top-p"), help: "Keep the smallest set with this cumulative probability (1 = off).")
    var topP: Float = 1
    @Option(name: .customLong("min-p"), help: "Drop tokens below this fraction of the top probability (0 = off).")
    var minP: Float = 0
    @Option(name: .customLong("repeat-penalty"), help: "Penalty for recently seen tokens (1 = off).")
    var repeatPenalty: Float = 1
    @Option(name: .customLong("repeat-last-n"), help: "How many recent tokens the penalty looks at.")
    var repeatLastN: Int = 64
    @Option(help: "Random seed, for reproducible sampling.")
    var seed: UInt64 = 0

    var parameters: SamplingParameters {
        var p = SamplingParameters.greedy
        p.temperature = temperature
        p.topK = topK
        p.topP = topP
        p.minP = minP
        p.repetitionPenalty = repeatPenalty
        p.repetitionLastN = repeatLastN
        p.seed = seed
        return p
    }

    func validate() throws {
        do { try parameters.validate() } catch { throw ValidationError("\(error)") }
    }
}
