// TorchCheckpointTests: a real torch.save state dict read back bit-equal (dtypes, views, ties);
// hostile checkpoints refused with nothing run; a fixed-seed fuzz of a real file never traps.
import Foundation
import Testing
import TestSupport
@testable import Tensor

@Suite struct TorchCheckpointTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/pickle")
    static func fixture(_ name: String) -> String { folder.appendingPathComponent(name).path }

    @Test func readsTorchSaveBitEqual() throws {
        let expected = try Fixture("state_expected.json", in: Self.folder)
        let file = try TorchCheckpointFile(path: Self.fixture("state.bin"))
        let order = expected.meta["order"] as? [String]
        #expect(file.names == order)
        #expect(file.archiveName == expected.meta["archive"] as? String)
        let map = try TorchCheckpoint.read(path: Self.fixture("state.bin"))
        #expect(map.names == order)
        #expect(map.source == Self.fixture("state.bin"))
        for (name, tensor) in map {
            let want = try expected.tensor(name)
            #expect(sameBits(tensor, want), "\(name): got \(tensor), want \(want)")
            #expect(try file.tensor(name) == tensor || tensor.data.contains { $0.isNaN })
        }
        #expect(map.count == expected.tensors.count)
        #expect(map["scalar"]?.shape == [] && map["empty"]?.shape == [0, 3] && map["ids"]?.data == [0, 1, 2, 3, 4])
    }

    @Test func reportsViewsAndTies() throws {
        let file = try TorchCheckpointFile(path: Self.fixture("state.bin"))
        #expect(file.tiedGroups == [["shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]])
        let offset = try file.view("offset.view")
        #expect(offset.offset == 2 && offset.shape == [3] && offset.strides == [1])
        let t = try file.view("transposed")
        #expect(t.shape == [2, 3] && t.strides == [1, 2])
        #expect(!TorchCheckpointFile.isContiguous(t.shape, t.strides))
        #expect(try file.view("f16.weight").dtype == .f16 && file.view("bf16.bias").dtype == .bf16 && file.view("ids").dtype == .i64)
        #expect(try file.view("shared.weight") == file.view("encoder.embed_tokens.weight"))
        #expect(throws: TensorMapError.self) { try file.tensor("shared.weights") }
    }

    /// Each hostile checkpoint is refused with an error naming what it asked for, and its payload
    /// (which would touch a marker file under real pickle) never runs.
    @Test(arguments: [
        ("os_system", "'os.system' is not allowed"),
        ("builtins_eval", "'builtins.eval' is not allowed"),
        ("subprocess_popen", "'subprocess.Popen' is not allowed"),
        ("custom_reduce", "'__main__.Payload' is not allowed"),
        ("reduce_storage", "REDUCE on 'torch.FloatStorage' is not allowed"),
        ("offset_range", "storage offset out of range"),
        ("numel_range", "claims 1000 FloatStorage elements"),
        ("view_range", "view reaches element 4, past the storage's end"),
    ])
    func refusesHostileCheckpoints(name: String, text: String) {
        let marker = "/tmp/fidq-pickle-pwned-\(name)"
        unlink(marker)
        let path = Self.fixture("evil_\(name).bin")
        let e = checkpointError { try TorchCheckpoint.read(path: path) }
        #expect(e?.description.contains(text) == true, "\(String(describing: e))")
        #expect(e?.path == path)
        #expect([.pickle, .layout].contains(e?.kind))
        if e?.kind == .layout { #expect(e?.entry == "bad") } else { #expect(e?.entry == "archive/data.pkl") }
        #expect(access(marker, F_OK) != 0, "the payload ran: \(marker) exists")
    }

    @Test func refusesOtherFormatsClearly() {
        let cases: [(String, TorchCheckpointError.Kind, String)] = [
            ("legacy.bin", .notZip, "legacy format"),
            ("truncated.bin", .notZip, "end-of-central-directory"),
            ("compressed.bin", .compressed, "compressed"),
            ("shard_f32.pkl", .notZip, "a bare pickle"),
        ]
        for (name, kind, text) in cases {
            let e = checkpointError { try TorchCheckpoint.read(path: Self.fixture(name)) }
            #expect(e?.kind == kind && e?.description.contains(text) == true, "\(name): \(String(describing: e))")
        }
    }

    /// Random byte flips of a real checkpoint (most in its pickle and zip records) either read or
    /// throw — never trap, never read out of bounds.
    @Test func fuzzedCheckpointsNeverTrap() throws {
        let folder = try TempFolder()
        defer { folder.remove() }
        let valid = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Self.fixture("state.bin"))))
        let pkl = try #require(ZipArchive(path: Self.fixture("state.bin")).entry("state/data.pkl"))
        let directory = valid.count - 400  // the central directory and end records
        var rng = SplitMix(seed: 0x70_69_63_6B)
        var outcomes = [0, 0]
        let path = folder.path("fuzz.bin")
        for round in 0..<400 {
            var bytes = valid
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                let i: Int
                switch rng.next() % 4 {
                case 0, 1: i = pkl.dataOffset + Int(rng.next() % UInt64(pkl.size))
                case 2: i = directory + Int(rng.next() % 400)
                default: i = Int(rng.next() % UInt64(valid.count))
                }
                bytes[i] = rng.next() % 2 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : bytes[i] ^ (1 << UInt8(rng.next() % 8))
            }
            if round % 10 == 0 { bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count)))) }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            do {
                _ = try TorchCheckpoint.read(path: path)
                outcomes[0] += 1
            } catch is TorchCheckpointError {
                outcomes[1] += 1
            }
        }
        #expect(outcomes[0] > 0 && outcomes[1] > 0, "\(outcomes)")
    }
}
