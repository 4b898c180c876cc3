// SafeTensorsFile: a lazy safetensors reader — header parsed at open, tensors converted on demand.
import Formats

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

#if _endian(big)
    #error("safetensors data is little-endian; SafeTensorsFile copies it as host floats")
#endif

/// An open safetensors file: names, dtypes and shapes at hand, each tensor converted to Float32
/// only when asked for.
///
/// Files of at least `mapThreshold` bytes are mapped with `mmap` and never read into memory as a
/// whole; tensors are copied out of the mapping. Smaller files are read once. Either way the whole
/// header is validated at open (`SafeTensorsHeader.parse`), so a file that opens has every byte
/// range inside it. Truncating a mapped file while it is open is undefined (SIGBUS), as for any
/// mapping.
///
/// dtypes: F32, F16 and BF16 convert exactly. So do BOOL (0/1), U8, I8, U16 and I16. I32, U32,
/// I64, U64 and F64 convert when every value is exactly a Float32 (integers up to 2^24 in
/// magnitude, as position ids and masks are); otherwise `.notRepresentable` names the tensor and
/// the value. The rest (F8 variants, F4, F6, C64) are listed but refused with `.unsupportedDType`.
public final class SafeTensorsFile: @unchecked Sendable {
    /// The file's path, as given.
    public let path: String
    /// The validated header.
    public let header: SafeTensorsHeader
    /// Whether the file is mapped rather than read.
    public let isMapped: Bool
    /// Files this large or larger are mapped: 64 MiB.
    public static let defaultMapThreshold = 64 << 20

    /// The file's bytes (mapped or read); `base` and `size` are its pointer and length.
    private let bytes: FileBytes
    private let base: UnsafeRawPointer
    private let size: Int
    private let byName: [String: Int]

    /// Opens `path` and validates its header.
    /// - Parameter mapThreshold: files of at least this many bytes are mapped instead of read.
    /// - Throws: `SafeTensorsError` naming the file and the problem.
    public init(path: String, mapThreshold: Int = SafeTensorsFile.defaultMapThreshold) throws {
        self.path = path
        do {
            bytes = try FileBytes(path: path, mapThreshold: mapThreshold, minSize: 8) { size in
                SafeTensorsError(.truncated, path: path, "file is \(size) bytes, shorter than the 8-byte header length",
                                 hint: "an empty or cut-off download?")
            }
        } catch let failure as FileBytes.Failure {
            switch failure {
            case .io(let what): throw SafeTensorsError(.io, path: path, what)
            case .notRegular: throw SafeTensorsError(.io, path: path, "is not a regular file")
            case .shrank(let n): throw SafeTensorsError(.truncated, path: path, "file shrank to \(n) bytes while being read")
            case .addressSpace(let n):
                throw SafeTensorsError(.io, path: path, "cannot map its \(n) bytes: no address space left", hint: FileBytes.Failure.addressSpaceHint)
            }
        }
        base = bytes.base
        size = bytes.count
        isMapped = bytes.isMapped
        header = try Self.readHeader(base, size: size, path: path)
        byName = Dictionary(uniqueKeysWithValues: header.entries.enumerated().map { ($1.name, $0) })
    }

    private static func readHeader(_ base: UnsafeRawPointer, size: Int, path: String) throws -> SafeTensorsHeader {
        let n = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))
        guard n <= UInt64(SafeTensorsHeader.maxLength) else {
            throw SafeTensorsError(.headerTooLarge, path: path,
                                   "header length \(n) is over safetensors' limit of \(SafeTensorsHeader.maxLength) bytes",
                                   hint: "not a safetensors file?")
        }
        guard Int(n) <= size - 8 else {
            throw SafeTensorsError(.truncated, path: path,
                                   "header length \(n) needs \(n + 8) bytes, the file has \(size)",
                                   hint: "the file is truncated or not a safetensors file")
        }
        let json = UnsafeRawBufferPointer(start: base + 8, count: Int(n))
        return try SafeTensorsHeader.parse(json, fileSize: size, path: path)
    }

    /// Entries in file order.
    public var entries: [SafeTensorsEntry] { header.entries }
    /// Tensor names in file order.
    public var names: [String] { header.entries.map(\.name) }
    /// The `__metadata__` map, nil when absent.
    public var metadata: [String: String]? { header.metadata }

    /// The entry called `name`.
    /// - Throws: `TensorMapError.missing` with close names.
    public func entry(_ name: String) throws -> SafeTensorsEntry {
        guard let i = byName[name] else {
            throw TensorMapError.missing(name: name, source: path, close: TensorMap.closeNames(to: name, among: names))
        }
        return header.entries[i]
    }

    /// The tensor called `name`, converted to Float32 (see the type's note on dtypes).
    /// - Throws: `TensorMapError.missing`, or `SafeTensorsError` `.unsupportedDType` /
    ///   `.notRepresentable`.
    public func tensor(_ name: String) throws -> Tensor {
        let e = try entry(name)
        let n = e.count
        var failure: Error?
        // Uninitialised storage: every element is written by read(into:) (zero-filling first
        // would touch every page twice); on failure it is zeroed before the error is thrown.
        let data = [Float](unsafeUninitializedCapacity: n) { dst, initialized in
            if let d = dst.baseAddress, n > 0 {
                do { try read(name, into: UnsafeMutableBufferPointer(start: d, count: n)) } catch {
                    failure = error
                    d.update(repeating: 0, count: n)
                }
            }
            initialized = n
        }
        if let failure { throw failure }
        return Tensor(shape: e.shape, data: data)
    }

    /// Converts the tensor called `name` to Float32 straight into `dst` (e.g. a range of a
    /// parameter slab), without an intermediate array. `dst.count` must equal its element count
    /// (callers check the shape first and report it).
    /// - Throws: `TensorMapError.missing`, or `SafeTensorsError` `.unsupportedDType` /
    ///   `.notRepresentable`.
    public func read(_ name: String, into dst: UnsafeMutableBufferPointer<Float>) throws {
        let e = try entry(name)
        precondition(dst.count == e.count, "SafeTensorsFile.read: '\(name)' has \(e.count) elements, destination \(dst.count)")
        guard e.dtype.isReadable else {
            throw SafeTensorsError(.unsupportedDType, path: path,
                                   "unsupported dtype \(e.dtype.rawValue) for tensor '\(name)'",
                                   hint: "fidq reads F32, F16, BF16, F64, BOOL and integer tensors; convert it with torch (.float())")
        }
        guard let d = dst.baseAddress, e.count > 0 else { return }
        if let bad = Self.convert(e.dtype, base + header.dataStart + e.begin, d, e.count) {
            throw SafeTensorsError(.notRepresentable, path: path,
                                   "tensor '\(name)' (\(e.dtype.rawValue)) holds \(bad.value) at element \(bad.index), "
                                   + "which Float32 cannot hold exactly",
                                   hint: e.dtype == .f64
                                       ? "store it as F32 (tensor.float()) if the rounding is acceptable"
                                       : "only integers up to 2^24 in magnitude convert; keep such tensors out of Float32")
        }
    }

    /// Every tensor, in file order; the map's `source` is the path.
    public func readAll() throws -> TensorMap {
        var map = TensorMap(source: path)
        for e in header.entries { map.append(e.name, try tensor(e.name)) }
        return map
    }

    /// Converts `n` elements of `dtype` at `src` into `dst`; returns the first value that is not
    /// exactly a Float32, if any. Large tensors convert on all threads.
    private static func convert(
        _ dtype: SafeTensorsDType, _ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int
    ) -> (index: Int, value: String)? {
        let width = dtype.bits / 8
        nonisolated(unsafe) let dst = dst
        switch dtype {
        case .f32:
            parallelFor(n, grain: 1 << 18) { r in
                (dst + r.lowerBound).withMemoryRebound(to: UInt8.self, capacity: 4 * r.count) {
                    $0.update(from: (src + 4 * r.lowerBound).assumingMemoryBound(to: UInt8.self), count: 4 * r.count)
                }
            }
        case .f16:
            parallelFor(n, grain: 1 << 16) { r in Half.widenF16(src + 2 * r.lowerBound, into: dst + r.lowerBound, count: r.count) }
        case .bf16:
            parallelFor(n, grain: 1 << 16) { r in Half.widenBF16(src + 2 * r.lowerBound, into: dst + r.lowerBound, count: r.count) }
        case .bool: for i in 0..<n { dst[i] = src.load(fromByteOffset: i, as: UInt8.self) == 0 ? 0 : 1 }
        case .u8: for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: i, as: UInt8.self)) }
        case .i8: for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: i, as: Int8.self)) }
        case .u16: for i in 0..<n { dst[i] = Float(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .i16: for i in 0..<n { dst[i] = Float(Int16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
        case .i32, .u32, .i64, .u64:
            for i in 0..<n {
                let p = src + width * i
                let v: Int64, text: String
                switch dtype {
                case .i32: v = Int64(Int32(littleEndian: p.loadUnaligned(as: Int32.self))); text = "\(v)"
                case .u32: v = Int64(UInt32(littleEndian: p.loadUnaligned(as: UInt32.self))); text = "\(v)"
                case .i64: v = Int64(littleEndian: p.loadUnaligned(as: Int64.self)); text = "\(v)"
                default:
                    let u = UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
                    v = u > UInt64(Int64.max) ? Int64.max : Int64(u)
                    text = "\(u)"
                }
                guard v.magnitude <= 1 << 24 else { return (i, text) }
                dst[i] = Float(v)
            }
        case .f64:
            for i in 0..<n {
                let v = Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))
                let f = Float(v)
                guard v.isNaN || Double(f) == v else { return (i, "\(v)") }
                dst[i] = f
            }
        default: preconditionFailure("convert: \(dtype) is not readable; tensor() checks isReadable")
        }
        return nil
    }
}
