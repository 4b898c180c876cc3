// PyJSONWriter: JSON byte-for-byte as Python's json.dump writes it (indent=4, compact, JSON Lines).
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Python's `json.dumps` layouts for a `JSONNode`, with its defaults: `ensure_ascii=True`
/// (non-ASCII as `\uXXXX`, surrogate pairs above U+FFFF), empty containers as `[]` and `{}`.
public enum PyJSON {
    /// `json.dumps(value, indent=4)` at nesting `level` (separators `,` and `: `), appended to `out`.
    public static func appendIndented(_ value: JSONNode, level: Int = 0, to out: inout [UInt8]) {
        func newline(_ level: Int) {
            out.append(10)
            out.append(contentsOf: repeatElement(32, count: 4 * level))
        }
        switch value {
        case .array(let items) where !items.isEmpty:
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(level + 1)
                appendIndented(item, level: level + 1, to: &out)
            }
            newline(level)
            out.append(UInt8(ascii: "]"))
        case .object(let read) where !read.isEmpty:
            let pairs = pythonDict(read)
            out.append(UInt8(ascii: "{"))
            for (i, (key, item)) in pairs.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(level + 1)
                appendString(key, to: &out)
                out.append(contentsOf: [58, 32])
                appendIndented(item, level: level + 1, to: &out)
            }
            newline(level)
            out.append(UInt8(ascii: "}"))
        default: appendScalar(value, to: &out)
        }
    }

    /// `json.dumps(value)`: one line, separators `, ` and `: ` (one JSON Lines record, without the newline).
    public static func appendCompact(_ value: JSONNode, to out: inout [UInt8]) {
        switch value {
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(contentsOf: [44, 32]) }
                appendCompact(item, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let read):
            let pairs = pythonDict(read)
            out.append(UInt8(ascii: "{"))
            for (i, (key, item)) in pairs.enumerated() {
                if i > 0 { out.append(contentsOf: [44, 32]) }
                appendString(key, to: &out)
                out.append(contentsOf: [58, 32])
                appendCompact(item, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        default: appendScalar(value, to: &out)
        }
    }

    /// An object's pairs as the dict Python's json reads from them: a repeated key keeps its first
    /// place and its last value (fidq's parser keeps every pair). Unchanged when no key repeats.
    /// Keys compare as bytes, as Python's do (Swift's `==` joined "é" and "e\u{301}", losing one).
    static func pythonDict(_ pairs: [(String, JSONNode)]) -> [(String, JSONNode)] {
        var repeated = false
        if pairs.count <= 16 {
            outer: for i in 1..<max(1, pairs.count) {
                for j in 0..<i where pairs[j].0.utf8.elementsEqual(pairs[i].0.utf8) {
                    repeated = true
                    break outer
                }
            }
        } else {
            repeated = Set(pairs.map { Array($0.0.utf8) }).count < pairs.count
        }
        guard repeated else { return pairs }
        var place: [[UInt8]: Int] = [:], out: [(String, JSONNode)] = []
        for (key, value) in pairs {
            if let i = place[Array(key.utf8)] { out[i].1 = value } else {
                place[Array(key.utf8)] = out.count
                out.append((key, value))
            }
        }
        return out
    }

    /// `json.dumps(value)` as a String.
    public static func compact(_ value: JSONNode) -> String {
        var out: [UInt8] = []
        appendCompact(value, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `json.dumps(value, indent=4)` as a String.
    public static func indented(_ value: JSONNode) -> String {
        var out: [UInt8] = []
        appendIndented(value, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private static func appendScalar(_ value: JSONNode, to out: inout [UInt8]) {
        switch value {
        case .string(let s): appendString(s, to: &out)
        case .integer(let n): out.append(contentsOf: Array(String(n).utf8))
        case .number(let t): out.append(contentsOf: Array(t.utf8))
        case .bool(let b): out.append(contentsOf: Array((b ? "true" : "false").utf8))
        case .null: out.append(contentsOf: Array("null".utf8))
        case .array: out.append(contentsOf: [91, 93])
        case .object: out.append(contentsOf: [123, 125])
        }
    }

    /// Python's `py_encode_basestring_ascii`: printable ASCII as is, the usual short escapes,
    /// everything else as lower-case `\uXXXX` of its UTF-16 units.
    public static func appendString(_ s: String, to out: inout [UInt8]) {
        let digits: StaticString = "0123456789abcdef"
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
                for shift in stride(from: 12, through: 0, by: -4) {
                    out.append(digits.utf8Start[Int((unit >> UInt16(shift)) & 15)])
                }
            }
        }
        out.append(34)
    }
}

/// Streams a JSON file element by element, to a temporary name (`.<name>.<pid>-<random>.tmp`
/// beside it) renamed into place by `finish()`: a top-level list in `json.dump(…, indent=4)`'s
/// layout (FiD's `dataset_wscores.json`, the preprocessed data sets), or JSON Lines
/// (`json.dumps` per line).
///
/// The name is the writer's own: a job attempt that lost its claim (paused, then resumed) and the
/// attempt that took over write two files, never one file twice over (one shared name was
/// truncated by the second writer under the first, which then renamed a file of NUL bytes into
/// place); each renames a whole file. A new writer removes the staging files killed writers of
/// the path left (idle for an hour, so never a live writer's), and an unfinished writer its own.
public final class PyJSONWriter {
    public enum Layout: Sendable { case indentedList, jsonLines }

    public let path: String
    public let layout: Layout
    private let tmp: String
    private var fd: Int32
    private var buffer: [UInt8] = []
    public private(set) var count = 0

    /// - Throws: `FormatError` when the temporary file cannot be created.
    public init(path: String, layout: Layout = .indentedList) throws {
        self.path = path
        self.layout = layout
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[...$0]) } ?? ""
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let folder = dir.isEmpty ? "." : dir == "/" ? "/" : String(dir.dropLast())
        StaleFiles.removeIdle(in: folder) { Self.isStaging($0, of: name) }
        tmp = dir + "." + name + ".\(getpid())-\(UInt32.random(in: 0 ... .max)).tmp"
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw PyJSONWriter.posix(tmp, "cannot create") }
        buffer.reserveCapacity(1 << 20)
        if layout == .indentedList { buffer.append(UInt8(ascii: "[")) }
    }

    /// `.<name>.<pid>-<random>.tmp`, or `.<name>.tmp` (the one name of earlier fidq versions);
    /// exactly, so `rt`'s writer leaves `rt.json`'s staging files alone.
    static func isStaging(_ entry: String, of name: String) -> Bool {
        let head = "." + name + "."
        guard entry.hasPrefix(head), entry.hasSuffix(".tmp"), entry.count >= head.count + 3 else { return false }
        let tag = entry.dropFirst(head.count).dropLast(4)
        if tag.isEmpty { return true }
        let parts = tag.split(separator: "-", omittingEmptySubsequences: false)
        return parts.count == 2 && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }
    }

    deinit {
        // Not finished (an error or a stop on the way): the temporary file goes.
        if fd >= 0 {
            close(fd)
            unlink(tmp)
        }
    }

    /// Appends one element of the top-level list (or one line).
    public func append(_ value: JSONNode) throws {
        switch layout {
        case .indentedList:
            buffer.append(contentsOf: count == 0 ? [10, 32, 32, 32, 32] : [44, 10, 32, 32, 32, 32])
            PyJSON.appendIndented(value, level: 1, to: &buffer)
        case .jsonLines:
            PyJSON.appendCompact(value, to: &buffer)
            buffer.append(10)
        }
        count += 1
        if buffer.count > 1 << 20 { try flush() }
    }

    /// Closes the list, syncs, and renames the file into place.
    public func finish() throws {
        if layout == .indentedList { buffer.append(contentsOf: count == 0 ? [93] : [10, 93]) }
        try flush()
        guard fsync(fd) == 0 || errno == EINVAL else { throw PyJSONWriter.posix(tmp, "cannot sync") }
        close(fd)
        fd = -1
        guard rename(tmp, path) == 0 else {
            let e = PyJSONWriter.posix(path, "cannot rename \(tmp) into place")
            unlink(tmp)
            throw e
        }
    }

    private func flush() throws {
        try buffer.withUnsafeBytes { bytes in
            var done = 0
            while done < bytes.count {
                let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw PyJSONWriter.posix(tmp, "cannot write")
                }
                done += n
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }

    static func posix(_ path: String, _ what: String) -> FormatError {
        FormatError(file: path, location: "", "\(what): \(String(cString: strerror(errno)))")
    }
}
