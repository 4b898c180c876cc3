// NumpyPickle: numpy arrays (float16/float32, little-endian, C order) and plain data read through
// the safe pickle reader — the form of FiD's `pickle.dump((ids, embeddings))` passage shards.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

#if _endian(big)
    #error("numpy arrays are read as little-endian")
#endif

/// A numpy array rebuilt from a pickle: its dtype, shape and raw bytes, checked against each other
/// before `tensor()` converts them.
public final class NumpyArray: PickleObject {
    public private(set) var shape: [Int]
    /// The dtype code without byte order: "f2" or "f4"; nil until BUILD gives it.
    public private(set) var dtype: String?
    /// The elements' bytes, C order, little-endian.
    public private(set) var bytes: [UInt8]
    public var pickleKind: String { "numpy.ndarray" }

    init(shape: [Int], dtype: String?, bytes: [UInt8]) {
        self.shape = shape
        self.dtype = dtype
        self.bytes = bytes
    }

    /// `__setstate__((version, shape, dtype, is_fortran, rawdata))`, as `_reconstruct` pickles use.
    public func build(state: PickleValue) throws {
        guard case let .tuple(s) = state, s.count == 5, s[0].intValue == 1, case let .object(d) = s[2],
              let dt = d as? NumpyDType, let fortran = s[3].boolValue, case let .bytes(raw) = s[4]
        else {
            throw PickleError(.malformed, offset: nil,
                              "ndarray state must be (1, shape, dtype, is_fortran, bytes), got \(state.sequence?.map(\.kind) ?? [state.kind])",
                              hint: "object arrays and other array kinds are not read")
        }
        try set(shape: s[1], dtype: dt, fortran: fortran, bytes: raw)
    }

    func set(shape value: PickleValue, dtype: NumpyDType, fortran: Bool, bytes raw: [UInt8]) throws {
        guard let dims = value.sequence?.compactMap(\.intValue), dims.count == value.sequence?.count,
              dims.allSatisfy({ $0 >= 0 }), dims.count <= 64
        else {
            throw PickleError(.malformed, offset: nil, "ndarray shape \(value.kind) is not a tuple of sizes")
        }
        let code = try dtype.checkedCode()
        var count = 1
        for d in dims {
            let (c, o) = count.multipliedReportingOverflow(by: d)
            guard !o else { throw PickleError(.malformed, offset: nil, "ndarray shape \(dims) overflows") }
            count = c
        }
        let width = code == "f2" ? 2 : 4
        guard count.multipliedReportingOverflow(by: width) == (raw.count, false) else {
            throw PickleError(.malformed, offset: nil, "ndarray of shape \(dims) and dtype \(code) needs \(count * width) bytes, has \(raw.count)")
        }
        guard !fortran || dims.filter({ $0 > 1 }).count <= 1 else {
            throw PickleError(.refused, offset: nil, "Fortran-order ndarray of shape \(dims) is not read",
                              hint: "save np.ascontiguousarray(array)")
        }
        shape = dims
        self.dtype = code
        bytes = raw
    }

    /// The array as a Float32 tensor of the same shape.
    /// - Throws: `PickleError` when the array never got its state (a `_reconstruct` without BUILD).
    public func tensor() throws -> Tensor {
        guard let dtype else { throw PickleError(.malformed, offset: nil, "ndarray has no dtype (no BUILD state)") }
        let n = shape.reduce(1, *)
        var data = [Float](repeating: 0, count: n)
        bytes.withUnsafeBytes { src in
            data.withUnsafeMutableBufferPointer { dst in
                guard n > 0, let s = src.baseAddress, let d = dst.baseAddress else { return }
                if dtype == "f2" { Half.widenF16(s, into: d, count: n) } else { memcpy(d, s, 4 * n) }
            }
        }
        return Tensor(shape: shape, data: data)
    }
}

/// `numpy.dtype(code, align, copy)` plus its BUILD state (byte order).
final class NumpyDType: PickleObject {
    let code: String
    var order = "="
    var pickleKind: String { "numpy.dtype" }

    init(code: String) { self.code = code }

    /// State `(3, order, subarray, names, fields, elsize, alignment, flags)`; only plain dtypes.
    func build(state: PickleValue) throws {
        guard case let .tuple(s) = state, s.count == 8, s[0].intValue == 3, let order = s[1].stringValue,
              case .none = s[2], case .none = s[3], case .none = s[4]
        else {
            throw PickleError(.refused, offset: nil, "numpy.dtype state \(state.sequence?.map(\.description) ?? [state.kind]) is not a plain dtype's",
                              hint: "only float16 and float32 arrays are read")
        }
        self.order = order
    }

    /// "f2" or "f4" if the dtype is one of those in little-endian (or native) order.
    func checkedCode() throws -> String {
        guard code == "f2" || code == "f4", order == "<" || order == "=" else {
            throw PickleError(.refused, offset: nil, "numpy dtype '\(order)\(code)' is not read",
                              hint: "only little-endian float16 ('f2') and float32 ('f4') arrays are read")
        }
        return code
    }
}

/// Reading numpy arrays and plain data through `PickleReader`.
public enum NumpyPickle {
    /// A whitelist of numpy's array pickling only: `_reconstruct` (protocols 0–4), `_frombuffer`
    /// (protocol 5), `numpy.ndarray` as a value and `numpy.dtype`, under both `numpy.core` (numpy 1)
    /// and `numpy._core` (numpy 2), plus the `_codecs.encode` / `bytes()` protocols 0–2 write an
    /// array's bytes with. No persistent ids.
    public static var whitelist: PickleWhitelist {
        var w = PickleWhitelist()
        w.allowProtocol2Bytes()
        w.values.insert("numpy.ndarray")
        for core in ["numpy.core", "numpy._core"] {
            w.reduce["\(core).multiarray._reconstruct"] = { args in
                // (numpy.ndarray, (0,), b'b'): an empty array that BUILD fills.
                guard args.count == 3, case let .global(g) = args[0], g.qualifiedName == "numpy.ndarray" else {
                    throw PickleError(.refused, offset: nil, "_reconstruct of \(args.first?.kind ?? "nothing"); only numpy.ndarray is rebuilt")
                }
                return .object(NumpyArray(shape: [0], dtype: nil, bytes: []))
            }
            w.reduce["\(core).numeric._frombuffer"] = { args in
                // (buffer, dtype, shape, order)
                guard args.count == 4, case let .bytes(raw) = args[0], case let .object(d) = args[1], let dt = d as? NumpyDType,
                      let order = args[3].stringValue
                else {
                    throw PickleError(.malformed, offset: nil, "_frombuffer expects (bytes, dtype, shape, order), got \(args.map(\.kind))")
                }
                let a = NumpyArray(shape: [0], dtype: nil, bytes: [])
                try a.set(shape: args[2], dtype: dt, fortran: order == "F", bytes: raw)
                return .object(a)
            }
        }
        w.reduce["numpy.dtype"] = { args in
            guard (1...3).contains(args.count), let code = args[0].stringValue else {
                throw PickleError(.malformed, offset: nil, "numpy.dtype expects (code, align, copy), got \(args.map(\.kind))")
            }
            return .object(NumpyDType(code: code))
        }
        return w
    }

    /// Reads a FiD passage-embedding shard: a pickled `(ids, embeddings)` with `ids` a list of
    /// strings and `embeddings` a float16/float32 array of one row per id.
    /// - Throws: `PickleError` with `source` set to `path`.
    public static func readShard(path: String) throws -> (ids: [String], embeddings: Tensor) {
        do {
            let value = try PickleReader.read(try readFile(path), whitelist: whitelist)
            guard case let .tuple(t) = value, t.count == 2, let items = t[0].sequence, case let .object(o) = t[1],
                  let array = o as? NumpyArray
            else {
                throw PickleError(.malformed, offset: nil, "expected a pickled (ids, embeddings) pair, found a \(value.kind)",
                                  hint: "FiD's generate_passage_embeddings writes pickle.dump((ids, embeddings))")
            }
            var ids: [String] = []
            ids.reserveCapacity(items.count)
            for (i, item) in items.enumerated() {
                guard let s = item.stringValue else {
                    throw PickleError(.malformed, offset: nil, "id \(i) is a \(item.kind), expected a string")
                }
                ids.append(s)
            }
            let embeddings = try array.tensor()
            guard embeddings.rank == 2, embeddings.shape[0] == ids.count else {
                throw PickleError(.malformed, offset: nil, "embeddings of shape \(embeddings.shape) for \(ids.count) ids, expected [\(ids.count), d]")
            }
            return (ids, embeddings)
        } catch var e as PickleError {
            e.source = path
            throw e
        }
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PickleError(.io, offset: nil, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw PickleError(.io, offset: nil, "cannot read: \(String(cString: strerror(errno)))") }
            if n == 0 { return out }
            out += chunk[0..<n]
        }
    }
}
