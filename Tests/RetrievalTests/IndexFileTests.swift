// IndexFileTests: saved indexes (BM25, sq8, pq) with any one byte damaged are refused with a
// RetrievalError or load and search; none traps or sizes an allocation from a damaged count.
import Foundation
import Testing
import Formats
import Tensor

@testable import Retrieval

@Suite struct IndexFileTests {
    /// Every byte of the file set to each of `values` in turn: `load` throws a RetrievalError or
    /// gives an index `use` runs on. Returns how many damaged files were refused.
    static func damageEveryByte(_ path: String, values: [UInt8] = [0xFF, 0x00, 0x7F], load: (String) throws -> Void) throws -> Int {
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        var refused = 0
        for i in 0..<original.count {
            for v in values where original[i] != v {
                var damaged = original
                damaged[i] = v
                try damaged.write(to: URL(fileURLWithPath: path))
                do { try load(path) } catch is RetrievalError { refused += 1 }
            }
        }
        try original.write(to: URL(fileURLWithPath: path))
        return refused
    }

    /// A count 0xFF… (it sized an allocation of exabytes, or trapped converting to Int) and a
    /// posting offset out of order (it trapped on a range in search) are refused by name.
    /// A killed writer's temporary file beside an index (untouched for over an hour) is removed
    /// by the next write of it; a live writer's (two retrieves saving one index.sq8 at once) is
    /// not: removing it failed that writer's rename.
    @Test func aKilledWritersTemporaryFileIsRemoved() throws {
        let dir = NSTemporaryDirectory() + "fidq-indexfile-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/bm25.index"
        _ = FileManager.default.createFile(atPath: path + ".tmp-4242-17", contents: Data("half".utf8))
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-2 * StaleFiles.idleAfter)],
                                              ofItemAtPath: path + ".tmp-4242-17")
        _ = FileManager.default.createFile(atPath: path + ".tmp-99-1", contents: Data("live".utf8))
        _ = FileManager.default.createFile(atPath: dir + "/other.index.tmp-1-1", contents: Data("theirs".utf8))
        try Data("index".utf8).withUnsafeBytes { try writeFileAtomically($0, to: path) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["bm25.index", "bm25.index.tmp-99-1", "other.index.tmp-1-1"])
    }

    @Test func bm25() throws {
        let path = NSTemporaryDirectory() + "fidq-bm25-damaged-\(UUID().uuidString).bin"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try BM25IndexTests.build().save(to: path)
        let queries = ["capital of France", "tower", "berlin germany", "see", "paris tower london"]
        let refused = try Self.damageEveryByte(path) { _ = try BM25Index(path: $0).search(queries, k: 3, threads: 1) }
        #expect(refused > 0)
        // The header: magic 8, version 4 (padded to 16), k1, b, average length, then the counts.
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        data.replaceSubrange(32..<40, with: [UInt8](repeating: 0xFF, count: 8))  // documents
        try data.write(to: URL(fileURLWithPath: path))
        let e = #expect(throws: RetrievalError.self) { try BM25Index(path: path) }
        #expect(e?.field == "documents" && e?.hint?.contains("damaged") == true, "\(String(describing: e))")
    }

    @Test func sq8AndPQ() throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        var rng = RNG(seed: 5)
        let dim = 8
        try folder.write(index: 0, rows: rng.normalArray(40 * dim), dim: dim, storage: .float32, firstID: 0)
        let shards = try EmbeddingShard.open(glob: folder.dir + "/passages_*")
        let flat = try FlatIndex(shards: shards)
        let queries = rng.normalArray(3 * dim)
        let sqPath = folder.dir + "/index.sq8", pqPath = folder.dir + "/index.pq"
        try ScalarQuantizedIndex.build(shards: shards).save(to: sqPath)
        try ProductQuantizedIndex.build(shards: shards, subquantizers: 4, bits: 2, seed: 1).save(to: pqPath)
        let sqRefused = try Self.damageEveryByte(sqPath) { path in
            let sq = try ScalarQuantizedIndex(path: path)
            guard sq.dim == dim, sq.count == flat.count else { return }  // retrieve refuses other shapes
            _ = queries.withUnsafeBufferPointer { sq.search(queries: $0.baseAddress!, queryCount: 3, k: 5, rerank: 2, exact: flat, threads: 1) }
        }
        let pqRefused = try Self.damageEveryByte(pqPath) { path in
            let pq = try ProductQuantizedIndex(path: path)
            guard pq.dim == dim else { return }
            _ = queries.withUnsafeBufferPointer { pq.search(queries: $0.baseAddress!, queryCount: 3, k: 5, threads: 1) }
        }
        #expect(sqRefused > 0 && pqRefused > 0)
    }
}
