import Glibc
import Synchronization

/// A directory held open so that paths are resolved beneath it, for serving files from it: no `..`, absolute
/// path or symbolic link may lead out of it, and no path above it is walked again for each file.
///
/// ``openFile(_:)`` opens with `openat2(RESOLVE_BENEATH)` from the directory's descriptor (Linux 5.6): the
/// kernel refuses any step that leaves the directory, in the same walk that finds the file, so no
/// `realpath` or `readlink` is needed and no link can be swapped between a check and the open. A link
/// the kernel refuses (an absolute link, or one that climbs out and back in) is resolved once with
/// `realpath` and followed if it lands inside the directory; so is every path where `openat2` is missing
/// (an older kernel, or a seccomp filter that refuses the call).
///
/// Thread-safe: its methods only read its state.
public final class Directory: Sendable {
    /// The directory, as given.
    public let path: String
    /// The directory's descriptor (`O_PATH`): owned, closed when the directory is released.
    public let fileDescriptor: Int32

    /// Whether `openat2` works here; cleared the first time the kernel says it does not.
    private static let beneathIsAvailable = Atomic<Bool>(true)

    /// Opens the directory at `path`.
    /// - Throws: ``IOError`` if it does not exist or is not a directory (`ENOENT`, `ENOTDIR`, `EACCES`).
    public init(path: String) throws(IOError) {
        fileDescriptor = try Posix.openDirectory(path)
        self.path = path
    }

    deinit {
        Posix.close(fileDescriptor)
    }

    /// What `relativePath` names beneath the directory, links followed (`fstatat`); `nil` when nothing is
    /// there. Looking never opens what it finds (a FIFO, a device): only ``openFile(_:)`` does. The
    /// answer says what the path is now; ``openFile(_:)`` checks again where it leads.
    /// - Throws: ``IOError`` for a failure other than a missing name (`EACCES`).
    public func status(of relativePath: String) throws(IOError) -> FileStatus? {
        try Posix.status(Self.relative(relativePath), in: fileDescriptor).map(FileStatus.init)
    }

    /// Opens `relativePath` for reading, only if it stays beneath the directory (see ``Directory``):
    /// non-blocking and never as a controlling terminal. `nil` when nothing is there or the path leads out.
    ///
    /// It opens whatever the path names: look with ``status(of:)`` first when a FIFO or device must never be
    /// opened, and check the opened file's ``OpenFile/status()``, which is what will be read.
    /// - Throws: ``IOError`` for another failure (`EACCES`, `EMFILE`).
    public func openFile(_ relativePath: String) throws(IOError) -> OpenFile? {
        let relative = Self.relative(relativePath)
        if Self.beneathIsAvailable.load(ordering: .relaxed) {
            do {
                return OpenFile(adopting: try Posix.openBeneath(relative, in: fileDescriptor))
            } catch {
                switch error.errnoCode {
                case ENOENT, ENOTDIR, ENAMETOOLONG, ELOOP:
                    return nil
                case EXDEV:
                    break  // a link the kernel would not follow beneath: resolved below
                case ENOSYS, EPERM:
                    Self.beneathIsAvailable.store(false, ordering: .relaxed)
                default:
                    throw error
                }
            }
        }
        // Resolved now, not when the directory was opened: most directories never need it.
        guard let root = Posix.resolvedPath(path) else { return nil }
        let full = root == "/" ? "/" + relative : root + "/" + relative
        guard let resolved = Posix.resolvedPath(full), root == "/" || resolved == root || resolved.hasPrefix(root + "/")
        else { return nil }
        do {
            return OpenFile(adopting: try Posix.openForReading(resolved))
        } catch {
            if error.errnoCode == ENOENT || error.errnoCode == ENOTDIR { return nil }
            throw error
        }
    }

    /// A path relative to the directory: leading slashes dropped, `.` for the directory itself.
    private static func relative(_ path: String) -> String {
        guard path.utf8.first == UInt8(ascii: "/") || path.isEmpty else { return path }
        let trimmed = path.drop { $0 == "/" }
        return trimmed.isEmpty ? "." : String(trimmed)
    }
}

/// What a file is, from `stat`: its kind, size, modification time and identity.
public struct FileStatus: Equatable, Sendable {
    /// The kinds a file server tells apart.
    public enum Kind: Sendable {
        case regular
        case directory
        /// A FIFO, a device, a socket: nothing to serve.
        case other
    }

    public let kind: Kind
    /// The size in bytes (meaningful for a regular file).
    public let size: Int
    /// The last modification: whole seconds since the epoch and the nanoseconds beyond them.
    public let modifiedSeconds: Int
    public let modifiedNanoseconds: Int
    /// The device and inode: the file's identity (a file replaced on disk has a new one).
    public let device: UInt64
    public let inode: UInt64
    /// The last change of the file's contents or of what is known about it (its permissions, owner, links,
    /// name): seconds since the epoch and the nanoseconds beyond them.
    public let changedSeconds: Int
    public let changedNanoseconds: Int

    init(_ info: stat) {
        switch info.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        default: kind = .other
        }
        size = Int(info.st_size)
        modifiedSeconds = Int(info.st_mtim.tv_sec)
        modifiedNanoseconds = Int(info.st_mtim.tv_nsec)
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        changedSeconds = Int(info.st_ctim.tv_sec)
        changedNanoseconds = Int(info.st_ctim.tv_nsec)
    }

    /// Whether both describe the same file, unchanged in every way but its contents: the same device and inode,
    /// and the same change time (which a new mode, owner, link or name moves on).
    public func isSameUnchangedFile(as other: FileStatus) -> Bool {
        device == other.device && inode == other.inode && changedSeconds == other.changedSeconds
            && changedNanoseconds == other.changedNanoseconds
    }
}

/// Regular files opened beneath a directory, kept open so that the next request for one does not open it
/// again: nginx's `open_file_cache`, but never stale. A path's open file is reused only while the path,
/// looked up for that request (``Directory/status(of:)``), still names the same file unchanged since it was
/// opened (``FileStatus/isSameUnchangedFile(as:)``); anything else (a file written, replaced, renamed,
/// re-linked, given new permissions) is opened again, as if nothing were kept. (Were a write to land within
/// the clock tick of the open, leaving the change time as it was, the kept descriptor still reads the file as it
/// is now, and the status the caller looked up gives its size and time.)
///
/// So a file costs a `stat` while it is kept (an `openat2`, an `fstat` and a `close` less). At most
/// ``capacity`` files are kept; when full, one is let go for each new one. A kept file stays open until it is
/// let go, ``removeAll()`` is called or the cache is released (and while a ``FileRegion`` of it is being sent).
///
/// Thread-safe: one lock around its table, held for a lookup, and never waited for: a thread that finds it
/// taken opens the file as if nothing were kept (a thread per connection, many more threads than cores, would
/// otherwise queue behind a holder the scheduler preempted).
public final class OpenFileCache: Sendable {
    /// The most files kept open; 0 keeps none.
    public let capacity: Int
    private let files = Mutex<[String: Kept]>([:])

    private struct Kept: Sendable {
        let file: OpenFile
        let status: FileStatus
    }

    /// A cache of at most `capacity` open files.
    public init(capacity: Int = 64) {
        precondition(capacity >= 0, "an OpenFileCache needs a capacity of 0 or more")
        self.capacity = capacity
    }

    /// The regular file `relativePath` names beneath `directory`, open, and its status: the one kept for the
    /// path when `current` (the path's status, just looked up) says it is the same unchanged file, else the
    /// file opened now (``Directory/openFile(_:)``) and checked (``OpenFile/status()``). `nil` when nothing
    /// is there, the path leads out, or it is not a regular file.
    ///
    /// Use one cache per directory path: the paths are its keys.
    /// - Throws: ``IOError`` for a failure to open other than a missing name (`EACCES`, `EMFILE`).
    public func open(
        _ relativePath: String, in directory: Directory, current: FileStatus
    ) throws(IOError) -> (file: OpenFile, status: FileStatus)? {
        guard current.kind == .regular else { return nil }
        if capacity > 0, let kept = files.withLockIfAvailable({ $0[relativePath] }) ?? nil,
            kept.status.isSameUnchangedFile(as: current)
        {
            return (kept.file, current)
        }
        guard let file = try directory.openFile(relativePath) else { return nil }
        let opened = try file.status()
        guard opened.kind == .regular else { return nil }  // changed since `current` was looked up
        if capacity > 0 {
            // What is let go closes outside the lock, as `released` goes: closing is a system call.
            let released = files.withLockIfAvailable { files -> Kept? in
                let evicted =
                    files.count >= capacity && files[relativePath] == nil
                    ? files.remove(at: files.startIndex).value : nil
                return files.updateValue(Kept(file: file, status: opened), forKey: relativePath) ?? evicted
            }
            _ = released
        }
        return (file, opened)
    }

    /// How many files are kept open.
    public var count: Int { files.withLock { $0.count } }

    /// Lets every kept file go (each closes once no ``FileRegion`` of it is being sent).
    public func removeAll() {
        var kept: [String: Kept] = [:]
        files.withLock { swap(&$0, &kept) }  // the files close outside the lock, as `kept` goes
    }
}

/// An open file: owns its descriptor, closed when the last reference goes (unless borrowed).
public final class OpenFile: Sendable {
    /// The descriptor.
    public let fileDescriptor: Int32
    private let owned: Bool

    /// Takes ownership of `fileDescriptor`: it is closed when the last reference goes.
    public init(adopting fileDescriptor: Int32) {
        self.fileDescriptor = fileDescriptor
        owned = true
    }

    /// Refers to `fileDescriptor` without owning it: the caller keeps it open while it is in use, and closes it.
    public init(borrowing fileDescriptor: Int32) {
        self.fileDescriptor = fileDescriptor
        owned = false
    }

    deinit {
        if owned { Posix.close(fileDescriptor) }
    }

    /// What the open file is (`fstat`): what reads of it will see, whatever its name means now.
    public func status() throws(IOError) -> FileStatus {
        FileStatus(try Posix.status(fileDescriptor))
    }
}

/// A part of an open file to send on a connection: the file stays open while
/// the region is referenced (queued, or being sent).
public final class FileRegion: Sendable {
    /// The file.
    public let file: OpenFile
    /// Where the part to send starts.
    public let offset: Int
    /// How many bytes to send.
    public let count: Int

    /// A region of an open file.
    public init(file: OpenFile, offset: Int, count: Int) {
        precondition(offset >= 0 && count >= 0, "a FileRegion needs a non-negative offset and count")
        self.file = file
        self.offset = offset
        self.count = count
    }

    /// Takes ownership of `fileDescriptor`: it is closed when the region is released.
    public convenience init(fileDescriptor: Int32, offset: Int, count: Int) {
        self.init(file: OpenFile(adopting: fileDescriptor), offset: offset, count: count)
    }

    /// The file's descriptor.
    public var fileDescriptor: Int32 { file.fileDescriptor }
}
