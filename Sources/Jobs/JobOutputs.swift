// JobOutputs: the JobContext calls for long jobs: checkpoints and streamed outputs.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

extension JobContext {
    /// The job's checkpoint folder, `out/checkpoint/` (see `Checkpoints`), keeping the newest
    /// `keepLast` step checkpoints. Opening it removes what killed attempts left half-written.
    ///
    ///     let ckpt = try context.checkpoints(keepLast: 3)
    ///     if let (step, dir) = ckpt.latest() { /* load from dir, continue after step */ }
    ///     try ckpt.save(step: n) { dir in /* write files into dir */ }
    ///     try ckpt.save(name: "best_dev") { dir in ... }
    public func checkpoints(keepLast: Int = 3) throws -> Checkpoints {
        guard keepLast >= 1 else {
            throw JobError.permanent("keepLast must be at least 1, found \(keepLast)", hint: "keep at least the latest checkpoint")
        }
        return try Checkpoints(folder: folder, token: token, fs: fs, keepLast: keepLast)
    }

    /// Opens `out/<name>` for streaming: written at a token-unique temporary name, published by
    /// `commit()` (fsync + rename), removed if never committed. Missing subfolders of `out/` are
    /// created one level at a time (never `out/` itself, so a taken-over job cannot re-create
    /// its old folder).
    public func openOutput(_ name: String) throws -> OutputFile {
        try makeOutputFolders(name)
        return try OutputFile(path: out + "/" + name, token: token, folder: folder, fs: fs)
    }

    /// Checks that `name` is a relative path inside `out/` and creates its missing folders one
    /// level at a time below `out/` (which must exist: after a take-over it does not, and the
    /// call throws `CancellationError(.leaseLost)` instead of re-creating it).
    func makeOutputFolders(_ name: String) throws {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard !name.isEmpty, parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
            throw JobError.permanent("bad output name '\(name)'", hint: "a relative path inside out/, without '..'")
        }
        guard fs.exists(out) else {
            if !fs.exists(folder) { throw CancellationError(reason: .leaseLost) }
            throw FSError("stat", out, ENOENT)
        }
        var dir = out
        for part in parts.dropLast() {
            dir += "/" + part
            do { try fs.retrying { try fs.mkdir(dir) } } catch let e as FSError {
                if e.code == EEXIST, (try? fs.info(dir))?.kind == .directory { continue }
                if !fs.exists(folder) { throw CancellationError(reason: .leaseLost) }
                throw e
            }
        }
    }

    /// Streams `out/<name>`: `body` writes through the file; it is committed when `body` returns
    /// and discarded when it throws.
    /// - Returns: the final path.
    @discardableResult
    public func writeOutput(_ name: String, _ body: (OutputFile) throws -> Void) throws -> String {
        let file = try openOutput(name)
        do {
            try body(file)
            try file.commit()
        } catch {
            file.discard()
            throw error
        }
        return file.path
    }
}
