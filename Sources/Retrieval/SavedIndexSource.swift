// SavedIndexSource: what a saved sq8/pq index was built from (shard files, sizes, times, settings), kept beside it.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Foundation

/// What a saved `sq8` or `pq` index was built from, written beside it as `<index>.source.json`:
/// every shard file (`.npy` and `.ids`, or a pickle) with its size, modification time and inode, and the
/// index's settings. `save_or_load_index` loads a saved index only when this matches the shards
/// it would search, and otherwise rebuilds it: the loop's next round re-embeds the corpus into the
/// same shard names, and FiD (which checks nothing) would then search the new question embeddings
/// against the old round's codes without a word.
public struct SavedIndexSource: IndexSourceRecord, Equatable, Sendable {
    public struct File: Codable, Equatable, Sendable {
        /// The file's name when it sits beside the index, else its path.
        public var path: String
        public var bytes: Int64
        /// Modification time in nanoseconds since 1970 (set by the file server, so the same seen
        /// from every host of a shared folder).
        public var modifiedNs: Int64
        /// The file's inode: a shard is written under a temporary name and renamed, so a rewrite
        /// changes it even within the file system's time granularity.
        public var inode: UInt64

        enum CodingKeys: String, CodingKey {
            case path, bytes, inode
            case modifiedNs = "modified_ns"
        }

        /// The file at `path` as it is now, recorded under `name`.
        /// - Throws: `RetrievalError` when it cannot be examined.
        public static func stamp(_ path: String, as name: String? = nil) throws -> File {
            var st = stat()
            guard stat(path, &st) == 0 else {
                throw RetrievalError(file: path, field: "file", expected: "a readable file", found: String(cString: strerror(errno)))
            }
            return File(path: name ?? path, bytes: Int64(st.st_size),
                        modifiedNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec), inode: UInt64(st.st_ino))
        }

        /// Whether `other` is this file unchanged (whatever name each was recorded under).
        public func sameContents(as other: File) -> Bool {
            bytes == other.bytes && modifiedNs == other.modifiedNs && inode == other.inode
        }
    }

    /// `sq8` or `pq`.
    public var index: String
    /// Build settings that change the codes (`n_subquantizers`, `n_bits` for `pq`).
    public var settings: [String: Int]
    /// Each shard file by its path from the index's folder (its name when beside the index), so
    /// a host that mounts the shared storage elsewhere reads the same record.
    public var files: [File]
    /// Each file's absolute path by its recorded name: records of earlier versions named a file
    /// outside the index's folder that way. Not written.
    var absolutePaths: [String: String] = [:]

    enum CodingKeys: String, CodingKey {
        case index, settings, files
    }

    /// The source of an index at `indexPath` built from `shards` with `settings`.
    /// - Throws: `RetrievalError` naming a shard file that cannot be examined.
    public init(index: String, settings: [String: Int], shards: [EmbeddingShard], indexPath: String) throws {
        self.index = index
        self.settings = settings
        let folder = (indexPath as NSString).deletingLastPathComponent
        files = try shards.flatMap { s in s.idsPath == s.path ? [s.path] : [s.path, s.idsPath] }.map { path in
            try File.stamp(path, as: Self.relative(path, from: folder))
        }
        for (file, path) in zip(files, shards.flatMap { s in s.idsPath == s.path ? [s.path] : [s.path, s.idsPath] }) {
            absolutePaths[file.path] = path
        }
    }

    /// `path` as seen from `folder` (`p_00.npy` beside it, `../y/p_01.npy` in a sibling).
    static func relative(_ path: String, from folder: String) -> String {
        let a = URL(fileURLWithPath: folder).standardized.pathComponents, b = URL(fileURLWithPath: path).standardized.pathComponents
        var i = 0
        while i < a.count, i < b.count, a[i] == b[i] { i += 1 }
        return (Array(repeating: "..", count: a.count - i) + b[i...]).joined(separator: "/")
    }

    /// Nil when an index of `saved` source may be searched for this one; else why not, for the log.
    public func mismatch(_ saved: SavedIndexSource?) -> String? {
        guard let saved else { return "no record of the shards it was built from" }
        if saved.index != index { return "it is a \(saved.index) index" }
        if saved.settings != settings {
            let keys = Set(saved.settings.keys).union(settings.keys).sorted().filter { saved.settings[$0] != settings[$0] }
            return keys.map { "\($0) \(saved.settings[$0].map(String.init) ?? "unset") there, \(settings[$0].map(String.init) ?? "unset") here" }
                .joined(separator: ", ")
        }
        let before = Dictionary(saved.files.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        for f in files {
            guard let old = before[f.path] ?? absolutePaths[f.path].flatMap({ before[$0] }) else {
                return "built from other shards (not \(f.path))"
            }
            if !old.sameContents(as: f) { return "\(f.path) changed since it was built" }
        }
        if saved.files.count != files.count { return "built from \(saved.files.count) shard files, not these \(files.count)" }
        return nil
    }
}

/// What an index was built from, kept beside it as `<index>.source.json` (`SavedIndexSource` for
/// sq8/pq, `BM25Source` for BM25).
public protocol IndexSourceRecord: Codable {}

extension IndexSourceRecord {
    /// `<index>.source.json`.
    public static func path(beside indexPath: String) -> String { indexPath + ".source.json" }

    /// The record saved beside `indexPath`, or nil when there is none or it cannot be read (an
    /// index saved before records were kept counts as built from something unknown).
    public static func read(beside indexPath: String) -> Self? {
        guard let data = FileManager.default.contents(atPath: path(beside: indexPath)) else { return nil }
        return try? JSONDecoder().decode(Self.self, from: data)
    }

    /// Writes `<index>.source.json` under a temporary name, then renames.
    public func write(beside indexPath: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).withUnsafeBytes { try writeFileAtomically($0, to: Self.path(beside: indexPath)) }
    }
}
