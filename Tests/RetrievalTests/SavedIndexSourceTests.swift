import Foundation
@testable import Retrieval
import Testing

/// What a saved index records about its shards must read the same from every host of a shared
/// folder, whatever path each mounts it at.
@Suite struct SavedIndexSourceTests {
    /// Shards in two folders (`x/p_00`, `y/p_01`), the index beside the first.
    static func shards(_ folder: ShardFolder) throws -> [EmbeddingShard] {
        for sub in ["x", "y"] { try FileManager.default.createDirectory(atPath: folder.dir + "/" + sub, withIntermediateDirectories: true) }
        try folder.write(index: 0, rows: [1, 2, 3, 4], dim: 2, storage: .float32, firstID: 1, prefix: "x/p")
        try folder.write(index: 1, rows: [5, 6, 7, 8], dim: 2, storage: .float32, firstID: 3, prefix: "y/p")
        return try ["x/p_00.npy", "y/p_01.npy"].map { try EmbeddingShard(path: folder.dir + "/" + $0) }
    }

    @Test func aShardOutsideTheIndexFolderIsRecordedByItsPathFromThere() throws {
        let a = ShardFolder()
        defer { a.remove() }
        let saved = try SavedIndexSource(index: "sq8", settings: [:], shards: try Self.shards(a), indexPath: a.dir + "/x/index.sq8")
        #expect(saved.files.map(\.path) == ["p_00.npy", "p_00.ids", "../y/p_01.npy", "../y/p_01.ids"])
        let written = try JSONDecoder().decode(SavedIndexSource.self, from: try JSONEncoder().encode(saved))
        // The same files seen from another host's mount point (hard links: same inodes, times).
        let b = ShardFolder()
        defer { b.remove() }
        for sub in ["x", "y"] {
            try FileManager.default.createDirectory(atPath: b.dir + "/" + sub, withIntermediateDirectories: true)
            for name in try FileManager.default.contentsOfDirectory(atPath: a.dir + "/" + sub) {
                try FileManager.default.linkItem(atPath: a.dir + "/" + sub + "/" + name, toPath: b.dir + "/" + sub + "/" + name)
            }
        }
        let there = try ["x/p_00.npy", "y/p_01.npy"].map { try EmbeddingShard(path: b.dir + "/" + $0) }
        let here = try SavedIndexSource(index: "sq8", settings: [:], shards: there, indexPath: b.dir + "/x/index.sq8")
        #expect(here.mismatch(written) == nil)
        // An earlier version's record named the outside shard by its absolute path: still found
        // on the host that wrote it, not on another.
        var legacy = written
        legacy.files = written.files.map { f in
            var f = f
            if f.path.hasPrefix("../") { f.path = a.dir + "/y/" + (f.path as NSString).lastPathComponent }
            return f
        }
        let legacyRecord = try JSONDecoder().decode(SavedIndexSource.self, from: try JSONEncoder().encode(legacy))
        let again = try SavedIndexSource(index: "sq8", settings: [:], shards: try ["x/p_00.npy", "y/p_01.npy"].map {
            try EmbeddingShard(path: a.dir + "/" + $0)
        }, indexPath: a.dir + "/x/index.sq8")
        #expect(again.mismatch(legacyRecord) == nil)
        #expect(here.mismatch(legacyRecord) == "built from other shards (not ../y/p_01.npy)")
        // A shard rewritten since (a new inode) is not the one the index was built from.
        try a.write(index: 1, rows: [5, 6, 7, 8], dim: 2, storage: .float32, firstID: 3, prefix: "y/p")
        let rewritten = try SavedIndexSource(index: "sq8", settings: [:], shards: try ["x/p_00.npy", "y/p_01.npy"].map {
            try EmbeddingShard(path: a.dir + "/" + $0)
        }, indexPath: a.dir + "/x/index.sq8")
        #expect(rewritten.mismatch(written) == "../y/p_01.npy changed since it was built")
    }
}
