// TorchCheckpointWriterTests: a state dict written as torch.save does reads back through the
// checkpoint reader bit-equal, ties kept, with and without zip64 records; CRC-32 against its
// bitwise definition.
import Foundation
import Testing
import TestSupport
@testable import Tensor

@Suite struct TorchCheckpointWriterTests {
    static func entries(_ rng: inout RNG) -> [(names: [String], shape: [Int], values: [Float])] {
        [(["shared.weight", "encoder.encoder.embed_tokens.weight", "lm_head.weight"], [7, 3], rng.normalArray(21)),
         (["encoder.encoder.block.0.module.layer.0.SelfAttention.q.weight"], [3, 3], rng.normalArray(9)),
         (["scalar"], [], [2.5]),
         (["empty"], [0, 4], []),
         (["wide"], [70_000], rng.normalArray(69_997) + [.nan, .infinity, -0.0])]
    }

    @Test(arguments: [Int(UInt32.max), 100])
    func roundTripsThroughTheReader(zip64Above: Int) throws {
        var rng = RNG(seed: 4)
        let given = Self.entries(&rng)
        let dir = NSTemporaryDirectory() + "fidq-torch-writer-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/pytorch_model.bin"
        try TorchCheckpointWriter.write(given.map { e in .init(names: e.names, shape: e.shape) { e.values } }, to: path,
                                        zip64Above: zip64Above)
        let file = try TorchCheckpointFile(path: path)
        #expect(file.names == given.flatMap(\.names))
        #expect(file.archiveName == "archive")
        #expect(file.tiedGroups == [given[0].names])
        for e in given {
            for name in e.names {
                let t = try file.tensor(name)
                #expect(t.shape == e.shape && t.data.map(\.bitPattern) == e.values.map(\.bitPattern), "\(name)")
            }
        }
        // Every record's data starts on a 64-byte boundary, as torch's writer places it.
        let zip = try ZipArchive(path: path)
        for entry in zip.entries { #expect(entry.dataOffset % 64 == 0, "\(entry.name) at \(entry.dataOffset)") }
        #expect(try zip.data("archive/version") == Array("3\n".utf8))
    }

    /// The table-driven CRC against the bitwise definition, at every length 0…100 and a long one
    /// (the eight-byte steps and the tail), and the standard check value.
    @Test func crc32MatchesItsDefinition() {
        func bitwise(_ bytes: [UInt8]) -> UInt32 {
            var c: UInt32 = 0xFFFF_FFFF
            for b in bytes {
                c ^= UInt32(b)
                for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
            }
            return ~c
        }
        #expect(Array("123456789".utf8).withUnsafeBytes { CRC32.checksum($0) } == 0xCBF4_3926)
        var rng = RNG(seed: 9)
        let data = (0..<5000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for n in Array(0...100) + [4999, 5000] {
            let slice = Array(data.prefix(n))
            #expect(slice.withUnsafeBytes { CRC32.checksum($0) } == bitwise(slice), "length \(n)")
        }
    }
}
