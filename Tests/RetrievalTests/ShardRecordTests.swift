// ShardRecordTests: the shard record's sampled rows and passage hash (the same on every machine).
import Foundation
import Testing
@testable import Retrieval

@Suite struct ShardRecordUnitTests {
    @Test func sampledRowsSpreadOverTheShard() {
        #expect(ShardRecord.sampleRows(1) == [0])
        #expect(ShardRecord.sampleRows(64) == Array(0..<64))
        let rows = ShardRecord.sampleRows(1000)
        #expect(rows.count == 64 && rows.first == 0 && rows.last == 999 && Set(rows).count == 64 && rows == rows.sorted())
    }

    /// FNV-1a 64 over title, a zero byte and text, as Python computes it (values from
    /// `h = ((h ^ b) * 0x100000001b3) & (2**64 - 1)` over the UTF-8 bytes).
    @Test func passageHashIsFNV1aOfTitleAndText() {
        #expect(ShardRecord.passageHash(title: "Paris", text: "Paris is the capital.") == "e0cc9e39d5af1898")
        #expect(ShardRecord.passageHash(title: "é", text: "ü") == "1582060c51079e04")
        #expect(ShardRecord.passageHash(title: "ab", text: "") != ShardRecord.passageHash(title: "a", text: "b"))
    }

    /// The record's bytes do not depend on the process's dictionary order: keys come sorted.
    @Test func theRecordIsWrittenWithSortedKeys() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fidq-shardrecord-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let samples = Dictionary(uniqueKeysWithValues: (0..<40).map { ("\($0 * 7919 % 1000)", "h\($0)") })
        try ShardRecord(modelPath: "m", passageMaxlength: 8, probe: [1, 2], samples: samples).write(stem: dir + "/s")
        let text = try String(contentsOfFile: dir + "/s.meta.json", encoding: .utf8)
        let order = samples.keys.compactMap { key in text.range(of: "\"\(key)\":").map { (key, $0.lowerBound) } }
        #expect(order.count == samples.count)
        #expect(order.sorted { $0.1 < $1.1 }.map(\.0) == samples.keys.sorted(), "sample keys in file order")
        let top = ["model_path", "passage_maxlength", "probe", "samples"].compactMap { text.range(of: "\"\($0)\"")?.lowerBound }
        #expect(top.count == 4 && top == top.sorted(), "top-level keys in file order")
    }

    @Test func distanceIsRelativeToTheLargestValue() {
        let r = ShardRecord(modelPath: "m", passageMaxlength: 8, probe: [1, -2, 4])
        #expect(r.distance(to: [1, -2, 4]) == 0)
        // Float32: 4.4 − 4 is 0.4 to 2^-21 (half an ulp of 4.4).
        #expect(abs(r.distance(to: [1, -2, 4.4]) - 0.4 / 4.4) < 1e-6)
        #expect(r.distance(to: [1, -2]) == .infinity)
        #expect(r.distance(to: [1, .nan, 4]) == .infinity && r.distance(to: [1, -2, -.infinity]) == .infinity)  // max drops a NaN
    }
}
