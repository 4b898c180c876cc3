// TorchCheckpoint: reads a `torch.save`d state dict (`pytorch_model.bin`) — a zip of a pickle
// plus raw storages — into Float32 tensors, through the safe pickle reader.

#if _endian(big)
    #error("torch storages are read as little-endian; TorchCheckpointFile copies them as host values")
#endif

/// Whole-file reading of `torch.save` checkpoints. For names, ties or a few tensors, use
/// `TorchCheckpointFile`.
public enum TorchCheckpoint {
    /// Every tensor of the state dict at `path` as Float32, in the dict's order.
    /// - Throws: `TorchCheckpointError` naming the file, the entry or tensor, and the problem.
    public static func read(path: String) throws -> TensorMap {
        try TorchCheckpointFile(path: path).readAll()
    }
}

/// An open `torch.save` checkpoint (the zip format of torch ≥ 1.6) holding a state dict: a dict
/// or `OrderedDict` of names to tensors.
///
/// The pickle (`<archive>/data.pkl`) is read at open by `PickleReader` with a whitelist of
/// exactly: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
/// `torch._utils._rebuild_parameter`, and the storage types `torch.FloatStorage`,
/// `torch.HalfStorage`, `torch.BFloat16Storage`, `torch.LongStorage` (others are named in
/// `StorageDType` but refused). Every tensor's view (offset, sizes, strides) is checked against its
/// storage's entry at open; the storages are converted to Float32 only when a tensor is asked for,
/// straight from the mapped file. Tensors that share a storage (tied weights) are reported by
/// `tiedGroups`.
public final class TorchCheckpointFile: @unchecked Sendable {
    /// The element types torch storages can have, by their pickled class name.
    public enum StorageDType: String, Sendable {
        case f32 = "FloatStorage", f16 = "HalfStorage", bf16 = "BFloat16Storage", i64 = "LongStorage"
        case f64 = "DoubleStorage", i32 = "IntStorage", i16 = "ShortStorage", i8 = "CharStorage"
        case u8 = "ByteStorage", bool = "BoolStorage"

        public var byteWidth: Int {
            switch self {
            case .f64, .i64: return 8
            case .f32, .i32: return 4
            case .f16, .bf16, .i16: return 2
            case .i8, .u8, .bool: return 1
            }
        }

        /// Whether `TorchCheckpointFile` converts it.
        public var isReadable: Bool { [.f32, .f16, .bf16, .i64].contains(self) }
    }

    /// A tensor's place in its storage, as the checkpoint describes it (in elements).
    public struct View: Sendable, Equatable {
        /// The storage's key: its entry is `<archive>/data/<key>`.
        public let storage: String
        public let dtype: StorageDType
        public let offset: Int
        public let shape: [Int]
        public let strides: [Int]
    }

    public let path: String
    /// Tensor names in the state dict's order.
    public let names: [String]
    /// Each tensor's view.
    public let views: [String: View]
    /// Names of tensors sharing a storage, in file order, one group per shared storage with more
    /// than one name (e.g. T5's `shared.weight` and `encoder.embed_tokens.weight`).
    public let tiedGroups: [[String]]
    /// The zip entries' folder (`archive` by default; torch uses the file's stem).
    public let archiveName: String

    private let archive: ZipArchive
    private let storages: [String: UnsafeRawBufferPointer]

    /// Opens `path`, reads its pickle and validates every tensor's view.
    /// - Throws: `TorchCheckpointError`.
    public init(path: String) throws {
        self.path = path
        archive = try ZipArchive(path: path)
        // data.pkl sits in one top-level folder whose name varies with how the file was saved.
        let pickles = archive.entries.filter { $0.name.hasSuffix("/data.pkl") && $0.name.split(separator: "/").count == 2 }
        guard pickles.count == 1, let pkl = pickles.first else {
            throw TorchCheckpointError(.missingEntry, path: path,
                                       "expected one '<archive>/data.pkl' entry, found \(pickles.map(\.name))",
                                       hint: "not a torch.save checkpoint (a TorchScript archive or another zip?)")
        }
        archiveName = String(pkl.name.dropLast("/data.pkl".count))
        if let order = archive.entry(archiveName + "/byteorder") {
            let text = String(decoding: try archive.bytes(order), as: UTF8.self)
            guard text == "little" else {
                throw TorchCheckpointError(.layout, path: path, entry: order.name, "byte order '\(text)', expected 'little'",
                                           hint: "re-save the checkpoint on a little-endian machine")
            }
        }

        let loader = StorageLoader(archive: archive, prefix: archiveName + "/data/", path: path)
        let root: PickleValue
        do {
            root = try PickleReader.read(try archive.data(pkl.name), whitelist: Self.whitelist(loader))
        } catch let e as PickleError {
            throw TorchCheckpointError(.pickle, path: path, entry: pkl.name, e.message
                + (e.offset.map { " (at byte \($0) of the pickle)" } ?? ""), hint: e.hint)
        }

        guard case let .dict(dict) = root else {
            throw TorchCheckpointError(.layout, path: path, entry: pkl.name, "the pickle holds a \(root.kind), expected a state dict",
                                       hint: "save model.state_dict(), not the model or a training checkpoint")
        }
        var names: [String] = [], views: [String: View] = [:], byStorage: [String: [String]] = [:], storageOrder: [String] = []
        for (k, v) in zip(dict.keys, dict.values) {
            guard let name = k.stringValue else {
                throw TorchCheckpointError(.layout, path: path, entry: pkl.name, "state dict key \(k) is a \(k.kind), expected a string")
            }
            guard case let .object(o) = v, let t = o as? TensorRebuild else {
                throw TorchCheckpointError(.layout, path: path, entry: name, "value is a \(v.kind), expected a tensor",
                                           hint: "save model.state_dict() (a flat dict of tensors)")
            }
            let view = try t.validated(path: path, name: name)
            names.append(name)
            views[name] = view
            if byStorage[view.storage] == nil { storageOrder.append(view.storage) }
            byStorage[view.storage, default: []].append(name)
        }
        self.names = names
        self.views = views
        tiedGroups = storageOrder.compactMap { byStorage[$0]!.count > 1 ? byStorage[$0] : nil }
        storages = loader.bytes
    }

    /// The whitelist for torch state dicts; persistent ids resolve through `loader`.
    private static func whitelist(_ loader: StorageLoader) -> PickleWhitelist {
        var w = PickleWhitelist()
        w.allowOrderedDict()
        for d in ["Float", "Half", "BFloat16", "Long", "Double", "Int", "Short", "Char", "Byte", "Bool"] {
            w.values.insert("torch.\(d)Storage")
        }
        w.persistentLoad = { try loader.load($0) }
        w.reduce["torch._utils._rebuild_tensor_v2"] = { args in
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            guard (6...7).contains(args.count), case let .object(o) = args[0], let storage = o as? StorageRef,
                  let offset = args[1].intValue, let size = Self.ints(args[2]), let stride = Self.ints(args[3]),
                  args[4].boolValue != nil
            else {
                throw PickleError(.malformed, offset: nil,
                                  "_rebuild_tensor_v2 expects (storage, offset, size, stride, requires_grad, hooks[, metadata]), got \(args.map(\.kind))")
            }
            return .object(TensorRebuild(storage: storage, offset: offset, shape: size, strides: stride))
        }
        w.reduce["torch._utils._rebuild_parameter"] = { args in
            // (data, requires_grad, backward_hooks): a Parameter is its tensor.
            guard args.count == 3, case let .object(o) = args[0], o is TensorRebuild else {
                throw PickleError(.malformed, offset: nil, "_rebuild_parameter expects (tensor, requires_grad, hooks), got \(args.map(\.kind))")
            }
            return args[0]
        }
        return w
    }

    private static func ints(_ v: PickleValue) -> [Int]? {
        guard let items = v.sequence else { return nil }
        let ints = items.compactMap(\.intValue)
        return ints.count == items.count ? ints : nil
    }

    /// The view of the tensor called `name`.
    /// - Throws: `TensorMapError.missing` with close names.
    public func view(_ name: String) throws -> View {
        guard let v = views[name] else {
            throw TensorMapError.missing(name: name, source: path, close: TensorMap.closeNames(to: name, among: names))
        }
        return v
    }

    /// The tensor called `name` as Float32, row-major.
    /// - Throws: `TensorMapError.missing`, or `TorchCheckpointError` `.unsupportedDType` /
    ///   `.notRepresentable`.
    public func tensor(_ name: String) throws -> Tensor {
        let v = try view(name)
        guard v.dtype.isReadable else {
            throw TorchCheckpointError(.unsupportedDType, path: path, entry: name,
                                       "storage type torch.\(v.dtype.rawValue) is not supported",
                                       hint: "fidq reads float32, float16, bfloat16 and int64 tensors; convert it with .float() before saving")
        }
        let storage = storages[v.storage]!
        let n = v.shape.reduce(1, *)
        var bad: (Int, Int64)?
        // Uninitialised: convert writes every element (zero-filling first would touch pages twice).
        let data = [Float](unsafeUninitializedCapacity: n) { dst, initialized in
            // A view with elements has a non-empty storage (checked at open), so both pointers exist.
            if n > 0, let d = dst.baseAddress, let src = storage.baseAddress {
                if Self.isContiguous(v.shape, v.strides) {
                    bad = Self.convert(v.dtype, src + v.offset * v.dtype.byteWidth, d, n)
                } else {
                    bad = Self.gather(v, src, d)
                }
                if bad != nil { d.update(repeating: 0, count: n) }
            }
            initialized = n
        }
        if let (i, value) = bad {
            throw TorchCheckpointError(.notRepresentable, path: path, entry: name,
                                       "int64 value \(value) at element \(i) is not exactly a Float32",
                                       hint: "only integers up to 2^24 in magnitude convert")
        }
        return Tensor(shape: v.shape, data: data)
    }

    /// Every tensor in the state dict's order; the map's `source` is the path.
    public func readAll() throws -> TensorMap {
        var map = TensorMap(source: path)
        for name in names { map.append(name, try tensor(name)) }
        return map
    }

    /// Whether `strides` are the row-major strides of `shape` (sizes-1 axes may have any stride).
    static func isContiguous(_ shape: [Int], _ strides: [Int]) -> Bool {
        var expected = 1
        for (size, stride) in zip(shape, strides).reversed() {
            if size != 1 && stride != expected { return false }
            expected *= size
        }
        return true
    }

    private static func convert(_ dtype: StorageDType, _ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) -> (Int, Int64)? {
        nonisolated(unsafe) let dst = dst
        switch dtype {
        case .f32:
            parallelFor(n, grain: 1 << 18) { r in
                UnsafeMutableRawPointer(dst + r.lowerBound).copyMemory(from: src + 4 * r.lowerBound, byteCount: 4 * r.count)
            }
        case .f16:
            parallelFor(n, grain: 1 << 16) { r in Half.widenF16(src + 2 * r.lowerBound, into: dst + r.lowerBound, count: r.count) }
        case .bf16:
            parallelFor(n, grain: 1 << 16) { r in Half.widenBF16(src + 2 * r.lowerBound, into: dst + r.lowerBound, count: r.count) }
        default:
            for i in 0..<n {
                guard let f = element(dtype, src, i) else { return (i, Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
                dst[i] = f
            }
        }
        return nil
    }

    /// Element `i` of a storage as Float32; nil for an int64 that Float32 cannot hold exactly.
    private static func element(_ dtype: StorageDType, _ src: UnsafeRawPointer, _ i: Int) -> Float? {
        switch dtype {
        case .f32: return Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
        case .f16: return Half.float(fromF16: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        case .bf16: return Half.float(fromBF16: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        case .i64:
            let v = Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
            return v.magnitude <= 1 << 24 ? Float(v) : nil
        default: preconditionFailure("element: \(dtype) is not readable; tensor() checks isReadable")
        }
    }

    /// A strided view copied out element by element (rare in checkpoints: a saved transpose or slice).
    private static func gather(_ v: View, _ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>) -> (Int, Int64)? {
        let rank = v.shape.count
        var index = [Int](repeating: 0, count: rank)
        let n = v.shape.reduce(1, *)
        var at = v.offset
        for i in 0..<n {
            guard let f = element(v.dtype, src, at) else {
                return (i, Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * at, as: Int64.self)))
            }
            dst[i] = f
            // Odometer step over the axes, innermost first.
            var axis = rank - 1
            while axis >= 0 {
                index[axis] += 1
                at += v.strides[axis]
                if index[axis] < v.shape[axis] { break }
                at -= v.strides[axis] * v.shape[axis]
                index[axis] = 0
                axis -= 1
            }
        }
        return nil
    }
}

/// A storage named by a persistent id: `('storage', type, key, location, numel)`. One object per
/// key, so tied tensors share it.
final class StorageRef: PickleObject {
    let key: String
    let dtype: TorchCheckpointFile.StorageDType
    let numel: Int
    var pickleKind: String { "torch storage '\(key)'" }

    init(key: String, dtype: TorchCheckpointFile.StorageDType, numel: Int) {
        self.key = key
        self.dtype = dtype
        self.numel = numel
    }
}

/// Resolves persistent ids to storages, checking each against its zip entry.
final class StorageLoader {
    let archive: ZipArchive
    let prefix: String
    let path: String
    private var refs: [String: StorageRef] = [:]
    /// Each storage's bytes, by key.
    private(set) var bytes: [String: UnsafeRawBufferPointer] = [:]

    init(archive: ZipArchive, prefix: String, path: String) {
        self.archive = archive
        self.prefix = prefix
        self.path = path
    }

    func load(_ pid: PickleValue) throws -> PickleValue {
        guard case let .tuple(t) = pid, t.count == 5, t[0].stringValue == "storage", case let .global(g) = t[1],
              let key = t[2].stringValue, t[3].stringValue != nil, let numel = t[4].intValue
        else {
            throw PickleError(.malformed, offset: nil, "persistent id \(pid.sequence?.map(\.description) ?? [pid.kind]) is not ('storage', type, key, location, numel)")
        }
        guard g.module == "torch", let dtype = TorchCheckpointFile.StorageDType(rawValue: g.name) else {
            throw PickleError(.refused, offset: nil, "storage type '\(g.qualifiedName)' is not a torch storage type fidq knows")
        }
        if let ref = refs[key] {
            guard ref.dtype == dtype, ref.numel == numel else {
                throw PickleError(.malformed, offset: nil,
                                  "storage '\(key)' appears as \(dtype.rawValue) of \(numel) and as \(ref.dtype.rawValue) of \(ref.numel)")
            }
            return .object(ref)
        }
        guard let entry = archive.entry(prefix + key) else {
            throw PickleError(.malformed, offset: nil, "storage '\(key)' has no entry '\(prefix + key)' in the archive")
        }
        let (need, overflow) = numel.multipliedReportingOverflow(by: dtype.byteWidth)
        guard numel >= 0, !overflow, need == entry.size else {
            throw PickleError(.malformed, offset: nil,
                              "storage '\(key)' claims \(numel) \(dtype.rawValue) elements (\(overflow ? "overflow" : "\(need)") bytes), its entry has \(entry.size) bytes")
        }
        do { bytes[key] = try archive.bytes(entry) } catch let e as TorchCheckpointError {
            throw PickleError(.malformed, offset: nil, "storage '\(key)': \(e.message)", hint: e.hint)
        }
        let ref = StorageRef(key: key, dtype: dtype, numel: numel)
        refs[key] = ref
        return .object(ref)
    }
}

/// What `_rebuild_tensor_v2` returns: a view into a storage, checked by `validated`.
final class TensorRebuild: PickleObject {
    let storage: StorageRef
    let offset: Int
    let shape: [Int]
    let strides: [Int]
    var pickleKind: String { "torch tensor" }

    init(storage: StorageRef, offset: Int, shape: [Int], strides: [Int]) {
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.strides = strides
    }

    /// The view, after checking that every element it addresses lies inside its storage.
    func validated(path: String, name: String) throws -> TorchCheckpointFile.View {
        func fail(_ what: String) -> TorchCheckpointError {
            TorchCheckpointError(.layout, path: path, entry: name,
                                 "\(what) (storage '\(storage.key)' of \(storage.numel) \(storage.dtype.rawValue) elements, "
                                 + "offset \(offset), size \(shape), stride \(strides))",
                                 hint: "the checkpoint is corrupt or was not written by torch.save")
        }
        guard shape.count == strides.count else { throw fail("size and stride have different lengths") }
        guard shape.count <= 64 else { throw fail("more than 64 dimensions") }
        guard shape.allSatisfy({ $0 >= 0 }), strides.allSatisfy({ $0 >= 0 }) else { throw fail("negative size or stride") }
        guard offset >= 0, offset <= storage.numel else { throw fail("storage offset out of range") }
        var count = 1, last = offset
        for (size, stride) in zip(shape, strides) {
            let c = count.multipliedReportingOverflow(by: size)
            guard !c.overflow else { throw fail("element count overflows") }
            count = c.partialValue
            guard size > 0 else { continue }
            let step = (size - 1).multipliedReportingOverflow(by: stride)
            let end = last.addingReportingOverflow(step.partialValue)
            guard !step.overflow, !end.overflow else { throw fail("view extent overflows") }
            last = end.partialValue
        }
        if count > 0 {
            guard last < storage.numel else { throw fail("view reaches element \(last), past the storage's end") }
            // Overlapping strides (expand) would let a tiny file claim a huge tensor.
            guard count <= storage.numel else { throw fail("view has more elements (\(count)) than its storage") }
        }
        return TorchCheckpointFile.View(storage: storage.key, dtype: storage.dtype, offset: offset, shape: shape, strides: strides)
    }
}
