import ArborEngine
import ArborRemote
import ArborServer
import ArborTestSupport
import ArborWire
import Foundation
import NIOCore
import Testing

/// TLS for the verification protocol, with certificates made by `openssl` for each run: the
/// right CA generates identically; a wrong CA, a wrong name, a plain client against a TLS server
/// and a TLS client against a plain one all fail fast with clear messages.
@Suite(.serialized) struct TLSTests {
    /// A CA, a server certificate it signed for the name localhost (no address), and an unrelated CA.
    final class Certificates {
        let directory: TemporaryDirectory
        var ca: String { directory.path + "/ca.pem" }
        var otherCA: String { directory.path + "/other.pem" }
        var certificate: String { directory.path + "/server.pem" }
        var key: String { directory.path + "/server.key" }

        init() throws {
            directory = try TemporaryDirectory()
            let d = directory.path
            let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
            try Self.openssl(["req", "-x509"] + ec + ["-keyout", "\(d)/ca.key", "-out", "\(d)/ca.pem", "-days", "2", "-subj", "/CN=Arbor Test CA"])
            try Self.openssl(["req"] + ec + ["-keyout", "\(d)/server.key", "-out", "\(d)/server.csr", "-subj", "/CN=localhost"])
            try "subjectAltName=DNS:localhost\n".write(toFile: "\(d)/ext.cnf", atomically: true, encoding: .utf8)
            try Self.openssl(["x509", "-req", "-in", "\(d)/server.csr", "-CA", "\(d)/ca.pem", "-CAkey", "\(d)/ca.key", "-CAcreateserial",
                              "-out", "\(d)/server.pem", "-days", "2", "-extfile", "\(d)/ext.cnf"])
            try Self.openssl(["req", "-x509"] + ec + ["-keyout", "\(d)/other.key", "-out", "\(d)/other.pem", "-days", "2", "-subj", "/CN=Other CA"])
        }

        static func openssl(_ arguments: [String]) throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["openssl"] + arguments
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw TLSSetupError(message: "openssl \(arguments.prefix(2).joined(separator: " ")) failed") }
        }
    }

    func tlsTarget(_ t: TestServer, ca: String?, name: String? = nil) -> RemoteTarget {
        var target = t.target(reconnects: 2)
        target.tls = ClientTLS(caPath: ca, serverName: name)
        return target
    }

    /// How long `body` took to throw, and what.
    func failure(_ body: () throws -> Void) -> (seconds: Double, error: (any Error)?) {
        let began = Date()
        do {
            try body()
            return (Date().timeIntervalSince(began), nil)
        } catch {
            return (Date().timeIntervalSince(began), error)
        }
    }

    @Test("The right CA: generation over TLS is identical to local; the server counts its bytes after TLS")
    func rightCA() throws {
        let certs = try Certificates()
        let t = try TestServer { $0.tls = ServerTLS(certificatePath: certs.certificate, keyPath: certs.key) }
        let prompt = t.prompt(1)
        let expected = try t.local(prompt, maxTokens: 30)
        for name in ["localhost"] {
            let verifier = try RemoteVerifier(target: tlsTarget(t, ca: certs.ca, name: name), expectedVocabularyHash: t.bundle.tokenizer.vocabularyFingerprint)
            let drafter = ScriptedDrafter(expected: expected, promptCount: prompt.count, seed: 3, vocabulary: t.bundle.tokenizer.vocabularySize)
            let r = try SpeculativeGenerator(verifier: verifier, drafter: drafter, tokenizer: t.bundle.tokenizer)
                .generate(promptTokens: prompt, parameters: t.parameters(30))
            #expect(r.tokens == expected)
            verifier.close()
        }
        #expect(t.metrics.snapshot.bytesReceived > 0 && t.metrics.rounds > 0)
    }

    @Test("A wrong CA or a wrong name fails fast with a clear TLS error, no retries")
    func wrongCAOrName() throws {
        let certs = try Certificates()
        let t = try TestServer { $0.tls = ServerTLS(certificatePath: certs.certificate, keyPath: certs.key) }
        let wrongCA = failure { _ = try RemoteVerifier(target: tlsTarget(t, ca: certs.otherCA, name: "localhost"), expectedVocabularyHash: nil) }
        #expect(wrongCA.seconds < 2)
        guard let e1 = wrongCA.error as? RemoteError, case .tls = e1 else { Issue.record("not a TLS error: \(String(describing: wrongCA.error))"); return }
        #expect("\(e1)".contains("trusted CA"), "\(e1)")
        // The certificate names localhost: another name, or the bare address, does not match it.
        for name in ["arbor.invalid", nil] {
            let wrongName = failure { _ = try RemoteVerifier(target: tlsTarget(t, ca: certs.ca, name: name), expectedVocabularyHash: nil) }
            #expect(wrongName.seconds < 2)
            guard let e2 = wrongName.error as? RemoteError, case .tls = e2 else { Issue.record("not a TLS error: \(String(describing: wrongName.error))"); return }
            #expect("\(e2)".contains("host name"), "\(e2)")
        }
        let missingCA = failure { _ = try RemoteVerifier(target: tlsTarget(t, ca: certs.directory.path + "/nope.pem"), expectedVocabularyHash: nil) }
        #expect("\(missingCA.error.map { "\($0)" } ?? "")".contains("does not exist"))
    }

    @Test("A plain client against a TLS server is told TLS is required; a TLS client against a plain server is told it is not TLS")
    func mismatchedTransport() throws {
        let certs = try Certificates()
        let tlsServer = try TestServer { $0.tls = ServerTLS(certificatePath: certs.certificate, keyPath: certs.key) }
        let plain = failure { _ = try RemoteVerifier(target: tlsServer.target(reconnects: 2), expectedVocabularyHash: nil) }
        #expect(plain.seconds < 2)
        guard let e1 = plain.error as? RemoteError, case let .server(frame) = e1 else { Issue.record("\(String(describing: plain.error))"); return }
        #expect(frame.code == .tlsRequired && "\(e1)".contains("--tls"))
        let plainServer = try TestServer()
        let tls = failure { _ = try RemoteVerifier(target: tlsTarget(plainServer, ca: certs.ca, name: "localhost"), expectedVocabularyHash: nil) }
        #expect(tls.seconds < 2)
        guard let e2 = tls.error as? RemoteError, case .tls = e2 else { Issue.record("\(String(describing: tls.error))"); return }
        #expect("\(e2)".contains("TLS"), "\(e2)")
        #expect(tlsServer.metrics.snapshot.errors["tls_required"] == 1)
    }

    @Test("A server whose key or certificate file is missing or not PEM fails at start with the file named")
    func badServerFiles() throws {
        let certs = try Certificates()
        let missing = certs.directory.path + "/missing.key"
        #expect {
            _ = try TestServer { $0.tls = ServerTLS(certificatePath: certs.certificate, keyPath: missing) }
        } throws: { "\($0)".contains(missing) }
        let notPEM = certs.directory.path + "/ext.cnf"
        #expect {
            _ = try TestServer { $0.tls = ServerTLS(certificatePath: notPEM, keyPath: certs.key) }
        } throws: { "\($0)".contains("no PEM certificate") }
    }
}
