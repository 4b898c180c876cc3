// TorchCheckpointWriter: writes a state dict as `torch.save` does (the zip format of torch ≥ 1.6,
// pickle protocol 2), for tools that read no safetensors: transformers 3.0.2, FiD's pinned version.

#if _endian(big)
    #error("torch storages are little-endian; the writer copies host Float32 values")
#endif

/// Writes `pytorch_model.bin`: an `OrderedDict` of float32 tensors in the given order, each group
/// of names (tied weights) one storage, as `model.state_dict()` holds them. `TorchCheckpointFile`
/// reads it back; `torch.load` reads it from torch 1.6 on (the format version 3 and records of
/// torch's own writer: `<archive>/data.pkl`, `data/<key>` aligned to 64 bytes, `version`,
/// `byteorder`). Past 4 GiB it writes zip64 records, as torch does.
public enum TorchCheckpointWriter {
    /// One storage and the names (state-dict keys) that view all of it; its values are asked for
    /// when the storage is written, so a model is never held twice.
    public struct Entry {
        public var names: [String]
        public var shape: [Int]
        public var values: () throws -> [Float]

        public init(names: [String], shape: [Int], values: @escaping () throws -> [Float]) {
            precondition(!names.isEmpty, "TorchCheckpointWriter.Entry without a name")
            (self.names, self.shape, self.values) = (names, shape, values)
        }

        var count: Int { shape.reduce(1, *) }
    }

    /// Writes `entries` to `path` (a temporary name, fsynced, then renamed).
    /// - Parameter zip64Above: sizes and offsets from which zip64 records are written (tests lower it).
    /// - Throws: `SafeTensorsError` `.io` when the file cannot be written.
    public static func write(_ entries: [Entry], to path: String, archive: String = "archive",
                             zip64Above: Int = Int(UInt32.max)) throws {
        // OrderedDict([(name, tensor), …]), each name of an entry viewing its storage.
        let root = TorchPickle.dict(entries.enumerated().flatMap { key, e in
            e.names.map { (TorchPickle.string($0), TorchPickle.tensor(storage: key, shape: e.shape)) }
        }, ordered: true)
        try save(root, storages: entries.map { Storage(count: $0.count, values: $0.values, name: $0.names[0]) },
                 to: path, archive: archive, zip64Above: zip64Above)
    }

    /// One float32 storage of a file, its values asked for when it is written.
    public struct Storage {
        public var count: Int
        public var values: () throws -> [Float]
        /// What the storage holds, for the message of a bug.
        public var name: String

        public init(count: Int, values: @escaping () throws -> [Float], name: String) {
            (self.count, self.values, self.name) = (count, values, name)
        }
    }

    /// Writes `root` as `torch.save(root)` does, its `.tensor` values over `storages` (by index),
    /// to `path` (a temporary name, fsynced, then renamed).
    /// - Throws: `SafeTensorsError` `.io` when the file cannot be written.
    public static func save(_ root: TorchPickle, storages: [Storage], to path: String, archive: String = "archive",
                            zip64Above: Int = Int(UInt32.max)) throws {
        var zip = ZipWriter(file: try AtomicFile(path: path), zip64Above: zip64Above)
        do {
            try zip.add(archive + "/data.pkl", [root.pickled()])
            try zip.add(archive + "/byteorder", [Array("little".utf8)])
            for (key, s) in storages.enumerated() {
                let values = try s.values()
                precondition(values.count == s.count, "TorchCheckpointWriter: \(s.name) has \(values.count) values for \(s.count)")
                try values.withUnsafeBytes { try zip.add(archive + "/data/\(key)", raw: $0) }
            }
            try zip.add(archive + "/version", [Array("3\n".utf8)])
            try zip.finish()
        } catch {
            zip.file.abandon()
            throw error
        }
    }
}

/// A stored (uncompressed) zip written front to back: each record's data aligned to 64 bytes by
/// padding in the local header's extra field, as torch's writer does; zip64 fields past a size.
struct ZipWriter {
    var file: AtomicFile
    let zip64Above: Int
    private var offset = 0
    private var central: [UInt8] = []
    private var count = 0

    init(file: AtomicFile, zip64Above: Int) {
        self.file = file
        self.zip64Above = zip64Above
    }

    mutating func add(_ name: String, _ chunks: [[UInt8]]) throws {
        let bytes = chunks.flatMap { $0 }
        try bytes.withUnsafeBytes { try add(name, raw: $0) }
    }

    mutating func add(_ name: String, raw data: UnsafeRawBufferPointer) throws {
        let nameBytes = Array(name.utf8)
        let crc = CRC32.checksum(data)
        let big = data.count >= zip64Above || offset >= zip64Above
        // Local header: 30 bytes, the name, a zip64 field (20 bytes) when big, then padding.
        var zip64Local: [UInt8] = []
        if big {
            zip64Local = le(0x0001, 2) + le(16, 2) + le(data.count, 8) + le(data.count, 8)
        }
        let before = offset + 30 + nameBytes.count + zip64Local.count
        var pad = (64 - (before + 4) % 64) % 64  // the padding field's own 4-byte header included
        if before % 64 == 0 { pad = -4 }  // already aligned: no padding field
        let padding: [UInt8] = pad < 0 ? [] : le(0x4246, 2) + le(pad, 2) + [UInt8](repeating: UInt8(ascii: "Z"), count: pad)
        let extra = zip64Local + padding
        let size32 = big ? 0xFFFF_FFFF : data.count
        var header = le(0x0403_4B50, 4) + le(big ? 45 : 20, 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0x21, 2)  // DOS date 1980-01-01
        header += le(Int(crc), 4) + le(size32, 4) + le(size32, 4) + le(nameBytes.count, 2) + le(extra.count, 2)
        header += nameBytes + extra
        try header.withUnsafeBytes { try file.write($0) }
        try file.write(data)
        // Central record: when big, every field a zip64 one (both sizes, then the header's offset,
        // in the order the field lists those set to 0xFFFFFFFF).
        var zip64Central: [UInt8] = []
        if big {
            let body = le(data.count, 8) + le(data.count, 8) + le(offset, 8)
            zip64Central = le(0x0001, 2) + le(body.count, 2) + body
        }
        central += le(0x0201_4B50, 4) + le(big ? 45 : 20, 2) + le(big ? 45 : 20, 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0x21, 2)
        central += le(Int(crc), 4) + le(size32, 4) + le(size32, 4)
        central += le(nameBytes.count, 2) + le(zip64Central.count, 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4)
        central += le(big ? 0xFFFF_FFFF : offset, 4) + nameBytes + zip64Central
        offset += header.count + data.count
        count += 1
    }

    /// The central directory and the end records (zip64 ones when the directory lies past 4 GiB).
    mutating func finish() throws {
        let start = offset
        var tail = central
        let big = start >= zip64Above || central.count >= zip64Above
        if big {
            let record = le(0x0606_4B50, 4) + le(44, 8) + le(45, 2) + le(45, 2) + le(0, 4) + le(0, 4)
                + le(count, 8) + le(count, 8) + le(central.count, 8) + le(start, 8)
            tail += record + le(0x0706_4B50, 4) + le(0, 4) + le(start + central.count, 8) + le(1, 4)
        }
        tail += le(0x0605_4B50, 4) + le(0, 2) + le(0, 2) + le(min(count, 0xFFFF), 2) + le(min(count, 0xFFFF), 2)
        tail += le(big ? 0xFFFF_FFFF : central.count, 4) + le(big ? 0xFFFF_FFFF : start, 4) + le(0, 2)
        try tail.withUnsafeBytes { try file.write($0) }
        try file.commit()
    }

    private func le(_ v: Int, _ bytes: Int) -> [UInt8] { (0..<bytes).map { UInt8(truncatingIfNeeded: UInt64(bitPattern: Int64(v)) >> (8 * UInt64($0))) } }
}

/// CRC-32 (IEEE 802.3, zip's), eight bytes a step over eight tables.
enum CRC32 {
    static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            t[i] = c
        }
        for i in 0..<256 {
            for k in 1..<8 { t[k * 256 + i] = (t[(k - 1) * 256 + i] >> 8) ^ t[Int(t[(k - 1) * 256 + i] & 0xFF)] }
        }
        return t
    }()

    static func checksum(_ data: UnsafeRawBufferPointer) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        tables.withUnsafeBufferPointer { t in
            var i = 0
            let n = data.count
            while i + 8 <= n {
                let lo = c ^ data.loadUnaligned(fromByteOffset: i, as: UInt32.self).littleEndian
                let hi = data.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self).littleEndian
                c = t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)] ^ t[5 * 256 + Int((lo >> 16) & 0xFF)]
                    ^ t[4 * 256 + Int(lo >> 24)] ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < n {
                c = t[Int((c ^ UInt32(data[i])) & 0xFF)] ^ (c >> 8)
                i += 1
            }
        }
        return c ^ 0xFFFF_FFFF
    }
}
