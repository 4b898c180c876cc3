// OutputFile: a large output streamed to a token-unique temporary name and renamed into place on commit.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// One output file of a job written piece by piece (embeddings, predictions), for outputs too
/// large for `JobContext.publish`, which takes the bytes in memory.
///
/// Opened with `O_CREAT | O_EXCL | O_NOFOLLOW` at `.<name>.<token>.part` beside the final path, so
/// no other attempt shares the file and no planted symlink is followed. `commit()` fsyncs, closes
/// and renames it to the final name (replacing an older version: readers see the old file or the
/// new one, never a part). Without a commit (an error, a cancel) the temporary file is removed
/// when the value is released or `discard()` is called.
public final class OutputFile: @unchecked Sendable {
    /// The final path.
    public let path: String
    /// The temporary path being written.
    public let temporaryPath: String
    let folder: String
    let fs: FileSystem
    private var fd: Int32
    private var state = State.open
    /// Bytes written so far.
    public private(set) var count: Int64 = 0

    private enum State { case open, committed, discarded }

    init(path: String, token: String, folder: String, fs: FileSystem) throws {
        self.path = path
        self.folder = folder
        self.fs = fs
        let p = NSStringPath(path)
        temporaryPath = p.parent + "/." + p.last + "." + token + ".part"
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o666)
        if fd < 0 {
            let code = errno
            if !fs.exists(folder) { throw CancellationError(reason: .leaseLost) }
            throw FSError("open", temporaryPath, code)
        }
    }

    deinit { if state == .open { discard() } }

    /// Appends `data`.
    public func write(_ data: Data) throws {
        try data.withUnsafeBytes { try write($0) }
    }

    /// Appends raw bytes (a tensor's storage, say) without copying them into a `Data`.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(state == .open, "write after commit or discard")
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw FSError("write", temporaryPath, errno)
            }
            offset += n
        }
        count += Int64(bytes.count)
    }

    /// fsyncs, closes and renames the file to `path`.
    /// - Throws: `CancellationError(.leaseLost)` when the job folder was taken over meanwhile
    ///   (the rename then finds no source: the file moved with the folder and is not ours).
    public func commit() throws {
        precondition(state == .open, "commit twice or after discard")
        state = .committed
        let rc = fsync(fd) == 0 ? close(fd) : -1
        let code = errno
        if rc != 0 {
            close(fd)
            try? fs.unlink(temporaryPath)
            throw FSError("fsync/close", temporaryPath, code)
        }
        do {
            try fs.retrying { try fs.rename(temporaryPath, path) }
        } catch {
            // A retransmitted NFS rename can report ENOENT after it worked.
            if !fs.exists(temporaryPath) && fs.exists(path) && fs.exists(folder) { return }
            try? fs.unlink(temporaryPath)
            if !fs.exists(folder) { throw CancellationError(reason: .leaseLost) }
            throw error
        }
        // The rename itself is durable once the folder is synced.
        try? fs.sync(NSStringPath(path).parent)
    }

    /// Closes and removes the temporary file (nothing is published).
    public func discard() {
        guard state == .open else { return }
        state = .discarded
        close(fd)
        try? fs.unlink(temporaryPath)
    }

    /// Removes `.*.part` and `.*.tmp` files under `out` that earlier attempts left (killed
    /// mid-write: streamed outputs, and `publish`'s temporary names): a new attempt owns the
    /// folder, and their writers are dead or can no longer reach it by name. Checkpoint staging
    /// folders are cleaned by `Checkpoints` itself.
    static func sweep(out: String, fs: FileSystem) {
        guard (try? fs.info(out))?.kind == .directory else { return }  // never through a symlink
        for name in (try? fs.list(out)) ?? [] {
            let path = out + "/" + name
            guard let info = try? fs.info(path) else { continue }
            if info.kind == .directory {
                if name != "checkpoint" { sweep(out: path, fs: fs) }
            } else if info.kind == .regular, name.hasPrefix("."), name.hasSuffix(".part") || name.hasSuffix(".tmp") {
                try? fs.unlink(path)
            }
        }
    }
}
