// StaleFilesTests: what a killed writer left goes (files, staged folders), links are not followed, the rest stays.
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@testable import Formats

@Suite struct StaleFilesTests {
    static func folder() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stale-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func listing(_ dir: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
    }

    @Test func stagedNamesOfEveryAttemptGoTheRestStays() throws {
        let dir = try Self.folder(), fm = FileManager.default
        defer { try? fm.removeItem(atPath: dir) }
        let outside = try Self.folder()
        defer { try? fm.removeItem(atPath: outside) }
        fm.createFile(atPath: outside + "/keep.bin", contents: Data([1]))
        for name in ["step-5", ".step-5.a1.tmp/sub", ".step-5.b2.tmp", ".step-50.c3.tmp"] {
            try fm.createDirectory(atPath: dir + "/" + name, withIntermediateDirectories: true)
        }
        fm.createFile(atPath: dir + "/.step-5.a1.tmp/sub/pytorch_model.bin", contents: Data([1, 2]))
        fm.createFile(atPath: dir + "/step-5.x.tmp", contents: Data())  // not hidden
        // A staged link to a folder outside: the link goes, what it points at stays.
        try fm.createSymbolicLink(atPath: dir + "/.step-5.d4.tmp", withDestinationPath: outside)
        // A name that is not UTF-8 inside a staged folder: still removed, and the folder with it.
        let odd = Array((dir + "/.step-5.b2.tmp/").utf8CString.dropLast()) + [CChar(bitPattern: 0xFF), 0x61, 0]
        close(open(odd, O_WRONLY | O_CREAT, 0o644))
        StaleFiles.removeStaged(in: dir, name: "step-5")
        #expect(try Self.listing(dir) == [".step-50.c3.tmp", "step-5", "step-5.x.tmp"])
        #expect(try Self.listing(outside) == ["keep.bin"])
    }

    @Test func prefixRemovesTheNamesBesideIt() throws {
        let dir = try Self.folder(), fm = FileManager.default
        defer { try? fm.removeItem(atPath: dir) }
        for name in ["s0.npy", "s0.npy.tmp-1", "s0.npy.tmp-22", "s0.ids.tmp-1", "s1.npy.tmp-1"] {
            fm.createFile(atPath: dir + "/" + name, contents: Data())
        }
        StaleFiles.remove(prefix: dir + "/s0.npy.tmp")
        #expect(try Self.listing(dir) == ["s0.ids.tmp-1", "s0.npy", "s1.npy.tmp-1"])
        StaleFiles.remove(prefix: dir + "/")  // an empty name matches nothing, not everything
        #expect(try Self.listing(dir).count == 3)
        StaleFiles.remove(prefix: dir + "/missing-folder/x")  // a folder that is not there: nothing to do
    }
}
