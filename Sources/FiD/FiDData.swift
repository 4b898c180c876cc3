// FiDData: FiD's data files (a JSON list or JSON Lines) read example by example, with FiD's sharding.
import Formats

/// A FiD data file streamed one example at a time, so a 10 GB training set never sits in memory.
///
/// A file whose first byte is `[` is a JSON list; anything else is JSON Lines (one example per
/// line), whatever the file's name (FiD picks by the `.jsonl` suffix; content is surer).
public struct FiDData {
    public let path: String

    public init(path: String) { self.path = path }

    /// FiD's sharding (`load_data(path, global_rank, world_size)`): example `k` belongs to shard
    /// `k % numShards`.
    public static func inShard(_ index: Int, shard: Int, of numShards: Int) -> Bool { index % numShards == shard }

    /// Calls `body` with each example of shard `shard` of `numShards` (all by default), in file order.
    ///
    /// - Returns: the number of examples in the whole file.
    /// - Throws: `FormatError` naming the file and the element (`[k]` or `line n`) and field when
    ///   the file is not FiD data; an empty data set is an error too; or what `body` throws.
    @discardableResult
    public func forEach(shard: Int = 0, of numShards: Int = 1, _ body: (FiDExample) throws -> Void) throws -> Int {
        precondition(numShards >= 1 && shard >= 0 && shard < numShards, "FiDData: shard \(shard) of \(numShards)")
        let stream = try JSONStream(path: path)
        var count = 0
        func handle(_ e: JSONElement, _ place: String) throws {
            count += 1
            guard Self.inShard(e.index, shard: shard, of: numShards) else { return }
            try body(try FiDExample(e.value, index: e.index, file: path, where: place))
        }
        guard let first = stream.firstByte else {
            throw FormatError(file: path, location: "", "the file is empty", hint: "FiD data is a JSON list or JSON Lines of examples")
        }
        if first == UInt8(ascii: "[") {
            try stream.forEachElement { try handle($0, "[\($0.index)]") }
        } else if first == UInt8(ascii: "{") {
            try stream.forEachLine { try handle($0, "line \($0.line)") }
        } else {
            throw FormatError(file: path, location: "byte 0", "expected '[' (a JSON list) or '{' (JSON Lines of objects)",
                              hint: "FiD data is a JSON list or JSON Lines of {question, answers, ctxs} objects")
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
            // JSON Lines: non-blank lines.
            let raw = stream.bytes
            var blank = true
            for b in raw {
                if b == 0x0A {
                    if !blank { n += 1 }
                    blank = true
                } else if b != 0x20 && b != 0x09 && b != 0x0D {
                    blank = false
                }
            }
            if !blank { n += 1 }
        }
        return n
    }
}
