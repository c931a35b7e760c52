import ArborBench
import ArgumentParser

/// `arbor bench`: speed measurements of the engine and the machine.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure decode, prefill and batched-scoring speed, and memory bandwidth.",
        discussion: """
            Each subcommand prints a table, or with --json one JSON object with the same data \
            (snake_case keys). Every measurement is repeated (--repeat, default 3) after untimed \
            warmup runs (--warmup, default 1) and reported as median, min, max and spread = \
            (max - min) / median, timed with the monotonic clock. JSON output also has the peak \
            RSS (getrusage ru_maxrss, including touched pages of the memory-mapped weights) and \
            the load average, since the numbers mean little on a busy machine. See \
            docs/BENCHMARKS.md.
            """,
        subcommands: [
            BenchDecodeCommand.self,
            BenchPrefillCommand.self,
            BenchBatchCommand.self,
            BenchBandwidthCommand.self,
            BenchSpecCommand.self,
            BenchRunCommand.self,
        ]
    )
}
