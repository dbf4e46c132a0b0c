import Foundation
import Glibc
import Reactor
import SocketServer
import SocketServerHTTP
import TestSupport
import Testing

/// A served directory made for one test: `<root>/<name>/test` holds Python's 30 bytes.
final class ServedDirectory {
    let root: String
    let name = "tmp\(UUID().uuidString.prefix(8))"
    static let data = Array("We are the knights who say Ni!".utf8)

    init() throws {
        root = temporaryPath("www")
        try FileManager.default.createDirectory(atPath: root + "/" + name, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: file("test"), contents: Data(Self.data))
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    func file(_ relative: String) -> String { root + "/" + name + "/" + relative }
    var base: String { "/" + name }

    /// The file's modification time in whole seconds, as `Last-Modified` says it. (Not FileManager's `Date`: a
    /// fractional time near the end of a second can be formatted as the next one.)
    func modified(_ relative: String = "test") throws -> Date {
        var info = stat()
        try #require(stat(file(relative), &info) == 0)
        return Date(timeIntervalSince1970: TimeInterval(info.st_mtim.tv_sec))
    }
}

/// Files over HTTP/1.1: connections stay open between requests.
final class KeepAliveFiles: SimpleHTTPRequestHandler {
    override var protocolVersion: String { "HTTP/1.1" }
}

/// An HTTP date, as the server writes them.
func httpDate(_ date: Date) -> String {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "GMT")
    formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
    return formatter.string(from: date)
}

/// CPython's `SimpleHTTPServerTestCase`, in every mode, and what we add: ranges, ETags, safety.
@Suite struct SimpleHTTPServerTests {
    func check(_ response: Response, _ status: Int, _ data: [UInt8]? = nil, _ note: String = "") {
        #expect(response.status == status, "\(note): \(response.statusLine)")
        #expect(!response.reason.isEmpty)
        if let data { #expect(response.body == data, "\(note)") }
        #expect(response.version == "HTTP/1.0", "Python's handler answers HTTP/1.0")
        #expect(response.header("Connection") == nil || response.header("Connection") == "close")
    }

    @Test(arguments: Mode.testable)
    func get(mode: Mode) throws {
        let www = try ServedDirectory()
        let root = www.root
        try serving(try makeServer(mode) { SimpleHTTPRequestHandler(directory: root) }) { address in
            let base = www.base
            check(try request(address, "GET", base + "/test"), 200, ServedDirectory.data, "file")
            check(try request(address, "GET", base + "/test/"), 404, nil, "file with a slash")
            check(try request(address, "GET", base + "/"), 200, nil, "listing")
            let redirect = try request(address, "GET", base)
            check(redirect, 301, nil, "directory without its slash")
            #expect(redirect.header("Content-Length") == "0")
            check(try request(address, "GET", base + "/?hi=2"), 200, nil, "listing with a query")
            let query = try request(address, "GET", base + "?hi=1")
            check(query, 301, nil, "redirect keeps the query")
            #expect(query.header("Location") == base + "/?hi=1")
            check(try request(address, "GET", "/ThisDoesNotExist"), 404)
            check(try request(address, "GET", "/ThisDoesNotExist/"), 404)
            // A directory named index.html is no index page.
            try FileManager.default.createDirectory(
                atPath: www.file("spam/index.html"), withIntermediateDirectories: true)
            check(try request(address, "GET", base + "/spam/"), 200)
            _ = FileManager.default.createFile(
                atPath: www.file("index.html"), contents: Data("Dummy index file\r\n".utf8))
            check(try request(address, "GET", base + "/"), 200, Array("Dummy index file\r\n".utf8), "index.html")

            // test_path_without_leading_slash
            let name = www.name
            check(try request(address, "GET", name + "/test"), 200, ServedDirectory.data)
            check(try request(address, "GET", name + "/test/"), 404)
            check(try request(address, "GET", name + "/"), 200)
            let bare = try request(address, "GET", name + "?hi=1")
            check(bare, 301)
            #expect(bare.header("Location") == name + "/?hi=1")

            // test_head, test_invalid_requests, test_last_modified
            let head = try request(address, "HEAD", base + "/test")
            check(head, 200, [])
            #expect(head.header("Content-Length") == "30")
            #expect(head.header("Content-type") == "application/octet-stream")
            for method in ["FOO", "custom", "GETs"] {
                check(try request(address, method, "/"), 501, nil, method)
            }
            #expect(try request(address, "GET", base + "/test").header("Last-Modified") == httpDate(try www.modified()))
        }
    }

    /// test_browser_cache and its kin: If-Modified-Since as Python, If-None-Match as RFC 9110.
    @Test(arguments: [Mode.sequential, .reactor])
    func conditionalRequests(mode: Mode) throws {
        let www = try ServedDirectory()
        let root = www.root
        try serving(try makeServer(mode) { SimpleHTTPRequestHandler(directory: root) }) { address in
            let target = www.base + "/test"
            let modified = try www.modified()
            for (headers, status) in [
                ([("If-Modified-Since", httpDate(modified))], 304),
                ([("If-Modified-Since", httpDate(modified + 3600))], 304),
                ([("If-Modified-Since", httpDate(modified - 365 * 86400))], 200),
                ([("If-Modified-Since", "not a date")], 200),
                // Python ignores If-Modified-Since when If-None-Match is present, and answers 200 to `*`, having
                // no ETags; RFC 9110 13.1.2 says `*` matches any current representation: 304.
                ([("If-Modified-Since", httpDate(modified)), ("If-None-Match", "*")], 304),
                ([("If-None-Match", "\"other\"")], 200),
            ] {
                #expect(try request(address, "GET", target, headers: headers).status == status, "\(headers)")
            }
            let etag = try #require(try request(address, "GET", target).header("ETag"))
            // The tag is the file's stat(2) fields in hex: modification time (s.ns), size, inode.
            var info = stat()
            #expect(stat(www.file("test"), &info) == 0)
            let fields: [UInt64] = [
                UInt64(info.st_mtim.tv_sec), UInt64(info.st_mtim.tv_nsec), UInt64(info.st_size), UInt64(info.st_ino),
            ]
            let hex = fields.map { String($0, radix: 16) }
            #expect(etag == "\"\(hex[0]).\(hex[1])-\(hex[2])-\(hex[3])\"")
            #expect(try request(address, "GET", target, headers: [("If-None-Match", etag)]).status == 304)
            #expect(try request(address, "GET", target, headers: [("If-None-Match", "\"x\", W/\(etag)")]).status == 304)
            #expect(
                try request(
                    address, "GET", target,
                    headers: [("If-None-Match", "\"x\""), ("If-Modified-Since", httpDate(modified))]
                ).status == 200,
                "If-Modified-Since is ignored beside If-None-Match")
        }
    }

    @Test(arguments: [Mode.threading, .reactor])
    func ranges(mode: Mode) throws {
        let www = try ServedDirectory()
        let root = www.root
        let logs = LogCapture()
        try serving(try makeServer(mode) { SimpleHTTPRequestHandler(directory: root) }, logs: logs) { address in
            let target = www.base + "/test"
            let data = ServedDirectory.data
            let whole = try request(address, "GET", target)
            #expect(whole.header("Accept-Ranges") == "bytes")
            let etag = try #require(whole.header("ETag"))
            for (range, status, body, contentRange) in [
                ("bytes=0-4", 206, Array(data[0..<5]), "bytes 0-4/30"),
                ("bytes=-3", 206, Array(data[27...]), "bytes 27-29/30"),
                ("bytes=28-", 206, Array(data[28...]), "bytes 28-29/30"),
                ("bytes=25-1000", 206, Array(data[25...]), "bytes 25-29/30"),
                ("bytes=30-", 416, [], "bytes */30"),
                ("bytes=0-1,3-4", 200, data, nil),  // several ranges: the whole file
                ("bytes=5-2", 200, data, nil),  // malformed: ignored
                ("items=0-1", 200, data, nil),
            ] as [(String, Int, [UInt8], String?)] {
                let response = try request(address, "GET", target, headers: [("Range", range)])
                #expect(response.status == status, "\(range)")
                #expect(response.body == body, "\(range)")
                #expect(response.header("Content-Range") == contentRange, "\(range)")
                #expect(Int(response.header("Content-Length") ?? "") == body.count, "\(range)")
            }
            let current = try request(address, "GET", target, headers: [("Range", "bytes=0-1"), ("If-Range", etag)])
            #expect(current.status == 206 && current.body == Array(data[0..<2]))
            let stale = try request(address, "GET", target, headers: [("Range", "bytes=0-1"), ("If-Range", "\"old\"")])
            #expect(stale.status == 200 && stale.body == data)
            let head = try request(address, "HEAD", target, headers: [("Range", "bytes=0-1")])
            #expect(head.status == 206 && head.header("Content-Length") == "2")
            // The access log's size is what the client received.
            #expect(eventually { logs.messages.filter { $0.contains("\"GET \(target) ") }.count >= 11 })
            let sizes = logs.messages.filter { $0.contains("\"GET \(target) ") }.compactMap {
                $0.split(separator: " ").last
            }
            #expect(sizes.contains("30"))
            #expect(sizes.contains("5") && sizes.contains("3") && sizes.contains("2"))
        }
    }

    /// Listings: sorted case-insensitively, names escaped (test_html_escape_filename), links quoted, links
    /// shown with `@`, and the query shown decoded (test_undecodable_parameter).
    @Test func listings() throws {
        let www = try ServedDirectory()
        let root = www.root
        for name in ["<test&>.txt", "b c", "A.txt", "ä"] {
            _ = FileManager.default.createFile(atPath: www.file(name), contents: Data())
        }
        try FileManager.default.createSymbolicLink(atPath: www.file("link"), withDestinationPath: www.file("test"))
        try serving(try makeServer(.reactor) { SimpleHTTPRequestHandler(directory: root) }) { address in
            let listing = try request(address, "GET", www.base + "/")
            #expect(listing.header("Content-type") == "text/html; charset=utf-8")
            let text = listing.text
            #expect(text.contains(">&lt;test&amp;&gt;.txt<"))
            #expect(text.contains("<a href=\"%3Ctest%26%3E.txt\">"))
            #expect(text.contains("<a href=\"b%20c\">b c</a>"))
            #expect(text.contains("<a href=\"%C3%A4\">ä</a>"))
            #expect(text.contains("<a href=\"link\">link@</a>"))
            let names = text.split(separator: "\n").filter { $0.hasPrefix("<li>") }
            #expect(names.count == 6)
            #expect(names.first?.contains("&lt;test") == true && names[1].contains("A.txt") && names[2].contains("b c"))
            #expect(text.contains("<title>Directory listing for \(www.base)/</title>"))
            let query = try request(address, "GET", www.base + "/?x=%bb")
            #expect(query.text.contains("listing for \(www.base)/?x=\u{FFFD}"))
        }
    }

    /// test_get_dir_redirect_location_domain_injection_bug: a redirect never sends the browser to another host.
    @Test func redirectsStayOnTheHost() throws {
        let www = try ServedDirectory()
        let root = www.root
        try FileManager.default.createDirectory(
            atPath: www.file("existing_directory"), withIntermediateDirectories: true)
        try serving(try makeServer(.sequential) { SimpleHTTPRequestHandler(directory: root) }) { address in
            let url = "/python.org/..%2f..%2f..%2f..%2f..%2f../%0a%0d/../" + www.name + "/existing_directory"
            for target in [url, "/" + url, "//" + url] {
                let response = try request(address, "GET", target)
                #expect(response.status == 301)
                #expect(response.header("Location") == url + "/", "\(target)")
            }
            let absolute = try request(address, "GET", "https://pypi.org/" + url)
            #expect(absolute.status == 301 && absolute.header("Location")?.hasPrefix("https://pypi.org/") == true)
        }
    }

    /// translate_path: the query and fragment dropped, `//` and `..` never leave the directory.
    @Test func translatePath() {
        let handler = SimpleHTTPRequestHandler(directory: "/srv/www")
        for path in [
            "/filename", "/filename?foo=bar", "/filename?a=b&spam=eggs#zot", "//filename", "/a/../filename",
            "/../../filename", "/%2e%2e/filename", "/..%2ffilename", "/./filename",
        ] {
            #expect(handler.translatePath(path) == "/srv/www/filename", "\(path)")
        }
        #expect(handler.translatePath("/dir/") == "/srv/www/dir/")
        #expect(handler.translatePath("/a%00b") == nil)
        #expect(SimpleHTTPRequestHandler(directory: "/").translatePath("/etc/passwd") == "/etc/passwd")
    }

    /// A handler remembers its last translation and type: asking again, or for another path in between, answers
    /// what a fresh handler answers.
    @Test func rememberedTranslationsAndTypes() {
        let handler = SimpleHTTPRequestHandler(directory: "/srv/www")
        let paths = [
            "/a.html", "/a.html", "/b.HTML", "/b.HTML", "/a%2ehtml", "/a.html", "/c", "/c", "/d.gz", "/e.gz", "/a.html",
            "/x/../a.html", "", "", "/a%00b", "/a%00b", "/f.Z",
        ]
        for path in paths {
            let fresh = SimpleHTTPRequestHandler(directory: "/srv/www")
            #expect(handler.translatePath(path) == fresh.translatePath(path), "\(path)")
            #expect(handler.guessType(path) == fresh.guessType(path), "\(path)")
        }
        #expect(handler.guessType("/a.html") == "text/html" && handler.guessType("") == "application/octet-stream")
    }

    /// What Python's handler does not guard: links out of the directory, FIFOs and devices, shrinking files.
    @Test(arguments: [Mode.threading, .reactor])
    func onlyRegularFilesInsideTheDirectory(mode: Mode) throws {
        let www = try ServedDirectory()
        let root = www.root
        let outside = temporaryPath("outside")
        _ = FileManager.default.createFile(atPath: outside, contents: Data("secret".utf8))
        defer { unlink(outside) }
        try FileManager.default.createSymbolicLink(atPath: www.file("escape"), withDestinationPath: outside)
        try FileManager.default.createSymbolicLink(atPath: www.file("inside"), withDestinationPath: www.file("test"))
        try FileManager.default.createSymbolicLink(atPath: www.file("up"), withDestinationPath: "/etc")
        #expect(mkfifo(www.file("fifo"), 0o644) == 0)
        // inotify reports every open of the FIFO: none may happen.
        let watch = inotify_init1(Int32(IN_NONBLOCK))
        #expect(watch >= 0)
        defer { close(watch) }
        #expect(inotify_add_watch(watch, www.file("fifo"), UInt32(IN_OPEN)) >= 0)
        try serving(try makeServer(mode) { SimpleHTTPRequestHandler(directory: root) }) { (address) throws in
            #expect(try request(address, "GET", www.base + "/escape").status == 404)
            #expect(try request(address, "GET", www.base + "/up/passwd").status == 404)
            #expect(try request(address, "GET", www.base + "/inside").body == ServedDirectory.data)
            #expect(try request(address, "GET", www.base + "/fifo").status == 404)
            #expect(try request(address, "GET", www.base + "/%2e%2e/%2e%2e/etc/passwd").status == 404)
            #expect(try request(address, "GET", "/dev/null").status == 404)
        }
        var event = [UInt8](repeating: 0, count: 4096)
        #expect(read(watch, &event, event.count) < 0 && errno == EAGAIN, "the FIFO was opened")
    }

    /// Links that stay inside are followed however they are written: relative, absolute, or out and back in.
    @Test(arguments: [Mode.threading, .reactor])
    func linksInsideTheDirectory(mode: Mode) throws {
        let www = try ServedDirectory()
        try FileManager.default.createSymbolicLink(atPath: www.file("relative"), withDestinationPath: "test")
        try FileManager.default.createSymbolicLink(
            atPath: www.file("back"), withDestinationPath: "../" + www.name + "/test")
        try FileManager.default.createSymbolicLink(atPath: www.file("dir"), withDestinationPath: ".")
        let root = www.root
        try serving(try makeServer(mode) { SimpleHTTPRequestHandler(directory: root) }) { (address) throws in
            for link in ["relative", "back", "dir/test", "dir/dir/relative"] {
                #expect(try request(address, "GET", www.base + "/" + link).body == ServedDirectory.data, "\(link)")
            }
        }
    }

    /// A file replaced on disk (written next to it and renamed over it, as editors and deployments do) is
    /// served fresh on the very next request, on the same connection, with a new ETag, though its size is the
    /// same.
    @Test(arguments: Mode.testable)
    func aReplacedFileIsServedFresh(mode: Mode) throws {
        let www = try ServedDirectory()
        let root = www.root
        try serving(try makeServer(mode) { KeepAliveFiles(directory: root) }) { (address) throws in
            let client = try Client(address)
            try client.send("GET \(www.base)/test HTTP/1.1\r\nHost: x\r\n\r\n")
            let first = try #require(try client.response())
            #expect(first.body == ServedDirectory.data)
            let replacement = Array(ServedDirectory.data.reversed())
            _ = FileManager.default.createFile(atPath: www.file("new"), contents: Data(replacement))
            #expect(rename(www.file("new"), www.file("test")) == 0)
            let etag = try #require(first.header("ETag"))
            try client.send("GET \(www.base)/test HTTP/1.1\r\nHost: x\r\nIf-None-Match: \(etag)\r\n\r\n")
            let second = try #require(try client.response())
            #expect(second.status == 200 && second.body == replacement)
            #expect(second.header("ETag") != etag)
            // Written in place (the same inode), longer: the next request on the connection sees it all.
            let longer = replacement + Array(" and Ekke Ekke".utf8)
            let inode = try #require(try Directory(path: www.root).status(of: www.name + "/test")).inode
            let file = open(www.file("test"), O_WRONLY | O_TRUNC)
            #expect(file >= 0 && write(file, longer, longer.count) == longer.count && close(file) == 0)
            #expect(try Directory(path: www.root).status(of: www.name + "/test")?.inode == inode)
            try client.send("GET \(www.base)/test HTTP/1.1\r\nHost: x\r\n\r\n")
            let third = try #require(try client.response())
            #expect(third.status == 200 && third.body == longer)
        }
    }

    /// Files served are kept open for their next request, at most `openFilesPerDirectory` of them, and let go
    /// when the server closes.
    @Test(arguments: [Mode.sequential, .threading, .reactor])
    func keptFilesAreBoundedAndClosedWithTheServer(mode: Mode) throws {
        let www = try ServedDirectory()
        for name in ["a", "b", "c"] {
            _ = FileManager.default.createFile(atPath: www.file(name), contents: Data(name.utf8))
        }
        let root = www.root
        let server = try makeServer(mode) { SimpleHTTPRequestHandler(directory: root) }
        server.http.openFilesPerDirectory = 2
        let cache = server.http.openFileCache(for: root)
        let before = openDescriptorCount()
        try serving(server) { (address) throws in
            for name in ["a", "b", "c", "a", "b"] {
                #expect(try request(address, "GET", www.base + "/" + name).body == Array(name.utf8))
            }
            #expect(cache.count == 2 && cache.capacity == 2)
            #expect(openDescriptorCount() >= before + 2)
        }
        #expect(cache.count == 0, "let go at serverClose")
        #expect(openDescriptorCount() <= before, "the kept files are closed (and the listening socket)")
    }
}
