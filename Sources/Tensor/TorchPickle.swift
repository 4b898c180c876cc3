// TorchPickle: the values TorchCheckpointWriter pickles as torch.save does (protocol 2): plain
// Python data, float32 tensors over the file's storages, and plain objects such as argparse's
// Namespace. Writing only; PickleReader reads pickles without running them.

/// A value to pickle. Dicts keep their order; `ordered` makes one a `collections.OrderedDict`
/// (what `state_dict()` returns).
public indirect enum TorchPickle: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case tuple([TorchPickle])
    case list([TorchPickle])
    case dict([(TorchPickle, TorchPickle)], ordered: Bool)
    /// A contiguous float32 tensor over all of the file's storage number `storage`; tensors that
    /// name the same storage share it when torch loads them (tied weights).
    case tensor(storage: Int, shape: [Int])
    /// `module.name.__new__(cls)` with its `__dict__` set from `state` (NEWOBJ then BUILD), as
    /// protocol 2 pickles an instance of a plain class, e.g. `argparse.Namespace`.
    case object(module: String, name: String, state: [(String, TorchPickle)])

    /// A dict with string keys, in order.
    public static func dict(_ pairs: [(String, TorchPickle)], ordered: Bool = false) -> TorchPickle {
        .dict(pairs.map { (.string($0.0), $0.1) }, ordered: ordered)
    }

    /// The pickle of `self` (protocol 2, ending with STOP).
    public func pickled() -> [UInt8] {
        var p: [UInt8] = [0x80, 2]  // PROTO 2
        Self.write(self, into: &p)
        p.append(UInt8(ascii: "."))  // STOP
        return p
    }

    private static func write(_ v: TorchPickle, into p: inout [UInt8]) {
        func op(_ c: Character) { p.append(c.asciiValue!) }
        func global(_ module: String, _ name: String) { op("c"); p += Array("\(module)\n\(name)\n".utf8) }
        func items(_ values: [TorchPickle]) { values.forEach { write($0, into: &p) } }
        switch v {
        case .none: op("N")
        case let .bool(b): p.append(b ? 0x88 : 0x89)  // NEWTRUE / NEWFALSE
        case let .int(i):
            if i >= 0 && i < 256 {
                op("K"); p.append(UInt8(i))
            } else if i >= 0 && i < 65536 {
                op("M"); p += [UInt8(i & 0xFF), UInt8(i >> 8)]
            } else if i >= Int(Int32.min) && i <= Int(Int32.max) {
                op("J"); withUnsafeBytes(of: Int32(i).littleEndian) { p += $0 }
            } else {
                p += [0x8A, 8]  // LONG1: 8 little-endian two's-complement bytes
                withUnsafeBytes(of: Int64(i).littleEndian) { p += $0 }
            }
        case let .float(d):
            op("G"); withUnsafeBytes(of: d.bitPattern.bigEndian) { p += $0 }  // BINFLOAT: big-endian
        case let .string(s):
            let b = Array(s.utf8)
            op("X"); withUnsafeBytes(of: UInt32(b.count).littleEndian) { p += $0 }
            p += b
        case let .tuple(t):
            if t.isEmpty { op(")"); return }
            op("("); items(t); op("t")
        case let .list(l):
            op("]")
            if !l.isEmpty { op("("); items(l); op("e") }  // APPENDS
        case let .dict(pairs, ordered):
            if ordered { global("collections", "OrderedDict"); op(")"); op("R") } else { op("}") }
            if !pairs.isEmpty {
                op("(")
                for (k, v) in pairs { write(k, into: &p); write(v, into: &p) }
                op("u")  // SETITEMS
            }
        case let .tensor(storage, shape):
            var strides = [Int](repeating: 1, count: shape.count)
            for i in stride(from: shape.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * shape[i + 1] }
            // _rebuild_tensor_v2(storage, offset 0, shape, strides, requires_grad False, hooks OrderedDict()),
            // the storage a persistent id ('storage', FloatStorage, key, 'cpu', numel).
            global("torch._utils", "_rebuild_tensor_v2")
            op("(")
            op("("); write(.string("storage"), into: &p); global("torch", "FloatStorage")
            items([.string(String(storage)), .string("cpu"), .int(shape.reduce(1, *))])
            op("t"); op("Q")  // TUPLE, BINPERSID
            items([.int(0), .tuple(shape.map(TorchPickle.int)), .tuple(strides.map(TorchPickle.int)), .bool(false),
                   .dict([] as [(TorchPickle, TorchPickle)], ordered: true)])
            op("t"); op("R")
        case let .object(module, name, state):
            global(module, name); op(")"); p.append(0x81)  // EMPTY_TUPLE, NEWOBJ
            write(.dict(state), into: &p)
            op("b")  // BUILD
        }
    }
}
