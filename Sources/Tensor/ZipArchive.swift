// ZipArchive: a minimal read-only zip reader for PyTorch's checkpoint container — stored
// (uncompressed) entries, ZIP64 — over a read-only mapping, so multi-GB files are never copied whole.
import Formats

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file in PyTorch's format that cannot be read: the zip container, the pickle in it, or the
/// tensors it describes. `description` names the file, the entry or tensor, and the problem.
public struct TorchCheckpointError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// open, stat or mmap failed.
        case io
        /// Not a zip archive: too short, no end-of-central-directory record, or the legacy format.
        case notZip
        /// The zip structure is inconsistent: a record's signature, size or offset is wrong.
        case zip
        /// An entry is compressed or encrypted; torch.save stores entries uncompressed.
        case compressed
        /// An entry the checkpoint needs is absent.
        case missingEntry
        /// The pickle is malformed or asks for something not allowed (see `PickleError`).
        case pickle
        /// The pickle's structure is not a state dict of tensors, or a tensor's view does not fit
        /// its storage.
        case layout
        /// A storage dtype fidq does not convert to Float32.
        case unsupportedDType
        /// An integer value that Float32 cannot hold exactly.
        case notRepresentable
    }

    public let kind: Kind
    /// The file concerned.
    public let path: String
    /// The zip entry or tensor concerned, when there is one.
    public let entry: String?
    public let message: String
    public let hint: String?

    public init(_ kind: Kind, path: String, entry: String? = nil, _ message: String, hint: String? = nil) {
        self.kind = kind
        self.path = path
        self.entry = entry
        self.message = message
        self.hint = hint
    }

    public var description: String {
        path + (entry.map { " [\($0)]" } ?? "") + ": " + message + (hint.map { " (hint: \($0))" } ?? "")
    }
}

/// A zip archive of stored entries, mapped read-only. Entry bytes are views into the mapping, valid
/// while the archive lives; pages are read from disk only when touched.
///
/// Reads what PyTorch's writer produces: the end-of-central-directory record (with or without a
/// comment), ZIP64 end records and ZIP64 extra fields, local headers with padding extra fields.
/// Every offset and size is checked against the file before use. Compressed (any method but 0)
/// and encrypted entries are listed but refused when read. Multi-disk archives are refused.
public final class ZipArchive: @unchecked Sendable {
    public struct Entry: Sendable {
        public let name: String
        /// 0 = stored; anything else is compressed.
        public let method: UInt16
        public let flags: UInt16
        /// Where the entry's bytes start in the file (after its local header).
        public let dataOffset: Int
        public let size: Int
    }

    public let path: String
    /// Entries in central-directory order.
    public let entries: [Entry]
    private let byName: [String: Int]
    /// The mapped file; entries' data are views into it.
    private let bytes: FileBytes

    /// Opens and maps `path`, and reads its central directory.
    /// - Throws: `TorchCheckpointError` `.io`, `.notZip` or `.zip`.
    public init(path: String) throws {
        self.path = path
        let bytes: FileBytes
        do {
            // Always mapped: storages are read as views, and a checkpoint may be several GB.
            bytes = try FileBytes(path: path, mapThreshold: 0, minSize: 22) { size in
                TorchCheckpointError(.notZip, path: path, "file is \(size) bytes, too short for a zip archive",
                                     hint: "an empty or cut-off download?")
            }
        } catch let failure as FileBytes.Failure {
            switch failure {
            case .io(let what): throw TorchCheckpointError(.io, path: path, what)
            case .notRegular: throw TorchCheckpointError(.io, path: path, "is not a regular file")
            case .shrank(let n): throw TorchCheckpointError(.io, path: path, "file shrank to \(n) bytes while being read")
            case .addressSpace(let n):
                throw TorchCheckpointError(.io, path: path, "cannot map its \(n) bytes: no address space left", hint: FileBytes.Failure.addressSpaceHint)
            }
        }
        entries = try Self.readDirectory(bytes.buffer, path: path)
        self.bytes = bytes
        var byName: [String: Int] = [:]
        for (i, e) in entries.enumerated() where byName[e.name] == nil { byName[e.name] = i }
        self.byName = byName
    }

    /// The entry called `name`, if any.
    public func entry(_ name: String) -> Entry? { byName[name].map { entries[$0] } }

    /// The bytes of `entry`, a view into the mapping (valid while `self` lives).
    /// - Throws: `.compressed` for a compressed or encrypted entry.
    public func bytes(_ entry: Entry) throws -> UnsafeRawBufferPointer {
        guard entry.method == 0 else {
            throw TorchCheckpointError(.compressed, path: path, entry: entry.name,
                                       "entry is compressed (zip method \(entry.method)); fidq reads stored entries only",
                                       hint: "torch.save writes stored entries; re-save the checkpoint with torch.save instead of re-zipping it")
        }
        guard entry.flags & 1 == 0 else {
            throw TorchCheckpointError(.compressed, path: path, entry: entry.name, "entry is encrypted")
        }
        return UnsafeRawBufferPointer(start: bytes.base + entry.dataOffset, count: entry.size)
    }

    /// A copy of the bytes of the entry called `name`.
    /// - Throws: `.missingEntry`, `.compressed`.
    public func data(_ name: String) throws -> [UInt8] {
        guard let e = entry(name) else {
            throw TorchCheckpointError(.missingEntry, path: path, entry: name, "no such entry in the archive")
        }
        return Array(try bytes(e))
    }

    // MARK: - parsing

    private struct Reader {
        let file: UnsafeRawBufferPointer
        let path: String

        func u16(_ at: Int) -> Int { Int(file[at]) | Int(file[at + 1]) << 8 }
        func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
        func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) | UInt64(u32(at + 4)) << 32 }

        /// `u64` as an offset or size that must be at most the file size.
        func size64(_ at: Int, _ what: String) throws -> Int {
            let v = u64(at)
            guard v <= UInt64(file.count) else { throw error("\(what) is \(v), past the file's \(file.count) bytes") }
            return Int(v)
        }

        /// Throws unless `count` bytes at `at` lie inside the file.
        func need(_ at: Int, _ count: Int, _ what: String) throws {
            guard at >= 0, count >= 0, at <= file.count, count <= file.count - at else {
                throw error("\(what) at offset \(at) (\(count) bytes) runs past the end of the \(file.count)-byte file",
                            hint: "the file is truncated or corrupt")
            }
        }

        func error(_ message: String, entry: String? = nil, hint: String? = nil) -> TorchCheckpointError {
            TorchCheckpointError(.zip, path: path, entry: entry, message, hint: hint)
        }
    }

    private static func readDirectory(_ file: UnsafeRawBufferPointer, path: String) throws -> [Entry] {
        let r = Reader(file: file, path: path)
        // The end-of-central-directory record is the last thing in the file but for a comment of
        // at most 65535 bytes: search backwards for its signature.
        var eocd = -1
        var i = file.count - 22
        let lowest = max(0, file.count - 22 - 0xFFFF)
        while i >= lowest {
            if r.u32(i) == 0x0605_4B50 && i + 22 + r.u16(i + 20) <= file.count { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else {
            // torch's pre-1.6 format starts with a protocol-2 pickle of its magic number.
            let legacyMagic: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]
            if file.starts(with: legacyMagic) {
                throw TorchCheckpointError(
                    .notZip, path: path, "legacy format; re-save with torch.save(…, _use_new_zipfile_serialization=True)",
                    hint: "this is torch's pre-1.6 pickle format, which fidq does not read")
            }
            if file.count >= 2 && file[0] == 0x80 && (2...5).contains(file[1]) {
                throw TorchCheckpointError(.notZip, path: path, "a bare pickle, not a torch.save zip archive",
                                           hint: "torch.save writes a zip; a pickle.dump file is read differently")
            }
            let zipStart = file.count >= 4 && r.u32(0) == 0x0403_4B50
            throw TorchCheckpointError(
                .notZip, path: path, "no zip end-of-central-directory record",
                hint: zipStart ? "the file starts like a zip but is truncated; download it again" : "not a zip archive (not a torch.save file?)")
        }
        var count = r.u16(eocd + 10)
        var cdSize = r.u32(eocd + 12)
        var cdOffset = r.u32(eocd + 16)
        guard r.u16(eocd + 4) == r.u16(eocd + 6) || r.u16(eocd + 4) == 0xFFFF else {
            throw r.error("multi-disk zip archives are not supported")
        }
        // ZIP64: a locator just before the record points at the 64-bit end record.
        if eocd >= 20 && r.u32(eocd - 20) == 0x0706_4B50 {
            let at = try r.size64(eocd - 20 + 8, "the ZIP64 end record's offset")
            try r.need(at, 56, "the ZIP64 end record")
            guard r.u32(at) == 0x0606_4B50 else { throw r.error("no ZIP64 end record at offset \(at) where its locator points") }
            let n = r.u64(at + 32)
            guard n <= UInt64(file.count / 46) else { throw r.error("the ZIP64 end record claims \(n) entries, more than the file can hold") }
            count = Int(n)
            cdSize = try r.size64(at + 40, "the central directory's size")
            cdOffset = try r.size64(at + 48, "the central directory's offset")
        } else if count == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF {
            throw r.error("the end record needs ZIP64 values but there is no ZIP64 locator", hint: "the file is corrupt")
        }
        try r.need(cdOffset, cdSize, "the central directory")

        var entries: [Entry] = []
        entries.reserveCapacity(count)
        var at = cdOffset
        let cdEnd = cdOffset + cdSize
        for k in 0..<count {
            guard at <= cdEnd - 46, r.u32(at) == 0x0201_4B50 else {
                throw r.error("central directory entry \(k) of \(count) at offset \(at) is missing or runs past the directory")
            }
            let flags = r.u16(at + 8)
            let method = r.u16(at + 10)
            var compressed = r.u32(at + 20)
            var size = r.u32(at + 24)
            let nameLength = r.u16(at + 28), extraLength = r.u16(at + 30), commentLength = r.u16(at + 32)
            var local = r.u32(at + 42)
            let recordEnd = at + 46 + nameLength + extraLength + commentLength
            guard recordEnd <= cdEnd else { throw r.error("central directory entry \(k) runs past the directory") }
            guard let name = validUTF8(UnsafeRawBufferPointer(rebasing: file[(at + 46)..<(at + 46 + nameLength)])) else {
                throw r.error("central directory entry \(k)'s name is not UTF-8")
            }
            // The ZIP64 extra field holds, in this order, each of these that is 0xFFFFFFFF.
            var e = at + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = r.u16(e), length = r.u16(e + 2)
                guard e + 4 + length <= extraEnd else { throw r.error("an extra field runs past its entry", entry: name) }
                if id == 0x0001 {
                    var f = e + 4
                    func next(_ what: String) throws -> Int {
                        guard f + 8 <= e + 4 + length else { throw r.error("the ZIP64 extra field lacks the \(what)", entry: name) }
                        defer { f += 8 }
                        return try r.size64(f, "the entry's \(what)")
                    }
                    if size == 0xFFFF_FFFF { size = try next("size") }
                    if compressed == 0xFFFF_FFFF { compressed = try next("compressed size") }
                    if local == 0xFFFF_FFFF { local = try next("local header offset") }
                }
                e += 4 + length
            }
            // The local header repeats name and extra (torch pads its extra so data is aligned).
            try r.need(local, 30, "the local header of '\(name)'")
            guard r.u32(local) == 0x0403_4B50 else { throw r.error("no local header at offset \(local)", entry: name) }
            let dataOffset = local + 30 + r.u16(local + 26) + r.u16(local + 28)
            let stored = method == 0 ? size : compressed
            guard method != 0 || compressed == size else {
                throw r.error("stored entry has compressed size \(compressed) but size \(size)", entry: name)
            }
            try r.need(dataOffset, stored, "the data of '\(name)'")
            entries.append(Entry(name: name, method: UInt16(method), flags: UInt16(flags), dataOffset: dataOffset, size: stored))
            at = recordEnd
        }
        return entries
    }
}
