import ArborBench
import ArborEngine
import ArgumentParser
import Foundation

/// Flags every `arbor bench` subcommand shares.
struct BenchOptions: ParsableArguments {
    @Option(help: "Worker threads, the calling thread included.")
    var threads: Int = 2
    @Option(name: .customLong("repeat"), help: "Timed runs; the report gives their median, min, max and spread.")
    var repeats: Int = 3
    @Option(help: "Untimed runs before the timed ones.")
    var warmup: Int = 1
    @Flag(help: "Print one JSON object with the same data instead of a table.")
    var json = false

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard repeats >= 1 else { throw ValidationError("--repeat must be at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup must not be negative") }
    }

    var settings: BenchSettings {
        BenchSettings(threads: threads, repeat: repeats, warmup: warmup, cores: ProcessResources.onlineCores)
    }
}



/// A loaded model plus what the report says about it.
struct BenchLoadedModel {
    let bundle: ModelBundle
    let info: BenchModelInfo
    let benchmark: ModelBenchmark

    /// Resolves `--model` (pulling a known alias if needed) and loads it with `threads`.
    static func load(_ aliasOrPath: String, threads: Int) throws -> BenchLoadedModel {
        let start = MonotonicClock.now
        let path = try ModelOptions.resolve(aliasOrPath)
        let bundle = try ModelBundle.load(path: path, threads: threads)
        let loadMs = MonotonicClock.millisecondsSince(start)
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
        let c = bundle.model.configuration
        let info = BenchModelInfo(
            model: aliasOrPath, path: path, architecture: c.architecture, fileBytes: size,
            weightBytesPerToken: bundle.model.weightBytesPerToken, layers: c.blockCount,
            embeddingLength: c.embeddingLength, vocabularySize: c.vocabularySize, loadMs: loadMs)
        return BenchLoadedModel(bundle: bundle, info: info,
                                benchmark: ModelBenchmark(model: bundle.model, tokenizer: bundle.tokenizer))
    }
}

/// Parses "1,2,4" into positive integers.
func parseSizeList(_ text: String, option: String) throws -> [Int] {
    let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let values = parts.compactMap { Int($0) }
    guard !parts.isEmpty, values.count == parts.count, values.allSatisfy({ $0 >= 1 }) else {
        throw ValidationError("\(option) takes a comma-separated list of positive integers, got '\(text)'")
    }
    return values
}
