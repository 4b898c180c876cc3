// EmbeddingShard: one shard of passage embeddings: `.npy` + `.ids` (ours) or FiD's pickled (ids, embeddings).
import Formats
import Tensor

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One shard of passage embeddings, (N, E) rows with a passage id each, read in place.
///
/// Two formats: ours, `<prefix>_<shard:02d>.npy` (numpy format 1.0–3.0, little-endian float16 or
/// float32, C order, shape (N, E)) memory-mapped, with `<prefix>_<shard:02d>.ids` beside it (one id a
/// line, file order); and FiD's `pickle.dump((ids, embeddings))` files, read through the safe pickle
/// reader (`NumpyPickle.readShard`) into memory. Rows come out as float32 block by block
/// (`rows(_:_:scratch:)`), so a float16 shard is never widened whole.
public final class EmbeddingShard: @unchecked Sendable {
    public enum Storage: String, Sendable { case float16, float32 }

    public let path: String
    /// Passage ids, one per row.
    public let ids: [String]
    /// N: rows.
    public let count: Int
    /// E: embedding width.
    public let dim: Int
    public let storage: Storage
    /// The mapped `.npy` (nil for a pickled shard) and where its data starts.
    private let file: FileBytes?
    private let dataOffset: Int
    /// A pickled shard's rows, float32.
    private let owned: [Float]

    /// Opens a shard: a `.npy` (its `.ids` beside it) or anything else as FiD's pickle.
    public init(path: String) throws {
        self.path = path
        if path.hasSuffix(".npy") {
            let header = try NpyHeader.read(path: path)
            guard header.shape.count == 2 else {
                throw RetrievalError(file: path, field: "shape", expected: "(n, d)", found: "\(header.shape)")
            }
            let (n, d) = (header.shape[0], header.shape[1])
            let itemSize = header.storage == .float16 ? 2 : 4
            // A damaged header's shape can ask for more bytes than an Int counts.
            let elements = n.multipliedReportingOverflow(by: d)
            let bytes = elements.partialValue.multipliedReportingOverflow(by: itemSize)
            let end = header.dataOffset.addingReportingOverflow(bytes.partialValue)
            guard !elements.overflow, !bytes.overflow, !end.overflow else {
                throw RetrievalError(file: path, field: "shape", expected: "(n, d) whose data a file can hold", found: "(\(n), \(d))",
                                     hint: "the header is damaged; re-run the embed job of this shard")
            }
            let need = end.partialValue
            let file: FileBytes
            do {
                file = try FileBytes(path: path, mapThreshold: 0, minSize: need) { size in
                    RetrievalError(
                        file: path, field: "data", expected: "\(need) bytes for (\(n), \(d)) \(header.storage.rawValue)",
                        found: "\(size) bytes", hint: "the file is truncated; re-run the embed job of this shard")
                }
            } catch let e as RetrievalError {
                throw e
            } catch FileBytes.Failure.addressSpace(let bytes) {
                throw RetrievalError(file: path, field: "file", expected: "a readable .npy", found: "its \(bytes) bytes cannot be mapped: no address space left",
                                     hint: FileBytes.Failure.addressSpaceHint)
            } catch {
                throw RetrievalError(file: path, field: "file", expected: "a readable .npy", found: "\(error)")
            }
            guard file.count == need else {
                throw RetrievalError(file: path, field: "data", expected: "\(need) bytes for (\(n), \(d))", found: "\(file.count) bytes")
            }
            let idsPath = Self.idsPath(forShard: path)
            let ids = try EmbeddingShard.readIDs(idsPath)
            guard ids.count == n else {
                throw RetrievalError(file: idsPath, field: "row count", expected: "\(n) ids (the .npy's rows)", found: "\(ids.count)",
                                     hint: "the .ids and .npy of a shard are written together; re-run its embed job")
            }
            (self.ids, count, dim, storage, self.file, dataOffset, owned) = (ids, n, d, header.storage, file, header.dataOffset, [])
        } else {
            let shard: (ids: [String], embeddings: Tensor)
            do {
                shard = try NumpyPickle.readShard(path: path)
            } catch {
                throw RetrievalError(file: path, field: "pickle", expected: "FiD's pickled (ids, embeddings) shard", found: "\(error)")
            }
            (ids, count, dim, storage, file, dataOffset, owned) =
                (shard.ids, shard.embeddings.shape[0], shard.embeddings.shape[1], .float32, nil, 0, shard.embeddings.data)
        }
    }

    /// Rows `lo..<hi` as float32, (hi-lo, E) row-major: a pointer into the mapping for a float32
    /// shard, else widened into `scratch` (room for (hi-lo)·E floats) and returned.
    public func rows(_ lo: Int, _ hi: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        precondition(0 <= lo && lo <= hi && hi <= count, "rows \(lo)..<\(hi) of \(count)")
        if let file {
            let start = file.base + dataOffset
            switch storage {
            case .float32:
                return start.assumingMemoryBound(to: Float.self) + lo * dim
            case .float16:
                Half.widenF16(start + 2 * lo * dim, into: scratch, count: (hi - lo) * dim)
                return UnsafePointer(scratch)
            }
        }
        return owned.withUnsafeBufferPointer { UnsafePointer($0.baseAddress!) + lo * dim }
    }

    /// The ids of a `.ids` file (one a line; a last line without newline counts).
    public static func readIDs(_ path: String) throws -> [String] {
        let file: FileBytes
        do {
            file = try FileBytes(path: path, mapThreshold: 1 << 20, minSize: 0) { _ in RetrievalError(file: path, field: "", expected: "", found: "") }
        } catch {
            throw RetrievalError(file: path, field: "ids", expected: "a readable file of passage ids, one a line", found: "\(error)",
                                 hint: "a shard's .npy needs its .ids beside it")
        }
        var ids: [String] = []
        let b = file.buffer.bindMemory(to: UInt8.self)
        var start = 0
        for i in 0..<b.count where b[i] == 10 {
            ids.append(String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self))
            start = i + 1
        }
        if start < b.count { ids.append(String(decoding: UnsafeBufferPointer(rebasing: b[start...]), as: UTF8.self)) }
        return ids
    }

    /// Where the ids come from: the `.ids` beside a `.npy`, or the pickle itself.
    var idsPath: String { Self.idsPath(forShard: path) }

    /// The ids file of the shard at `path`: `<stem>.ids` beside a `.npy`, a pickle's own path.
    public static func idsPath(forShard path: String) -> String {
        path.hasSuffix(".npy") ? String(path.dropLast(4)) + ".ids" : path
    }

    /// `<prefix>_<shard:02d>` as FiD names a shard (`f"_{shard_id:02d}"`).
    public static func stem(prefix: String, shard: Int) -> String {
        let n = String(shard)
        return prefix + "_" + (n.count < 2 ? String(repeating: "0", count: 2 - n.count) + n : n)
    }

    /// The shard files a glob names, sorted as FiD sorts them (`sorted(glob.glob(pattern))`: by
    /// code point, which is UTF-8 byte order). A `.ids` file is the companion of its `.npy` and
    /// unfinished `.tmp` files, saved indexes (`index.sq8`, `index.pq`) and JSON files (their
    /// `.source.json`, a shard's `.meta.json`) are skipped; anything else is a shard (FiD's pickles
    /// have no suffix).
    public static func glob(_ pattern: String) -> [String] {
        var g = glob_t()
        defer { globfree(&g) }
        guard Glibc.glob(pattern, 0, nil, &g) == 0 else { return [] }
        var out: [String] = []
        for i in 0..<Int(g.gl_pathc) {
            guard let c = g.gl_pathv[i] else { continue }
            let p = String(cString: c)
            // The file's own name only: a folder named `job.tmp-7/` holds shards like any other.
            let name = p.split(separator: "/").last.map(String.init) ?? p
            if name.hasSuffix(".ids") || name.hasSuffix(".tmp") || name.contains(".tmp-") { continue }
            // What save_or_load_index and embed keep beside the shards, so a glob like `emb/*` still works.
            if name == "index.sq8" || name == "index.pq" || name.hasSuffix(".json") { continue }
            out.append(p)
        }
        return out.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// Opens every shard a glob names; refuses none found and shards of different widths.
    public static func open(glob pattern: String) throws -> [EmbeddingShard] {
        let paths = glob(pattern)
        guard !paths.isEmpty else {
            throw RetrievalError(file: pattern, field: "passages_embeddings", expected: "a glob naming at least one shard", found: "no file",
                                 hint: "embed jobs write <output_path>_<shard:02d>.npy; pass e.g. \"embeddings/passages_*\"")
        }
        return try open(paths: paths)
    }

    /// Opens the given shards in order; refuses shards of different widths.
    public static func open(paths: [String]) throws -> [EmbeddingShard] {
        var shards: [EmbeddingShard] = []
        for p in paths {
            let s = try EmbeddingShard(path: p)
            if let first = shards.first, first.dim != s.dim {
                throw RetrievalError(file: p, field: "width", expected: "\(first.dim) like \(first.path)", found: "\(s.dim)",
                                     hint: "every shard of one index comes from the same retriever")
            }
            shards.append(s)
        }
        try checkDistinctIDs(shards)
        return shards
    }

    /// Refuses a passage id found in two rows: the same passage retrieved twice, typically
    /// because the glob also matches stale shards of an earlier embed run with another
    /// `num_shards` (their rows overlap this run's), or because the passages file holds the id
    /// twice (then both rows are in one shard, or in neighbouring shards of one run).
    static func checkDistinctIDs(_ shards: [EmbeddingShard]) throws {
        guard let (x, y, id) = firstDuplicate(shards.map(\.ids)) else { return }
        let place = x.list == y.list
            ? "twice in \(shards[x.list].idsPath) (rows \(x.row + 1) and \(y.row + 1))"
            : "in \(shards[x.list].idsPath) (row \(x.row + 1)) and in \(shards[y.list].idsPath) (row \(y.row + 1))"
        throw RetrievalError(
            file: shards[y.list].path, field: "ids", expected: "each passage in one row of one shard",
            found: "passage id \(id) \(place)",
            hint: x.list == y.list ? "one embed run writes each row once: the passages file holds this id twice; DPR ids must be unique"
                : "stale shards of an earlier embed run with another num_shards? remove them, or write this run's under a new output_path "
                + "(or the passages file holds this id twice; DPR ids must be unique)")
    }
}

/// The first id found twice across `lists` (list and row of each, 0-based: the earliest row that
/// repeats an earlier one, and that earlier one), or nil.
public func firstDuplicate(_ lists: [[String]]) -> (a: (list: Int, row: Int), b: (list: Int, row: Int), id: String)? {
    let starts = lists.reduce(into: [0]) { $0.append($0.last! + $1.count) }
    func place(_ i: Int) -> (list: Int, row: Int) {
        let l = starts.lastIndex { $0 <= i }!  // i < the total, so never the last start
        return (l, i - starts[l])
    }
    let found = firstRepeatedID { visit in
        for l in lists { for id in l where !visit(id) { return } }
    }
    return found.map { (place($0.first), place($0.second), $0.id) }
}

/// A passage id that two rows share: its first row and the first that repeats it (0-based, in
/// the order the ids were visited).
public struct RepeatedID: Equatable, Sendable {
    public var id: String
    public var first: Int
    public var second: Int
}

/// The first id that repeats an earlier one among the ids `visitAll` visits (twice, in the same
/// order; `visit` returns false to stop), or nil. The first visit keeps only each id's hash, 8
/// bytes, for corpora of tens of millions of passages streamed from a file; the second compares
/// the ids of the rows whose hash repeats. Ids are equal as Swift strings, as every id lookup in
/// fidq compares them.
public func firstRepeatedID(_ visitAll: (_ visit: (String) -> Bool) throws -> Void) rethrows -> RepeatedID? {
    var hashes: [Int] = []
    try visitAll { id in
        hashes.append(id.hashValue)
        return true
    }
    hashes.sort()
    var repeated = Set<Int>()
    for k in hashes.indices.dropFirst() where hashes[k] == hashes[k - 1] { repeated.insert(hashes[k]) }
    guard !repeated.isEmpty else { return nil }
    hashes = []
    var seen: [String: Int] = [:]
    var row = 0, found: RepeatedID?
    try visitAll { id in
        defer { row += 1 }
        guard repeated.contains(id.hashValue) else { return true }
        if let first = seen[id] {
            found = RepeatedID(id: id, first: first, second: row)
            return false
        }
        seen[id] = row
        return true
    }
    return found
}

/// The header of a `.npy` file (numpy format versions 1–3).
struct NpyHeader {
    var storage: EmbeddingShard.Storage
    var shape: [Int]
    var dataOffset: Int

    static func read(path: String) throws -> NpyHeader {
        func bad(_ what: String, _ found: String) -> RetrievalError {
            RetrievalError(file: path, field: "npy header", expected: what, found: found, hint: "write shards with numpy.save or fidq embed")
        }
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw RetrievalError(file: path, field: "file", expected: "a readable .npy", found: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 4096)
        let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n >= 10, Array(head[0..<6]) == [0x93] + Array("NUMPY".utf8) else {
            throw bad("the magic \\x93NUMPY", n < 10 ? "\(max(n, 0)) bytes" : "other bytes")
        }
        let major = head[6]
        let (lenBytes, len): (Int, Int)
        switch major {
        case 1: (lenBytes, len) = (2, Int(head[8]) | Int(head[9]) << 8)
        case 2, 3:
            guard n >= 12 else { throw bad("a complete header", "\(n) bytes") }
            (lenBytes, len) = (4, Int(head[8]) | Int(head[9]) << 8 | Int(head[10]) << 16 | Int(head[11]) << 24)
        default: throw bad("format version 1, 2 or 3", "\(major)")
        }
        let start = 8 + lenBytes
        guard start + len <= n else { throw bad("a header of \(len) bytes", "a file of \(n) bytes") }
        let text = String(decoding: head[start..<(start + len)], as: UTF8.self)
        func value(_ key: String) -> Substring? {
            guard let r = text.range(of: "'\(key)':") else { return nil }
            return text[r.upperBound...].drop { $0 == " " }
        }
        guard let descr = value("descr") else { throw bad("a 'descr' key", text) }
        let storage: EmbeddingShard.Storage
        if descr.hasPrefix("'<f4'") || descr.hasPrefix("'=f4'") {
            storage = .float32
        } else if descr.hasPrefix("'<f2'") || descr.hasPrefix("'=f2'") {
            storage = .float16
        } else {
            throw bad("descr '<f2' or '<f4' (little-endian float16/float32)", String(descr.prefix(8)))
        }
        guard let fortran = value("fortran_order"), fortran.hasPrefix("False") else { throw bad("fortran_order False", text) }
        guard let shapeText = value("shape"), shapeText.hasPrefix("("), let close = shapeText.firstIndex(of: ")") else {
            throw bad("a 'shape' tuple", text)
        }
        let dims = shapeText[shapeText.index(after: shapeText.startIndex)..<close].split(separator: ",")
            .map { $0.trimmingCharacters(in: " ") }.filter { !$0.isEmpty }
        var shape: [Int] = []
        for d in dims {
            guard let v = Int(d), v >= 0 else { throw bad("integer dimensions", String(shapeText[...close])) }
            shape.append(v)
        }
        return NpyHeader(storage: storage, shape: shape, dataOffset: start + len)
    }

    /// A version 1.0 header for a C-order (n, d) array, padded to 64 bytes as numpy writes it.
    static func encode(storage: EmbeddingShard.Storage, rows: Int, dim: Int) -> [UInt8] {
        var dict = "{'descr': '<\(storage == .float16 ? "f2" : "f4")', 'fortran_order': False, 'shape': (\(rows), \(dim)), }"
        let total = 10 + dict.utf8.count + 1
        dict += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        let len = dict.utf8.count
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(len & 0xFF), UInt8(len >> 8)] + Array(dict.utf8)
    }
}

extension StringProtocol {
    fileprivate func trimmingCharacters(in set: Character) -> String {
        String(drop { $0 == set }.reversed().drop { $0 == set }.reversed())
    }
}
