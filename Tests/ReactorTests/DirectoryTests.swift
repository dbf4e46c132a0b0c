import Foundation
import Glibc
import Reactor
import TestSupport
import Testing

/// Paths resolved beneath a directory held open: what may be opened, what may not, and what is only looked at.
@Suite struct DirectoryTests {
    /// A directory `root/www` with a file, links of every kind and a FIFO, next to a secret outside it.
    final class Tree {
        let top = temporaryPath("tree")
        var www: String { top + "/www" }
        init() throws {
            let files = FileManager.default
            try files.createDirectory(atPath: www + "/sub", withIntermediateDirectories: true)
            _ = files.createFile(atPath: www + "/file", contents: Data("inside".utf8))
            _ = files.createFile(atPath: top + "/secret", contents: Data("secret".utf8))
            try files.createSymbolicLink(atPath: www + "/relative", withDestinationPath: "file")
            try files.createSymbolicLink(atPath: www + "/sub/up", withDestinationPath: "../file")
            try files.createSymbolicLink(atPath: www + "/absolute", withDestinationPath: www + "/file")
            try files.createSymbolicLink(atPath: www + "/back", withDestinationPath: "../www/file")
            try files.createSymbolicLink(atPath: www + "/out", withDestinationPath: "../secret")
            try files.createSymbolicLink(atPath: www + "/etc", withDestinationPath: "/etc")
            try files.createSymbolicLink(atPath: www + "/proc", withDestinationPath: "/proc/self/root/etc")
            #expect(mkfifo(www + "/fifo", 0o644) == 0)
        }
        deinit { try? FileManager.default.removeItem(atPath: top) }
    }

    private func contents(_ file: OpenFile) throws -> String {
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = pread(file.fileDescriptor, &buffer, buffer.count, 0)
        try #require(count >= 0)
        return String(decoding: buffer[..<count], as: UTF8.self)
    }

    @Test func linksAreFollowedOnlyWhileTheyStayInside() throws {
        let tree = try Tree()
        let directory = try Directory(path: tree.www)
        for inside in ["file", "/file", "//file", "relative", "sub/up", "absolute", "back", "sub/../file"] {
            let file = try #require(try directory.openFile(inside), "\(inside)")
            #expect(try contents(file) == "inside", "\(inside)")
            #expect(try file.status().kind == .regular)
        }
        for outside in ["out", "etc/passwd", "proc/passwd", "../secret", "sub/../../secret", "missing", "file/x"] {
            #expect(try directory.openFile(outside) == nil, "\(outside)")
        }
    }

    @Test func lookingNeverOpens() throws {
        let tree = try Tree()
        let directory = try Directory(path: tree.www)
        let watch = inotify_init1(Int32(IN_NONBLOCK))
        #expect(watch >= 0)
        defer { close(watch) }
        #expect(inotify_add_watch(watch, tree.www + "/fifo", UInt32(IN_OPEN)) >= 0)
        #expect(try directory.status(of: "fifo")?.kind == .other)
        #expect(try directory.status(of: "sub")?.kind == .directory)
        #expect(try directory.status(of: "")?.kind == .directory)
        #expect(try directory.status(of: "relative")?.size == 6)
        #expect(try directory.status(of: "missing") == nil)
        var event = [UInt8](repeating: 0, count: 4096)
        #expect(read(watch, &event, event.count) < 0 && errno == EAGAIN, "the FIFO was opened")
    }

    @Test func aReplacedFileHasANewIdentity() throws {
        let tree = try Tree()
        let directory = try Directory(path: tree.www)
        let before = try #require(try directory.status(of: "file"))
        _ = FileManager.default.createFile(atPath: tree.www + "/new", contents: Data("INSIDE".utf8))
        #expect(rename(tree.www + "/new", tree.www + "/file") == 0)
        let after = try #require(try directory.status(of: "file"))
        #expect(after.inode != before.inode && after.size == before.size)
        #expect(try contents(try #require(try directory.openFile("file"))) == "INSIDE")
    }

    @Test func descriptorsAreReleased() throws {
        let tree = try Tree()
        let before = openDescriptorCount()
        for _ in 0..<100 {
            let directory = try Directory(path: tree.www)
            _ = try directory.openFile("file")
            _ = try directory.openFile("absolute")  // through the realpath fallback
            _ = try directory.openFile("out")
        }
        #expect(openDescriptorCount() <= before)
        #expect(throws: IOError.self) { try Directory(path: tree.www + "/file") }
        #expect(throws: IOError.self) { try Directory(path: tree.top + "/missing") }
    }

    /// A kept file is what a new open would give, whatever happened to its path.
    @Test func keptFilesAreNeverStale() throws {
        let tree = try Tree()
        let directory = try Directory(path: tree.www)
        let cache = OpenFileCache(capacity: 8)
        func open(_ path: String) throws -> (file: OpenFile, status: FileStatus)? {
            guard let current = try directory.status(of: path) else { return nil }
            return try cache.open(path, in: directory, current: current)
        }
        let first = try #require(try open("file"))
        #expect(try #require(try open("file")).file === first.file, "the same unchanged file is kept")
        #expect(try contents(first.file) == "inside" && cache.count == 1)

        // Written in place: the same file, its new contents and size.
        let writer = Glibc.open(tree.www + "/file", O_WRONLY | O_TRUNC)
        #expect(writer >= 0 && write(writer, "inside, longer", 14) == 14 && close(writer) == 0)
        let written = try #require(try open("file"))
        #expect(try contents(written.file) == "inside, longer" && written.status.size == 14)

        // Replaced (renamed over): opened again.
        _ = FileManager.default.createFile(atPath: tree.www + "/new", contents: Data("INSIDE".utf8))
        #expect(rename(tree.www + "/new", tree.www + "/file") == 0)
        let replaced = try #require(try open("file"))
        #expect(try replaced.file !== first.file && contents(replaced.file) == "INSIDE")

        // New permissions: its change time moves on, so it is opened again. (The change time comes from a
        // clock that may tick coarsely: the mode is changed until it has moved, as a later request would see.)
        let kept = replaced.file
        var mode: mode_t = 0o600
        let deadline = ContinuousClock.now + .seconds(2)
        repeat {
            #expect(chmod(tree.www + "/file", mode) == 0)
            mode = mode == 0o600 ? 0o644 : 0o600
            try #require(ContinuousClock.now < deadline, "the change time never moved")
        } while try #require(try directory.status(of: "file")).isSameUnchangedFile(as: replaced.status)
        #expect(try #require(try open("file")).file !== kept)

        // A link out of the directory, a FIFO, nothing: not served, and the FIFO is not opened.
        let watch = inotify_init1(Int32(IN_NONBLOCK))
        defer { close(watch) }
        #expect(unlink(tree.www + "/file") == 0 && mkfifo(tree.www + "/file", 0o644) == 0)
        #expect(inotify_add_watch(watch, tree.www + "/file", UInt32(IN_OPEN)) >= 0)
        #expect(try open("file") == nil)
        var event = [UInt8](repeating: 0, count: 4096)
        #expect(read(watch, &event, event.count) < 0 && errno == EAGAIN, "the FIFO was opened")
        #expect(unlink(tree.www + "/file") == 0)
        #expect(try open("file") == nil)
        try FileManager.default.createSymbolicLink(atPath: tree.www + "/file", withDestinationPath: "../secret")
        #expect(try directory.status(of: "file") != nil, "the link itself leads somewhere")
        #expect(try open("file") == nil)
    }

    /// At most `capacity` files are kept, and what is let go closes.
    @Test func keptFilesAreBoundedAndClosed() throws {
        let tree = try Tree()
        let directory = try Directory(path: tree.www)
        for name in ["a", "b", "c", "d"] {
            _ = FileManager.default.createFile(atPath: tree.www + "/" + name, contents: Data(name.utf8))
        }
        let before = openDescriptorCount()
        let cache = OpenFileCache(capacity: 2)
        for name in ["a", "b", "c", "d", "a"] {
            let current = try #require(try directory.status(of: name))
            let opened = try #require(try cache.open(name, in: directory, current: current))
            #expect(try contents(opened.file) == name)
            #expect(cache.count <= 2)
        }
        #expect(openDescriptorCount() == before + 2, "two kept, the rest closed")
        cache.removeAll()
        #expect(cache.count == 0 && openDescriptorCount() == before)
        let none = OpenFileCache(capacity: 0)
        let current = try #require(try directory.status(of: "a"))
        #expect(try none.open("a", in: directory, current: current) != nil && none.count == 0)
        #expect(openDescriptorCount() == before)
    }
}
