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

    var isRemote: Bool { targetHost != nil }

    func validate() throws {
        guard (1...65535).contains(targetPort) else { throw ValidationError("--target-port must be 1…65535") }
        guard reconnectAttempts >= 0 else { throw ValidationError("--reconnect-attempts must be ≥ 0") }
        if !isRemote && authTokenFile != nil { throw ValidationError("--auth-token-file goes with --target-host") }
    }

    /// Connects to the server, refusing one whose vocabulary differs from `vocabularyHash`.
    func connect(vocabularyHash: UInt64) throws -> RemoteVerifier {
        var token = ""
        if let authTokenFile {
            let text = try String(contentsOfFile: authTokenFile, encoding: .utf8)
            token = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        }
        let target = RemoteTarget(host: targetHost ?? "127.0.0.1", port: targetPort, authToken: token,
                                  clientName: "arbor-generate", reconnectAttempts: reconnectAttempts)
        return try RemoteVerifier(target: target, expectedVocabularyHash: vocabularyHash)
    }
}
