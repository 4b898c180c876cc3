// SafeTensorsHeader: the safetensors JSON header — dtypes, entries, parsing with validation, encoding.
//
// Layout of a file (https://github.com/huggingface/safetensors, safetensors/src/tensor.rs):
//   bytes 0..<8     N, the header length, UInt64 little-endian
//   bytes 8..<8+N   JSON object: {"__metadata__": {str: str}?, name: {"dtype", "shape", "data_offsets"}}
//   bytes 8+N...    the data section; data_offsets are relative to its start
// The rules checked here are safetensors' own (`Metadata::validate`, `read_metadata`): N at most
// 100 000 000; sorted by offset, each tensor starts where the previous ended (no gap, no overlap);
// each range holds exactly shape-product × dtype-size bytes; the last range ends at the file's end.
// Stricter than safetensors: duplicate names are refused (serde would keep the last silently).
import Formats

/// The element types safetensors defines, spelled as in headers.
///
/// Declared in safetensors' order, which is increasing alignment; its writer sorts tensors by this
/// order descending, then by name, and so must ours for byte-identical files.
public enum SafeTensorsDType: String, CaseIterable, Sendable {
    case bool = "BOOL", f4 = "F4", f6e2m3 = "F6_E2M3", f6e3m2 = "F6_E3M2", u8 = "U8", i8 = "I8"
    case f8e5m2 = "F8_E5M2", f8e4m3 = "F8_E4M3", f8e8m0 = "F8_E8M0"
    case f8e4m3fnuz = "F8_E4M3FNUZ", f8e5m2fnuz = "F8_E5M2FNUZ"
    case i16 = "I16", u16 = "U16", f16 = "F16", bf16 = "BF16", i32 = "I32", u32 = "U32"
    case f32 = "F32", c64 = "C64", f64 = "F64", i64 = "I64", u64 = "U64"

    /// Bits per element.
    public var bits: Int {
        switch self {
        case .f4: return 4
        case .f6e2m3, .f6e3m2: return 6
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3, .f8e8m0, .f8e4m3fnuz, .f8e5m2fnuz: return 8
        case .i16, .u16, .f16, .bf16: return 16
        case .i32, .u32, .f32: return 32
        case .c64, .f64, .i64, .u64: return 64
        }
    }

    /// Position in safetensors' declaration order (the writer's sort key).
    public var rank: Int { Self.allCases.firstIndex(of: self)! }

    /// Whether `SafeTensorsFile` converts this dtype to Float32 (see `SafeTensorsFile.tensor`).
    public var isReadable: Bool {
        switch self {
        case .f32, .f16, .bf16, .f64, .bool, .u8, .i8, .i16, .u16, .i32, .u32, .i64, .u64: return true
        default: return false
        }
    }

    /// Whether `SafeTensors.write` can store Float32 values as this dtype.
    public var isWritable: Bool { self == .f32 || self == .f16 || self == .bf16 }
}

/// One tensor's header entry: where its bytes are and how to read them.
public struct SafeTensorsEntry: Equatable, Sendable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// Byte range within the data section (after the 8 + N header bytes).
    public let begin: Int
    public let end: Int

    /// Number of elements (1 for shape []).
    public var count: Int { shape.reduce(1, *) }
    /// Number of bytes.
    public var byteCount: Int { end - begin }
}

/// A parsed and validated safetensors header.
public struct SafeTensorsHeader: Equatable, Sendable {
    /// Entries in file (offset) order.
    public let entries: [SafeTensorsEntry]
    /// The `__metadata__` map, nil when the header has none.
    public let metadata: [String: String]?
    /// N: bytes of JSON (with padding) after the 8-byte length.
    public let length: Int

    /// Largest header safetensors accepts (`MAX_HEADER_SIZE`).
    public static let maxLength = 100_000_000

    /// Byte offset of the data section in the file.
    public var dataStart: Int { 8 + length }
    /// Bytes the data section must hold.
    public var dataLength: Int { entries.last?.end ?? 0 }

    /// Parses and validates header JSON `json` of a file of `fileSize` bytes, read from `path`.
    /// - Throws: `SafeTensorsError` for any rule the header breaks (see the file comment).
    public static func parse(_ json: UnsafeRawBufferPointer, fileSize: Int, path: String) throws -> SafeTensorsHeader {
        func fail(_ kind: SafeTensorsError.Kind, _ message: String, hint: String? = nil) -> SafeTensorsError {
            SafeTensorsError(kind, path: path, message, hint: hint)
        }
        // Decoding repairs bad sequences with U+FFFD, so the bytes survive unchanged only if valid.
        // (String(validating:as:) would say it directly but needs macOS 15.)
        guard String(decoding: json, as: UTF8.self).utf8.elementsEqual(json) else {
            throw fail(.headerEncoding, "header is not valid UTF-8", hint: "not a safetensors file?")
        }
        var parser = JSONParser(bytes: json)
        let root: JSONNode
        do { root = try parser.parseDocument() } catch let e as JSONParser.Failure {
            throw fail(.headerJSON, "header is not JSON: \(e.message) at byte \(e.offset) of the header",
                       hint: "not a safetensors file, or a corrupted header")
        }
        guard case let .object(fields) = root else {
            throw fail(.headerLayout, "header is JSON \(root.kindName), expected an object of tensors")
        }
        var metadata: [String: String]?
        var entries: [SafeTensorsEntry] = []
        var seen: Set<String> = []
        for (name, value) in fields {
            guard seen.insert(name).inserted else {
                throw fail(.duplicateName, "header names tensor '\(name)' twice")
            }
            if name == "__metadata__" {
                metadata = try parseMetadata(value, fail)
            } else {
                entries.append(try parseEntry(name, value, fail))
            }
        }
        // safetensors sorts by (begin, end) then requires each range to start where the last ended.
        entries.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var next = 0
        var previous: String?
        for e in entries {
            let range = "data_offsets [\(e.begin), \(e.end)]"
            if e.end < e.begin {
                throw fail(.offsets, "tensor '\(e.name)' has \(range): the end is before the start")
            }
            if e.begin < next {
                throw fail(.offsets, "tensor '\(e.name)' \(range) overlaps '\(previous!)', which ends at \(next)")
            }
            if e.begin > next {
                let after = previous.map { "after '\($0)'" } ?? "at the start of the data"
                throw fail(.offsets, "bytes \(next)..<\(e.begin) \(after) belong to no tensor ('\(e.name)' has \(range))",
                           hint: "safetensors requires tensors packed without gaps")
            }
            var elements = 1
            for d in e.shape {
                let (p, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw fail(.sizeMismatch, "tensor '\(e.name)' shape \(e.shape) overflows") }
                elements = p
            }
            let (bits, overflow) = elements.multipliedReportingOverflow(by: e.dtype.bits)
            guard !overflow, bits % 8 == 0, bits / 8 == e.byteCount else {
                let needs = overflow ? "more bytes than exist" : bits % 8 == 0 ? "\(bits / 8) bytes" : "\(bits) bits (not whole bytes)"
                throw fail(.sizeMismatch, "tensor '\(e.name)' (\(e.dtype.rawValue), shape \(e.shape)) needs "
                           + "\(needs), its \(range) hold \(e.byteCount)")
            }
            next = e.end
            previous = e.name
        }
        let available = fileSize - 8 - json.count
        if next > available {
            let last = entries.last!
            throw fail(.outOfBounds, "tensor '\(last.name)' ends at byte \(last.end) of the data section, "
                       + "which holds \(available) bytes (file \(fileSize) bytes, header \(json.count))",
                       hint: "the file is truncated (incomplete download?) or its offsets are wrong")
        }
        if next < available {
            throw fail(.offsets, "\(available - next) bytes after the last tensor belong to no tensor",
                       hint: "safetensors requires the tensors to cover the file exactly")
        }
        return SafeTensorsHeader(entries: entries, metadata: metadata, length: json.count)
    }

    private static func parseMetadata(
        _ value: JSONNode, _ fail: (SafeTensorsError.Kind, String, String?) -> SafeTensorsError
    ) throws -> [String: String] {
        guard case let .object(pairs) = value else {
            throw fail(.headerLayout, "__metadata__ is \(value.kindName), expected an object of strings", nil)
        }
        var map: [String: String] = [:]
        for (key, v) in pairs {
            guard case let .string(s) = v else {
                throw fail(.headerLayout, "__metadata__ '\(key)' is \(v.kindName), expected a string", nil)
            }
            guard map.updateValue(s, forKey: key) == nil else {
                throw fail(.duplicateName, "__metadata__ has key '\(key)' twice", nil)
            }
        }
        return map
    }

    private static func parseEntry(
        _ name: String, _ value: JSONNode, _ fail: (SafeTensorsError.Kind, String, String?) -> SafeTensorsError
    ) throws -> SafeTensorsEntry {
        guard case let .object(pairs) = value else {
            throw fail(.headerLayout, "tensor '\(name)' is \(value.kindName), expected an object with dtype, shape, data_offsets", nil)
        }
        // Unknown fields are ignored, as serde does for safetensors' TensorInfo.
        func field(_ key: String) throws -> JSONNode {
            guard let v = pairs.first(where: { $0.0 == key })?.1 else {
                throw fail(.headerLayout, "tensor '\(name)' has no '\(key)' field", nil)
            }
            return v
        }
        func integers(_ key: String) throws -> [Int] {
            guard case let .array(items) = try field(key) else {
                throw fail(.headerLayout, "tensor '\(name)' field '\(key)' is \(try field(key).kindName), expected an array of integers", nil)
            }
            return try items.map { item in
                guard case let .integer(n) = item else {
                    throw fail(.headerLayout, "tensor '\(name)' field '\(key)' holds \(item.kindName), expected non-negative integers", nil)
                }
                return n
            }
        }
        guard case let .string(code) = try field("dtype") else {
            throw fail(.headerLayout, "tensor '\(name)' field 'dtype' is \(try field("dtype").kindName), expected a string", nil)
        }
        guard let dtype = SafeTensorsDType(rawValue: code) else {
            throw fail(.unknownDType, "tensor '\(name)' has unknown dtype '\(code)'",
                       "safetensors defines \(SafeTensorsDType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let shape = try integers("shape")
        let offsets = try integers("data_offsets")
        guard offsets.count == 2 else {
            throw fail(.headerLayout, "tensor '\(name)' field 'data_offsets' has \(offsets.count) numbers, expected 2 [begin, end]", nil)
        }
        return SafeTensorsEntry(name: name, dtype: dtype, shape: shape, begin: offsets[0], end: offsets[1])
    }

    /// The header bytes safetensors' writer produces for `entries` (already in file order) and
    /// `metadata`: compact JSON, `__metadata__` first, fields dtype, shape, data_offsets, padded with
    /// spaces to a multiple of 8. Metadata keys are sorted by UTF-8 bytes; safetensors itself
    /// writes them in hash order, so files with more than one key match it only up to that order.
    public static func encode(entries: [SafeTensorsEntry], metadata: [String: String]?) -> [UInt8] {
        var out: [UInt8] = []
        out.append(UInt8(ascii: "{"))
        var first = true
        func key(_ k: String) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            appendJSONString(k, to: &out)
            out.append(UInt8(ascii: ":"))
        }
        if let metadata {
            key("__metadata__")
            out.append(UInt8(ascii: "{"))
            for (i, k) in metadata.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }).enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                appendJSONString(k, to: &out)
                out.append(UInt8(ascii: ":"))
                appendJSONString(metadata[k]!, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        for e in entries {
            key(e.name)
            let shape = e.shape.map(String.init).joined(separator: ",")
            out += Array("{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(e.begin),\(e.end)]}".utf8)
        }
        out.append(UInt8(ascii: "}"))
        while out.count % 8 != 0 { out.append(UInt8(ascii: " ")) }
        return out
    }
}

/// Appends `s` as a JSON string the way serde_json writes it: `"` `\` and control characters
/// escaped (\b \t \n \f \r, others \u00xx in lower-case hex), everything else as raw UTF-8.
private func appendJSONString(_ s: String, to out: inout [UInt8]) {
    let hex = Array("0123456789abcdef".utf8)
    out.append(UInt8(ascii: "\""))
    for b in s.utf8 {
        switch b {
        case UInt8(ascii: "\""): out += [92, b]
        case 92: out += [92, 92]
        case 0x08: out += [92, UInt8(ascii: "b")]
        case 0x09: out += [92, UInt8(ascii: "t")]
        case 0x0A: out += [92, UInt8(ascii: "n")]
        case 0x0C: out += [92, UInt8(ascii: "f")]
        case 0x0D: out += [92, UInt8(ascii: "r")]
        case 0..<0x20: out += [92, UInt8(ascii: "u"), 48, 48, hex[Int(b >> 4)], hex[Int(b & 15)]]
        default: out.append(b)
        }
    }
    out.append(UInt8(ascii: "\""))
}
