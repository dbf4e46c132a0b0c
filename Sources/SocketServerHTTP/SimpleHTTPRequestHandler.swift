import Glibc
import Protocols
import Reactor
import SocketServer

/// A response body a handler has ready: bytes, or a part of an open file.
public enum ResponseBody {
    case bytes([UInt8])
    case file(FileRegion)
}

/// Serves the files under a directory: Python's `http.server.SimpleHTTPRequestHandler`, streaming.
///
/// GET and HEAD; a directory is answered with its `index.html` (or `index.htm`) or a sorted, escaped
/// listing, and a directory named without its trailing slash with a 301 to it. Files are never read into
/// memory: each is opened once, checked with `fstat`, and sent with `sendfile(2)` (``HTTPResponseWriter/sendFile(_:)``).
///
/// Safety: a path is decoded and normalized as Python does (no `..` climbs out of ``directory``), and
/// beyond Python, a symbolic link leading outside ``directory`` is answered 404, and only regular files
/// are opened: a FIFO or a device file in the directory is never opened for reading. Paths are resolved
/// beneath the directory, held open (Reactor's `Directory`): a file opened costs a `stat`, an `openat2` and an
/// `fstat`, with no `realpath` walk of the directories above it. The server keeps recently served files open
/// (``HTTPService/openFilesPerDirectory``, Reactor's `OpenFileCache`), so that a file served again costs only the
/// `stat`: it is reused only while its path still names the same unchanged file (same inode and change time),
/// so what is served is what a new open would serve: a file written, replaced or renamed is opened again.
///
/// Caching: `Last-Modified` with `If-Modified-Since` (304, as Python); beyond Python, an `ETag`
/// (the modification time, size and inode in hex) with `If-None-Match`, and `Accept-Ranges: bytes` with one `Range`
/// (206, or 416 when it cannot be satisfied; several ranges get the whole file), honouring `If-Range`.
open class SimpleHTTPRequestHandler: BaseHTTPRequestHandler {
    open override var serverVersion: String { "SimpleHTTP/0.6" }

    /// The directory served, as given.
    public let directory: String
    /// The files a directory is answered with, first found first.
    open var indexPages: [String] { ["index.html", "index.htm"] }

    /// Serves `directory` (the current directory when `nil`).
    public init(directory: String? = nil) {
        let directory = directory ?? currentDirectory()
        self.directory = directory
        super.init()
    }

    /// Serves the current directory.
    public required convenience init() {
        self.init(directory: nil)
    }

    open override func doGET() throws {
        if let body = try sendHead() { try copyBody(body) }
    }

    open override func doHEAD() throws {
        _ = try sendHead()
    }

    /// Writes a body returned by ``sendHead()``: Python's `copyfile`.
    open func copyBody(_ body: ResponseBody) throws {
        switch body {
        case .bytes(let bytes): try wfile.write(bytes)
        case .file(let region): try wfile.sendFile(region)
        }
    }

    /// Sends the response's status and headers, and returns its body for GET to send (`nil` when there is
    /// none: an error, a redirect, a 304).
    open func sendHead() throws -> ResponseBody? {
        guard let filePath = translatePath(path), let root = rootDirectory,
            var relative = relativePath(filePath), var info = try? root.status(of: relative)
        else {
            try sendError(404, "File not found")
            return nil
        }
        var servedPath = filePath
        if info.kind == .directory {
            let (bare, rest) = splitTarget(self.path)
            guard bare.hasSuffix("/") else {
                sendResponse(301)
                sendHeader("Location", bare + "/" + rest)
                sendHeader("Content-Length", "0")
                try endHeaders()
                return nil
            }
            let base = relative.hasSuffix("/") || relative.isEmpty ? relative : relative + "/"
            guard
                let (page, pageInfo) = indexPages.lazy.compactMap({ page in
                    (try? root.status(of: base + page)).flatMap { $0.kind == .regular ? (page, $0) : nil }
                }).first
            else {
                return try listDirectory(filePath)
            }
            relative = base + page
            servedPath = (filePath.hasSuffix("/") ? filePath : filePath + "/") + page
            info = pageInfo
        }
        // Only a regular file (the look above followed every link, and opened nothing) beneath the root is
        // ever opened, and what was opened is checked again: the name may have changed meanwhile.
        guard info.kind == .regular, relative.utf8.last != UInt8(ascii: "/"),
            let (file, opened) = openKept(relative, in: root, current: info)
        else {
            try sendError(404, "File not found")
            return nil
        }
        let size = opened.size
        let modified = time_t(opened.modifiedSeconds)
        let etag = entityTag(opened)
        let lastModified = lastModifiedString(modified)

        if notModified(etag: etag, modified: modified) {
            sendResponse(304)
            sendHeader("ETag", etag)
            sendHeader("Last-Modified", lastModified)
            try endHeaders()
            return nil
        }
        var range = 0..<size
        var partial = false
        if let header = headers["Range"], rangeApplies(etag: etag, lastModified: lastModified) {
            switch Self.parseRange(header, size: size) {
            case .whole:
                break
            case .unsatisfiable:
                sendResponse(416)
                sendHeader("Content-Range", "bytes */\(size)")
                sendHeader("Content-Length", "0")
                try endHeaders()
                return nil
            case .part(let part):
                (range, partial) = (part, true)
            }
        }
        sendResponse(partial ? 206 : 200)
        sendHeader("Content-type", guessType(servedPath))
        sendHeader("Content-Length", range.count)
        if partial { sendHeader("Content-Range", "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(size)") }
        sendHeader("Last-Modified", lastModified)
        sendHeader("ETag", etag)
        sendHeader("Accept-Ranges", "bytes")
        try endHeaders()
        return .file(FileRegion(file: file, offset: range.lowerBound, count: range.count))
    }

    /// The last file's `ETag`, made again only for another file or a changed one.
    private func entityTag(_ file: FileStatus) -> String {
        if let (last, tag) = lastEntityTag, last.modifiedSeconds == file.modifiedSeconds,
            last.modifiedNanoseconds == file.modifiedNanoseconds, last.size == file.size, last.inode == file.inode
        {
            return tag
        }
        let tag = Self.entityTag(file)
        lastEntityTag = (file, tag)
        return tag
    }
    @exclusivity(unchecked) private var lastEntityTag: (FileStatus, String)?

    /// A file's `ETag`: its modification time (seconds and nanoseconds), size and inode in hex, so that a
    /// file replaced on disk (a new inode) or rewritten (a new time) gets a new one.
    static func entityTag(_ file: FileStatus) -> String {
        // Written straight into the string's storage: one allocation, for at most 2 + 4 * 16 + 3 = 69 bytes
        // (quotes, four numbers of at most 16 hex digits, three separators).
        String(unsafeUninitializedCapacity: 69) { bytes in
            var count = 0
            func put(_ byte: UInt8) {
                bytes[count] = byte
                count += 1
            }
            func hex(_ value: UInt64) {
                var shift = max(0, (63 - value.leadingZeroBitCount) / 4 * 4)
                while shift >= 0 {
                    let digit = UInt8(truncatingIfNeeded: (value >> UInt64(shift)) & 15)
                    put(digit < 10 ? UInt8(ascii: "0") + digit : UInt8(ascii: "a") - 10 + digit)
                    shift -= 4
                }
            }
            put(UInt8(ascii: "\""))
            hex(UInt64(truncatingIfNeeded: file.modifiedSeconds))
            put(UInt8(ascii: "."))
            hex(UInt64(truncatingIfNeeded: file.modifiedNanoseconds))
            put(UInt8(ascii: "-"))
            hex(UInt64(truncatingIfNeeded: file.size))
            put(UInt8(ascii: "-"))
            hex(file.inode)
            put(UInt8(ascii: "\""))
            return count
        }
    }

    /// ``directory``, opened on the first request for a file: paths are resolved beneath it (Reactor's `Directory`).
    /// `nil` if it cannot be opened (every request is then answered 404).
    private lazy var rootDirectory: Directory? = try? Directory(path: directory)
    /// The files of ``directory`` kept open by the server (``HTTPService/openFilesPerDirectory``).
    private lazy var openFiles =
        (server as? any HTTPServing)?.http.openFileCache(for: directory) ?? OpenFileCache(capacity: 0)
    /// The last file this connection served, when the server keeps files: asked for again (a client polling
    /// it, a load generator), it is used without the shared table, whose lock the server's other threads
    /// take. Checked as the table's files are; it keeps its file open until the connection ends or serves
    /// another.
    @exclusivity(unchecked) private var lastFile: (path: String, file: OpenFile, status: FileStatus)?

    /// The regular file `relative` names (`current` is its status, just looked up), open: the last one served
    /// if it is the same unchanged file, else the server's kept one or one opened now.
    private func openKept(_ relative: String, in root: Directory, current: FileStatus) -> (OpenFile, FileStatus)? {
        if let lastFile, lastFile.path == relative, lastFile.status.isSameUnchangedFile(as: current) {
            return (lastFile.file, current)
        }
        guard let (file, opened) = try? openFiles.open(relative, in: root, current: current) else { return nil }
        lastFile = openFiles.capacity > 0 ? (relative, file, opened) : nil
        return (file, opened)
    }

    /// A path ``translatePath(_:)`` made, relative to ``directory``; `nil` for one outside it (an override
    /// that maps elsewhere: nothing outside the directory is served).
    private func relativePath(_ filePath: String) -> String? {
        // Compared as bytes, as the file system compares names (and as translatePath joined them).
        var (filePath, directory) = (filePath, directory)
        return filePath.withUTF8 { path in
            directory.withUTF8 { root -> String? in
                let slash = UInt8(ascii: "/")
                guard path.count >= root.count,
                    root.isEmpty || memcmp(path.baseAddress!, root.baseAddress!, root.count) == 0,
                    path.count == root.count || path[root.count] == slash || root.last == slash
                else { return nil }
                var start = root.count
                while start < path.count && path[start] == slash { start += 1 }
                return String(decoding: UnsafeBufferPointer(rebasing: path[start...]), as: UTF8.self)
            }
        }
    }

    /// The last file's modification time as an HTTP date: formatted again only when it changes.
    private func lastModifiedString(_ modified: time_t) -> String {
        if lastModifiedCache.time != modified || lastModifiedCache.text.isEmpty {
            lastModifiedCache = (modified, dateTimeString(modified))
        }
        return lastModifiedCache.text
    }
    @exclusivity(unchecked) private var lastModifiedCache: (time: time_t, text: String) = (0, "")

    /// Whether the client's copy is current: `If-None-Match` against the ETag, else (as Python)
    /// `If-Modified-Since` against the modification time.
    private func notModified(etag: String, modified: time_t) -> Bool {
        if headers["If-None-Match"] != nil {
            let tags = headers.values("If-None-Match").flatMap { $0.split(separator: ",") }.map { $0.trimmed }
            return tags.contains("*") || tags.contains { $0 == etag || $0 == "W/" + etag }
        }
        guard let since = headers["If-Modified-Since"], let time = HTTPDate.parse(since) else { return false }
        return modified <= time
    }

    /// Whether a `Range` applies: no `If-Range`, or one naming the current ETag or modification date.
    private func rangeApplies(etag: String, lastModified: String) -> Bool {
        guard command == "GET" || command == "HEAD" else { return false }
        guard let condition = headers["If-Range"]?.trimmed else { return true }
        return condition == etag || condition == lastModified
    }

    /// What a `Range` header asks of a file of `size` bytes.
    enum RangeRequest: Equatable {
        /// Not a single byte range this handler serves: send the whole file.
        case whole
        /// A range past the end: 416.
        case unsatisfiable
        case part(Range<Int>)
    }

    /// Parses `bytes=first-last`, `bytes=first-` or `bytes=-suffix` (RFC 9110 14.1.2); several ranges,
    /// other units or malformed values ask for the whole file.
    static func parseRange(_ header: String, size: Int) -> RangeRequest {
        let text = header.trimmed
        guard text.lowercased().hasPrefix("bytes="), !text.contains(",") else { return .whole }
        let spec = text.dropFirst(6).trimmed
        guard let dash = spec.firstIndex(of: "-") else { return .whole }
        let first = spec[..<dash].trimmed
        let last = spec[spec.index(after: dash)...].trimmed
        func number(_ digits: String) -> Int? {
            guard !digits.isEmpty, digits.count <= 18, digits.utf8.allSatisfy({ (48...57).contains($0) }) else {
                return nil
            }
            return Int(digits)
        }
        if first.isEmpty {
            guard let suffix = number(last) else { return .whole }
            guard suffix > 0, size > 0 else { return .unsatisfiable }
            return .part(max(0, size - suffix)..<size)
        }
        guard let start = number(first) else { return .whole }
        var end = size - 1
        if !last.isEmpty {
            guard let value = number(last), value >= start else { return .whole }
            end = min(value, size - 1)
        }
        guard start < size else { return .unsatisfiable }
        return .part(start..<(end + 1))
    }

    /// Answers with a listing of the directory at `path` (sorted case-insensitively, names escaped, links
    /// quoted), Python's page. Returns its body.
    open func listDirectory(_ path: String) throws -> ResponseBody? {
        guard let names = directoryEntries(path) else {
            try sendError(404, "No permission to list directory")
            return nil
        }
        let displayPath = htmlEscape(
            percentDecoded(self.path).map { String(decoding: $0, as: UTF8.self) } ?? self.path, quote: false)
        let title = "Directory listing for \(displayPath)"
        var lines = [
            "<!DOCTYPE HTML>", "<html lang=\"en\">", "<head>", "<meta charset=\"utf-8\">",
            "<title>\(title)</title>\n</head>", "<body>\n<h1>\(title)</h1>", "<hr>\n<ul>",
        ]
        for name in names.sorted(by: { $0.lowercased() < $1.lowercased() }) {
            let full = path + name
            var displayName = name
            var linkName = name
            var info = stat()
            if stat(full, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR {
                displayName += "/"
                linkName += "/"
            }
            if lstat(full, &info) == 0 && info.st_mode & S_IFMT == S_IFLNK {
                displayName = name + "@"
            }
            lines.append(
                "<li><a href=\"\(percentEncoded(linkName))\">\(htmlEscape(displayName, quote: false))</a></li>")
        }
        lines.append("</ul>\n<hr>\n</body>\n</html>\n")
        let body = Array(lines.joined(separator: "\n").utf8)
        sendResponse(200)
        sendHeader("Content-type", "text/html; charset=utf-8")
        sendHeader("Content-Length", body.count)
        try endHeaders()
        return .bytes(body)
    }

    /// The file system path for a request path, as Python's `translate_path`: the query and fragment
    /// dropped, percent-decoded, normalized (`..` never climbs above ``directory``), words that are `.`,
    /// `..` or contain a separator dropped; a trailing `/` kept. `nil` for a path with a NUL byte or
    /// that is not UTF-8 once decoded.
    open func translatePath(_ path: String) -> String? {
        // A keep-alive client often asks for the same path again.
        if let last = lastTranslation, last.path == path { return last.result }
        let result = translated(path)
        lastTranslation = (path, result)
        return result
    }

    /// The last path ``translatePath(_:)`` translated, and what it made.
    @exclusivity(unchecked) private var lastTranslation: (path: String, result: String?)?

    private func translated(_ path: String) -> String? {
        // The common case needs none of the work below: printable ASCII with nothing to decode, drop or
        // normalize (no `%`, `?`, `#`, empty word or word starting with `.`).
        var previous: UInt8 = 0
        var plain = path.utf8.first == UInt8(ascii: "/")
        for byte in path.utf8 where plain {
            switch byte {
            case 0x21...0x7E where byte != UInt8(ascii: "%") && byte != UInt8(ascii: "?") && byte != UInt8(ascii: "#"):
                if previous == UInt8(ascii: "/") && (byte == UInt8(ascii: "/") || byte == UInt8(ascii: ".")) {
                    plain = false
                }
                previous = byte
            default:
                plain = false
            }
        }
        if plain { return directory.utf8.last == UInt8(ascii: "/") ? directory + path.dropFirst() : directory + path }
        let bare = String(splitTarget(path).path.prefix { $0 != "#" })
        let trailingSlash = endsWithSlashBeforeWhitespace(bare)
        guard let bytes = percentDecoded(bare), !bytes.contains(0),
            let decoded = String(validating: bytes, as: UTF8.self)
        else { return nil }
        var words: [Substring] = []
        for word in decoded.split(separator: "/") {
            if word == "." { continue }
            if word == ".." {
                if !words.isEmpty { words.removeLast() }
                continue
            }
            words.append(word)
        }
        var result = directory
        for word in words { result += (result.hasSuffix("/") ? "" : "/") + word }
        if trailingSlash && !result.hasSuffix("/") { result += "/" }
        return result
    }

    /// The content type for a path: ``extensionsMap`` by extension (as written, then lowercased), then
    /// `/etc/mime.types`, then `application/octet-stream`.
    open func guessType(_ path: String) -> String {
        if path == lastType.path { return lastType.type }
        // Over the UTF-8 bytes: `/` and `.` are ASCII, and a byte search is much cheaper than a Character one.
        let utf8 = path.utf8
        let name = utf8.lastIndex(of: UInt8(ascii: "/")).map { utf8.index(after: $0) } ?? utf8.startIndex
        guard let dot = utf8[name...].lastIndex(of: UInt8(ascii: ".")), dot != name else {
            return "application/octet-stream"
        }
        let ext = Substring(utf8[dot...])
        let type = ext == lastType.ext ? lastType.type : typeFor(String(ext))
        lastType = (path, String(ext), type)
        return type
    }

    /// The last path looked up, its extension and its type: a client often asks for the same file again, and a
    /// page's files often share an extension.
    @exclusivity(unchecked) private var lastType: (path: String, ext: String, type: String) =
        ("", "", "application/octet-stream")

    private func typeFor(_ ext: String) -> String {
        extensions[ext] ?? extensions[ext.lowercased()]
            ?? MIMETypes.shared[String(ext.dropFirst()).lowercased()] ?? "application/octet-stream"
    }

    /// ``extensionsMap`` of this handler's class, built once per handler (the class attribute is a computed
    /// dictionary: building it for every request cost as much as the lookup).
    private lazy var extensions = Self.extensionsMap

    /// Python's `extensions_map`: checked before the system's types.
    open class var extensionsMap: [String: String] {
        [
            ".gz": "application/gzip", ".Z": "application/octet-stream", ".bz2": "application/x-bzip2",
            ".xz": "application/x-xz",
        ]
    }
}

/// The path part of a request target and the rest (`?query`, kept as sent).
func splitTarget(_ target: String) -> (path: String, rest: String) {
    guard let question = target.firstIndex(of: "?") else { return (target, "") }
    return (String(target[..<question]), String(target[question...]))
}

/// `%XX` escapes decoded to bytes; an invalid escape is kept as written, as Python's `unquote`.
func percentDecoded(_ text: String) -> [UInt8]? {
    let bytes = Array(text.utf8)
    var result: [UInt8] = []
    result.reserveCapacity(bytes.count)
    var index = 0
    while index < bytes.count {
        if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count, let high = hexValue(bytes[index + 1]),
            let low = hexValue(bytes[index + 2])
        {
            result.append(high << 4 | low)
            index += 3
        } else {
            result.append(bytes[index])
            index += 1
        }
    }
    return result
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
    default: return nil
    }
}

/// Python's `urllib.parse.quote` with `/` safe: every byte but letters, digits, `_.-~` and `/` as `%XX`.
func percentEncoded(_ text: String) -> String {
    var result = ""
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"),
            UInt8(ascii: "~"), UInt8(ascii: "/"):
            result.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            let hex = String(byte, radix: 16, uppercase: true)
            result += "%" + (hex.count < 2 ? "0" + hex : hex)
        }
    }
    return result
}

/// The names in a directory (not `.` and `..`), or `nil` if it cannot be read.
func directoryEntries(_ path: String) -> [String]? {
    guard let directory = opendir(path) else { return nil }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

func currentDirectory() -> String {
    guard let path = getcwd(nil, 0) else { return "." }
    defer { free(path) }
    return String(cString: path)
}

/// Python's `path.rstrip().endswith('/')`: over the bytes when what ends the path is ASCII (always, in
/// practice), through Unicode's whitespace otherwise.
func endsWithSlashBeforeWhitespace(_ path: String) -> Bool {
    for byte in path.utf8.reversed() {
        switch byte {
        case 0x09...0x0D, 0x20: continue
        case UInt8(ascii: "/"): return true
        case 0x80...: return path.trimmingTrailingWhitespace.hasSuffix("/")
        default: return false
        }
    }
    return false
}

extension StringProtocol {
    var trimmed: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }

    var trimmingTrailingWhitespace: String {
        String(reversed().drop { $0.isWhitespace }.reversed())
    }
}

/// Content types by extension: a built-in table of the common ones, and the system's `/etc/mime.types`
/// when present (read once).
enum MIMETypes {
    static let shared: [String: String] = {
        var types = builtIn
        guard let file = fopen("/etc/mime.types", "r") else { return types }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line {
            let text = String(cString: line)
            if text.hasPrefix("#") { continue }
            let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
            guard words.count >= 2 else { continue }
            for ext in words.dropFirst() where types[String(ext)] == nil { types[String(ext)] = String(words[0]) }
        }
        return types
    }()

    static let builtIn: [String: String] = [
        "html": "text/html", "htm": "text/html", "txt": "text/plain", "css": "text/css", "js": "text/javascript",
        "mjs": "text/javascript", "json": "application/json", "xml": "text/xml", "csv": "text/csv",
        "md": "text/markdown", "svg": "image/svg+xml", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
        "gif": "image/gif", "webp": "image/webp", "ico": "image/vnd.microsoft.icon", "pdf": "application/pdf",
        "wasm": "application/wasm", "zip": "application/zip", "tar": "application/x-tar", "mp4": "video/mp4",
        "webm": "video/webm", "mp3": "audio/mpeg", "wav": "audio/x-wav", "woff": "font/woff", "woff2": "font/woff2",
    ]
}
