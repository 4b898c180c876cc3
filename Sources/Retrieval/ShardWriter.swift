// ShardWriter: writes one embedding shard (`.npy` + `.ids`) row block by row block; visible only when complete.
import Formats
import Tensor

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Writes `<stem>.npy` ((N, E) float16 or float32, numpy format 1.0) and `<stem>.ids`, both under
/// temporary names until `finish()` renames them (the `.ids` first, the `.npy` last: a reader
/// that sees the `.npy` finds its ids). The row count is fixed up front, as a shard's size is.
///
/// Resumable: `rowsWritten` of an existing staging pair (`resume: true`) is kept, so a killed
/// `embed` job continues from its last finished block without duplicating rows.
public final class ShardWriter {
    public let stem: String
    public let rows: Int
    public let dim: Int
    public let storage: EmbeddingShard.Storage
    public private(set) var rowsWritten = 0
    private let npyTmp: String, idsTmp: String
    private let npyFD: Int32, idsFD: Int32
    private let headerSize: Int
    private var scratch: [UInt16] = []

    /// Staging names of a shard (what `resume` looks for); `tag` (a job attempt's claim token)
    /// keeps two attempts of one shard from ever writing the same file.
    public static func stagingPaths(stem: String, tag: String = "") -> (npy: String, ids: String) {
        let suffix = tag.isEmpty ? ".tmp" : ".tmp-" + tag
        return (stem + ".npy" + suffix, stem + ".ids" + suffix)
    }

    /// - Parameter resume: keep the staging files' complete rows (truncating a half-written row
    ///   and ids beyond them) instead of starting empty.
    public init(
        stem: String, rows: Int, dim: Int, storage: EmbeddingShard.Storage, resume: Bool = false, keepRows: Int? = nil, tag: String = ""
    ) throws {
        (self.stem, self.rows, self.dim, self.storage) = (stem, rows, dim, storage)
        (npyTmp, idsTmp) = ShardWriter.stagingPaths(stem: stem, tag: tag)
        if !resume {
            // Staging files of a killed earlier attempt (another tag): nothing else removes them.
            StaleFiles.remove(prefix: stem + ".npy.tmp")
            StaleFiles.remove(prefix: stem + ".ids.tmp")
        }
        let header = NpyHeader.encode(storage: storage, rows: rows, dim: dim)
        headerSize = header.count
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (resume ? 0 : O_TRUNC)
        npyFD = open(npyTmp, flags, 0o666)
        guard npyFD >= 0 else { throw RetrievalError(file: npyTmp, field: "file", expected: "a writable path", found: String(cString: strerror(errno))) }
        idsFD = open(idsTmp, flags, 0o666)
        guard idsFD >= 0 else {
            close(npyFD)
            throw RetrievalError(file: idsTmp, field: "file", expected: "a writable path", found: String(cString: strerror(errno)))
        }
        var kept = 0
        if resume {
            var st = stat()
            fstat(npyFD, &st)
            let rowBytes = dim * (storage == .float16 ? 2 : 4)
            kept = max(0, (Int(st.st_size) - headerSize) / max(rowBytes, 1))
            let ids = (try? EmbeddingShard.readIDs(idsTmp)) ?? []
            kept = min(kept, ids.count, rows, keepRows ?? Int.max)
            // Ids are rewritten up to `kept` (a killed write may have left a partial line).
            ftruncate(idsFD, 0)
            let text = ids.prefix(kept).map { $0 + "\n" }.joined()
            try write(idsFD, idsTmp, Array(text.utf8), at: 0)
            ftruncate(npyFD, off_t(headerSize + kept * rowBytes))
        }
        try write(npyFD, npyTmp, header, at: 0)
        rowsWritten = kept
    }

    deinit {
        close(npyFD)
        close(idsFD)
    }

    private func write(_ fd: Int32, _ path: String, _ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw RetrievalError(file: path, field: "write", expected: "the bytes written", found: n == 0 ? "nothing written" : String(cString: strerror(errno))) }
            done += n
        }
    }

    private func write(_ fd: Int32, _ path: String, _ bytes: [UInt8], at offset: Int) throws {
        try bytes.withUnsafeBytes { try write(fd, path, $0, at: offset) }
    }

    /// Appends `ids.count` rows of `embeddings` ((count, E) float32, row-major).
    public func append(ids: [String], embeddings: UnsafePointer<Float>) throws {
        let n = ids.count
        precondition(rowsWritten + n <= rows, "shard \(stem) holds \(rows) rows; \(rowsWritten + n) written")
        let rowBytes = dim * (storage == .float16 ? 2 : 4)
        let offset = headerSize + rowsWritten * rowBytes
        switch storage {
        case .float32:
            try write(npyFD, npyTmp, UnsafeRawBufferPointer(start: embeddings, count: n * rowBytes), at: offset)
        case .float16:
            if scratch.count < n * dim { scratch = [UInt16](repeating: 0, count: n * dim) }
            try scratch.withUnsafeMutableBytes { s in
                Half.narrowF16(embeddings, into: s.baseAddress!, count: n * dim)
                try write(npyFD, npyTmp, UnsafeRawBufferPointer(rebasing: s[0..<(n * rowBytes)]), at: offset)
            }
        }
        var idsEnd = lseek(idsFD, 0, SEEK_END)
        if idsEnd < 0 { idsEnd = 0 }
        try write(idsFD, idsTmp, Array(ids.map { $0 + "\n" }.joined().utf8), at: Int(idsEnd))
        rowsWritten += n
    }

    /// Flushes both staging files to disk (a checkpoint calls this before recording `rowsWritten`).
    public func sync() {
        fsync(npyFD)
        fsync(idsFD)
    }

    /// Checks the row count, syncs, and renames the pair into place (`.ids` first).
    /// Removes the staging files, for a writer that will not finish (its job failed): they
    /// stayed, a partial shard's size in the output folder, on a disk that may be full.
    public func discard() {
        unlink(npyTmp)
        unlink(idsTmp)
    }

    public func finish() throws {
        guard rowsWritten == rows else {
            throw RetrievalError(file: npyTmp, field: "row count", expected: "\(rows) rows", found: "\(rowsWritten)")
        }
        sync()
        for (tmp, final) in [(idsTmp, stem + ".ids"), (npyTmp, stem + ".npy")] {
            guard rename(tmp, final) == 0 else {
                throw RetrievalError(file: final, field: "rename", expected: "a writable folder", found: String(cString: strerror(errno)))
            }
        }
    }
}
