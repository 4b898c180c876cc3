// FileSystem: the POSIX calls the queue makes, behind a protocol so tests can inject faults.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed file operation: the call, the path and the errno.
public struct FSError: Error, CustomStringConvertible, Sendable {
    public let op: String
    public let path: String
    public let code: Int32

    public init(_ op: String, _ path: String, _ code: Int32) {
        self.op = op
        self.path = path
        self.code = code
    }

    public var description: String { "\(op) \(path): \(String(cString: strerror(code))) (errno \(code))" }

    /// Errors the notes call transient on NFS: retry the same call.
    public var isRetryable: Bool { code == EINTR || code == ESTALE || code == EAGAIN }
}

/// What `lstat`/`stat` report, reduced to what the queue needs.
public struct FileInfo: Equatable, Sendable {
    public enum Kind: Sendable { case regular, directory, symlink, other }
    public var kind: Kind
    public var size: Int64
    /// Modification time, seconds since 1970 (filesystem clock).
    public var mtime: Double
    public var inode: UInt64
}

/// Every file operation the queue, the worker and the commands perform.
///
/// `PosixFileSystem` calls the kernel; `FaultyFileSystem` wraps one and injects errors (including
/// NFS's "reported failure after success"). Paths are absolute or relative to the process's cwd.
public protocol FileSystem: AnyObject, Sendable {
    func mkdir(_ path: String) throws
    func rename(_ from: String, _ to: String) throws
    /// `link(2)`: a second name for a file; fails with `EEXIST` when anything is at `to` (an
    /// exclusive create where `rename` would replace).
    func link(_ from: String, _ to: String) throws
    func unlink(_ path: String) throws
    func rmdir(_ path: String) throws
    /// Names in a folder, without `.` and `..`, in no particular order.
    func list(_ path: String) throws -> [String]
    /// `lstat`: does not follow a final symlink.
    func info(_ path: String) throws -> FileInfo
    /// Reads at most `limit` bytes; the caller compares the count with the limit to detect more.
    func read(_ path: String, limit: Int) throws -> Data
    /// Creates a new file (`O_CREAT | O_EXCL | O_NOFOLLOW`: fails with `EEXIST` when anything,
    /// a planted symlink included, is already at `path`), writes everything, `fsync`s when
    /// `sync`, closes. Callers write to unique temporary names and rename.
    func write(_ path: String, _ data: Data, sync: Bool) throws
    /// Appends with `O_APPEND` (creating the file; never through a symlink), no fsync.
    func append(_ path: String, _ data: Data) throws
    /// Sets access and modification times to now (`utimensat(NULL)`: server time on NFS).
    func touch(_ path: String) throws
    /// `realpath(3)`: the absolute path with every symlink resolved.
    func realpath(_ path: String) throws -> String
}

/// The real file system.
public final class PosixFileSystem: FileSystem, @unchecked Sendable {
    public init() {}

    private func check(_ rc: Int32, _ op: String, _ path: String) throws {
        if rc != 0 { throw FSError(op, path, errno) }
    }

    // Folders 0777 and files 0666, less the umask, everywhere fidq creates them: a queue a group
    // shares runs under umask 002, and fixed 0755/0644 kept every other user's worker out.
    public func mkdir(_ path: String) throws { try check(Glibc.mkdir(path, 0o777), "mkdir", path) }
    public func rename(_ from: String, _ to: String) throws { try check(Glibc.rename(from, to), "rename", "\(from) -> \(to)") }
    public func link(_ from: String, _ to: String) throws { try check(Glibc.link(from, to), "link", "\(from) -> \(to)") }
    public func unlink(_ path: String) throws { try check(Glibc.unlink(path), "unlink", path) }
    public func rmdir(_ path: String) throws { try check(Glibc.rmdir(path), "rmdir", path) }

    public func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw FSError("opendir", path, errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public func info(_ path: String) throws -> FileInfo {
        var st = Glibc.stat()
        try check(lstat(path, &st), "lstat", path)
        let kind: FileInfo.Kind
        switch st.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symlink
        default: kind = .other
        }
        let mtime = Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) * 1e-9
        return FileInfo(kind: kind, size: Int64(st.st_size), mtime: mtime, inode: UInt64(st.st_ino))
    }

    public func read(_ path: String, limit: Int) throws -> Data {
        // O_NOFOLLOW | O_NONBLOCK: a symlink or a FIFO dropped as a job must not be followed or block.
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 { throw FSError("open", path, errno) }
        defer { close(fd) }
        var out = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let want = min(buffer.count, limit - out.count)
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, want) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FSError("read", path, errno)
            }
            if n == 0 { break }
            out.append(contentsOf: buffer[0..<n])
        }
        return out
    }

    public func write(_ path: String, _ data: Data, sync: Bool) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o666)
        if fd < 0 { throw FSError("open", path, errno) }
        var closed = false
        defer { if !closed { close(fd) } }
        try writeAll(fd, data, path)
        if sync { try check(fsync(fd), "fsync", path) }
        closed = true
        try check(close(fd), "close", path)
    }

    public func append(_ path: String, _ data: Data) throws {
        // O_NOFOLLOW: a symlink swapped in at a job's log.txt would take the worker's lines elsewhere.
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o666)
        if fd < 0 { throw FSError("open", path, errno) }
        defer { close(fd) }
        try writeAll(fd, data, path)
    }

    private func writeAll(_ fd: Int32, _ data: Data, _ path: String) throws {
        try data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FSError("write", path, errno)
                }
                offset += n
            }
        }
    }

    public func touch(_ path: String) throws { try check(utimensat(AT_FDCWD, path, nil, 0), "utimensat", path) }

    public func realpath(_ path: String) throws -> String {
        guard let p = Glibc.realpath(path, nil) else { throw FSError("realpath", path, errno) }
        defer { free(p) }
        return String(cString: p)
    }
}

/// Helpers built from the protocol's calls, shared by the queue and the commands.
extension FileSystem {
    /// Retries `ESTALE`, `EINTR` and `EAGAIN` (8 tries, 5 ms·n backoff) as the NFS notes advise.
    public func retrying<T>(_ body: () throws -> T) throws -> T {
        var tries = 0
        while true {
            do { return try body() } catch let e as FSError where e.isRetryable && tries < 7 {
                tries += 1
                usleep(UInt32(5_000 * tries))
            }
        }
    }

    /// `true` when `path` is known to exist (without following a final symlink). "No" here
    /// also means "could not tell": code that deletes on a negative answer uses `presence`.
    public func exists(_ path: String) -> Bool {
        (try? retrying { try info(path) }) != nil
    }

    /// Whether `path` exists, telling a real `ENOENT`/`ENOTDIR` from an error that says nothing
    /// (`EIO`, `ESTALE` after the retries, `EACCES`…). NFS may still answer "absent" from a
    /// cached negative lookup, so even `.absent` only licenses steps that fail safely
    /// (`rmdir` of a folder, never a recursive delete).
    public func presence(_ path: String) -> Presence {
        do {
            _ = try retrying { try info(path) }
            return .present
        } catch let e as FSError where e.code == ENOENT || e.code == ENOTDIR {
            return .absent
        } catch {
            return .unknown("\(error)")
        }
    }

    /// Creates every missing folder of `path`.
    public func makeDirectories(_ path: String) throws {
        if let i = try? info(path) {
            if i.kind == .directory { return }
            throw FSError("mkdir", path, EEXIST)
        }
        let parent = NSStringPath(path).parent
        if !parent.isEmpty && parent != path { try makeDirectories(parent) }
        do { try retrying { try mkdir(path) } } catch let e as FSError where e.code == EEXIST {}
    }

    /// Writes `data` to a temporary name in the same folder, fsyncs, renames over `path`.
    /// Readers see the old file or the new one, never a part. `sync: false` skips the fsync for
    /// state that is rewritten constantly and never published (claim, attempts, progress).
    public func writeAtomically(_ path: String, _ data: Data, tag: String, sync: Bool = true) throws {
        let tmp = try writeTemporary(beside: path, data, tag: tag, sync: sync)
        do {
            try retrying { try rename(tmp, path) }
        } catch {
            // A retransmitted NFS rename can report ENOENT after it worked: check the outcome.
            if !exists(tmp) && exists(path) { return }
            try? unlink(tmp)
            throw error
        }
    }

    /// Writes `data` to a temporary name in the same folder, fsyncs, and links it to `path` only
    /// if nothing is there (`link` is exclusive where `rename` replaces): two writers of one
    /// name cannot both succeed. Readers never see a part. Returns false, writing nothing,
    /// when `path` exists. A retransmitted NFS link can report `EEXIST` after it worked: the
    /// name then leads to our own file (its inode), which counts as success.
    public func publish(_ path: String, _ data: Data, tag: String) throws -> Bool {
        let tmp = try writeTemporary(beside: path, data, tag: tag, sync: true)
        defer { try? unlink(tmp) }
        do {
            try retrying { try link(tmp, path) }
            return true
        } catch let e as FSError where e.code == EEXIST {
            if let mine = try? info(tmp), let there = try? info(path), mine.inode == there.inode { return true }
            return false
        } catch let e as FSError where [EPERM, ENOTSUP, EOPNOTSUPP, ENOSYS, EXDEV, EMLINK].contains(e.code) {
            // No hard links here (CIFS without unix extensions, FUSE stores): a check and a
            // rename, best effort (another writer of the name at the same moment could replace
            // it). A check that cannot tell refuses rather than risk replacing.
            switch presence(path) {
            case .present: return false
            case .unknown(let why): throw FSError("stat", path + " (" + why + ")", EIO)
            case .absent: break
            }
            do {
                try retrying { try rename(tmp, path) }
            } catch {
                // A retransmitted NFS rename can report ENOENT after it worked.
                if !exists(tmp) && exists(path) { return true }
                throw error
            }
            return true
        }
    }

    /// Writes `data` under a new temporary name beside `path` and returns it: a name no other
    /// writer uses (tag + process + counter), created O_EXCL | O_NOFOLLOW, so a symlink planted at
    /// a guessable name is refused, never followed. Each retry takes a fresh name (a retried
    /// exclusive create could meet its own first half); a failed write or fsync (ENOSPC, EDQUOT)
    /// leaves no temporary behind.
    func writeTemporary(beside path: String, _ data: Data, tag: String, sync: Bool) throws -> String {
        let p = NSStringPath(path)
        var tries = 0
        while true {
            let tmp = p.parent + "/." + p.last + "." + tag + "." + TempNames.next() + ".tmp"
            do {
                try write(tmp, data, sync: sync)
                return tmp
            } catch let e as FSError where e.isRetryable && tries < 7 {
                try? unlink(tmp)
                tries += 1
                usleep(UInt32(5_000 * tries))
            } catch {
                try? unlink(tmp)
                throw error
            }
        }
    }

    /// Removes a file or a whole folder tree; missing entries are fine.
    public func removeTree(_ path: String) throws {
        guard let i = try? retrying({ try info(path) }) else { return }
        if i.kind == .directory {
            for name in (try? list(path)) ?? [] { try removeTree(path + "/" + name) }
            do { try retrying { try rmdir(path) } } catch let e as FSError where e.code == ENOENT {}
        } else {
            do { try retrying { try unlink(path) } } catch let e as FSError where e.code == ENOENT {}
        }
    }

    /// Reads a whole small file as UTF-8 (at most 16 MiB).
    public func readString(_ path: String) throws -> String {
        String(decoding: try retrying { try read(path, limit: 16 << 20) }, as: UTF8.self)
    }
}

/// Whether a path exists, as far as the file system would say (see `FileSystem.presence`).
public enum Presence: Equatable, Sendable {
    case present
    case absent
    /// The lookup failed with an error that says nothing about existence.
    case unknown(String)
}

/// Unique suffixes for temporary names: `pid.nonce.counter`.
enum TempNames {
    private static let lock = NSLockLite()
    nonisolated(unsafe) private static var counter = 0
    private static let prefix: String = {
        var r = SystemRandomNumberGenerator()
        return "\(getpid()).\(String(r.next() & 0xFFFFFF, radix: 36))"
    }()

    static func next() -> String {
        let n = lock.withLock { () -> Int in
            counter += 1
            return counter
        }
        return "\(prefix).\(n)"
    }
}

/// Minimal path arithmetic on strings (FoundationEssentials has no NSString path API).
struct NSStringPath {
    let path: String
    init(_ path: String) { self.path = path }

    /// Everything before the last `/` ("" for a bare name, "/" for a top-level name).
    var parent: String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// The last component.
    var last: String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }
}
