// IndexFile: the saved-index container (magic, version, little-endian sections), written to a temp name and renamed.
import Formats
import Tensor

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Writes an index file as it goes: an 8-byte magic, a UInt32 version, then sections appended in
/// order, each padded to 8 bytes so a loader can read them in place from the mapping. Written
/// under a temporary name (the pid and a random part: workers on several hosts may share a pid),
/// fsynced and renamed by `finish`, so readers see the old file or the new one. The file is never
/// whole in memory: built there, it was a second copy of every section beside the index (sq8's
/// codes: a byte per value of the corpus).
final class IndexFileWriter {
    let path: String
    private let tmp: String
    private var fd: Int32
    private var buffer: [UInt8] = []
    /// Bytes written or buffered so far (sections pad to it).
    private var offset = 0

    /// An empty file at `path` (under its temporary name until `finish`).
    init(path: String) throws {
        Self.removeStale(beside: path)
        self.path = path
        tmp = path + ".tmp-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw RetrievalError(file: path, field: "file", expected: "a writable path", found: String(cString: strerror(errno))) }
        buffer.reserveCapacity(1 << 20)
    }

    /// An index file: the magic and version, padded.
    convenience init(path: String, magic: String, version: UInt32) throws {
        precondition(magic.utf8.count == 8)
        try self.init(path: path)
        try Array(magic.utf8).withUnsafeBytes { try append(raw: $0) }
        try append(version)
        try pad()
    }

    /// Removes staging files of `path` that killed writers left (idle for `StaleFiles.idleAfter`),
    /// never a live one's: two `retrieve` jobs of one round may save the same `index.sq8` at
    /// once, and removing the other's file failed it.
    static func removeStale(beside path: String) {
        let slash = path.lastIndex(of: "/")
        let folder = slash.map { String(path[..<$0]) } ?? "."
        let start = (slash.map { String(path[path.index(after: $0)...]) } ?? path) + ".tmp-"
        StaleFiles.removeIdle(in: folder.isEmpty ? "/" : folder) { $0.hasPrefix(start) }
    }

    deinit {
        // Not finished (an error on the way): the temporary file goes.
        if fd >= 0 {
            close(fd)
            unlink(tmp)
        }
    }

    func append(raw: UnsafeRawBufferPointer) throws {
        offset += raw.count
        if buffer.count + raw.count <= buffer.capacity {
            buffer += raw
            return
        }
        try flush()
        if raw.count >= 1 << 20 { try writeAll(raw) } else { buffer += raw }
    }

    private func flush() throws {
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw RetrievalError(file: path, field: "write", expected: "the bytes written", found: n == 0 ? "nothing written" : String(cString: strerror(errno))) }
            done += n
        }
    }

    func pad() throws {
        let zeros = [UInt8](repeating: 0, count: (8 - offset % 8) % 8)
        try zeros.withUnsafeBytes { try append(raw: $0) }
    }

    func append<T: FixedWidthInteger>(_ v: T) throws { try withUnsafeBytes(of: v.littleEndian) { try append(raw: $0) } }
    func append(_ v: Float) throws { try append(v.bitPattern) }
    func append(_ v: Double) throws { try append(v.bitPattern) }

    func append<T>(array: UnsafeBufferPointer<T>) throws {
        try append(raw: UnsafeRawBufferPointer(array))
        try pad()
    }

    func append<T>(array: [T]) throws { try array.withUnsafeBufferPointer { try append(array: $0) } }

    /// Strings as (count + 1) UInt64 offsets, then their UTF-8 bytes.
    func append(strings: [String]) throws {
        var offsets: [UInt64] = [0]
        offsets.reserveCapacity(strings.count + 1)
        var total: UInt64 = 0
        for s in strings {
            total += UInt64(s.utf8.count)
            offsets.append(total)
        }
        try append(UInt64(strings.count))
        try append(array: offsets)
        for s in strings {
            var s = s
            try s.withUTF8 { try append(raw: UnsafeRawBufferPointer($0)) }
        }
        try pad()
    }

    /// Flushes, fsyncs and renames the file into place.
    func finish() throws {
        try flush()
        fsync(fd)
        close(fd)
        fd = -1
        guard rename(tmp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw RetrievalError(file: path, field: "rename", expected: "a writable folder", found: reason)
        }
    }
}

/// Writes `bytes` to `path` under a temporary name, fsyncs and renames (`IndexFileWriter`).
func writeFileAtomically(_ bytes: UnsafeRawBufferPointer, to path: String) throws {
    let w = try IndexFileWriter(path: path)
    try w.append(raw: bytes)
    try w.finish()
}

/// Reads an index file in place (memory-mapped), checking magic, version and every section's bounds.
final class IndexFileReader {
    let path: String
    let file: FileBytes
    private(set) var offset = 0

    init(path: String, magic: String, version: UInt32) throws {
        self.path = path
        do {
            file = try FileBytes(path: path, mapThreshold: 1 << 16, minSize: 16) { size in
                RetrievalError(file: path, field: "header", expected: "at least 16 bytes", found: "\(size) bytes")
            }
        } catch let e as RetrievalError {
            throw e
        } catch {
            throw RetrievalError(file: path, field: "file", expected: "a readable index file", found: "\(error)")
        }
        let found = String(decoding: UnsafeRawBufferPointer(rebasing: file.buffer[0..<8]), as: UTF8.self)
        guard found == magic else {
            throw RetrievalError(file: path, field: "magic", expected: magic, found: found.debugDescription, hint: "not an index fidq wrote, or another kind")
        }
        offset = 8
        let v: UInt32 = try read()
        guard v == version else {
            throw RetrievalError(file: path, field: "version", expected: "\(version)", found: "\(v)", hint: "rebuild the index with this fidq")
        }
        pad()
    }

    private func pad() { offset = (offset + 7) & ~7 }

    private func need(_ n: Int, _ what: String) throws {
        guard n >= 0, offset + n <= file.count else {
            throw RetrievalError(file: path, field: what, expected: "\(n) bytes at offset \(offset)", found: "a file of \(file.count) bytes",
                                 hint: "the file is truncated: delete it and build it again (a retrieve with save_or_load_index, or index_bm25)")
        }
    }

    func read<T: FixedWidthInteger>(_ what: String = "header") throws -> T {
        try need(MemoryLayout<T>.size, what)
        defer { offset += MemoryLayout<T>.size }
        return T(littleEndian: file.base.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// A count of elements, stored as UInt64: at most the file's size in bytes (every element
    /// takes one), so a damaged header is refused before it sizes an allocation or an offset.
    func count(_ what: String) throws -> Int {
        let v: UInt64 = try read(what)
        guard v <= UInt64(file.count) else { throw damaged(what, expected: "at most \(file.count) (the file's size in bytes)", found: "\(v)") }
        return Int(v)
    }

    /// `a · b` elements of a section, refused as damaged when it passes what the file can hold.
    func product(_ a: Int, _ b: Int, _ what: String) throws -> Int {
        let p = a.multipliedReportingOverflow(by: b)
        guard !p.overflow, p.partialValue <= file.count else {
            throw damaged(what, expected: "at most \(file.count) elements (the file's size in bytes)", found: "\(a) × \(b)")
        }
        return p.partialValue
    }

    func damaged(_ what: String, expected: String, found: String) -> RetrievalError {
        RetrievalError(file: path, field: what, expected: expected, found: found, hint: "the file is damaged: delete it and build it again (a retrieve with save_or_load_index, or index_bm25)")
    }

    func readFloat(_ what: String = "header") throws -> Float { Float(bitPattern: try read(what)) }
    func readDouble(_ what: String = "header") throws -> Double { Double(bitPattern: try read(what)) }

    /// `count` values of T in place (8-byte aligned by construction).
    func array<T>(_ count: Int, of _: T.Type, _ what: String) throws -> UnsafeBufferPointer<T> {
        try need(try product(count, MemoryLayout<T>.stride, what), what)
        defer {
            offset += count * MemoryLayout<T>.stride
            pad()
        }
        return UnsafeBufferPointer(start: (file.base + offset).assumingMemoryBound(to: T.self), count: count)
    }

    func strings(_ what: String) throws -> [String] {
        let n = try count(what)
        let offsets = try array(n + 1, of: UInt64.self, what)
        // Offsets start at 0 and never decrease, so each string's range lies inside the data.
        for i in 0..<n where offsets[i] > offsets[i + 1] || (i == 0 && offsets[0] != 0) {
            throw damaged(what, expected: "string offsets from 0, never decreasing", found: "offset \(offsets[i]) before \(offsets[i + 1]) at \(i)")
        }
        guard offsets[n] <= UInt64(file.count) else { throw damaged(what, expected: "at most \(file.count) bytes of text", found: "\(offsets[n])") }
        let data = try array(Int(offsets[n]), of: UInt8.self, what)
        return (0..<n).map { i in
            String(decoding: UnsafeBufferPointer(rebasing: data[Int(offsets[i])..<Int(offsets[i + 1])]), as: UTF8.self)
        }
    }
}
