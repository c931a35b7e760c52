import ArborModels
import Foundation

/// Unbuffered writes to stdout/stderr for streamed text and progress.
enum StandardStreams {
    static func write(_ s: String) {
        FileHandle.standardOutput.write(Data(s.utf8))
    }

    static func error(_ s: String) {
        FileHandle.standardError.write(Data(s.utf8))
    }
}

enum ModelRegistryDefaults {
    static var threads: Int { ModelRegistry.defaultThreadCount }
}
