import ArborModels
import Foundation
import Logging

/// Unbuffered writes to stdout/stderr for streamed text and progress.
enum StandardStreams {
    static func write(_ s: String) {
        FileHandle.standardOutput.write(Data(s.utf8))
    }

    static func error(_ s: String) {
        FileHandle.standardError.write(Data(s.utf8))
    }

    /// swift-log to stderr at `level` (a `Logger.Level` name, validated by the command).
    static func bootstrapLogging(level: String) {
        let level = Logger.Level(rawValue: level) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

enum ModelRegistryDefaults {
    static var threads: Int { ModelRegistry.defaultThreadCount }
}
