// ShardRecord: which retriever embedded a shard (`<stem>.meta.json`: model path, passage length, probe embedding).
import Foundation

/// Which retriever embedded a shard, written by `embed` beside it as `<stem>.meta.json`: the
/// model folder, the passage length, and the model's embedding of a fixed probe passage
/// (`RetrieverModel.probe`). `retrieve` embeds the same probe with its own model and refuses
/// shards whose probe differs: questions embedded by one retriever searched against passages
/// another embedded (a shard left from the loop's previous round, or `model_path` not updated
/// in one of the round's jobs) return unrelated passages without a word, since both have the
/// same width. FiD's pickled shards and older fidq shards have no record and are not checked.
public struct ShardRecord: Codable, Equatable, Sendable {
    /// The model folder as the embed job resolved it (for the message; the probe decides).
    public var modelPath: String
    public var passageMaxlength: Int
    /// (E) The probe passage's embedding.
    public var probe: [Float]
    /// Passage id → `passageHash` of the title and text embedded, for up to `sampleCount` rows
    /// spread over the shard: `retrieve` compares them with its passages file, whose texts it
    /// returns (a corpus regenerated under the same ids would pair old vectors with new texts).
    public var samples: [String: String]?

    enum CodingKeys: String, CodingKey {
        case modelPath = "model_path", probe, samples
        case passageMaxlength = "passage_maxlength"
    }

    public init(modelPath: String, passageMaxlength: Int, probe: [Float], samples: [String: String]? = nil) {
        (self.modelPath, self.passageMaxlength, self.probe, self.samples) = (modelPath, passageMaxlength, probe, samples)
    }

    /// Rows sampled per shard.
    public static let sampleCount = 64

    /// The sampled rows of a shard of `n` rows: evenly spread, first and last included.
    public static func sampleRows(_ n: Int) -> [Int] {
        guard n > sampleCount else { return Array(0..<n) }
        return (0..<sampleCount).map { $0 * (n - 1) / (sampleCount - 1) }
    }

    /// FNV-1a (64 bits, hex) of a passage's title, a zero byte, and its text: the same on every machine.
    public static func passageHash(title: String, text: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in title.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        h = (h ^ 0) &* 0x100_0000_01b3
        for byte in text.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// Probes further apart than this (largest difference over the probe's largest magnitude)
    /// come from different retrievers. The same retriever on other kernels differs only by
    /// float32 rounding (measured 1.1e-7 between Zen 4's AVX-512 sgemm at 2 threads and Zen 3's
    /// AVX2 at 1); one AdamW step at lr 1e-5 moved a small retriever's probe by 1.2e-3.
    public static let tolerance: Float = 1e-4

    /// `<stem>.meta.json` of the shard at `path` (`<stem>.npy`, or a pickle's own path).
    public static func path(forShard path: String) -> String {
        (path.hasSuffix(".npy") ? String(path.dropLast(4)) : path) + ".meta.json"
    }

    /// The record beside the shard at `path`; nil when there is none.
    /// - Throws: `RetrievalError` naming the file when one exists but cannot be read.
    public static func read(forShard path: String) throws -> ShardRecord? {
        let file = Self.path(forShard: path)
        guard let data = FileManager.default.contents(atPath: file) else { return nil }
        do { return try JSONDecoder().decode(ShardRecord.self, from: data) } catch {
            throw RetrievalError(file: file, field: "record", expected: "embed's record of the retriever (model_path, passage_maxlength, probe)",
                                 found: "\(error)", hint: "re-run this shard's embed job, or delete the file to search the shard unchecked")
        }
    }

    /// Writes `<stem>.meta.json` under a temporary name, then renames.
    public func write(stem: String) throws {
        // Sorted keys: Swift's dictionary order changes with each process, and the same shard
        // must give the same bytes (as every other file fidq publishes).
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(self).withUnsafeBytes { try writeFileAtomically($0, to: stem + ".meta.json") }
    }

    /// How far `other` is from this record's probe: the largest difference over the larger
    /// probe's largest magnitude (infinity when the widths differ or a value is not finite:
    /// `max` drops a NaN, so a NaN probe would have agreed within 0).
    public func distance(to other: [Float]) -> Float {
        guard other.count == probe.count, !probe.isEmpty else { return .infinity }
        var diff: Float = 0, scale: Float = 0
        for (a, b) in zip(probe, other) {
            guard a.isFinite, b.isFinite else { return .infinity }
            diff = max(diff, abs(a - b))
            scale = max(scale, abs(a), abs(b))
        }
        return scale > 0 ? diff / scale : diff
    }
}
