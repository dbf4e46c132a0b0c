import Foundation
import Protocols
import Testing

@testable import sockserv

/// The file responder `sockserv serve http` uses, over parsed heads.
@Suite struct HTTPResponderTests {
    func head(_ method: String, _ target: String) throws -> HTTP.RequestHead {
        let bytes = Array("\(method) \(target) HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
        return try #require(try bytes.withUnsafeBytes { try HTTP.parseRequestHead($0) }?.head)
    }

    @Test func responderAnswersMethodsAndPaths() throws {
        let responder = HTTPResponder(root: nil)
        #expect(responder.respond(to: try head("GET", "/")).body == HTTPResponder.defaultBody)
        #expect(responder.respond(to: try head("GET", "/nope")).status == 404)
        let post = responder.respond(to: try head("POST", "/"))
        #expect(post.status == 405)
        #expect(post.headers.contains { $0.name == "Allow" && $0.value == "GET, HEAD" })
    }

    @Test func filesAreServedAndNoPathEscapesTheRoot() throws {
        let root = NSTemporaryDirectory() + "sockserv-root-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/sub", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try "file body".write(toFile: root + "/a.txt", atomically: true, encoding: .utf8)
        try "secret".write(toFile: root + "/../sockserv-secret-\(UUID().uuidString)", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: root + "/escape", withDestinationPath: "/etc")
        let responder = HTTPResponder(root: root)
        func get(_ target: String) throws -> HTTP.Response {
            responder.respond(to: try head("GET", target))
        }
        #expect(try get("/a.txt").body == Array("file body".utf8))
        #expect(try get("/sub/../a.txt").body == Array("file body".utf8))
        #expect(try get("/%61.txt").body == Array("file body".utf8))
        #expect(try get("/../etc/passwd").status == 404)
        #expect(try get("/%2e%2e/%2e%2e/etc/passwd").status == 404)
        #expect(try get("/%2E%2E%2f%2E%2E%2fetc/passwd").status == 404, "encoded slashes and dots")
        #expect(try get("/..%5c..%5cetc/passwd").status == 404)
        #expect(try get("/a.txt%00.html").status == 404, "an encoded NUL does not cut the path")
        #expect(try get("/%ff%fe").status == 404, "invalid UTF-8 is not found, not a crash")
        #expect(try get("/%zz").status == 404, "a malformed escape names no file")
        #expect(try get("/escape/passwd").status == 404, "a symbolic link may not lead out of the root")
        #expect(try get("/sub").status == 301)
        let redirect = try get("//evil.example/..")
        #expect(redirect.status == 301)
        #expect(
            redirect.headers.first { $0.name == "Location" }?.value.hasPrefix("//") == false,
            "no redirect to another host")
        try FileManager.default.createSymbolicLink(atPath: root + "/sub/index.html", withDestinationPath: "/etc/passwd")
        #expect(
            try get("/sub/").body != (FileManager.default.contents(atPath: "/etc/passwd").map { [UInt8]($0) } ?? []),
            "an index.html linking out of the root is not served")
        let listing = try get("/")
        #expect(listing.status == 200)
        #expect(String(decoding: listing.body, as: UTF8.self).contains("<a href=\"./a.txt\">a.txt</a>"))
    }
}
