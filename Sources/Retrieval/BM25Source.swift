// BM25Source: what a BM25 index was built from (the passages file, a sample of its rows), kept beside it.
import Foundation

/// Written by `index_bm25` beside the index as `<index>.source.json`: the passages file as it was
/// read (size, modification time, inode) and the hashes of a seeded sample of its rows. `retrieve`
/// returns each hit's text from the passages file it is given: one edited since the index was
/// built would pair the old ranking with new texts (and their `hasanswer`), and rows added since
/// are never searched. Sampled rows that read otherwise are refused; another file size is logged.
public struct BM25Source: IndexSourceRecord, Equatable, Sendable {
    public var passages: SavedIndexSource.File
    /// Passage id → `ShardRecord.passageHash`, for up to `ShardRecord.sampleCount` rows.
    public var samples: [String: String]

    public init(passages: SavedIndexSource.File, samples: [String: String]) {
        (self.passages, self.samples) = (passages, samples)
    }

    /// A uniform sample of a stream of passages, of fixed size and seed (reservoir sampling), so
    /// one pass over the file keeps what the record needs.
    public struct Sampler {
        public private(set) var kept: [(id: String, hash: String)] = []
        private var seen = 0
        private var state: UInt64 = 0x9E37_79B9_7F4A_7C15

        public init() {}

        public mutating func add(_ p: Passage) {
            seen += 1
            if kept.count < ShardRecord.sampleCount {
                kept.append((p.id, ShardRecord.passageHash(title: p.title, text: p.text)))
                return
            }
            // splitmix64: the same choice on every machine.
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            let slot = Int(z % UInt64(seen))
            if slot < kept.count { kept[slot] = (p.id, ShardRecord.passageHash(title: p.title, text: p.text)) }
        }

        public var samples: [String: String] { Dictionary(kept.map { ($0.id, $0.hash) }, uniquingKeysWith: { a, _ in a }) }
    }
}
