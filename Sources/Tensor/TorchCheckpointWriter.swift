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
        var zip = ZipWriter(file: try AtomicFile(path: path), zip64Above: zip64Above)
        do {
            try zip.add(archive + "/data.pkl", [pickle(entries)])
            try zip.add(archive + "/byteorder", [Array("little".utf8)])
            for (key, e) in entries.enumerated() {
                let values = try e.values()
                precondition(values.count == e.count, "TorchCheckpointWriter: \(e.names[0]) has \(values.count) values for shape \(e.shape)")
                try values.withUnsafeBytes { try zip.add(archive + "/data/\(key)", raw: $0) }
            }
            try zip.add(archive + "/version", [Array("3\n".utf8)])
            try zip.finish()
        } catch {
            zip.file.abandon()
            throw error
        }
    }

    /// The state dict's pickle: `OrderedDict([(name, _rebuild_tensor_v2(storage, 0, shape, strides,
    /// False, OrderedDict())), …])`, each storage a persistent id `('storage', FloatStorage, key,
    /// 'cpu', numel)` as `torch.save` writes it.
    static func pickle(_ entries: [Entry]) -> [UInt8] {
        var p: [UInt8] = [0x80, 2]  // PROTO 2
        func global(_ module: String, _ name: String) { p += [UInt8(ascii: "c")] + Array("\(module)\n\(name)\n".utf8) }
        func text(_ s: String) {
            let b = Array(s.utf8)
            p.append(UInt8(ascii: "X"))
            withUnsafeBytes(of: UInt32(b.count).littleEndian) { p += $0 }
            p += b
        }
        func int(_ v: Int) {
            if v >= 0 && v < 256 {
                p += [UInt8(ascii: "K"), UInt8(v)]
            } else if v >= 0 && v < 65536 {
                p += [UInt8(ascii: "M"), UInt8(v & 0xFF), UInt8(v >> 8)]
            } else if v >= Int(Int32.min) && v <= Int(Int32.max) {
                p.append(UInt8(ascii: "J"))
                withUnsafeBytes(of: Int32(v).littleEndian) { p += $0 }
            } else {
                p += [0x8A, 8]  // LONG1: 8 little-endian two's-complement bytes
                withUnsafeBytes(of: Int64(v).littleEndian) { p += $0 }
            }
        }
        func tuple(_ values: [Int]) {
            if values.isEmpty { p.append(UInt8(ascii: ")")); return }
            p.append(UInt8(ascii: "("))
            values.forEach(int)
            p.append(UInt8(ascii: "t"))
        }
        func emptyOrderedDict() {
            global("collections", "OrderedDict")
            p += [UInt8(ascii: ")"), UInt8(ascii: "R")]
        }
        emptyOrderedDict()
        p.append(UInt8(ascii: "("))  // MARK for SETITEMS
        for (key, e) in entries.enumerated() {
            var strides = [Int](repeating: 1, count: e.shape.count)
            for i in stride(from: e.shape.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * e.shape[i + 1] }
            for name in e.names {
                text(name)
                global("torch._utils", "_rebuild_tensor_v2")
                p.append(UInt8(ascii: "("))
                p.append(UInt8(ascii: "("))
                text("storage")
                global("torch", "FloatStorage")
                text(String(key))
                text("cpu")
                int(e.count)
                p += [UInt8(ascii: "t"), UInt8(ascii: "Q")]  // TUPLE, BINPERSID
                int(0)
                tuple(e.shape)
                tuple(strides)
                p.append(0x89)  // NEWFALSE: requires_grad
                emptyOrderedDict()  // backward hooks
                p += [UInt8(ascii: "t"), UInt8(ascii: "R")]
            }
        }
        p += [UInt8(ascii: "u"), UInt8(ascii: ".")]  // SETITEMS, STOP
        return p
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
