#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

import ArborGGUF

/// An architecture that can build a model from a GGUF file.
protocol ArchitectureLoader: Sendable {
    /// The `general.architecture` value it handles.
    static var architecture: String { get }
    static func load(file: GGUFFile, threads: Int) throws(ModelError) -> DecoderModel
}

/// Builds models by `general.architecture`.
public enum ModelRegistry {
    static let loaders: [any ArchitectureLoader.Type] = [Llama.self, Qwen2.self, Gemma3.self]

    /// The architectures Arbor can run.
    public static var architectures: [String] { loaders.map { $0.architecture } }

    /// Load the model in `file`; an unknown architecture is a clear error.
    public static func load(_ file: GGUFFile, threads: Int = defaultThreadCount) throws(ModelError) -> DecoderModel {
        let arch = file.architecture
        guard let loader = loaders.first(where: { $0.architecture == arch }) else {
            throw .unknownArchitecture(path: file.path, architecture: arch, known: architectures)
        }
        return try loader.load(file: file, threads: max(1, threads))
    }

    /// Open and load the GGUF file at `path`.
    public static func load(path: String, threads: Int = defaultThreadCount) throws(ModelError) -> DecoderModel {
        let file: GGUFFile
        do { file = try GGUFFile(path: path) } catch { throw .file(error) }
        return try load(file, threads: threads)
    }

    /// The number of online cores.
    public static var defaultThreadCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}
