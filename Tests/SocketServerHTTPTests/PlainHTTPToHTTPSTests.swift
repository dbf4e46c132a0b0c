import Logging
import Reactor
import SocketServer
import SocketServerHTTP
import TestSupport
import Testing

/// `http://` sent to an HTTPS port: nginx's `400` ("The plain HTTP request was sent to HTTPS port") in the clear,
/// an `info` line instead of an error, and the server goes on serving TLS clients.
@Suite struct PlainHTTPToHTTPSTests {
    @Test(arguments: ["threading", "reactor", "sequential"])
    func plainHTTPGetsA400AndAnInfoLine(mode: String) throws {
        let address = try SocketAddress(ipv4: "127.0.0.1", port: 0)
        let server: HTTPServer =
            switch mode {
            case "threading": try ThreadingHTTPServer(address, handler: FixedPageHandler.self)
            case "reactor": try ReactorHTTPServer(address, handler: FixedPageHandler.self)
            default: try HTTPServer(address, handler: FixedPageHandler.self)
            }
        server.tls = try TestCertificates.serverContext()
        let logs = LogCapture()
        try serving(server, logs: logs) { address in
            let client = try connectedClient(address)
            try client.sendAll(Array("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8))
            let answer = String(decoding: readToEnd(client), as: UTF8.self)
            #expect(answer.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "\(answer)")
            #expect(answer.hasSuffix("\r\n\r\n400 Bad Request: the plain HTTP request was sent to an HTTPS port\n"))
            // The server still speaks TLS.
            let secure = try connectedClient(address)
            try secure.startTLS(try TestCertificates.clientContext(), serverName: "localhost")
            try secure.sendAll(Array("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8))
            #expect(String(decoding: readToEnd(secure), as: UTF8.self).hasSuffix("Data</body></html>\r\n"))
        }
        let lines = logs.lines.withLock { $0 }
        let plain = lines.filter { $0.1.contains("plain HTTP request") }
        #expect(plain.count == 1 && plain.first?.0 == .info, "\(lines)")
        #expect(!lines.contains { $0.0 >= .warning }, "\(lines)")
    }
}
