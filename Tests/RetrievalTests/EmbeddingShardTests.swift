// EmbeddingShardTests: .npy shards round-trip (numpy's header), FiD pickles load, and each bad shard is refused naming the file.
import Foundation
import Tensor
import Testing
import TestSupport

@testable import Retrieval

@Suite struct EmbeddingShardTests {
    @Test func npyRoundTripsAndHasNumpysHeader() throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        var rng = RNG(seed: 3)
        let rows = rng.normalArray(5 * 3)
        try folder.write(index: 7, rows: rows, dim: 3, storage: .float32, firstID: 100)
        let path = folder.dir + "/passages_07.npy"
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(bytes.count == 128 + 5 * 3 * 4)
        let header = String(decoding: bytes[10..<128], as: UTF8.self)
        #expect(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (5, 3), }") && header.hasSuffix("\n"))
        let shard = try EmbeddingShard(path: path)
        #expect(shard.ids == ["100", "101", "102", "103", "104"] && shard.count == 5 && shard.dim == 3)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 15)
        defer { scratch.deallocate() }
        let p = shard.rows(1, 4, scratch: scratch)
        #expect(Array(UnsafeBufferPointer(start: p, count: 9)) == Array(rows[3..<12]))
        // float16: rows come back widened.
        let h = try folder.write(index: 8, rows: rows, dim: 3, storage: .float16, firstID: 0)
        let half = try EmbeddingShard(path: folder.dir + "/passages_08.npy")
        #expect(half.storage == .float16)
        #expect(Array(UnsafeBufferPointer(start: half.rows(0, 5, scratch: scratch), count: 15)) == h)
        #expect(EmbeddingShard.stem(prefix: "x/p", shard: 3) == "x/p_03" && EmbeddingShard.stem(prefix: "p", shard: 123) == "p_123")
    }

    @Test func readsFiDPickledShards() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("TensorTests/Fixtures/pickle")
        for name in ["shard_f32.pkl", "shard_f16.pkl", "shard_p5.pkl"] {
            let path = dir.appendingPathComponent(name).path
            let shard = try EmbeddingShard(path: path)
            let (ids, emb) = try NumpyPickle.readShard(path: path)
            #expect(shard.ids == ids && shard.count == emb.shape[0] && shard.dim == emb.shape[1], "\(name)")
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: emb.count)
            defer { scratch.deallocate() }
            #expect(Array(UnsafeBufferPointer(start: shard.rows(0, shard.count, scratch: scratch), count: emb.count)) == emb.data)
        }
    }

    @Test func truncatedNpyIsRefused() throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        try folder.write(index: 0, rows: [Float](repeating: 1, count: 40), dim: 4, storage: .float32, firstID: 0)
        let path = folder.dir + "/passages_00.npy"
        let h = FileHandle(forUpdatingAtPath: path)!
        h.truncateFile(atOffset: 128 + 4 * 4 * 7 + 2)
        h.closeFile()
        let e = #expect(throws: RetrievalError.self) { try EmbeddingShard(path: path) }
        #expect(e?.file == path && e?.hint?.contains("truncated") == true, "\(String(describing: e))")
        // A header cut short too.
        let h2 = FileHandle(forUpdatingAtPath: path)!
        h2.truncateFile(atOffset: 40)
        h2.closeFile()
        #expect(throws: RetrievalError.self) { try EmbeddingShard(path: path) }
        // A damaged shape whose bytes pass an Int (it trapped on the overflow).
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }"
        header += String(repeating: " ", count: 127 - 10 - header.utf8.count) + "\n"
        try (Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count), 0]) + Data(header.utf8) + Data(count: 64))
            .write(to: URL(fileURLWithPath: path))
        let huge = #expect(throws: RetrievalError.self) { try EmbeddingShard(path: path) }
        #expect(huge?.field == "shape" && huge?.found == "(4611686018427387904, 4)", "\(String(describing: huge))")
    }

    @Test func shardsOfDifferentWidthsAreRefused() throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        try folder.write(index: 0, rows: [Float](repeating: 1, count: 8), dim: 4, storage: .float32, firstID: 0)
        try folder.write(index: 1, rows: [Float](repeating: 1, count: 9), dim: 3, storage: .float32, firstID: 2)
        let e = #expect(throws: RetrievalError.self) { try EmbeddingShard.open(glob: folder.dir + "/passages_*") }
        #expect(e?.field == "width" && e?.found == "3", "\(String(describing: e))")
    }

    /// A passage in two rows (stale shards of an earlier run with another num_shards, or one
    /// shard written twice into itself) is refused naming both places; distinct ids pass.
    @Test func aPassageInTwoRowsIsRefused() throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        try folder.write(index: 0, rows: [Float](repeating: 1, count: 8), dim: 4, storage: .float32, firstID: 0)  // ids 0, 1
        try folder.write(index: 1, rows: [Float](repeating: 1, count: 8), dim: 4, storage: .float32, firstID: 2)  // ids 2, 3
        #expect(try EmbeddingShard.open(glob: folder.dir + "/passages_*").count == 2)
        try folder.write(index: 2, rows: [Float](repeating: 1, count: 12), dim: 4, storage: .float32, firstID: 3)  // ids 3, 4, 5
        let e = #expect(throws: RetrievalError.self) { try EmbeddingShard.open(glob: folder.dir + "/passages_*") }
        #expect(e?.field == "ids" && e?.found == "passage id 3 in \(folder.dir)/passages_01.ids (row 2) and in \(folder.dir)/passages_02.ids (row 1)"
                && e?.hint?.contains("stale shards") == true, "\(String(describing: e))")
        try FileManager.default.removeItem(atPath: folder.dir + "/passages_02.npy")
        try "2\n2\n".write(toFile: folder.dir + "/passages_01.ids", atomically: true, encoding: .utf8)
        let twice = #expect(throws: RetrievalError.self) { try EmbeddingShard.open(glob: folder.dir + "/passages_*") }
        #expect(twice?.found == "passage id 2 twice in \(folder.dir)/passages_01.ids (rows 1 and 2)", "\(String(describing: twice))")
        // Within one shard the cause is the passages file, not stale shards.
        #expect(twice?.hint?.contains("the passages file holds this id twice") == true && twice?.hint?.contains("stale") == false,
                "\(String(describing: twice))")
    }

    @Test func firstDuplicateFindsTheFirstRepeatedIdAcrossLists() {
        #expect(firstDuplicate([["a", "b"], ["c"]]) == nil)
        #expect(firstDuplicate([]) == nil)
        let d = firstDuplicate([["a", "b"], ["c", "b"]])
        #expect(d?.id == "b" && d?.a.list == 0 && d?.a.row == 1 && d?.b.list == 1 && d?.b.row == 1)
    }

    /// Every byte of a shard's `.npy` (header and rows, float32 and float16) and `.ids` damaged
    /// in turn, and random damage with truncation: each is a RetrievalError or a shard whose rows
    /// read — never a trap, never a read past the mapping.
    @Test(arguments: [EmbeddingShard.Storage.float32, .float16])
    func damagedShardsNeverTrap(storage: EmbeddingShard.Storage) throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        var rng = RNG(seed: 9)
        try folder.write(index: 0, rows: rng.normalArray(6 * 4), dim: 4, storage: storage, firstID: 0)
        let npy = folder.dir + "/passages_00.npy"
        func read(_ path: String) throws {
            let s = try EmbeddingShard(path: path)
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(1, s.count * s.dim))
            defer { scratch.deallocate() }
            var sum: Float = 0
            let rows = s.rows(0, s.count, scratch: scratch)
            for i in 0..<(s.count * s.dim) { sum += rows[i] }
            _ = sum
        }
        #expect(try IndexFileTests.damageEveryByte(npy, load: read) > 0)
        #expect(try IndexFileTests.damageEveryByte(EmbeddingShard.idsPath(forShard: npy), load: read) > 0)
        let valid = try [UInt8](Data(contentsOf: URL(fileURLWithPath: npy)))
        var mix = SplitMix(seed: 0x5EED)
        var refused = 0
        for round in 0..<300 {
            try Data(mix.damaged(valid, round: round)).write(to: URL(fileURLWithPath: npy))
            do { try read(npy) } catch is RetrievalError { refused += 1 }
        }
        #expect(refused > 0)
    }

    @Test func idsMustMatchRows() throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        try folder.write(index: 0, rows: [Float](repeating: 1, count: 8), dim: 4, storage: .float32, firstID: 0)
        try "0\n1\n2\n".write(toFile: folder.dir + "/passages_00.ids", atomically: true, encoding: .utf8)
        let e = #expect(throws: RetrievalError.self) { try EmbeddingShard(path: folder.dir + "/passages_00.npy") }
        #expect(e?.field == "row count", "\(String(describing: e))")
        #expect(throws: RetrievalError.self) { try EmbeddingShard.open(glob: folder.dir + "/nothing_*") }
    }

    @Test func globSortsAsPythonAndSkipsCompanions() throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        for i in [10, 2, 0, 1] { try folder.write(index: i, rows: [1, 2], dim: 2, storage: .float32, firstID: i) }
        _ = FileManager.default.createFile(atPath: folder.dir + "/passages_03.npy.tmp", contents: Data())
        // What embed and save_or_load_index keep beside the shards is no shard either.
        for name in ["passages_00.meta.json", "index.sq8", "index.sq8.source.json", "index.pq"] {
            _ = FileManager.default.createFile(atPath: folder.dir + "/" + name, contents: Data("x".utf8))
        }
        let names = EmbeddingShard.glob(folder.dir + "/passages_*").map { ($0 as NSString).lastPathComponent }
        #expect(names == ["passages_00.npy", "passages_01.npy", "passages_02.npy", "passages_10.npy"])
        #expect(EmbeddingShard.glob(folder.dir + "/*").map { ($0 as NSString).lastPathComponent } == names)
        // A folder whose name looks temporary holds shards like any other (all were skipped).
        let odd = folder.dir + "/job.tmp-7"
        try FileManager.default.createDirectory(atPath: odd, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: folder.dir + "/passages_00.npy", toPath: odd + "/passages_00.npy")
        try FileManager.default.copyItem(atPath: folder.dir + "/passages_00.ids", toPath: odd + "/passages_00.ids")
        #expect(EmbeddingShard.glob(odd + "/passages_*") == [odd + "/passages_00.npy"])
    }

    /// Staging files of a killed attempt (another tag) are removed when a new one starts the
    /// shard; nothing else would, and they stayed beside the published shard.
    @Test func aNewWriterRemovesAKilledAttemptsStagingFiles() throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        let stem = folder.dir + "/passages_00"
        for name in [".npy.tmp-dead", ".ids.tmp-dead", ".npy.tmp"] {
            _ = FileManager.default.createFile(atPath: stem + name, contents: Data("half".utf8))
        }
        let rows: [Float] = (0..<4).map(Float.init)
        let w = try ShardWriter(stem: stem, rows: 2, dim: 2, storage: .float32, tag: "new")
        try rows.withUnsafeBufferPointer { try w.append(ids: ["a", "b"], embeddings: $0.baseAddress!) }
        try w.finish()
        let left = try FileManager.default.contentsOfDirectory(atPath: folder.dir).sorted()
        #expect(left == ["passages_00.ids", "passages_00.npy"], "\(left)")
    }

    @Test func writerResumesWithoutDuplicatingRows() throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        let stem = folder.dir + "/passages_00"
        let rows: [Float] = (0..<12).map(Float.init)
        do {
            let w = try ShardWriter(stem: stem, rows: 6, dim: 2, storage: .float32)
            try rows.withUnsafeBufferPointer { try w.append(ids: ["a", "b", "c"], embeddings: $0.baseAddress!) }
            // Killed here: nothing published.
        }
        #expect(!FileManager.default.fileExists(atPath: stem + ".npy"))
        // The checkpoint recorded 2 finished rows: the third is dropped and rewritten.
        let w = try ShardWriter(stem: stem, rows: 6, dim: 2, storage: .float32, resume: true, keepRows: 2)
        #expect(w.rowsWritten == 2)
        try rows.withUnsafeBufferPointer { try w.append(ids: ["c", "d", "e", "f"], embeddings: $0.baseAddress! + 4) }
        try w.finish()
        let shard = try EmbeddingShard(path: stem + ".npy")
        #expect(shard.ids == ["a", "b", "c", "d", "e", "f"])
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 12)
        defer { scratch.deallocate() }
        #expect(Array(UnsafeBufferPointer(start: shard.rows(0, 6, scratch: scratch), count: 12)) == rows)
    }
}
