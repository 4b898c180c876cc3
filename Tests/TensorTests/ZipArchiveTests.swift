// ZipArchiveTests: torch.save's container read entry by entry; ZIP64 extra fields from a
// hand-built archive; compressed, truncated, legacy and non-zip files refused with clear errors.
import Foundation
import Testing
@testable import Tensor

/// Builds a zip of stored entries byte by byte, optionally with every size and offset in ZIP64
/// fields (0xFFFFFFFF in the 32-bit slots) as writers do for files over 4 GB.
struct ZipBuilder {
    var entries: [(name: String, data: [UInt8], method: UInt16)] = []
    var zip64 = false

    private static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    func bytes() -> [UInt8] {
        var out: [UInt8] = [], central: [UInt8] = []
        for e in entries {
            let name = Array(e.name.utf8)
            let offset = out.count
            let size32: UInt32 = zip64 ? 0xFFFF_FFFF : UInt32(e.data.count)
            out += Self.le(UInt32(0x0403_4B50)) + Self.le(UInt16(45)) + Self.le(UInt16(0)) + Self.le(e.method)
            out += Self.le(UInt32(0)) + Self.le(UInt32(0)) + Self.le(UInt32(e.data.count)) + Self.le(UInt32(e.data.count))
            // Local extra: 7 bytes of padding under an unknown id, like torch's alignment field.
            out += Self.le(UInt16(name.count)) + Self.le(UInt16(11)) + name + Self.le(UInt16(0x4246)) + Self.le(UInt16(7)) + [UInt8](repeating: 0x5A, count: 7)
            out += e.data
            let extra: [UInt8] = zip64
                ? Self.le(UInt16(1)) + Self.le(UInt16(24)) + Self.le(UInt64(e.data.count)) + Self.le(UInt64(e.data.count)) + Self.le(UInt64(offset))
                : []
            central += Self.le(UInt32(0x0201_4B50)) + Self.le(UInt16(45)) + Self.le(UInt16(45)) + Self.le(UInt16(0)) + Self.le(e.method)
            central += Self.le(UInt32(0)) + Self.le(UInt32(0)) + Self.le(size32) + Self.le(size32)
            central += Self.le(UInt16(name.count)) + Self.le(UInt16(extra.count)) + Self.le(UInt16(0)) + Self.le(UInt16(0))
            central += Self.le(UInt16(0)) + Self.le(UInt32(0)) + Self.le(zip64 ? UInt32(0xFFFF_FFFF) : UInt32(offset)) + name + extra
        }
        let cdOffset = out.count
        out += central
        if zip64 {
            let at = out.count
            out += Self.le(UInt32(0x0606_4B50)) + Self.le(UInt64(44)) + Self.le(UInt16(45)) + Self.le(UInt16(45))
            out += Self.le(UInt32(0)) + Self.le(UInt32(0)) + Self.le(UInt64(entries.count)) + Self.le(UInt64(entries.count))
            out += Self.le(UInt64(central.count)) + Self.le(UInt64(cdOffset))
            out += Self.le(UInt32(0x0706_4B50)) + Self.le(UInt32(0)) + Self.le(UInt64(at)) + Self.le(UInt32(1))
        }
        out += Self.le(UInt32(0x0605_4B50)) + Self.le(UInt16(0)) + Self.le(UInt16(0))
        out += Self.le(zip64 ? UInt16(0xFFFF) : UInt16(entries.count)) + Self.le(zip64 ? UInt16(0xFFFF) : UInt16(entries.count))
        out += Self.le(zip64 ? UInt32(0xFFFF_FFFF) : UInt32(central.count)) + Self.le(zip64 ? UInt32(0xFFFF_FFFF) : UInt32(cdOffset))
        out += Self.le(UInt16(4)) + Array("note".utf8)  // a comment, so the record is not at the very end
        return out
    }
}

/// The `TorchCheckpointError` `body` throws.
func checkpointError(_ body: () throws -> Any) -> TorchCheckpointError? {
    do {
        _ = try body()
        return nil
    } catch let e as TorchCheckpointError {
        return e
    } catch {
        Issue.record("expected a TorchCheckpointError, got \(error)")
        return nil
    }
}

@Suite struct ZipArchiveTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/pickle")
    static func fixture(_ name: String) -> String { folder.appendingPathComponent(name).path }

    @Test func readsTorchSaveContainer() throws {
        let z = try ZipArchive(path: Self.fixture("state.bin"))
        let names = z.entries.map(\.name)
        #expect(names.first == "state/data.pkl")
        #expect(names.contains("state/byteorder") && names.contains("state/version") && names.contains("state/data/0"))
        #expect(try z.data("state/byteorder") == Array("little".utf8))
        // torch aligns storage data to 64 bytes with a padding extra field.
        for e in z.entries where e.name.hasPrefix("state/data/") { #expect(e.dataOffset % 64 == 0, "\(e.name)") }
        let e = checkpointError { try z.data("state/nope") }
        #expect(e?.kind == .missingEntry && e?.entry == "state/nope")
    }

    @Test(arguments: [false, true])
    func readsHandBuiltArchives(zip64: Bool) throws {
        let folder = try TempFolder()
        defer { folder.remove() }
        var b = ZipBuilder(zip64: zip64)
        b.entries = [("a/data.pkl", [1, 2, 3], 0), ("a/data/0", Array(0..<200), 0), ("a/empty", [], 0), ("a/deflated", [9, 9], 8)]
        let z = try ZipArchive(path: try folder.write("t.zip", b.bytes()))
        #expect(z.entries.map(\.name) == ["a/data.pkl", "a/data/0", "a/empty", "a/deflated"])
        #expect(try z.data("a/data.pkl") == [1, 2, 3])
        #expect(try z.data("a/data/0") == Array(0..<200))
        #expect(try z.data("a/empty") == [])
        let e = checkpointError { try z.data("a/deflated") }
        #expect(e?.kind == .compressed && e?.entry == "a/deflated" && e?.message.contains("method 8") == true)
    }

    @Test func refusesCompressedTruncatedLegacyAndOtherFiles() throws {
        let compressed = try ZipArchive(path: Self.fixture("compressed.bin"))
        let c = checkpointError { try compressed.data("state/data.pkl") }
        #expect(c?.kind == .compressed, "\(String(describing: c))")

        let t = checkpointError { try ZipArchive(path: Self.fixture("truncated.bin")) }
        #expect(t?.kind == .notZip && t?.hint?.contains("truncated") == true, "\(String(describing: t))")

        let l = checkpointError { try ZipArchive(path: Self.fixture("legacy.bin")) }
        #expect(l?.kind == .notZip)
        #expect(l?.message.contains("legacy format; re-save with torch.save(…, _use_new_zipfile_serialization=True)") == true)

        let folder = try TempFolder()
        defer { folder.remove() }
        for (name, bytes) in [("empty", []), ("short", [0x50, 0x4B]), ("text", Array(repeating: UInt8(0x41), count: 100))] as [(String, [UInt8])] {
            let e = checkpointError { try ZipArchive(path: try folder.write(name, bytes)) }
            #expect(e?.kind == .notZip, "\(name): \(String(describing: e))")
            #expect(e?.path.hasSuffix(name) == true)
        }
        let missing = checkpointError { try ZipArchive(path: folder.path("absent")) }
        #expect(missing?.kind == .io && missing?.message.contains("cannot open") == true)
    }

    /// Every offset in the directory is checked: a central directory pointing past the file, an
    /// entry whose size runs past it, a wrong local-header offset.
    @Test func refusesInconsistentDirectories() throws {
        let folder = try TempFolder()
        defer { folder.remove() }
        var b = ZipBuilder()
        b.entries = [("a/x", Array(repeating: 7, count: 50), 0)]
        let good = b.bytes()
        let cd = good.count - 26 - 46 - 3  // EOCD (22 + 4 comment), one 46-byte record + name
        #expect(Array(good[cd..<(cd + 4)]) == [0x50, 0x4B, 0x01, 0x02])
        func patched(_ at: Int, _ v: UInt32) -> [UInt8] {
            var x = good
            for i in 0..<4 { x[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
            return x
        }
        let cases: [(String, [UInt8], String)] = [
            ("cd-offset", patched(good.count - 26 + 16, 0x7FFF_0000), "central directory"),
            ("size", { var x = patched(cd + 20, 5000); for i in 0..<4 { x[cd + 24 + i] = x[cd + 20 + i] }; return x }(), "runs past"),
            ("local", patched(cd + 42, 3), "no local header"),
            ("count", patched(good.count - 26 + 8, 0x0002_0002), "entry 1 of 2"),
        ]
        for (name, bytes, text) in cases {
            let e = checkpointError { try ZipArchive(path: try folder.write(name, bytes)) }
            #expect(e?.kind == .zip && e?.description.contains(text) == true, "\(name): \(String(describing: e))")
        }
    }
}
