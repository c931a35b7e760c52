import ArborEngine
import ArborRemote
import ArgumentParser
import Foundation
import NIOCore

/// `--target-host` and friends: run the target on an `arbor serve` instead of in this process.
struct RemoteOptions: ParsableArguments {
    @Option(name: .customLong("target-host"), help: "Host of an `arbor serve` to verify drafts on (the target runs there).")
    var targetHost: String?
    @Option(name: .customLong("target-port"), help: "Port of the target server.")
    var targetPort = 7878
    @Option(name: .customLong("auth-token-file"), help: "A file holding the server's auth token (first line).")
    var authTokenFile: String?
    @Option(name: .customLong("reconnect-attempts"), help: "Reconnections tried when the server connection fails.")
    var reconnectAttempts = 5
    @Option(name: .customLong("target-model"), help: "The server's target model, when it serves several (default: its first).")
    var targetModel: String?
    @Flag(name: .customLong("tls"), help: "Connect to the target server with TLS (system CA roots unless --tls-ca).")
    var tls = false
    @Option(name: .customLong("tls-ca"), help: "PEM file of the CA (or self-signed certificate) to trust for the server's certificate; implies --tls.")
    var tlsCA: String?
    @Option(name: .customLong("tls-server-name"), help: "The name the server's certificate must carry (default: --target-host).")
    var tlsServerName: String?
    @Option(name: .customLong("max-queue-wait"), help: "Most seconds to wait in the server's admission queue (default: as long as the server keeps clients queued).")
    var maxQueueWait: Double?

    var isRemote: Bool { targetHost != nil }
    var usesTLS: Bool { tls || tlsCA != nil || tlsServerName != nil }

    func validate() throws {
        guard (1...65535).contains(targetPort) else { throw ValidationError("--target-port must be 1…65535") }
        guard reconnectAttempts >= 0 else { throw ValidationError("--reconnect-attempts must be ≥ 0") }
        if !isRemote && authTokenFile != nil { throw ValidationError("--auth-token-file goes with --target-host") }
        if !isRemote && targetModel != nil { throw ValidationError("--target-model goes with --target-host") }
        if !isRemote && (usesTLS || maxQueueWait != nil) { throw ValidationError("--tls, --tls-ca, --tls-server-name and --max-queue-wait go with --target-host") }
        if let maxQueueWait { guard maxQueueWait.isFinite, maxQueueWait >= 0 else { throw ValidationError("--max-queue-wait must be ≥ 0") } }
        if let tlsCA, !FileManager.default.isReadableFile(atPath: tlsCA) {
            throw ValidationError("--tls-ca \(tlsCA): no such file, or not readable")
        }
        // A missing or unreadable token file fails now, before any model is loaded.
        if let authTokenFile { _ = try AuthTokenFile.read(authTokenFile) }
    }

    /// The server to verify on, or nil for a target in this process.
    func target(clientName: String = "arbor-generate") throws -> RemoteTarget? {
        guard let targetHost else { return nil }
        let token = try authTokenFile.map(AuthTokenFile.read) ?? ""
        var target = RemoteTarget(host: targetHost, port: targetPort, authToken: token, clientName: clientName, reconnectAttempts: reconnectAttempts)
        target.model = targetModel
        if usesTLS { target.tls = ClientTLS(caPath: tlsCA, serverName: tlsServerName) }
        target.maxQueueWait = maxQueueWait.map { .milliseconds(Int64($0 * 1000)) }
        return target
    }
}

/// `--auth-token-file` (client and server): the token is the file's first line.
enum AuthTokenFile {
    /// Why a token file cannot be used, in one line.
    struct Problem: Error, CustomStringConvertible {
        let path: String
        let reason: String
        var description: String { "--auth-token-file \(path): \(reason)" }
    }

    /// The first line of the file at `path`; a clear `Problem` when it is missing, unreadable,
    /// not text or empty.
    static func read(_ path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw Problem(path: path, reason: "no such file") }
        guard !isDirectory.boolValue else { throw Problem(path: path, reason: "is a directory, not a file") }
        guard FileManager.default.isReadableFile(atPath: path) else { throw Problem(path: path, reason: "not readable (check its permissions)") }
        guard let data = FileManager.default.contents(atPath: path) else { throw Problem(path: path, reason: "cannot be read") }
        guard let text = String(data: data, encoding: .utf8) else { throw Problem(path: path, reason: "is not UTF-8 text") }
        guard let line = text.split(whereSeparator: \.isNewline).first.map(String.init), !line.isEmpty else {
            throw Problem(path: path, reason: "holds no token")
        }
        return line
    }
}
