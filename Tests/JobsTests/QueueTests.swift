// QueueTests: the protocol steps one at a time: claim, take over, commit once, NFS lies re-checked.
import Foundation
import Testing
@testable import Jobs
import JobsTesting

@Suite struct QueueTests {
    func record(_ id: String, _ token: String) -> ClaimRecord {
        ClaimRecord(id: id, token: token, worker: "test:1", attempt: 1, claimedAt: isoTimestamp(), released: false)
    }

    @Test func onlyOneClaimWins() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        let dir1 = f.queue.claimPending(name: "a.json", id: "a", record: record("a", "t1"))
        let dir2 = f.queue.claimPending(name: "a.json", id: "a", record: record("a", "t2"))
        #expect(dir1 == f.queue.claimDir("a", "t1"))
        #expect(dir2 == nil)
        #expect(f.list("running") == ["a@t1"], "the loser's folder is removed")
        #expect(f.queue.readClaim(dir1!)?.token == "t1")
    }

    @Test func renameThatLiesAboutFailureStillClaims() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        let faulty = FaultyFileSystem(faults: [.init(.rename, ENOENT, pathContains: "job.json", afterSuccess: true, limit: 1)])
        let q = Queue(root: f.queueDir, fs: faulty)
        let dir = q.claimPending(name: "a.json", id: "a", record: record("a", "t1"))
        #expect(dir != nil && faulty.injections == 1)
        #expect(FileManager.default.fileExists(atPath: dir! + "/job.json"))
    }

    @Test func mkdirThatLiesWithEEXISTStillClaims() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        let faulty = FaultyFileSystem(faults: [.init(.mkdir, EEXIST, afterSuccess: true, limit: 1)])
        let q = Queue(root: f.queueDir, fs: faulty)
        #expect(q.claimPending(name: "a.json", id: "a", record: record("a", "t1")) != nil)
    }

    @Test func commitIsNoReplaceAndRechecked() throws {
        let f = try QueueFixture()
        for t in ["t1", "t2"] {
            let dir = f.queue.claimDir("a", t)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try f.queue.writeClaim(dir, record("a", t))
            try Data("{}".utf8).write(to: URL(fileURLWithPath: dir + "/job.json"))
        }
        #expect(f.queue.commit(f.queue.claimDir("a", "t1"), id: "a", token: "t1") == .published(f.queueDir + "/done/a"))
        #expect(f.queue.commit(f.queue.claimDir("a", "t2"), id: "a", token: "t2") == .alreadyCommitted)
        #expect(f.queue.readClaim(f.queueDir + "/done/a")?.token == "t1", "the first commit was not replaced")
        // A commit whose rename worked but reported ENOENT is recognised by its token.
        let dir = f.queue.claimDir("b", "t3")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try f.queue.writeClaim(dir, record("b", "t3"))
        let faulty = FaultyFileSystem(faults: [.init(.rename, ENOENT, pathContains: "/done/", afterSuccess: true)])
        #expect(Queue(root: f.queueDir, fs: faulty).commit(dir, id: "b", token: "t3") == .published(f.queueDir + "/done/b"))
    }

    @Test func takeOverFencesTheOldHolder() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        let old = try #require(f.queue.claimPending(name: "a.json", id: "a", record: record("a", "old")))
        let new = try #require(f.queue.takeOver(name: "a@old", id: "a", token: "new"))
        #expect(f.queue.takeOver(name: "a@old", id: "a", token: "third") == nil, "only one taker")
        #expect(throws: FSError.self) { try f.queue.renewLease(old) }
        try f.queue.writeClaim(new, record("a", "new"))
        #expect(f.queue.commit(old, id: "a", token: "old") == .leaseLost)
        #expect(f.queue.commit(new, id: "a", token: "new") == .published(f.queueDir + "/done/a"))
    }

    @Test func failKeepsEarlierFailures() throws {
        let f = try QueueFixture()
        for t in ["t1", "t2"] {
            let dir = f.queue.claimDir("a", t)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try f.queue.writeClaim(dir, record("a", t))
            _ = f.queue.fail(dir, id: "a", token: t)
        }
        #expect(f.list("failed") == ["a", "a~2"])
    }

    @Test func aCommitThatCannotLookIsNotTakenForALostLease() throws {
        let f = try QueueFixture()
        let dir = f.queue.claimDir("a", "t1")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try f.queue.writeClaim(dir, record("a", "t1"))
        // The claim cannot be read and the folder cannot be looked up: nothing says it was taken.
        let blind = FaultyFileSystem(faults: [.init(.read, EIO, pathContains: "/claim"), .init(.info, EIO)])
        #expect(Queue(root: f.queueDir, fs: blind).commit(dir, id: "a", token: "t1") == .failed("claim unreadable"))
        #expect(f.list("running") == ["a@t1"], "still ours, to retry")
    }
}
