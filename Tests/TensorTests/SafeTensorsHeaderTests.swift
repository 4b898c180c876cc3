// SafeTensorsHeaderTests: every malformed file is a thrown SafeTensorsError naming the file and problem.
import Foundation
import Testing
import TestSupport
@testable import Tensor

@Suite struct SafeTensorsHeaderTests {
    /// A well-formed two-tensor header and its 24 data bytes, to break one thing at a time.
    static let good = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]}}"#
    static let data = [UInt8](repeating: 0, count: 24)

    /// Opens `path` expecting an error of `kind` whose description names the file and contains `fragment`.
    func expectError(_ kind: SafeTensorsError.Kind, _ path: String, _ fragment: String,
                     sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let f = try SafeTensorsFile(path: path)
            Issue.record("opened with \(f.names); expected \(kind)", sourceLocation: sourceLocation)
        } catch let e as SafeTensorsError {
            #expect(e.kind == kind, "\(e)", sourceLocation: sourceLocation)
            #expect(e.path == path && e.description.hasPrefix(path + ": "), "\(e)", sourceLocation: sourceLocation)
            #expect(e.description.contains(fragment), "\(e)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        }
    }

    func withFile(header: String = good, data: [UInt8] = data, length: UInt64? = nil,
                  _ body: (String) throws -> Void) throws {
        let tmp = try TempFolder()
        defer { tmp.remove() }
        try body(try tmp.file("bad.safetensors", header: header, data: data, length: length))
    }

    @Test func goodFileOpens() throws {
        try withFile { path in
            let f = try SafeTensorsFile(path: path)
            #expect(f.names == ["a", "b"] && f.header.dataLength == 24 && f.metadata == nil)
        }
    }

    @Test func emptyFile() throws {
        let tmp = try TempFolder()
        defer { tmp.remove() }
        expectError(.truncated, try tmp.write("empty.safetensors", []), "0 bytes, shorter than the 8-byte header length")
    }

    @Test func shorterThanLengthField() throws {
        let tmp = try TempFolder()
        defer { tmp.remove() }
        expectError(.truncated, try tmp.write("five.safetensors", [1, 0, 0, 0, 0]), "5 bytes")
    }

    @Test func absurdHeaderLength() throws {
        try withFile(length: 1 << 62) { expectError(.headerTooLarge, $0, "header length 4611686018427387904") }
        try withFile(length: .max) { expectError(.headerTooLarge, $0, "over safetensors' limit") }
    }

    @Test func headerLengthBeyondFile() throws {
        try withFile(length: 5000) { expectError(.truncated, $0, "header length 5000 needs 5008 bytes") }
    }

    @Test func fileCutInsideHeader() throws {
        let tmp = try TempFolder()
        defer { tmp.remove() }
        let full = withUnsafeBytes(of: UInt64(Self.good.utf8.count).littleEndian) { Array($0) } + Array(Self.good.utf8)
        expectError(.truncated, try tmp.write("cut.safetensors", Array(full.prefix(40))), "needs")
    }

    @Test func dataTruncated() throws {
        try withFile(data: Array(Self.data.prefix(20))) {
            expectError(.outOfBounds, $0, "tensor 'b' ends at byte 24 of the data section, which holds 20 bytes")
        }
    }

    @Test func offsetsOutOfBounds() throws {
        let header = #"{"a":{"dtype":"F32","shape":[268435456],"data_offsets":[0,1073741824]}}"#
        try withFile(header: header, data: [0, 0, 0, 0]) { expectError(.outOfBounds, $0, "ends at byte 1073741824") }
    }

    @Test func headerNotUTF8() throws {
        let tmp = try TempFolder()
        defer { tmp.remove() }
        let bad: [UInt8] = Array("{\"".utf8) + [0xC3, 0x28] + Array("\":{}}   ".utf8)
        let bytes = withUnsafeBytes(of: UInt64(bad.count).littleEndian) { Array($0) } + bad
        expectError(.headerEncoding, try tmp.write("latin.safetensors", bytes), "not valid UTF-8")
    }

    @Test func headerNotJSON() throws {
        try withFile(header: "{not json}", data: []) { expectError(.headerJSON, $0, "header is not JSON: expected a string key at byte 1") }
        try withFile(header: Self.good + ",", data: Self.data) { expectError(.headerJSON, $0, "after the value") }
        try withFile(header: "", data: []) { expectError(.headerJSON, $0, "unexpected end of text") }
    }

    /// A header of deep nesting is an error, not a stack overflow.
    @Test func deeplyNestedHeader() throws {
        try withFile(header: String(repeating: "[", count: 100_000), data: []) { expectError(.headerJSON, $0, "nesting deeper than") }
    }

    @Test func headerNotObject() throws {
        try withFile(header: "[1,2]", data: []) { expectError(.headerLayout, $0, "header is JSON an array, expected an object") }
    }

    /// Each field of the wrong type or missing is named.
    @Test(arguments: [
        (#"{"a":[1]}"#, "tensor 'a' is an array"),
        (#"{"a":{"shape":[1],"data_offsets":[0,4]}}"#, "tensor 'a' has no 'dtype' field"),
        (#"{"a":{"dtype":"F32","data_offsets":[0,4]}}"#, "tensor 'a' has no 'shape' field"),
        (#"{"a":{"dtype":"F32","shape":[1]}}"#, "tensor 'a' has no 'data_offsets' field"),
        (#"{"a":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}"#, "field 'dtype' is the integer 32"),
        (#"{"a":{"dtype":"F32","shape":"1","data_offsets":[0,4]}}"#, "field 'shape' is a string"),
        (#"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, "field 'shape' holds the number 1.5"),
        (#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, "field 'shape' holds the number -1"),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#, "'data_offsets' has 3 numbers"),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,99999999999999999999999]}}"#, "holds the number 99999999999999999999999"),
        (#"{"__metadata__":{"format":1},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, "__metadata__ 'format' is the integer 1"),
        (#"{"__metadata__":"pt","a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, "__metadata__ is a string"),
    ])
    func wrongFieldTypes(header: String, fragment: String) throws {
        try withFile(header: header, data: [0, 0, 0, 0]) { expectError(.headerLayout, $0, fragment) }
    }

    @Test func shapeDoesNotMatchByteRange() throws {
        let header = #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]}}"#
        try withFile(header: header) { expectError(.sizeMismatch, $0, "tensor 'a' (F32, shape [3]) needs 12 bytes, its data_offsets [0, 8] hold 8") }
    }

    @Test func shapeOverflows() throws {
        let header = #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,24]}}"#
        try withFile(header: header) { expectError(.sizeMismatch, $0, "overflows") }
    }

    @Test func subByteDTypeNotWholeBytes() throws {
        let header = #"{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,24]}}"#
        try withFile(header: header) { expectError(.sizeMismatch, $0, "12 bits (not whole bytes)") }
    }

    @Test func overlappingOffsets() throws {
        let header = #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#
        try withFile(header: header) { expectError(.offsets, $0, "tensor 'b' data_offsets [8, 24] overlaps 'a', which ends at 16") }
    }

    /// safetensors requires tensors packed with no gap (Metadata::validate: start == previous end).
    @Test func gapBetweenTensors() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}"#
        try withFile(header: header) { expectError(.offsets, $0, "bytes 8..<16 after 'a' belong to no tensor") }
        let late = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}"#
        try withFile(header: late) { expectError(.offsets, $0, "bytes 0..<16 at the start of the data belong to no tensor") }
    }

    @Test func trailingBytes() throws {
        try withFile(data: Self.data + [0, 0, 0, 0]) { expectError(.offsets, $0, "4 bytes after the last tensor") }
    }

    @Test func endBeforeStart() throws {
        let header = #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#
        try withFile(header: header, data: []) { expectError(.offsets, $0, "the end is before the start") }
    }

    @Test func unknownDType() throws {
        let header = #"{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#
        try withFile(header: header, data: Array(Self.data.prefix(8))) { expectError(.unknownDType, $0, "tensor 'a' has unknown dtype 'F33'") }
    }

    @Test func duplicateName() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#
        try withFile(header: header) { expectError(.duplicateName, $0, "names tensor 'a' twice") }
        let meta = #"{"__metadata__":{"k":"1","k":"2"},"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}}"#
        try withFile(header: meta) { expectError(.duplicateName, $0, "__metadata__ has key 'k' twice") }
    }

    @Test func notAFile() throws {
        let tmp = try TempFolder()
        defer { tmp.remove() }
        expectError(.io, tmp.path("absent.safetensors"), "cannot open: No such file or directory")
        expectError(.io, tmp.url.path, "is not a regular file")
    }

    /// Whitespace padding and unknown fields are accepted, as safetensors accepts them.
    @Test func paddingAndUnknownFieldsAccepted() throws {
        let header = #" {"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24],"extra":[1,{"x":null}]}}    "#
        try withFile(header: header) { path in
            let f = try SafeTensorsFile(path: path)
            #expect(f.entries == [SafeTensorsEntry(name: "a", dtype: .f32, shape: [6], begin: 0, end: 24)])
        }
    }

    /// Random damage to real files (most of it in the header, where the offsets and shapes are)
    /// is a thrown SafeTensorsError or a file that reads, mapped or read into memory: never a
    /// trap, never a read past the file.
    @Test func damagedFilesNeverTrap() throws {
        let tmp = try TempFolder()
        defer { tmp.remove() }
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
        var rng = SplitMix(seed: 0x5AFE)
        let rounds = ProcessInfo.processInfo.environment["FIDQ_FUZZ_ROUNDS"].flatMap { Int($0) } ?? 3000
        for name in ["st_f32", "st_bf16", "st_f16", "st_mixed", "st_swift"] {
            let valid = try [UInt8](Data(contentsOf: fixtures.appendingPathComponent(name + ".safetensors")))
            let headerEnd = 8 + Int(valid[0]) + Int(valid[1]) << 8
            var outcomes = [0, 0]
            for round in 0..<rounds / 5 {
                let bytes = rng.damaged(valid, round: round) { r in
                    Int(r.next() % UInt64(r.next() % 4 == 0 ? valid.count : headerEnd))
                }
                let path = try tmp.write("damaged.safetensors", bytes)
                for threshold in [0, Int.max] {
                    do {
                        _ = try SafeTensorsFile(path: path, mapThreshold: threshold).readAll()
                        outcomes[0] += 1
                    } catch is SafeTensorsError {
                        outcomes[1] += 1
                    }
                }
            }
            #expect(outcomes[0] > 0 && outcomes[1] > 0, "\(name): \(outcomes)")
        }
    }
}
