import Foundation
import Glibc
import Reactor

/// Certificates made at test time with the `openssl` command, once per test process, in a temporary
/// directory: a CA, and signed by it a server certificate for `localhost`, `127.0.0.1` and `::1`, a
/// second one for `other.test` (SNI), and a client certificate for `alice`; and another CA with a client
/// certificate for `mallory` that the first CA does not vouch for. All keys are ECDSA P-256.
public enum TestCertificates {
    /// The directory holding every file.
    public static let directory: String = {
        let directory = "/tmp/socketserver-test-certs-\(getpid())"
        do {
            try make(in: directory)
        } catch {
            preconditionFailure("making test certificates with openssl failed: \(error)")
        }
        return directory
    }()

    /// A file of ``directory``.
    public static func path(_ name: String) -> String { "\(directory)/\(name)" }

    /// The CA every good certificate chains to.
    public static var caFile: String { path("ca.pem") }
    /// The server's certificate (localhost, 127.0.0.1, ::1) and key.
    public static var server: TLSConfiguration.CertificateFiles {
        .init(chain: path("server.pem"), privateKey: path("server.key"))
    }
    /// A second server certificate, for `other.test` only.
    public static var other: TLSConfiguration.CertificateFiles {
        .init(chain: path("other.pem"), privateKey: path("other.key"))
    }
    /// A client certificate from the good CA (`CN=alice,O=Example`).
    public static var alice: TLSConfiguration.CertificateFiles {
        .init(chain: path("alice.pem"), privateKey: path("alice.key"))
    }
    /// A client certificate from another CA (`CN=mallory`).
    public static var mallory: TLSConfiguration.CertificateFiles {
        .init(chain: path("mallory.pem"), privateKey: path("mallory.key"))
    }

    /// A server context for ``server``, with `configure` applied to its configuration first.
    public static func serverContext(_ configure: (inout TLSConfiguration) -> Void = { _ in }) throws -> TLSContext {
        var configuration = TLSConfiguration(certificates: [server])
        configure(&configuration)
        return try TLSContext(server: configuration)
    }

    /// A client context that trusts the test CA, with `configure` applied to its configuration first.
    public static func clientContext(_ configure: (inout TLSConfiguration) -> Void = { _ in }) throws -> TLSContext {
        var configuration = TLSConfiguration.client(trustRoots: .file(caFile))
        configure(&configuration)
        return try TLSContext(client: configuration)
    }

    private static func make(in directory: String) throws {
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"]
        let leaf = ["-addext", "basicConstraints=critical,CA:FALSE"]
        func request(_ name: String, subject: String, _ extra: [String]) throws {
            try openssl(
                ["req", "-x509"] + key + ["-keyout", "\(directory)/\(name).key", "-out", "\(directory)/\(name).pem"]
                    + ["-subj", subject] + extra)
        }
        func signed(_ name: String, by ca: String, subject: String, _ extensions: [String]) throws {
            try request(
                name, subject: subject,
                ["-CA", "\(directory)/\(ca).pem", "-CAkey", "\(directory)/\(ca).key"] + leaf + extensions)
        }
        try request("ca", subject: "/CN=SocketServer Test CA", [])
        try request("otherca", subject: "/CN=Another Test CA", [])
        try signed(
            "server", by: "ca", subject: "/CN=localhost",
            ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"])
        try signed("other", by: "ca", subject: "/CN=other.test", ["-addext", "subjectAltName=DNS:other.test"])
        try signed("alice", by: "ca", subject: "/O=Example/CN=alice", ["-addext", "extendedKeyUsage=clientAuth"])
        try signed("mallory", by: "otherca", subject: "/CN=mallory", ["-addext", "extendedKeyUsage=clientAuth"])
    }

    private static func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let output = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw IOError(
                errnoCode: EINVAL,
                operation: "openssl \(arguments.joined(separator: " ")): \(String(decoding: output, as: UTF8.self))")
        }
    }
}
