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

    @Test func distanceIsRelativeToTheLargestValue() {
        let r = ShardRecord(modelPath: "m", passageMaxlength: 8, probe: [1, -2, 4])
        #expect(r.distance(to: [1, -2, 4]) == 0)
        // Float32: 4.4 − 4 is 0.4 to 2^-21 (half an ulp of 4.4).
        #expect(abs(r.distance(to: [1, -2, 4.4]) - 0.4 / 4.4) < 1e-6)
        #expect(r.distance(to: [1, -2]) == .infinity)
        #expect(r.distance(to: [1, .nan, 4]) == .infinity && r.distance(to: [1, -2, -.infinity]) == .infinity)  // max drops a NaN
    }
}
