// FileSystemTests: presence tells absent from unknown; temporary files are exclusive and never follow links.
import Foundation
import Testing
@testable import Jobs
import JobsTesting

@Suite struct FileSystemTests {
    @Test func presenceTellsAbsentFromCouldNotTell() throws {
        let f = try QueueFixture()
        let path = f.workspace + "/here"
        FileManager.default.createFile(atPath: path, contents: Data())
        let fs = PosixFileSystem()
        #expect(fs.presence(path) == .present)
        #expect(fs.presence(f.workspace + "/absent") == .absent)
        #expect(fs.presence(path + "/below-a-file") == .absent, "ENOTDIR: nothing can be there")
        let eio = FaultyFileSystem(faults: [.init(.info, EIO)])
        guard case .unknown = eio.presence(path) else { Issue.record("EIO must not read as absent"); return }
        let stale = FaultyFileSystem(faults: [.init(.info, ESTALE)])
        guard case .unknown = stale.presence(path) else { Issue.record("ESTALE past the retries must not read as absent"); return }
    }

    @Test func writesNeverFollowAPlantedSymlink() throws {
        let f = try QueueFixture()
        let victim = f.workspace + "/victim"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: victim))
        let link = f.workspace + "/tmp-name"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: victim)
        #expect(throws: FSError.self) { try PosixFileSystem().write(link, Data("overwritten".utf8), sync: false) }
        #expect(f.read(victim) == "precious")
        // An existing regular file is not truncated either (O_EXCL).
        #expect(throws: FSError.self) { try PosixFileSystem().write(victim, Data(), sync: false) }
        #expect(f.read(victim) == "precious")
        // Nor do appends (a job's log.txt swapped for a symlink took the worker's lines elsewhere).
        #expect(throws: FSError.self) { try PosixFileSystem().append(link, Data("log line".utf8)) }
        #expect(f.read(victim) == "precious")
    }

    @Test func atomicWritesUseUniqueTemporaryNamesAndLeaveNone() throws {
        let f = try QueueFixture()
        let fs = FaultyFileSystem()
        let target = f.workspace + "/state.json"
        for i in 0..<5 { try fs.writeAtomically(target, Data("\(i)".utf8), tag: "same-tag", sync: false) }
        #expect(f.read(target) == "4")
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.workspace).filter { $0.hasSuffix(".tmp") }.isEmpty)
        // A retried write (EINTR after creating the file) takes a fresh name instead of failing on its own.
        let flaky = FaultyFileSystem(faults: [.init(.write, EINTR, afterSuccess: true, limit: 1)])
        try flaky.writeAtomically(target, Data("after retry".utf8), tag: "t", sync: false)
        #expect(f.read(target) == "after retry")
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.workspace).filter { $0.hasSuffix(".tmp") }.isEmpty)
    }

    /// `publish` creates a name exclusively: a second writer gets false and leaves the first's
    /// file, no temporary stays; NFS's EEXIST after a link that worked counts as success.
    @Test func publishNeverReplacesAndSeesItsOwnRetransmittedLink() throws {
        let f = try QueueFixture()
        let fs = FaultyFileSystem()
        let target = f.workspace + "/job.json"
        #expect(try fs.publish(target, Data("first".utf8), tag: "a"))
        #expect(try !fs.publish(target, Data("second".utf8), tag: "b"))
        #expect(f.read(target) == "first")
        // No hard links (EPERM from link): a check and a rename, still never over an existing file.
        let noLinks = FaultyFileSystem(faults: [.init(.link, EPERM)])
        #expect(try noLinks.publish(f.workspace + "/nolink.json", Data("one".utf8), tag: "d"))
        #expect(try !noLinks.publish(f.workspace + "/nolink.json", Data("two".utf8), tag: "e"))
        #expect(f.read(f.workspace + "/nolink.json") == "one")
        // A full disk fails the call and leaves no temporary.
        let full = FaultyFileSystem(faults: [.init(.write, ENOSPC)])
        #expect(throws: FSError.self) { try full.publish(f.workspace + "/full.json", Data("x".utf8), tag: "f") }
        #expect(!FileManager.default.fileExists(atPath: f.workspace + "/full.json"))
        let lost = FaultyFileSystem(faults: [.init(.link, EEXIST, afterSuccess: true, limit: 1)])
        #expect(try lost.publish(f.workspace + "/other.json", Data("mine".utf8), tag: "c"))
        #expect(f.read(f.workspace + "/other.json") == "mine")
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.workspace).filter { $0.hasSuffix(".tmp") }.isEmpty)
    }
}
