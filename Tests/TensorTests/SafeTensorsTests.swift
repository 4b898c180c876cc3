// SafeTensorsTests: Python-written fixtures read back exactly, rewritten byte for byte; the lazy
// reader, mapping, dtype conversions and atomic writes.
import Foundation
import Testing
import TestSupport
@testable import Tensor

/// A fresh temporary folder per test, and raw safetensors files built from a header string.
struct TempFolder {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("fidq-st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// Writes raw `bytes` as `name`.
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let p = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    /// A safetensors file: 8-byte length (`length` or the header's size), header, `data`.
    func file(_ name: String, header: String, data: [UInt8], length: UInt64? = nil) throws -> String {
        let h = Array(header.utf8)
        var bytes = withUnsafeBytes(of: (length ?? UInt64(h.count)).littleEndian) { Array($0) }
        bytes += h + data
        return try write(name, bytes)
    }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// Same shape and the same bits, NaN matching any NaN.
func sameBits(_ a: Tensor, _ b: Tensor) -> Bool {
    a.shape == b.shape && zip(a.data, b.data).allSatisfy { $0.isNaN ? $1.isNaN : $0.bitPattern == $1.bitPattern }
}

@Suite struct SafeTensorsTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static func fixture(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

    /// Each Python-written file reads back to the float32 values torch gives, in file order.
    @Test(arguments: ["f32", "f16", "bf16", "mixed"])
    func readsPythonFixtures(stem: String) throws {
        let expected = try Fixture("safetensors_expected.json", in: Self.fixtures)
        let file = try SafeTensorsFile(path: Self.fixture("st_\(stem).safetensors"))
        let map = try file.readAll()
        #expect(map.names == expected.meta["\(stem)_order"] as? [String])
        #expect(map.source == file.path)
        for (name, tensor) in map {
            let want = try expected.tensor("\(stem)/\(name)")
            #expect(sameBits(tensor, want), "\(stem)/\(name): got \(tensor.data), want \(want.data)")
        }
        #expect(map.count == expected.tensors.keys.filter { $0.hasPrefix(stem + "/") }.count)
        #expect(file.metadata == expected.meta["\(stem)_metadata"] as? [String: String])
    }

    /// The special values survive as bits: subnormals, ±inf, -0, and NaN with its sign.
    @Test func f16SpecialsAreExact() throws {
        let t = try SafeTensorsFile(path: Self.fixture("st_f16.safetensors")).tensor("special")
        #expect(t.data[0] == 0x1p-24 && t.data[2] == 1023 * 0x1p-24 && t.data[3] == -0x1p-24)
        #expect(t.data[6] == 65504 && t.data[8] == .infinity && t.data[9] == -.infinity)
        #expect(t.data[10].isNaN && t.data[10].sign == .plus && t.data[11].isNaN && t.data[11].sign == .minus)
        #expect(t.data[13].bitPattern == (-0.0 as Float).bitPattern)
    }

    /// Reading then writing a Python file with the same dtype and metadata gives the same bytes.
    @Test(arguments: [("f32", SafeTensorsDType.f32), ("f16", .f16), ("bf16", .bf16)])
    func rewriteIsByteIdentical(stem: String, dtype: SafeTensorsDType) throws {
        let tmp = try TempFolder()
        defer { tmp.remove() }
        let source = Self.fixture("st_\(stem).safetensors")
        let file = try SafeTensorsFile(path: source)
        let out = tmp.path("again.safetensors")
        try SafeTensors.write(try file.readAll(), to: out, metadata: file.metadata, dtype: dtype)
        let a = try Data(contentsOf: URL(fileURLWithPath: source)), b = try Data(contentsOf: URL(fileURLWithPath: out))
        #expect(a == b, "\(stem): \(a.count) bytes from Python, \(b.count) from Swift; first difference at \(zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, b.count))")
    }

    /// What ops/fixtures/safetensors_roundtrip.py's swift_tensors() builds (keep in step).
    static func swiftTensors() -> TensorMap {
        [
            "encoder.weight": Tensor(shape: [2, 3], data: (0..<6).map { Float($0) * 0.5 - 1 }),
            "decoder.bias": Tensor(shape: [3], data: [0.1, -2.5, 65504]),
            "scale": Tensor(shape: [], data: [3.25]),
            "empty": Tensor.zeros([0, 2]),
            "bf": Tensor(shape: [2], data: [Float(1.0 / 3.0), -1e30]),
        ]
    }

    /// Swift's writer reproduces the committed st_swift.safetensors, which the generator script
    /// loads with safetensors.torch.load_file and compares with Python's own save_file bytes.
    /// FIDQ_WRITE_FIXTURES=1 rewrites the committed file.
    @Test func swiftWrittenFixture() throws {
        let tmp = try TempFolder()
        defer { tmp.remove() }
        let out = tmp.path("st_swift.safetensors")
        let dtypes: [String: SafeTensorsDType] = ["decoder.bias": .f16, "bf": .bf16]
        try SafeTensors.write(Self.swiftTensors(), to: out, metadata: ["format": "pt"], dtypes: dtypes)
        if ProcessInfo.processInfo.environment["FIDQ_WRITE_FIXTURES"] == "1" {
            try SafeTensors.write(Self.swiftTensors(), to: Self.fixture("st_swift.safetensors"),
                                  metadata: ["format": "pt"], dtypes: dtypes)
        }
        let committed = try Data(contentsOf: URL(fileURLWithPath: Self.fixture("st_swift.safetensors")))
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == committed,
                "Swift's bytes changed; regenerate and check with ops/fixtures/safetensors_roundtrip.py")
        // Python's layout: F32 first, then BF16, then F16; names sorted within a dtype.
        let back = try SafeTensorsFile(path: out)
        #expect(back.names == ["empty", "encoder.weight", "scale", "bf", "decoder.bias"])
        #expect(back.entries.map(\.dtype) == [.f32, .f32, .f32, .bf16, .f16])
        let read = try back.readAll()
        #expect(try read.tensor("decoder.bias").data == [Half.float(fromF16: Half.f16(from: 0.1)), -2.5, 65504])
        #expect(try read.tensor("bf").data == [Half.float(fromBF16: 0x3EAB), Half.float(fromBF16: Half.bf16(from: -1e30))])
        #expect(try read.tensor("scale").shape == [] && read.tensor("scale").data == [3.25])
        #expect(try read.tensor("empty").shape == [0, 2])
        #expect(try read.tensor("encoder.weight") == Self.swiftTensors()["encoder.weight"])
    }

    @Test func mappedAndReadGiveTheSameTensors() throws {
        for stem in ["f32", "f16", "bf16", "mixed"] {
            let mapped = try SafeTensorsFile(path: Self.fixture("st_\(stem).safetensors"), mapThreshold: 0)
            let read = try SafeTensorsFile(path: Self.fixture("st_\(stem).safetensors"))
            #expect(mapped.isMapped && !read.isMapped)
            let a = try mapped.readAll(), b = try read.readAll()
            #expect(a.names == b.names)
            for (name, t) in a { #expect(sameBits(t, try b.tensor(name)), "\(stem)/\(name)") }
        }
    }

    /// A file over the default 64 MiB threshold is mapped, and reads back (parallel copy included).
    @Test func largeFileIsMapped() throws {
        let tmp = try TempFolder()
        defer { tmp.remove() }
        let n = SafeTensorsFile.defaultMapThreshold / 4 + 1000
        var big = Tensor.zeros([n])
        for i in stride(from: 0, to: n, by: 4099) { big.data[i] = Float(i) }
        let path = tmp.path("big.safetensors")
        try SafeTensors.write(["big": big, "small": Tensor(shape: [2], data: [1, 2])], to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.isMapped)
        #expect(try file.tensor("small").data == [1, 2])
        #expect(try file.tensor("big") == big)
    }

    /// The lazy reader lists every tensor and converts only on demand; unsupported dtypes are
    /// refused by name, the rest of the file stays readable.
    @Test func lazyReaderListsAndRefusesUnsupportedDTypes() throws {
        let tmp = try TempFolder()
        defer { tmp.remove() }
        let header = #"{"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        let path = try tmp.file("f8.safetensors", header: header, data: [1, 2, 3, 4] + withUnsafeBytes(of: Float(7)) { Array($0) })
        let file = try SafeTensorsFile(path: path)
        #expect(file.names == ["a", "b"])
        #expect(file.entries.map(\.dtype) == [.f8e4m3, .f32] && file.entries[0].shape == [4])
        #expect(try file.tensor("b").data == [7])
        do {
            _ = try file.tensor("a")
            Issue.record("F8_E4M3 should be refused")
        } catch let e as SafeTensorsError {
            #expect(e.kind == .unsupportedDType)
            #expect(e.description.contains("unsupported dtype F8_E4M3 for tensor 'a'") && e.description.contains(path))
        }
        #expect(throws: SafeTensorsError.self) { try file.readAll() }
        #expect(throws: TensorMapError.missing(name: "c", source: path, close: ["a", "b"])) { try file.tensor("c") }
    }

    /// Integer and F64 tensors convert when exact, and are refused by value when not.
    @Test func integerAndF64Conversion() throws {
        let tmp = try TempFolder()
        defer { tmp.remove() }
        func bytes<T>(_ values: [T]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }
        func one(_ dtype: String, _ data: [UInt8], count: Int) throws -> Tensor {
            let header = #"{"x":{"dtype":"\#(dtype)","shape":[\#(count)],"data_offsets":[0,\#(data.count)]}}"#
            return try SafeTensorsFile(path: try tmp.file("\(dtype).safetensors", header: header, data: data)).tensor("x")
        }
        #expect(try one("I64", bytes([Int64(0), -5, 1 << 24]), count: 3).data == [0, -5, 16_777_216])
        #expect(try one("I32", bytes([Int32(7), -1]), count: 2).data == [7, -1])
        #expect(try one("U8", [0, 255], count: 2).data == [0, 255])
        #expect(try one("BOOL", [0, 1, 1], count: 3).data == [0, 1, 1])
        #expect(try one("I16", bytes([Int16(-300)]), count: 1).data == [-300])
        #expect(try one("F64", bytes([0.5, -2.0, Double.infinity]), count: 3).data == [0.5, -2, .infinity])
        for (dtype, data) in [("I64", bytes([Int64(1), (1 << 24) + 1])), ("U64", bytes([UInt64.max])), ("F64", bytes([0.1]))] {
            do {
                _ = try one(dtype, data, count: data.count / 8)
                Issue.record("\(dtype) should be refused")
            } catch let e as SafeTensorsError {
                #expect(e.kind == .notRepresentable, "\(e)")
                #expect(e.description.contains("tensor 'x' (\(dtype))"))
            }
        }
    }

    /// Writes go to a temporary name and are renamed: nothing else is left in the folder, an
    /// existing file is replaced, and a failure leaves no debris and names the path.
    @Test func writeIsAtomic() throws {
        let tmp = try TempFolder()
        defer { tmp.remove() }
        let path = tmp.path("model.safetensors")
        try SafeTensors.write(["a": Tensor(shape: [1], data: [1])], to: path)
        try SafeTensors.write(["b": Tensor(shape: [2], data: [2, 3])], to: path, metadata: [:])
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.url.path) == ["model.safetensors"])
        let file = try SafeTensorsFile(path: path)
        #expect(file.names == ["b"] && file.metadata == [:])
        let missing = tmp.path("no/such/folder/model.safetensors")
        #expect(throws: SafeTensorsError.self) { try SafeTensors.write(["a": Tensor.zeros([1])], to: missing) }
        do { try SafeTensors.write(["a": Tensor.zeros([1])], to: missing) } catch let e as SafeTensorsError {
            #expect(e.kind == .io && e.description.contains("no/such/folder"))
        }
        do { try SafeTensors.write(["a": Tensor.zeros([1])], to: path, dtypes: ["a": .i64]) } catch let e as SafeTensorsError {
            #expect(e.kind == .unsupportedDType && e.description.contains("I64"))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.url.path) == ["model.safetensors"])
    }

    /// Re-encoding the header of Python's mixed-dtype file (I64 entry, three metadata keys with a
    /// quote and a non-ASCII letter; the generator keeps its keys sorted) gives Python's bytes.
    @Test func headerEncodingMatchesPythonMixedFile() throws {
        let path = Self.fixture("st_mixed.safetensors")
        let file = try SafeTensorsFile(path: path)
        let raw = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let encoded = SafeTensorsHeader.encode(entries: file.entries, metadata: file.metadata)
        #expect(encoded == Array(raw[8..<file.header.dataStart]), "\(String(decoding: encoded, as: UTF8.self))")
        #expect(try file.tensor("position_ids") == Tensor(shape: [1, 6], data: [0, 1, 2, 3, 4, 5]))
    }

    /// Header JSON escaping matches serde_json (what Python's safetensors uses).
    @Test func headerEscapingMatchesSerde() {
        let e = SafeTensorsEntry(name: "q\"\\/é\u{1}\u{7f}\t", dtype: .f32, shape: [], begin: 0, end: 4)
        let bytes = SafeTensorsHeader.encode(entries: [e], metadata: ["k": "v\n"])
        // From Python: save_file({'q"\\/é\x01\x7f\t': torch.zeros(())}, metadata={'k': 'v\n'}).
        let want = #"{"__metadata__":{"k":"v\n"},"q\"\\/é\u0001"# + "\u{7f}" + #"\t":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#
        #expect(String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespaces) == want)
        #expect(bytes.count % 8 == 0)
    }
}
