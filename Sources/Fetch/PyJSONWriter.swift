// PyJSONWriter: streams JSON byte-for-byte as Python's json.dump(obj, f, indent=4) writes it.
import Foundation

/// A JSON value in the order Python's dicts keep (insertion order).
enum PyJSON {
    case string(String)
    case int(Int)
    case list([PyJSON])
    case object([(String, PyJSON)])
}

/// Writes a top-level JSON list one element at a time, in the layout of `json.dump(…, indent=4)`
/// with its defaults: `ensure_ascii=True` (non-ASCII as `\uXXXX`, surrogate pairs above U+FFFF),
/// separators `,` and `: `, empty containers as `[]` and `{}`. The file is written to a temporary
/// name and renamed on `finish()`.
final class PyJSONWriter {
    let url: URL
    private let tmp: URL
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var count = 0

    init(_ url: URL) throws {
        self.url = url
        tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
        fd = open(tmp.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FetchError.posix(tmp.path, "cannot create") }
        buffer.reserveCapacity(1 << 20)
        buffer.append(UInt8(ascii: "["))
    }

    deinit { close(fd) }

    /// Appends one element of the top-level list.
    func append(_ value: PyJSON) throws {
        buffer.append(contentsOf: count == 0 ? Array("\n    ".utf8) : Array(",\n    ".utf8))
        count += 1
        write(value, level: 1)
        if buffer.count > 1 << 20 { try flush() }
    }

    /// Closes the list and renames the file into place.
    func finish() throws {
        buffer.append(contentsOf: count == 0 ? Array("]".utf8) : Array("\n]".utf8))
        try flush()
        guard fsync(fd) == 0 || errno == EINVAL, rename(tmp.path, url.path) == 0 else {
            throw FetchError.posix(url.path, "cannot finish")
        }
    }

    private func flush() throws {
        try buffer.withUnsafeBytes { try writeAll(fd, $0, path: tmp.path, what: "cannot write") }
        buffer.removeAll(keepingCapacity: true)
    }

    private func newline(_ level: Int) {
        buffer.append(10)
        buffer.append(contentsOf: repeatElement(32, count: 4 * level))
    }

    private func write(_ value: PyJSON, level: Int) {
        switch value {
        case .string(let s): PyJSONWriter.appendString(s, to: &buffer)
        case .int(let n): buffer.append(contentsOf: Array(String(n).utf8))
        case .list(let items):
            if items.isEmpty { return buffer.append(contentsOf: Array("[]".utf8)) }
            buffer.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { buffer.append(UInt8(ascii: ",")) }
                newline(level + 1)
                write(item, level: level + 1)
            }
            newline(level)
            buffer.append(UInt8(ascii: "]"))
        case .object(let pairs):
            if pairs.isEmpty { return buffer.append(contentsOf: Array("{}".utf8)) }
            buffer.append(UInt8(ascii: "{"))
            for (i, (key, item)) in pairs.enumerated() {
                if i > 0 { buffer.append(UInt8(ascii: ",")) }
                newline(level + 1)
                PyJSONWriter.appendString(key, to: &buffer)
                buffer.append(contentsOf: [58, 32])
                write(item, level: level + 1)
            }
            newline(level)
            buffer.append(UInt8(ascii: "}"))
        }
    }

    /// Python's `py_encode_basestring_ascii`: printable ASCII as is, the usual short escapes,
    /// everything else as lower-case `\uXXXX` of its UTF-16 units.
    static func appendString(_ s: String, to out: inout [UInt8]) {
        let digits = Array("0123456789abcdef".utf8)
        out.append(34)
        for unit in s.utf16 {
            switch unit {
            case 34: out.append(contentsOf: [92, 34])
            case 92: out.append(contentsOf: [92, 92])
            case 10: out.append(contentsOf: [92, 110])
            case 13: out.append(contentsOf: [92, 114])
            case 9: out.append(contentsOf: [92, 116])
            case 8: out.append(contentsOf: [92, 98])
            case 12: out.append(contentsOf: [92, 102])
            case 32...126: out.append(UInt8(unit))
            default:
                out.append(contentsOf: [92, 117])
                for shift in stride(from: 12, through: 0, by: -4) { out.append(digits[Int((unit >> UInt16(shift)) & 15)]) }
            }
        }
        out.append(34)
    }
}
