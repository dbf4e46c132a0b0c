import Foundation
import Protocols

/// Answers GET and HEAD: `/` with a small fixed body, or, with a root directory, files under it like
/// Python's `SimpleHTTPRequestHandler` (directory listings, index.html, no path escaping the root).
public struct HTTPResponder: Sendable {
    /// The directory served, resolved; `nil` serves only the fixed page.
    public let root: String?
    /// The body of `/` without a root.
    public static let defaultBody = Array("Hello from sockserv\n".utf8)

    public init(root: String?) {
        self.root = root.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path }
    }

    /// The response to `head`.
    public func respond(to head: HTTP.RequestHead) -> HTTP.Response {
        guard head.method == "GET" || head.method == "HEAD" else {
            var response = HTTP.Response.error(405, close: !head.keepAlive)
            response.headers.append(("Allow", "GET, HEAD"))
            return response
        }
        var response = root.map { serveFile(head.target, root: $0) } ?? fixedPage(head.target)
        response.close = response.close || !head.keepAlive
        return response
    }

    private func fixedPage(_ target: String) -> HTTP.Response {
        guard target == "/" || target.hasPrefix("/?") else { return .error(404, close: false) }
        return HTTP.Response(
            status: 200, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Self.defaultBody)
    }

    /// The file system path for a request target, or `nil` if it is not a safe path under `root`.
    public static func translatePath(_ target: String, root: String) -> String? {
        let path =
            target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        guard let decoded = path.removingPercentEncoding, !decoded.contains("\0") else { return nil }
        var parts: [Substring] = []
        for part in decoded.split(separator: "/") {
            if part == "." { continue }
            if part == ".." {
                guard !parts.isEmpty else { return nil }
                parts.removeLast()
                continue
            }
            parts.append(part)
        }
        var full = root
        for part in parts { full += "/" + part }
        if decoded.hasSuffix("/") && !parts.isEmpty { full += "/" }
        return full
    }

    private func serveFile(_ target: String, root: String) -> HTTP.Response {
        guard let path = Self.translatePath(target, root: root) else { return .error(404, close: false) }
        // A symbolic link must not lead outside the root either.
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        guard isInside(resolved, root) else { return .error(404, close: false) }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: resolved, isDirectory: &isDirectory) else {
            return .error(404, close: false)
        }
        if isDirectory.boolValue {
            let bare = target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
            guard bare.hasSuffix("/") else {
                // Never `//host/...`: a browser would take that for another site (CVE-2021-28861 in Python).
                return HTTP.Response(status: 301, headers: [("Location", "/" + bare.drop { $0 == "/" } + "/")])
            }
            let index = URL(fileURLWithPath: resolved + "/index.html").resolvingSymlinksInPath().path
            if isInside(index, root) && FileManager.default.fileExists(atPath: index) { return fileResponse(index) }
            return listing(resolved, displayPath: bare)
        }
        return fileResponse(resolved)
    }

    private func isInside(_ path: String, _ root: String) -> Bool {
        root == "/" || path == root || path.hasPrefix(root + "/")
    }

    private func fileResponse(_ path: String) -> HTTP.Response {
        guard let data = FileManager.default.contents(atPath: path) else { return .error(403, close: false) }
        return HTTP.Response(status: 200, headers: [("Content-Type", Self.contentType(path))], body: [UInt8](data))
    }

    private func listing(_ directory: String, displayPath: String) -> HTTP.Response {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        let title = "Directory listing for \(Self.escape(displayPath))"
        var html =
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>\(title)</title></head>\n<body><h1>\(title)</h1><hr><ul>\n"
        for name in names {
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: directory + "/" + name, isDirectory: &isDirectory)
            let shown = name + (isDirectory.boolValue ? "/" : "")
            // "./" first, so a name like `javascript:...` is a relative path, never a scheme.
            let link = "./" + (shown.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? shown)
            html += "<li><a href=\"\(link)\">\(Self.escape(shown))</a></li>\n"
        }
        html += "</ul><hr></body></html>\n"
        return HTTP.Response(
            status: 200, headers: [("Content-Type", "text/html; charset=utf-8")], body: Array(html.utf8))
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func contentType(_ path: String) -> String {
        switch URL(fileURLWithPath: path).pathExtension.lowercased() {
        case "html", "htm": return "text/html; charset=utf-8"
        case "txt", "md": return "text/plain; charset=utf-8"
        case "css": return "text/css"
        case "js": return "text/javascript"
        case "json": return "application/json"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        case "jpg", "jpeg": return "image/jpeg"
        default: return "application/octet-stream"
        }
    }
}
