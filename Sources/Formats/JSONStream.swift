// JSONStream: the elements of a top-level array (or of an array under a key), or the lines of a
// JSON Lines file, each parsed on its own from a mapped file without building the whole document.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One element handed to a `JSONStream` callback. `bytes` is valid only inside the callback.
public struct JSONElement {
    /// 0-based position in the array, or among the non-blank lines of a JSON Lines file.
    public let index: Int
    /// 1-based line of the element's first byte.
    public let line: Int
    /// Byte offset of the element's first byte.
    public let offset: Int
    public let value: JSONNode
    /// The element's own bytes, as written (for a `Decodable` decode of one element).
    public let bytes: UnsafeRawBufferPointer
}

/// A JSON or JSON Lines file read element by element (NQ train with 100 passages is ~10 GB): the
/// file is mapped, and only the current element's tree is ever built.
///
/// Errors are `FormatError`s naming the file, the byte offset and line, and the element index.
public final class JSONStream {
    public let file: String
    private let data: FileBytes?
    private let raw: UnsafeRawBufferPointer

    /// Maps `path` (small files are read).
    /// - Throws: `FormatError` when the file cannot be opened or is not a regular file.
    public init(path: String) throws {
        file = path
        do {
            data = try FileBytes(path: path, mapThreshold: 1 << 20, minSize: 0) { _ in FormatError(file: path, location: "", "too short") }
        } catch let failure as FileBytes.Failure {
            switch failure {
            case .io(let what): throw FormatError(file: path, location: "", what)
            case .notRegular: throw FormatError(file: path, location: "", "is not a regular file")
            case .shrank(let n): throw FormatError(file: path, location: "", "shrank to \(n) bytes while being read")
            case .addressSpace(let n):
                throw FormatError(file: path, location: "", "cannot map its \(n) bytes: no address space left", hint: FileBytes.Failure.addressSpaceHint)
            }
        }
        raw = Self.afterByteOrderMark(data!.buffer)
    }

    /// A UTF-8 byte order mark (a file saved by PowerShell or Notepad) is not JSON: the stream
    /// starts after it, so byte offsets in errors count from there.
    static func afterByteOrderMark(_ b: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        b.count >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF ? UnsafeRawBufferPointer(rebasing: b[3...]) : b
    }

    /// Streams over bytes the caller keeps alive for the stream's life (tests, in-memory data).
    public init(bytes: UnsafeRawBufferPointer, file: String) {
        self.file = file
        data = nil
        raw = Self.afterByteOrderMark(bytes)
    }

    /// The whole file's bytes.
    public var bytes: UnsafeRawBufferPointer { raw }

    /// The first byte that is not whitespace, or nil for an empty or blank file (`[` for a JSON
    /// array, `{` for JSON Lines of objects).
    public var firstByte: UInt8? {
        var p = JSONParser(bytes: raw)
        p.pythonLiterals = true
        p.skipSpace()
        return p.pos < raw.count ? raw[p.pos] : nil
    }

    /// Calls `body` with each element of the top-level array, or with `key` of the array under
    /// that key of a top-level object. Other keys' values are skipped, checked only for structure.
    /// - Parameter parse: false hands over each element's bytes only (`value` is `.null`), found
    ///   by bracket matching: for a `Decodable` decode of elements full of data never used.
    /// - Throws: `FormatError` at the first byte that breaks JSON, or what `body` throws.
    public func forEachElement(ofArray key: String? = nil, parse: Bool = true, _ body: (JSONElement) throws -> Void) throws {
        var p = JSONParser(bytes: raw)
        p.pythonLiterals = true
        do {
            if let key {
                try expectByte(&p, UInt8(ascii: "{"), "a JSON object with the key \"\(key)\"")
                while true {
                    p.skipSpace()
                    guard p.pos < raw.count, raw[p.pos] == UInt8(ascii: "\"") else {
                        throw p.fail("expected a key (\"\(key)\")")
                    }
                    let name = try p.parseString()
                    try expectByte(&p, UInt8(ascii: ":"), "':' after key \"\(name)\"")
                    if name == key { break }
                    try skipValue(&p)
                    p.skipSpace()
                    guard p.pos < raw.count, raw[p.pos] == UInt8(ascii: ",") else {
                        throw FormatError(file: file, location: "", "no key \"\(key)\" in the top-level object",
                                          hint: "expected {\"\(key)\": [...]}")
                    }
                    p.pos += 1
                }
            }
            try expectByte(&p, UInt8(ascii: "["), key == nil ? "a JSON array" : "an array under \"\(key!)\"")
            p.skipSpace()
            var index = 0
            var lineCounter = LineCounter()
            if p.pos < raw.count, raw[p.pos] == UInt8(ascii: "]") {
                p.pos += 1
            } else {
                while true {
                    p.skipSpace()
                    let start = p.pos
                    var value = JSONNode.null
                    // A syntax error inside an element names it too, as field errors do (`[3]`).
                    do {
                        if parse { value = try p.parseValue(depth: 1) } else { try skipValue(&p) }
                    } catch let f as JSONParser.Failure { throw located(f, element: index) }
                    let element = JSONElement(
                        index: index, line: lineCounter.line(at: start, in: raw), offset: start, value: value,
                        bytes: UnsafeRawBufferPointer(rebasing: raw[start..<p.pos]))
                    try body(element)
                    index += 1
                    p.skipSpace()
                    guard p.pos < raw.count else { throw p.fail("unexpected end of file in the array (after element \(index - 1))") }
                    if raw[p.pos] == UInt8(ascii: ",") { p.pos += 1; continue }
                    if raw[p.pos] == UInt8(ascii: "]") { p.pos += 1; break }
                    throw p.fail("expected ',' or ']' after element \(index - 1), found \(p.describe(raw[p.pos]))")
                }
            }
            if key == nil {
                p.skipSpace()
                if p.pos < raw.count { throw p.fail("unexpected \(p.describe(raw[p.pos])) after the array") }
            }
        } catch let f as JSONParser.Failure {
            throw located(f)
        }
    }

    /// Calls `body` with each non-blank line of a JSON Lines file, parsed as one JSON value.
    /// - Throws: `FormatError` naming the line, or what `body` throws.
    public func forEachLine(_ body: (JSONElement) throws -> Void) throws {
        var start = 0, line = 1, index = 0
        while start < raw.count {
            let (end, next) = Self.line(in: raw, from: start)
            let slice = UnsafeRawBufferPointer(rebasing: raw[start..<end])
            var p = JSONParser(bytes: slice)
            p.pythonLiterals = true
            p.skipSpace()
            if p.pos < slice.count {
                let value: JSONNode
                do { value = try p.parseDocument() } catch let f as JSONParser.Failure {
                    if index == 0, let whole = wholeDocument() { throw whole }
                    throw FormatError(file: file, location: "line \(line)", "\(f.message) at column \(f.offset + 1)",
                                      hint: "JSON Lines needs one complete JSON value per line")
                }
                try body(JSONElement(index: index, line: line, offset: start, value: value, bytes: slice))
                index += 1
            }
            start = next
            line += 1
        }
    }

    /// The line of JSON Lines text starting at `start`: where it ends (its break excluded) and
    /// where the next begins. Breaks are Python's universal newlines (FiD reads JSON Lines with
    /// `for line in file`): LF, CRLF and a lone CR; a raw CR is no valid byte inside a JSON
    /// string, so it only ever separates tokens, and Python splits there too.
    @inline(__always)
    public static func line(in raw: UnsafeRawBufferPointer, from start: Int) -> (end: Int, next: Int) {
        guard let base = raw.baseAddress, start < raw.count else { return (raw.count, raw.count + 1) }
        var lf = raw.count
        if let hit = memchr(base + start, 0x0A, raw.count - start) { lf = UnsafeRawPointer(hit) - base }
        if lf > start, let hit = memchr(base + start, 0x0D, lf - start) {
            let cr = UnsafeRawPointer(hit) - base
            return (cr, cr + 1 == lf ? lf + 1 : cr + 1)
        }
        return (lf, lf + 1)
    }

    /// When the first line of what looked like JSON Lines does not parse: the error for a file
    /// that is one JSON object over several lines (a pretty-printed config or summary given
    /// where records belong), naming its keys; nil when the whole file is no JSON value either.
    public func wholeDocument() -> FormatError? {
        var p = JSONParser(bytes: raw)
        p.pythonLiterals = true
        guard case .object(let pairs)? = try? p.parseDocument() else { return nil }
        let keys = pairs.prefix(6).map { "'\($0.0)'" }.joined(separator: ", ") + (pairs.count > 6 ? ", …" : "")
        return FormatError(file: file, location: "", "is one JSON object (keys \(keys)), not a list of records",
                           hint: "expected a JSON list [{…}, {…}] or JSON Lines, one record per line")
    }

    private func expectByte(_ p: inout JSONParser, _ b: UInt8, _ what: String) throws {
        p.skipSpace()
        guard p.pos < raw.count else { throw p.fail("expected \(what), found the end of the file") }
        guard raw[p.pos] == b else { throw p.fail("expected \(what), found \(p.describe(raw[p.pos]))") }
        p.pos += 1
    }

    /// Skips one value by bracket matching (string- and escape-aware), without building it.
    private func skipValue(_ p: inout JSONParser) throws {
        p.skipSpace()
        guard p.pos < raw.count else { throw p.fail("expected a value, found the end of the file") }
        var depth = 0
        while p.pos < raw.count {
            switch raw[p.pos] {
            case UInt8(ascii: "\""):
                try p.skipString()
                if depth == 0 { return }
                continue
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                if depth == 0 { return }  // the end of the enclosing container
                depth -= 1
                if depth == 0 {
                    p.pos += 1
                    return
                }
            case UInt8(ascii: ","), 0x20, 0x09, 0x0A, 0x0D:
                if depth == 0 { return }  // the end of a number or literal
            default: break
            }
            p.pos += 1
        }
        if depth > 0 { throw p.fail("unexpected end of file inside a value") }
    }

    private func located(_ f: JSONParser.Failure, element: Int? = nil) -> FormatError {
        var counter = LineCounter()
        return FormatError(file: file, location: (element.map { "[\($0)], " } ?? "") + "byte \(f.offset) (line \(counter.line(at: f.offset, in: raw)))", f.message)
    }
}

/// Line numbers of increasing offsets, counting newlines once.
struct LineCounter {
    private var offset = 0
    private var lines = 1

    mutating func line(at target: Int, in raw: UnsafeRawBufferPointer) -> Int {
        let end = Swift.min(target, raw.count)
        if end < offset { offset = 0; lines = 1 }
        if end > offset, let base = raw.baseAddress {
            var p = base + offset
            var left = end - offset
            // memchr finds newlines at memory speed; the file can be GBs.
            while left > 0, let hit = memchr(p, 0x0A, left) {
                lines += 1
                let step = UnsafeRawPointer(hit) - p + 1
                p += step
                left -= step
            }
            offset = end
        }
        return lines
    }
}

/// Pull-style reading of a top-level array's elements, for walking several files in step
/// (`merge` interleaves shards): each `next()` parses one element.
public struct JSONArrayCursor {
    public let stream: JSONStream
    private var parser: JSONParser
    private var index = 0
    private var ended = false

    /// Positions after the opening `[`.
    /// - Throws: `FormatError` when the file does not start with a JSON array.
    public init(_ stream: JSONStream) throws {
        self.stream = stream
        parser = JSONParser(bytes: stream.bytes)
        parser.pythonLiterals = true
        parser.skipSpace()
        guard parser.pos < stream.bytes.count, stream.bytes[parser.pos] == UInt8(ascii: "[") else {
            throw FormatError(file: stream.file, location: "byte \(parser.pos)", "expected a JSON array")
        }
        parser.pos += 1
        parser.skipSpace()
        if parser.pos < stream.bytes.count, stream.bytes[parser.pos] == UInt8(ascii: "]") { ended = true }
    }

    /// The next element, or nil after the last.
    /// - Throws: `FormatError` naming the file and byte offset.
    public mutating func next() throws -> JSONNode? {
        if ended { return nil }
        let raw = stream.bytes
        do {
            let value = try parser.parseValue(depth: 1)
            index += 1
            parser.skipSpace()
            guard parser.pos < raw.count else { throw parser.fail("unexpected end of file in the array") }
            if raw[parser.pos] == UInt8(ascii: ",") {
                parser.pos += 1
            } else if raw[parser.pos] == UInt8(ascii: "]") {
                ended = true
            } else {
                throw parser.fail("expected ',' or ']' after element \(index - 1)")
            }
            return value
        } catch let f as JSONParser.Failure {
            throw FormatError(file: stream.file, location: "byte \(f.offset)", f.message)
        }
    }
}
