// FiDData: FiD's data files (a JSON list or JSON Lines) read example by example, with FiD's sharding,
// or indexed by byte range so training reads each example when a batch needs it.
import Formats
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A FiD data file streamed one example at a time, so a 10 GB training set never sits in memory.
///
/// A file whose first byte is `[` is a JSON list; anything else is JSON Lines (one example per
/// line), whatever the file's name (FiD picks by the `.jsonl` suffix; content is surer).
public struct FiDData {
    public let path: String
    /// What each passage must hold (`evaluate_retrieval` reads FiD's evaluation's way).
    public var passages: FiDExample.Passages = .titleAndText

    public init(path: String) { self.path = path }

    /// FiD's sharding (`load_data(path, global_rank, world_size)`): example `k` belongs to shard
    /// `k % numShards`.
    public static func inShard(_ index: Int, shard: Int, of numShards: Int) -> Bool { index % numShards == shard }

    /// How many elements `index` scans between two `progress` calls.
    public static let progressEvery = 1024

    /// Calls `body` with each example of shard `shard` of `numShards` (all by default), in file order.
    ///
    /// - Returns: the number of examples in the whole file.
    /// - Throws: `FormatError` naming the file and the element (`[k]` or `line n`) and field when
    ///   the file is not FiD data; an empty data set is an error too; or what `body` throws.
    @discardableResult
    public func forEach(shard: Int = 0, of numShards: Int = 1, _ body: (FiDExample) throws -> Void) throws -> Int {
        try scan(try JSONStream(path: path), shard: shard, of: numShards) { e, _ in try body(e) }
    }

    /// `forEach`, also handing over each example's element (its bytes, offset and line).
    @discardableResult
    func scan(_ stream: JSONStream, shard: Int = 0, of numShards: Int = 1, seen: ((JSONElement) throws -> Void)? = nil,
              _ body: (FiDExample, JSONElement) throws -> Void) throws -> Int {
        precondition(numShards >= 1 && shard >= 0 && shard < numShards, "FiDData: shard \(shard) of \(numShards)")
        var count = 0
        func handle(_ e: JSONElement, _ place: String) throws {
            count += 1
            try seen?(e)
            guard Self.inShard(e.index, shard: shard, of: numShards) else { return }
            try body(try FiDExample(e.value, index: e.index, file: path, where: place, passages: passages), e)
        }
        guard let first = stream.firstByte else {
            throw FormatError(file: path, location: "", "the file is empty", hint: "FiD data is a JSON list or JSON Lines of examples")
        }
        if first == UInt8(ascii: "[") {
            try stream.forEachElement { try handle($0, "[\($0.index)]") }
        } else if first == UInt8(ascii: "{") {
            try stream.forEachLine { try handle($0, "line \($0.line)") }
        } else {
            throw Self.notFiDData(path, first: first)
        }
        if count == 0 {
            throw FormatError(file: path, location: "", "holds no examples", hint: "an empty data set cannot be scored or trained on")
        }
        return count
    }

    /// Every example of the shard, in file order (for small sets: dev sets, tests).
    public func load(shard: Int = 0, of numShards: Int = 1) throws -> [FiDExample] {
        var out: [FiDExample] = []
        try forEach(shard: shard, of: numShards) { out.append($0) }
        return out
    }
}

extension FiDData {
    private struct Stop: Error {}

    /// The error for a file that starts with neither `[` nor `{`, naming what it starts with.
    static func notFiDData(_ path: String, first: UInt8) -> FormatError {
        let utf16 = first == 0xFF || first == 0xFE
        let found = utf16 ? "a UTF-16 byte-order mark" : (0x21...0x7E).contains(first) ? "'\(Character(Unicode.Scalar(first)))'"
            : "the byte 0x" + String(first, radix: 16, uppercase: true)
        return FormatError(file: path, location: "byte 0", "expected '[' (a JSON list) or '{' (JSON Lines of objects), found \(found)",
                           hint: utf16 ? "the file is UTF-16: save it as UTF-8, as JSON files are"
                               : "FiD data is a JSON list or JSON Lines of {question, answers, ctxs} objects")
    }

    /// The file's first example, read without parsing the rest; nil never (an empty file throws).
    /// - Throws: `FormatError` as `forEach` (an empty or malformed file, a bad first example).
    public func first() throws -> FiDExample? {
        var found: FiDExample? = nil
        do {
            try forEach { found = $0; throw Stop() }
        } catch is Stop {}
        return found
    }

    /// Examples in the whole file, counted by structure only (elements are not parsed), so a
    /// job can report progress against a total before it starts.
    public func count() throws -> Int {
        let stream = try JSONStream(path: path)
        var n = 0
        if stream.firstByte == UInt8(ascii: "[") {
            try stream.forEachElement(parse: false) { _ in n += 1 }
        } else {
            // JSON Lines: non-blank lines (LF, CRLF or a lone CR, as `JSONStream.forEachLine` splits them).
            let raw = stream.bytes
            var start = 0
            while start < raw.count {
                let (end, next) = JSONStream.line(in: raw, from: start)
                var k = start
                while k < end, raw[k] == 0x20 || raw[k] == 0x09 { k += 1 }
                if k < end { n += 1 }
                start = next
            }
        }
        return n
    }
}

/// Examples read by position: an array in memory (small sets, tests) or an `IndexedFiDData`.
public protocol FiDExampleSource {
    var count: Int { get }
    /// The example at `position` (0-based among this source's examples).
    /// - Throws: `FormatError` naming the file and the element when it cannot be read.
    func example(at position: Int) throws -> FiDExample
}

extension Array: FiDExampleSource where Element == FiDExample {
    public func example(at position: Int) throws -> FiDExample { self[position] }
}

extension FiDData {
    /// Indexes the shard's examples (all by default) in one scan of the mapped file, keeping each
    /// one's byte range, not the example, so a 10 GB training set costs `IndexedFiDData.bytesPerExample`
    /// bytes per example.
    ///
    /// - Parameter check: called with each example of the shard, parsed during the scan and then
    ///   dropped (a trainer's checks: errors come at load, as with `load()`); without it, elements
    ///   are found by structure only and each is parsed first by `example(at:)`.
    /// - Parameter progress: called every `progressEvery` elements of the file with the bytes
    ///   scanned, the file's size and the elements seen (a 10 GB file takes minutes: a job logs
    ///   and checks for a stop from it).
    /// - Throws: `FormatError` as `forEach` (with `check`), or for a file that is empty, holds no
    ///   examples or breaks JSON structure (without); or what `check` or `progress` throws.
    public func index(shard: Int = 0, of numShards: Int = 1, check: ((FiDExample) throws -> Void)? = nil,
                      progress: ((_ bytes: Int, _ totalBytes: Int, _ elements: Int) throws -> Void)? = nil) throws -> IndexedFiDData {
        precondition(numShards >= 1 && shard >= 0 && shard < numShards, "FiDData: shard \(shard) of \(numShards)")
        let stream = try JSONStream(path: path)
        var entries: [IndexedFiDData.Entry] = []
        func entry(_ index: Int, _ offset: Int, _ length: Int, _ line: Int) {
            entries.append(IndexedFiDData.Entry(index: index, offset: offset, length: length, line: line))
        }
        func tick(_ elements: Int, _ end: Int) throws {
            if let progress, elements % Self.progressEvery == 0 { try progress(end, stream.bytes.count, elements) }
        }
        if let check {
            try scan(stream, shard: shard, of: numShards, seen: { e in try tick(e.index + 1, e.offset + e.bytes.count) }) { example, e in
                try check(example)
                entry(e.index, e.offset, e.bytes.count, e.line)
            }
            return IndexedFiDData(path: path, stream: stream, isArray: stream.firstByte == UInt8(ascii: "["), entries: entries)
        }
        guard let first = stream.firstByte else {
            throw FormatError(file: path, location: "", "the file is empty", hint: "FiD data is a JSON list or JSON Lines of examples")
        }
        var total = 0
        if first == UInt8(ascii: "[") {
            try stream.forEachElement(parse: false) { e in
                total += 1
                if Self.inShard(e.index, shard: shard, of: numShards) { entry(e.index, e.offset, e.bytes.count, e.line) }
                try tick(total, e.offset + e.bytes.count)
            }
        } else if first == UInt8(ascii: "{") {
            // JSON Lines: each non-blank line is one example (as `JSONStream.forEachLine` counts them).
            let raw = stream.bytes
            var start = 0, line = 1
            while start < raw.count {
                let (end, next) = JSONStream.line(in: raw, from: start)
                var k = start
                while k < end, raw[k] == 0x20 || raw[k] == 0x09 { k += 1 }
                if k < end {
                    if Self.inShard(total, shard: shard, of: numShards) { entry(total, start, end - start, line) }
                    total += 1
                    try tick(total, end)
                }
                start = next
                line += 1
            }
        } else {
            throw Self.notFiDData(path, first: first)
        }
        if total == 0 {
            throw FormatError(file: path, location: "", "holds no examples", hint: "an empty data set cannot be scored or trained on")
        }
        return IndexedFiDData(path: path, stream: stream, isArray: first == UInt8(ascii: "["), entries: entries)
    }
}

/// A FiD data file's examples by position, each parsed from the mapped file when asked for: the
/// index holds a byte range per example, never the example (issue 11: NQ train is ~10 GB).
public final class IndexedFiDData: FiDExampleSource, @unchecked Sendable {
    /// Where one example lies: its index in the whole file, its bytes, its first line.
    struct Entry {
        var index: Int, offset: Int, length: Int, line: Int
    }

    public let path: String
    private let stream: JSONStream
    private let isArray: Bool
    private let entries: [Entry]

    init(path: String, stream: JSONStream, isArray: Bool, entries: [Entry]) {
        self.path = path
        self.stream = stream
        self.isArray = isArray
        self.entries = entries
    }

    /// Examples indexed (the shard's).
    public var count: Int { entries.count }
    /// The index's memory per example, whatever the example's size.
    public static var bytesPerExample: Int { MemoryLayout<Entry>.stride }
    /// The index's memory in all (its array's capacity).
    public var indexBytes: Int { entries.capacity * Self.bytesPerExample }

    /// Parses the example at `position` from its bytes (thread-safe: nothing is cached).
    /// - Throws: `FormatError` naming the file and the element (`[k]` or `line n`) and field.
    public func example(at position: Int) throws -> FiDExample {
        precondition(position >= 0 && position < entries.count, "IndexedFiDData: example \(position) of \(entries.count)")
        let e = entries[position]
        let place = isArray ? "[\(e.index)]" : "line \(e.line)"
        let slice = UnsafeRawBufferPointer(rebasing: stream.bytes[e.offset..<(e.offset + e.length)])
        var parser = JSONParser(bytes: slice)
        parser.pythonLiterals = true
        let node: JSONNode
        do {
            // An array element's bytes are exactly the value, parsed at the depth the stream parses it.
            node = isArray ? try parser.parseValue(depth: 1) : try parser.parseDocument()
        } catch let f as JSONParser.Failure {
            if !isArray, e.index == 0, let whole = stream.wholeDocument() { throw whole }
            throw FormatError(file: path, location: place, "\(f.message) at byte \(e.offset + f.offset)",
                              hint: isArray ? "each element of the list must be a JSON object" : "JSON Lines needs one complete JSON value per line")
        }
        return try FiDExample(node, index: e.index, file: path, where: place)
    }
}
