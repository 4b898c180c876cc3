// UnpackerTests: every archive format unpacks to the expected tree; hostile archives are refused cleanly.
import Foundation
import Testing

@testable import Fetch

@Suite struct UnpackerTests {
    typealias E = ArchiveBuilder.Entry

    static let tree: [E] = [
        E("pkg", .dir),
        E("pkg/config.json", .file(Data("{\"d_model\": 8}\n".utf8))),
        E("pkg/sub", .dir),
        E("pkg/sub/weights.bin", .file(testBytes(5000))),
        E("pkg/run.sh", .file(Data("#!/bin/sh\n".utf8)), mode: 0o755),
        E("pkg/link.json", .symlink("config.json")),
        E("pkg/sub/hard.bin", .hardlink("pkg/sub/weights.bin")),
    ]

    static let expectedTree = [
        "out d 0", "out/pkg d 0", "out/pkg/config.json f 15", "out/pkg/link.json l 0", "out/pkg/run.sh f 10",
        "out/pkg/sub d 0", "out/pkg/sub/hard.bin f 5000", "out/pkg/sub/weights.bin f 5000",
    ]

    /// Fetches `file` (a file URL) into `ws/out` with `configure` applied to the params.
    static func fetch(_ box: Sandbox, _ file: URL, _ configure: (inout FetchParams) -> Void = { _ in }) throws -> FetchResult {
        var p = FetchParams(url: file.absoluteString, dest: "out")
        configure(&p)
        return try Fetcher.run(p, workspace: box.ws)
    }

    static func published(_ box: Sandbox) -> [String] {
        box.snapshot(box.ws).filter { !$0.hasPrefix("out/.fidq-fetch.json") }
    }

    @Test(arguments: [
        ("a.tar", ArchiveBuilder.Format.pax, ArchiveBuilder.Filter.none),
        ("a.tar.gz", .pax, .gzip), ("a.tar.bz2", .pax, .bzip2), ("a.tar.xz", .pax, .xz), ("a.zip", .zip, .none),
    ])
    func archiveFormatsUnpack(name: String, format: ArchiveBuilder.Format, filter: ArchiveBuilder.Filter) throws {
        let box = try Sandbox()
        let file = box.src.appendingPathComponent(name)
        // zip has no hard links: libarchive would store the entry as an empty file.
        let entries = format == .zip ? Self.tree.filter { if case .hardlink = $0.kind { return false } else { return true } } : Self.tree
        try ArchiveBuilder.write(entries, to: file, format: format, filter: filter)
        let r = try Self.fetch(box, file)
        let expected = format == .zip ? Self.expectedTree.filter { !$0.contains("hard.bin") } : Self.expectedTree
        #expect(Self.published(box) == expected)
        let out = box.ws.appendingPathComponent("out/pkg")
        #expect(try Data(contentsOf: out.appendingPathComponent("sub/weights.bin")) == testBytes(5000))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: out.appendingPathComponent("link.json").path) == "config.json")
        #expect(FileManager.default.isExecutableFile(atPath: out.appendingPathComponent("run.sh").path))
        #expect(r.files == expected.filter { $0.contains(" f ") }.count)
    }

    @Test(arguments: [("p.tsv.gz", ArchiveBuilder.Filter.gzip), ("p.tsv.bz2", .bzip2), ("p.tsv.xz", .xz)])
    func singleCompressedFileIsDecompressed(name: String, filter: ArchiveBuilder.Filter) throws {
        let box = try Sandbox()
        let text = Data((0..<2000).map { "\($0)\tpassage \($0)\ttitle\n" }.joined().utf8)
        let file = box.src.appendingPathComponent(name)
        try ArchiveBuilder.compress(text, to: file, filter: filter)
        _ = try Self.fetch(box, file)
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/p.tsv")) == text)
        #expect(Self.published(box) == ["out d 0", "out/p.tsv f \(text.count)"])
    }

    @Test func stripComponentsAndUnpackOff() throws {
        let box = try Sandbox()
        let file = box.src.appendingPathComponent("a.tar.gz")
        try ArchiveBuilder.write(Self.tree, to: file, filter: .gzip)
        _ = try Self.fetch(box, file) { $0.stripComponents = 1 }
        #expect(Self.published(box) == Self.expectedTree.filter { $0 != "out/pkg d 0" }.map { $0.replacingOccurrences(of: "out/pkg/", with: "out/") })
        try FileManager.default.removeItem(at: box.ws.appendingPathComponent("out"))
        _ = try Self.fetch(box, file) { $0.unpack = .off }
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/a.tar.gz")) == Data(contentsOf: file))
    }

    @Test func zipContainersAreNotUnpackedUnlessNamedZip() throws {
        let box = try Sandbox()
        // PyTorch's pytorch_model.bin is a zip; auto must keep it whole.
        let file = box.src.appendingPathComponent("pytorch_model.bin")
        try ArchiveBuilder.write([E("archive/data.pkl", .file(Data("x".utf8)))], to: file, format: .zip)
        _ = try Self.fetch(box, file)
        #expect(Self.published(box) == ["out d 0", "out/pytorch_model.bin f \(try Data(contentsOf: file).count)"])
    }

    /// A file that starts with 512 zero bytes is no empty tar (libarchive's tar reader takes the
    /// zero block for an archive's end): kept whole, or decompressed whole from a .gz.
    @Test func aFileStartingWithZerosIsNotAnEmptyArchive() throws {
        let box = try Sandbox()
        let body = Data(count: 1024) + testBytes(5000)
        let plain = box.src.appendingPathComponent("weights.bin")
        try body.write(to: plain)
        _ = try Self.fetch(box, plain)
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/weights.bin")) == body)
        try FileManager.default.removeItem(at: box.ws.appendingPathComponent("out"))
        let gz = box.src.appendingPathComponent("weights.bin.gz")
        try ArchiveBuilder.compress(body, to: gz, filter: .gzip)
        _ = try Self.fetch(box, gz)
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/weights.bin")) == body)
        #expect(Self.published(box) == ["out d 0", "out/weights.bin f \(body.count)"])
    }

    /// A download cut short inside its compressed data is refused as damaged, permanently, and
    /// nothing is published (it used to be kept as an opaque file, the fetch "done").
    @Test(arguments: [("p.tsv.gz", ArchiveBuilder.Filter.gzip), ("p.tsv.bz2", .bzip2), ("a.tar.xz", .xz), ("a.tar.gz", .gzip)])
    func aTruncatedCompressedDownloadIsRefused(name: String, filter: ArchiveBuilder.Filter) throws {
        let box = try Sandbox()
        let full = box.src.appendingPathComponent("full")
        if name.contains(".tar") {
            try ArchiveBuilder.write(Self.tree, to: full, filter: filter)
        } else {
            try ArchiveBuilder.compress(testBytes(20000), to: full, filter: filter)
        }
        let file = box.src.appendingPathComponent(name)
        for cut in [12, 30, 60] {
            try Data(try Data(contentsOf: full).prefix(cut)).write(to: file)
            var thrown: FetchError?
            do { _ = try Self.fetch(box, file) } catch let e as FetchError { thrown = e }
            guard let thrown else {
                Issue.record("\(name) cut to \(cut) bytes was published: \(Self.published(box))")
                try? FileManager.default.removeItem(at: box.ws.appendingPathComponent("out"))
                continue
            }
            #expect(thrown.isPermanent && "\(thrown)".contains(name), "\(thrown)")
            #expect(box.snapshot(box.ws).isEmpty, "left: \(box.snapshot(box.ws))")
        }
    }

    /// GNU tar stores a file named twice (`tar cf x f f`) as a hard link to itself: the file stays.
    @Test func aHardLinkToItselfKeepsTheFile() throws {
        let box = try Sandbox()
        let file = box.src.appendingPathComponent("twice.tar")
        try ArchiveBuilder.write([E("f", .file(Data("data\n".utf8))), E("f", .hardlink("f"))], to: file)
        _ = try Self.fetch(box, file)
        #expect(Self.published(box) == ["out d 0", "out/f f 5"])
    }

    // MARK: hostile archives

    /// Entries named like fidq's marker (or its temporary name) would be renamed into it or have
    /// it written through them: refused.
    @Test func theMarkersNamesAreRefused() throws {
        try Self.expectRefused([E(".fidq-fetch.json", .dir)], entry: ".fidq-fetch.json")
        try Self.expectRefused([E("weights.bin", .file(Data("w".utf8))), E("..fidq-fetch.json.tmp", .symlink("weights.bin"))],
                               entry: "..fidq-fetch.json.tmp")
        try Self.expectRefused([E("pkg/.fidq-fetch.json", .file(Data("{}".utf8)))], entry: "pkg/.fidq-fetch.json") { $0.stripComponents = 1 }
    }

    /// A path the kernel cannot create under the staging folder is the archive's fault: refused
    /// at once, naming the entry (it was a retried I/O error, ENAMETOOLONG, forever).
    @Test func aPathTooLongForTheDestinationIsRefused() throws {
        let box = try Sandbox()
        // 4,000 bytes, the longest entry name allowed, under a workspace whose path is long enough
        // for the whole to pass PATH_MAX (4,096).
        let deep = (0..<15).map { _ in String(repeating: "d", count: 250) }.joined(separator: "/") + "/" + String(repeating: "f", count: 235)
        let ws = box.root.appendingPathComponent(String(repeating: "w", count: 120))
        try FileManager.default.createDirectory(at: ws, withIntermediateDirectories: true)
        let file = box.src.appendingPathComponent("deep.tar")
        try ArchiveBuilder.write([E(deep, .file(Data("x".utf8)))], to: file)
        var thrown: FetchError?
        do { _ = try Fetcher.run(FetchParams(url: file.absoluteString, dest: "out"), workspace: ws) } catch let e as FetchError { thrown = e }
        guard let thrown else {
            Issue.record("published")
            return
        }
        guard case .refused = thrown else {
            Issue.record("not refused: \(String(describing: thrown).prefix(300))")
            return
        }
        #expect(thrown.isPermanent && "\(thrown)".contains("longer than"))
        #expect(box.snapshot(ws).isEmpty, "workspace left with \(box.snapshot(ws).count) paths")
    }

    /// Fetches a hostile archive and checks: refused with the entry named, permanent, nothing left in the
    /// workspace, and nothing outside it created, changed or removed.
    static func expectRefused(_ entries: [E], entry: String, format: ArchiveBuilder.Format = .pax,
                              filter: ArchiveBuilder.Filter = .none, name: String = "evil.tar",
                              _ configure: (inout FetchParams) -> Void = { _ in },
                              check: (FetchError) -> Bool = { if case .refused = $0 { return true } else { return false } }) throws
    {
        let box = try Sandbox()
        let file = box.src.appendingPathComponent(name)
        try ArchiveBuilder.write(entries, to: file, format: format, filter: filter)
        let before = box.snapshot()
        var thrown: FetchError?
        do { _ = try fetch(box, file, configure) } catch let e as FetchError { thrown = e }
        #expect(thrown != nil, "the archive was accepted")
        if let thrown {
            #expect(check(thrown), "\(thrown)")
            #expect(thrown.isPermanent)
            #expect("\(thrown)".contains("'\(entry)'"), "error names the entry: \(thrown)")
        }
        #expect(box.snapshot(box.ws).isEmpty, "workspace left with \(box.snapshot(box.ws))")
        #expect(box.snapshot() == before, "something changed outside the temporary folder")
        #expect(try String(contentsOf: box.sentinel, encoding: .utf8) == "sentinel\n")
    }

    @Test func dotDotPathIsRefused() throws {
        try Self.expectRefused([E("ok.txt", .file(Data("a".utf8))), E("../outside.txt", .file(Data("pwned".utf8)))],
                               entry: "../outside.txt")
        try Self.expectRefused([E("a/../../outside.txt", .file(Data("pwned".utf8)))], entry: "a/../../outside.txt")
    }

    @Test func absolutePathIsRefused() throws {
        let target = NSTemporaryDirectory() + "fidq-abs-\(UUID().uuidString).txt"
        try Self.expectRefused([E(target, .file(Data("pwned".utf8)))], entry: target)
        #expect(!FileManager.default.fileExists(atPath: target))
    }

    @Test func symlinkOutsideThenFileThroughItIsRefused() throws {
        try Self.expectRefused([E("link", .symlink("../..")), E("link/outside.txt", .file(Data("pwned".utf8)))], entry: "link")
        try Self.expectRefused([E("abs", .symlink("/tmp")), E("abs/x.txt", .file(Data("pwned".utf8)))], entry: "abs")
        // A link that stays inside is fine on its own, but nothing may be written through it.
        try Self.expectRefused([E("d", .dir), E("l", .symlink("d")), E("l/x.txt", .file(Data("x".utf8)))], entry: "l/x.txt")
        // Lexically inside ("a/.." is the top), but `a` is "." so it really ends one level above.
        try Self.expectRefused([E("a", .symlink(".")), E("b", .symlink("a/.."))], entry: "b")
    }

    @Test func hardLinkOutsideIsRefused() throws {
        try Self.expectRefused([E("h", .hardlink("../outside.txt"))], entry: "h", check: {
            "\($0)".contains("hard link to '../outside.txt': '..' in the path")
        })
        try Self.expectRefused([E("h", .hardlink("/etc/passwd"))], entry: "h")
        try Self.expectRefused([E("h", .hardlink("not-in-archive.txt"))], entry: "h")
    }

    @Test func deviceAndFifoEntriesAreRefused() throws {
        try Self.expectRefused([E("dev/null2", .charDevice)], entry: "dev/null2")
        try Self.expectRefused([E("pipe", .fifo)], entry: "pipe")
    }

    @Test func tenGigabyteSparseEntryStopsAtTheLimit() throws {
        let start = Date()
        try Self.expectRefused([E("huge.bin", .sparse(size: 10 << 30, tail: testBytes(4096)))], entry: "huge.bin",
                               filter: .gzip, name: "huge.tar.gz", { $0.maxBytes = 64 << 20 }) {
            if case .limit(_, _, "unpacked size", 64 << 20) = $0 { return true } else { return false }
        }
        #expect(Date().timeIntervalSince(start) < 10)
    }

    @Test func compressedBombWithoutDeclaredSizeIsCountedWhileWriting() throws {
        // Zip streams the entry with no size in its header: only counting the written bytes can stop it.
        try Self.expectRefused([E("bomb.bin", .zeros(count: 96 << 20))], entry: "bomb.bin", format: .zip, name: "bomb.zip",
                               { $0.maxBytes = 8 << 20 }) {
            if case .limit(_, _, "unpacked size", 8 << 20) = $0 { return true } else { return false }
        }
    }

    /// Folders made for deep paths count toward max_files: 10 entries 1,900 folders deep made
    /// 19,000 folders under a limit of 10.
    @Test func foldersMadeForDeepPathsCountTowardTheLimit() throws {
        let deep = (0..<60).map { "d\($0)" }.joined(separator: "/")
        let entries = (0..<10).map { E("e\($0)/" + deep + "/f", .file(Data("x".utf8))) }
        try Self.expectRefused(entries, entry: "e1/" + deep + "/f", filter: .gzip, name: "inodes.tar.gz", { $0.maxFiles = 100 }) {
            if case .limit(_, _, "file and folder count", 100) = $0 { return true } else { return false }
        }
        // A folder entry counts once, before or after a path made it: 3 entries (2 named folders
        // and a file) fit a limit of 3 in either order.
        for (i, entries) in [[E("a", .dir), E("a/b", .dir), E("a/b/f", .file(Data("x".utf8)))],
                             [E("a/b/f", .file(Data("x".utf8))), E("a/b", .dir), E("a", .dir)]].enumerated() {
            let box = try Sandbox()
            let file = box.src.appendingPathComponent("ok\(i).tar")
            try ArchiveBuilder.write(entries, to: file)
            _ = try Self.fetch(box, file) { $0.maxFiles = 3 }
        }
    }

    /// A zip's UTF-8 names (flag 0x800, as Python's zipfile writes `café.txt`) are read: in the
    /// C locale libarchive could not convert them and refused the entry.
    @Test func aZipWithUTF8NamesUnpacks() throws {
        let box = try Sandbox()
        let zip = "UEsDBBQAAAgAAKKigl3xhmx6AwAAAAMAAAAJAAAAY2Fmw6kudHh0b25lUEsBAhQDFAAACAAAoqKCXfGGbHoDAAAAAwAAAAkAAAAAAAAAAAAAAIABAAAAAGNhZsOpLnR4dFBLBQYAAAAAAQABADcAAAAqAAAAAAA="
        _ = try Self.fetch(box, try box.source("names.zip", Data(base64Encoded: zip)!))
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/caf\u{E9}.txt")) == Data("one".utf8))
    }

    /// A download cut inside an archive's first header is refused as damaged, not published as a
    /// plain file: a zip cut at 40 bytes, a pax tar cut at 700 inside an intact gzip.
    @Test func anArchiveCutInItsFirstHeaderIsRefused() throws {
        let box = try Sandbox()
        let zip = box.src.appendingPathComponent("whole.zip"), tar = box.src.appendingPathComponent("whole.tar")
        try ArchiveBuilder.write(Self.tree, to: zip, format: .zip)
        try ArchiveBuilder.write(Self.tree, to: tar)
        let cutZip = try box.source("cut.zip", try Data(contentsOf: zip).prefix(40))
        let cutTarGz = box.src.appendingPathComponent("cut.tar.gz")
        try ArchiveBuilder.compress(try Data(contentsOf: tar).prefix(700), to: cutTarGz, filter: .gzip)
        // odc cpio's 6-byte magic is no accident either (only binary cpio's 2 bytes are weak).
        let odc = box.src.appendingPathComponent("whole.cpio")
        try ArchiveBuilder.write([E("a.txt", .file(Data("one".utf8))), E("b.txt", .file(Data("two".utf8)))], to: odc, format: .odc)
        let cutOdc = try box.source("cut.cpio", try Data(contentsOf: odc).prefix(60))
        for file in [cutZip, cutTarGz, cutOdc] {
            do {
                _ = try Self.fetch(box, file)
                Issue.record("\(file.lastPathComponent) published: \(box.snapshot(box.ws))")
            } catch let e as FetchError {
                guard case .archive = e else { Issue.record("\(e)"); continue }
                #expect(e.isPermanent)
            }
            #expect(box.snapshot(box.ws).isEmpty, "\(box.snapshot(box.ws))")
        }
    }

    /// Names that are not UTF-8 are refused: repaired with U+FFFD, `caf\xE9.txt` and
    /// `caf\xE8.txt` became one file and the first was lost.
    @Test func namesThatAreNotUTF8AreRefused() throws {
        let box = try Sandbox()
        let file = box.src.appendingPathComponent("latin1.tar")
        try ArchiveBuilder.ustar([(Array("caf".utf8) + [0xE9] + Array(".txt".utf8), Data("one".utf8)),
                                  (Array("caf".utf8) + [0xE8] + Array(".txt".utf8), Data("two".utf8))]).write(to: file)
        do {
            _ = try Self.fetch(box, file)
            Issue.record("unpacked: \(box.snapshot(box.ws))")
        } catch let e as FetchError {
            #expect("\(e)".contains("its name is not UTF-8") && e.isPermanent, "\(e)")
        }
        #expect(box.snapshot(box.ws).isEmpty, "\(box.snapshot(box.ws))")
    }

    /// A plain file that starts with cpio's 2-byte magic is kept whole, not refused as a damaged
    /// archive (1 float32 file in 32,768 starts as binary cpio does), and so is one that starts as
    /// the ASCII cpio header does ("070707" opening a TSV).
    @Test(arguments: [[0xC7, 0x71], [0x71, 0xC7], Array("070707\tx\ty\n".utf8)] as [[UInt8]])
    func aPlainFileWithAnArchiveMagicIsKeptWhole(magic: [UInt8]) throws {
        let box = try Sandbox()
        // 1 MiB: long enough for libarchive to read a (nonsense) binary cpio header from it.
        let body = Data(magic) + testBytes(1 << 20)
        _ = try Self.fetch(box, try box.source("weights.bin", body))
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/weights.bin")) == body)
    }

    @Test func hundredThousandFilesStopAtTheCountLimit() throws {
        let entries = (0..<100_000).map { E("many/f\($0)", .file(Data())) }
        let start = Date()
        // The folder many/, which no entry names, counts too.
        try Self.expectRefused(entries, entry: "many/f4999", filter: .gzip, name: "many.tar.gz", { $0.maxFiles = 5000 }) {
            if case .limit(_, _, "file and folder count", 5000) = $0 { return true } else { return false }
        }
        #expect(Date().timeIntervalSince(start) < 60)
    }

    @Test func symlinkTargetsHaveALengthLimit() throws {
        // A target the kernel would refuse (over PATH_MAX) or with a name over NAME_MAX is refused
        // up front, naming the entry, like an over-long entry name.
        try Self.expectRefused([E("long", .symlink(String(repeating: "a/", count: 2100) + "x"))], entry: "long", check: {
            "\($0)".contains("longer than 4000 bytes")
        })
        try Self.expectRefused([E("wide", .symlink(String(repeating: "n", count: 300)))], entry: "wide", check: {
            "\($0)".contains("longer than 255 bytes")
        })
    }

    /// A `newc` cpio archive as GNU `find . | cpio -o -H newc` writes it: a multiply-linked file's
    /// data goes with its last name; the earlier names have size 0.
    static func newc(_ entries: [(name: String, ino: Int, mode: Int, nlink: Int, data: Data)]) -> Data {
        var out = Data()
        func pad() { while out.count % 4 != 0 { out.append(0) } }
        func add(_ name: String, ino: Int, mode: Int, nlink: Int, data: Data) {
            let fields = [ino, mode, 0, 0, nlink, 1_700_000_000, data.count, 8, 1, 0, 0, name.utf8.count + 1, 0]
            out.append(Data(("070701" + fields.map { String(format: "%08X", $0) }.joined()).utf8))
            out.append(Data(name.utf8))
            out.append(0)
            pad()
            out.append(data)
            pad()
        }
        for e in entries { add(e.name, ino: e.ino, mode: e.mode, nlink: e.nlink, data: e.data) }
        add("TRAILER!!!", ino: 0, mode: 0, nlink: 1, data: Data())
        return out
    }

    @Test func cpioHardLinksKeepTheirData() throws {
        let box = try Sandbox()
        let shared = testBytes(10_000), other = Data("plain\n".utf8)
        let file = try box.source("links.cpio", Self.newc([
            (".", 1, 0o040755, 2, Data()),
            ("a.bin", 7, 0o100644, 3, Data()),
            ("plain.txt", 8, 0o100644, 1, other),
            ("sub", 9, 0o040755, 2, Data()),
            ("sub/b.bin", 7, 0o100644, 3, Data()),
            ("c.bin", 7, 0o100644, 3, shared),
        ]))
        let r = try Self.fetch(box, file)
        // Before: the data arrived with c.bin, which was linked to the empty a.bin: all three empty.
        for name in ["a.bin", "sub/b.bin", "c.bin"] {
            #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/" + name)) == shared, "\(name)")
        }
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/plain.txt")) == other)
        var a = stat(), c = stat()
        lstat(box.ws.appendingPathComponent("out/a.bin").path, &a)
        lstat(box.ws.appendingPathComponent("out/c.bin").path, &c)
        #expect(a.st_ino == c.st_ino && a.st_nlink == 3, "still one file with three names")
        #expect(r.files == 4)
        // The linked data still counts against max_bytes (compressed, so only the unpacking is over).
        let small = try Sandbox()
        let again = small.src.appendingPathComponent("links.cpio.gz")
        try ArchiveBuilder.compress(Self.newc([
            ("a.bin", 7, 0o100644, 2, Data()), ("c.bin", 7, 0o100644, 2, Data(repeating: 7, count: 10_000)),
        ]), to: again, filter: .gzip)
        #expect {
            try Self.fetch(small, again) { $0.maxBytes = 5000 }
        } throws: { e in
            guard case .limit(_, "c.bin", "unpacked size", 5000)? = e as? FetchError else { return false }
            return true
        }
    }
}
