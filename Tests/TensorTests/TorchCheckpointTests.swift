// TorchCheckpointTests: a real torch.save state dict read back bit-equal (dtypes, views, ties);
// hostile checkpoints refused with nothing run; a fixed-seed fuzz of a real file never traps.
import Foundation
import Testing
import TestSupport
@testable import Tensor

@Suite struct TorchCheckpointTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/pickle")
    static func fixture(_ name: String) -> String { folder.appendingPathComponent(name).path }

    /// state.bin: every dtype and view kind; module.bin: a real module's state_dict() (with
    /// `_metadata`) whose embedding and head share one Parameter.
    @Test(arguments: ["state", "module"])
    func readsTorchSaveBitEqual(stem: String) throws {
        let expected = try Fixture("\(stem)_expected.json", in: Self.folder)
        let file = try TorchCheckpointFile(path: Self.fixture("\(stem).bin"))
        let order = expected.meta["order"] as? [String]
        #expect(file.names == order)
        #expect(file.archiveName == stem)
        #expect(file.tiedGroups == expected.meta["tied"] as? [[String]])
        let map = try TorchCheckpoint.read(path: Self.fixture("\(stem).bin"))
        #expect(map.names == order)
        #expect(map.source == Self.fixture("\(stem).bin"))
        for (name, tensor) in map {
            let want = try expected.tensor(name)
            #expect(sameBits(tensor, want), "\(name): got \(tensor), want \(want)")
            #expect(try file.tensor(name) == tensor || tensor.data.contains { $0.isNaN })
        }
        #expect(map.count == expected.tensors.count)
        guard stem == "state" else { return }
        #expect(map["scalar"]?.shape == [] && map["empty"]?.shape == [0, 3] && map["ids"]?.data == [0, 1, 2, 3, 4])
    }

    @Test func reportsViewsAndTies() throws {
        let file = try TorchCheckpointFile(path: Self.fixture("state.bin"))
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

    /// A checkpoint built here: `entries` holds `value` (pickle opcodes) under the key "w" of an
    /// OrderedDict, with storage "0" of `storage` bytes.
    static func checkpoint(
        _ folder: TempFolder, value: [UInt8], storage: [UInt8] = Array(repeating: 0, count: 16),
        byteorder: String = "little", root: [UInt8]? = nil
    ) throws -> String {
        let dict = Op.global("collections", "OrderedDict") + [0x29, 0x52] + Op.mark + Op.str("w") + value + [0x75]
        var b = ZipBuilder()
        b.entries = [
            ("ck/data.pkl", [0x80, 2] + (root ?? dict) + [0x2E], 0), ("ck/byteorder", Array(byteorder.utf8), 0),
            ("ck/data/0", storage, 0), ("ck/version", Array("3\n".utf8), 0),
        ]
        return try folder.write("ck-\(UUID().uuidString).bin", b.bytes())
    }

    /// `_rebuild_tensor_v2` of storage "0" (`type`, `numel` elements) with `offset`, `size`, `stride`.
    static func tensorOps(_ type: String = "FloatStorage", numel: Int32 = 4, offset: Int32 = 0, size: [Int32] = [4], stride: [Int32] = [1]) -> [UInt8] {
        let pid = Op.mark + Op.str("storage") + Op.global("torch", type) + Op.str("0") + Op.str("cpu") + Op.binint(numel) + [0x74, 0x51]
        let ints = { (xs: [Int32]) in Op.mark + xs.flatMap { Op.binint($0) } + [0x74] }
        return Op.global("torch._utils", "_rebuild_tensor_v2") + Op.mark + pid + Op.binint(offset) + ints(size) + ints(stride)
            + [0x89] + Op.global("collections", "OrderedDict") + [0x29, 0x52, 0x74, 0x52]
    }

    @Test func readsHandBuiltCheckpointAndRefusesBadOnes() throws {
        let folder = try TempFolder()
        defer { folder.remove() }
        let floats: [Float] = [1.5, -2, 3.25, 4]
        let bytes = floats.flatMap { f in withUnsafeBytes(of: f.bitPattern.littleEndian) { Array($0) } }
        // A 2x2 view with strides (1, 2) from offset 0 reads the transpose.
        let ok = try TorchCheckpoint.read(path: try Self.checkpoint(folder, value: Self.tensorOps(size: [2, 2], stride: [1, 2]), storage: bytes))
        #expect(ok.names == ["w"] && ok["w"] == Tensor(shape: [2, 2], data: [1.5, 3.25, -2, 4]))
        let ints: [Int64] = [3, -(1 << 24), 1 << 24 + 1, 0]
        let intBytes = ints.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }

        let cases: [(String, TorchCheckpointError.Kind, String)] = [
            (try Self.checkpoint(folder, value: Self.tensorOps(), byteorder: "big"), .layout, "byte order 'big'"),
            (try Self.checkpoint(folder, value: [0x4B, 1]), .layout, "[w]: value is a int, expected a tensor"),
            (try Self.checkpoint(folder, value: [], root: Op.mark + [0x74]), .layout, "holds a tuple of 0, expected a state dict"),
            (try Self.checkpoint(folder, value: Self.tensorOps("DoubleStorage", numel: 2, size: [2])), .unsupportedDType, "[w]: storage type torch.DoubleStorage"),
            (try Self.checkpoint(folder, value: Self.tensorOps("LongStorage", numel: 4), storage: intBytes), .notRepresentable, "16777217 at element 2"),
            (try Self.checkpoint(folder, value: Self.tensorOps("QInt8Storage")), .pickle, "'torch.QInt8Storage' is not allowed"),
            (try Self.checkpoint(folder, value: Self.tensorOps(size: [2], stride: [-1])), .layout, "negative size or stride"),
            (try Self.checkpoint(folder, value: Self.tensorOps(size: [4, 2], stride: [1, 0])), .layout, "more elements (8) than its storage"),
            (try Self.checkpoint(folder, value: Self.tensorOps(size: [2], stride: [1, 1])), .layout, "different lengths"),
            (try Self.checkpoint(folder, value: Self.tensorOps(size: [Int32.max, 2], stride: [Int32.max, Int32.max])), .layout, "view reaches element 4611686014132420609, past"),
            (try Self.checkpoint(folder, value: Self.tensorOps(size: [1], stride: [1]), storage: Array(repeating: 0, count: 15)), .pickle, "its entry has 15 bytes"),
        ]
        for (path, kind, text) in cases {
            let e = checkpointError { try TorchCheckpoint.read(path: path) }
            #expect(e?.kind == kind && e?.description.contains(text) == true, "\(String(describing: e))")
        }
    }

    /// A real checkpoint named by FIDQ_TORCH_CHECKPOINT (e.g. a model's pytorch_model.bin), read
    /// whole and compared bit for bit with FIDQ_TORCH_CHECKPOINT_EXPECTED (the same weights as
    /// safetensors) when given. Off by default: the files are large and not committed.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["FIDQ_TORCH_CHECKPOINT"] != nil))
    func externalCheckpoint() throws {
        let env = ProcessInfo.processInfo.environment
        let path = env["FIDQ_TORCH_CHECKPOINT"]!
        let start = Date()
        let file = try TorchCheckpointFile(path: path)
        let opened = Date()
        let map = try file.readAll()
        let read = Date()
        print("\(path): \(map.count) tensors, \(map.elementCount) elements; open \(opened.timeIntervalSince(start)) s, "
              + "convert \(read.timeIntervalSince(opened)) s; tied \(file.tiedGroups)")
        guard let expectedPath = env["FIDQ_TORCH_CHECKPOINT_EXPECTED"] else { return }
        let expected = try SafeTensors.read(expectedPath)
        #expect(Set(expected.names) == Set(map.names))
        for (name, tensor) in map {
            let want = try expected.tensor(name)
            #expect(sameBits(tensor, want), "\(name)")
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
        let rounds = (ProcessInfo.processInfo.environment["FIDQ_FUZZ_ROUNDS"].flatMap { Int($0) } ?? 3000) / 8
        for round in 0..<rounds {
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
