// NumpyPickleTests: FiD-style pickle.dump((ids, array)) shards read through the safe reader —
// float32 and float16 at protocols 0–5 (protocol 5's _frombuffer, 0–2's _codecs.encode) — and
// malformed arrays refused.
import Foundation
import Testing
import TestSupport
@testable import Tensor

@Suite struct NumpyPickleTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/pickle")
    static func fixture(_ name: String) -> String { folder.appendingPathComponent(name).path }

    @Test(arguments: [("shard_f32", "f32"), ("shard_f16", "f16"), ("shard_p5", "f32"), ("shard_p0", "f32"), ("shard_p1", "f16"),
                      ("shard_p2", "f32")])
    func readsShards(file: String, key: String) throws {
        let expected = try Fixture("shard_expected.json", in: Self.folder)
        let (ids, embeddings) = try NumpyPickle.readShard(path: Self.fixture(file + ".pkl"))
        #expect(ids == expected.meta["ids"] as? [String])
        let want = try expected.tensor(key)
        #expect(sameBits(embeddings, want), "got \(embeddings), want \(want)")
    }

    /// Protocol 0's escaped ids (a backslash, a newline, a literal "\u0041", a character past the
    /// BMP) and protocol 2's `bytes()` for an array of no rows.
    @Test func readsProtocol0EscapesAndEmptyShards() throws {
        let expected = try Fixture("shard_expected.json", in: Self.folder)
        let (ids, embeddings) = try NumpyPickle.readShard(path: Self.fixture("shard_p0_escapes.pkl"))
        #expect(ids == expected.meta["odd_ids"] as? [String])
        #expect(sameBits(embeddings, try expected.tensor("f32")))
        let (none, empty) = try NumpyPickle.readShard(path: Self.fixture("shard_p2_empty.pkl"))
        #expect(none.isEmpty && empty.shape == [0, 3])
    }

    /// Hand-built array pickles: wrong byte count, big-endian and float64 dtypes, object state,
    /// Fortran order, and a _reconstruct of something other than ndarray.
    @Test func refusesMalformedArrays() {
        func dtype(_ code: String, _ order: String) -> [UInt8] {
            Op.global("numpy", "dtype") + Op.str(code) + [0x89, 0x88, 0x87, 0x52]
                + Op.mark + [0x4B, 3] + Op.str(order) + [0x4E, 0x4E, 0x4E] + Op.binint(-1) + Op.binint(-1) + [0x4B, 0, 0x74, 0x62]
        }
        func array(_ what: [UInt8] = Op.global("numpy", "ndarray"), shape: [UInt8] = [0x4B, 2, 0x85], dt: [UInt8], fortran: UInt8 = 0x89, bytes n: UInt8) -> [UInt8] {
            Op.global("numpy.core.multiarray", "_reconstruct") + what + [0x4B, 0, 0x85, 0x43, 1, 0x62, 0x87, 0x52]
                + Op.mark + [0x4B, 1] + shape + dt + [fortran, 0x43, n] + [UInt8](repeating: 0, count: Int(n)) + [0x74, 0x62]
        }
        let cases: [([UInt8], String)] = [
            (array(dt: dtype("f4", "<"), bytes: 8), ""),
            (array(dt: dtype("f4", "<"), bytes: 6), "needs 8 bytes, has 6"),
            (array(dt: dtype("f4", ">"), bytes: 8), "'>f4' is not read"),
            (array(dt: dtype("f8", "<"), bytes: 16), "'<f8' is not read"),
            (array(shape: [0x4B, 2, 0x4B, 2, 0x86], dt: dtype("f2", "<"), fortran: 0x88, bytes: 8), "Fortran-order"),
            (array(Op.global("numpy", "dtype"), dt: dtype("f4", "<"), bytes: 8), "only numpy.ndarray"),
            (array(shape: [0x4A, 0xFF, 0xFF, 0xFF, 0xFF, 0x85], dt: dtype("f4", "<"), bytes: 8), "not a tuple of sizes"),
        ]
        for (bytes, text) in cases {
            do {
                let v = try PickleReader.read(pickle(bytes), whitelist: NumpyPickle.whitelist)
                #expect(text.isEmpty, "expected an error containing '\(text)'")
                guard case let .object(o) = v, let a = o as? NumpyArray else { Issue.record("\(v)"); continue }
                #expect(try a.tensor() == Tensor(shape: [2], data: [0, 0]))
            } catch {
                #expect(!text.isEmpty && "\(error)".contains(text), "\(error)")
            }
        }
    }

    @Test func shardErrorsNameTheFile() throws {
        let folder = try TempFolder()
        defer { folder.remove() }
        let notPair = try folder.write("a.pkl", pickle([0x4B, 1]))
        let e = pickleError { try NumpyPickle.readShard(path: notPair) }
        #expect(e?.source == notPair && e?.description.hasPrefix(notPair + ": ") == true)
        #expect(e?.message.contains("(ids, embeddings)") == true)
        let torchFile = Self.fixture("state.bin")
        #expect(pickleError { try NumpyPickle.readShard(path: torchFile) }?.source == torchFile)
    }
}
