// SafeTensors: read a whole safetensors file into a TensorMap; write one atomically, as Python does.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

#if canImport(Glibc)
    private let systemWrite = Glibc.write
#else
    private let systemWrite = Darwin.write
#endif

/// Whole-file safetensors IO. For listing names or reading a few tensors, use `SafeTensorsFile`.
public enum SafeTensors {
    /// Every tensor of the file at `path` as Float32, in file order.
    /// - Throws: `SafeTensorsError` naming the file and the problem.
    public static func read(_ path: String) throws -> TensorMap {
        try SafeTensorsFile(path: path).readAll()
    }

    /// Writes `tensors` to `path` byte for byte as Python's `safetensors.torch.save_file` would.
    ///
    /// Layout follows safetensors' writer: tensors sorted by dtype (wider alignment first), then by
    /// name (UTF-8 bytes); the header as `SafeTensorsHeader.encode` writes it. The file is written
    /// to a temporary name in the same folder, fsynced, then renamed over `path`, so a reader never
    /// sees half a file.
    /// - Parameters:
    ///   - metadata: the `__metadata__` map; nil writes none (as `save_file` does by default).
    ///     Transformers expects `["format": "pt"]`.
    ///   - dtype: the storage type of every tensor: F32, F16 or BF16 (rounded to nearest even).
    ///   - dtypes: per-name overrides of `dtype`; each name must be in `tensors` (a bug otherwise).
    /// - Throws: `SafeTensorsError` `.unsupportedDType` for a dtype it cannot write, `.io` on failure.
    public static func write(
        _ tensors: TensorMap, to path: String, metadata: [String: String]? = nil,
        dtype: SafeTensorsDType = .f32, dtypes: [String: SafeTensorsDType] = [:]
    ) throws {
        for (name, d) in [("(default)", dtype)] + dtypes.sorted(by: { $0.key < $1.key }).map({ ($0.key, $0.value) })
        where !d.isWritable {
            throw SafeTensorsError(.unsupportedDType, path: path, "cannot write dtype \(d.rawValue) for tensor '\(name)'",
                                   hint: "fidq writes F32, F16 and BF16")
        }
        for name in dtypes.keys {
            precondition(tensors.contains(name), "SafeTensors.write: dtypes names '\(name)', which \(tensors.source) lacks")
        }
        if tensors.contains("__metadata__") {
            throw SafeTensorsError(.headerLayout, path: path, "a tensor cannot be named __metadata__ (the header's metadata key)")
        }
        var items = tensors.map { (name: $0.name, tensor: $0.tensor, dtype: dtypes[$0.name] ?? dtype) }
        items.sort { a, b in
            a.dtype.rank != b.dtype.rank ? a.dtype.rank > b.dtype.rank : a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
        var entries: [SafeTensorsEntry] = []
        var offset = 0
        for item in items {
            let bytes = item.tensor.count * item.dtype.bits / 8
            entries.append(SafeTensorsEntry(name: item.name, dtype: item.dtype, shape: item.tensor.shape,
                                            begin: offset, end: offset + bytes))
            offset += bytes
        }
        let header = SafeTensorsHeader.encode(entries: entries, metadata: metadata)

        var file = try AtomicFile(path: path)
        do {
            var length = UInt64(header.count).littleEndian
            try withUnsafeBytes(of: &length) { try file.write($0) }
            try header.withUnsafeBytes { try file.write($0) }
            var scratch = [UInt16](repeating: 0, count: 1 << 16)
            for item in items {
                try item.tensor.withUnsafeBufferPointer { src in
                    guard let s = src.baseAddress else { return }
                    if item.dtype == .f32 {
                        try file.write(UnsafeRawBufferPointer(src))
                        return
                    }
                    // F16 / BF16: narrow a chunk at a time into scratch.
                    var i = 0
                    while i < src.count {
                        let n = min(scratch.count, src.count - i)
                        try scratch.withUnsafeMutableBytes { out in
                            if item.dtype == .f16 {
                                Half.narrowF16(s + i, into: out.baseAddress!, count: n)
                            } else {
                                Half.narrowBF16(s + i, into: out.baseAddress!, count: n)
                            }
                            try file.write(UnsafeRawBufferPointer(rebasing: out[0..<(2 * n)]))
                        }
                        i += n
                    }
                }
            }
            try file.commit()
        } catch {
            file.abandon()
            throw error
        }
    }
}

/// A file written under a temporary name in its final folder, then fsynced and renamed into place.
struct AtomicFile {
    let path: String
    let temporary: String
    private var fd: Int32

    init(path: String) throws {
        self.path = path
        let slash = path.lastIndex(of: "/")
        let folder = slash.map { String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        temporary = (folder.isEmpty ? "" : folder + "/") + ".\(base).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw Self.error(temporary, "cannot create") }
    }

    private static func error(_ path: String, _ what: String) -> SafeTensorsError {
        SafeTensorsError(.io, path: path, "\(what): \(String(cString: strerror(errno)))")
    }

    /// Appends all of `bytes`, retrying short writes.
    mutating func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = systemWrite(fd, p, left)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Self.error(temporary, "cannot write") }
            p += n
            left -= n
        }
    }

    /// fsync, close, rename over `path`, then fsync the folder so the rename itself is durable.
    mutating func commit() throws {
        guard fsync(fd) == 0 else { throw Self.error(temporary, "cannot fsync") }
        let closed = close(fd)
        fd = -1
        guard closed == 0 else { throw Self.error(temporary, "cannot close") }
        guard rename(temporary, path) == 0 else { throw Self.error(path, "cannot rename \(temporary) to") }
        let slash = path.lastIndex(of: "/")
        let folder = slash.map { String(path[..<$0]) }.map { $0.isEmpty ? "/" : $0 } ?? "."
        let dfd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }

    /// Closes and removes the temporary file after a failure.
    mutating func abandon() {
        if fd >= 0 { close(fd) }
        fd = -1
        unlink(temporary)
    }
}
