// QueueWriteFaultTests: a queue that refuses writes (full, read-only) while a worker takes a job
// over or publishes its outcome: no spin, no endless re-runs, no failure without its reason.
import Foundation
import Testing
@testable import Jobs
import JobsTesting

@Suite struct QueueWriteFaultTests {
    /// Queue commands on `fs`.
    func control(_ f: QueueFixture, _ fs: FileSystem) -> QueueControl {
        QueueControl(queue: Queue(root: f.queueDir, fs: fs), registry: testRegistry(), policy: PathPolicy(workspace: f.workspace, queue: f.queueDir))
    }

    /// Runs one draining worker on `fs` with a short failure limit; returns its exit status.
    func drain(_ f: QueueFixture, fs: FileSystem, limit: Double = 0.5) -> Int32? {
        drainWithStatus(f, fs: fs, timeout: 30) {
            $0.poll = 0.05
            $0.claimFailureLimit = limit
        }.statuses[0]
    }

    /// A dead worker's job on a queue that refuses the take-over's rename: a poll between tries
    /// and a drain that stops with status 1 (it renamed thousands of times a second, silently,
    /// and never ended).
    @Test func aRefusedTakeOverIsNotSpunOn() throws {
        let f = try QueueFixture()
        try f.plantClaim("dead", token: "h1", leaseS: 1, age: 60)
        for refused in ["/running/", "/running/dead@"] {
            // All of running/, or that one folder (which the drain's probe of the queue does not
            // test: it passes once, then the drain stops; it went on for ever).
            let fs = FaultyFileSystem(faults: [.init(.rename, EROFS, pathContains: refused)])
            #expect(drain(f, fs: fs) == 1, "\(refused)")
            #expect(fs.injections <= 80, "\(refused): \(fs.injections) renames tried")
            #expect(f.list("running").count == 1, "the job stays where it was")
        }
    }

    /// The rename works but the claim cannot be written: the folder still holds the stale
    /// claim, so the next scan offers it again: also a poll apart, and the drain stops.
    @Test func aTakeOverWhoseClaimCannotBeWrittenIsNotSpunOn() throws {
        let f = try QueueFixture()
        try f.plantClaim("dead", token: "h1", leaseS: 1, age: 60)
        let fs = FaultyFileSystem(faults: [.init(.write, ENOSPC)])  // a full disk
        #expect(drain(f, fs: fs) == 1)
        #expect(fs.injections <= 40, "\(fs.injections) claims written")
        #expect(f.list("running").count == 1 && f.list("done").isEmpty)
    }

    /// A finished job whose move to done/ is refused is handed back with its result.json, and
    /// the next holder publishes it without running it again (it re-ran at "attempt 1" for
    /// ever; then, counting attempts, a job that had succeeded went to failed/ as "gave up").
    /// A drain that keeps being refused stops; once the queue takes writes, it goes to done/.
    @Test func aFinishedJobWhoseMoveIsRefusedIsPublishedLaterNotRunAgain() throws {
        let f = try QueueFixture()
        try f.dropRecord("a", extra: #""max_attempts": 1"#)
        let fs = FaultyFileSystem(faults: [.init(.rename, EROFS, pathContains: "/done/")])
        #expect(drain(f, fs: fs) == 1)
        let held = try #require(f.list("running").first)
        #expect(FileManager.default.fileExists(atPath: f.queueDir + "/running/" + held + "/result.json"))
        #expect(f.queue.readClaim(f.queueDir + "/running/" + held)?.released == true)
        drainInProcess(f)
        #expect(f.list("done") == ["a"] && f.list("failed").isEmpty && f.list("running").isEmpty)
        #expect(f.ledger().filter { $0.id == "a" }.count == 1, "ran once: \(f.ledger())")
        #expect(f.read(f.queueDir + "/done/a/log.txt")?.contains("publishing the outcome decided before (done)") == true)
    }

    /// The same for a decided failure whose move to failed/ is refused: published as it was
    /// decided (a timed-out or permanent failure ran again, and ended as a transient "gave up").
    @Test func aDecidedFailureWhoseMoveIsRefusedIsPublishedLaterNotRunAgain() throws {
        let f = try QueueFixture()
        try f.dropRecord("broken", params: #""fail": "permanent""#)
        let fs = FaultyFileSystem(faults: [.init(.rename, EROFS, pathContains: "/failed/")])
        #expect(drain(f, fs: fs) == 1)
        drainInProcess(f)
        let e = try #require(f.json(f.queueDir + "/failed/broken/error.json"))
        #expect(e["permanence"] as? String == "permanent" && e["field"] as? String == "params.fail" && (e["attempts"] as? [Any])?.count == 1, "\(e)")
    }

    /// A drain whose queue refused writes for a while does not stop once a probe of its folders
    /// works again: a job handed back may be due after the limit (it stopped with it in running/).
    @Test func aDrainGoesOnOnceTheQueueTakesWritesAgain() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        // result.json refused once, then taken: the job's second try is due after the limit.
        let fs = FaultyFileSystem(faults: [.init(.write, ENOSPC, pathContains: "result.json", limit: 1)])
        let status = drainWithStatus(f, fs: fs, timeout: 30) {
            $0.poll = 0.05
            $0.backoff = 1  // due again at 1 s, past the limit
            $0.claimFailureLimit = 0.5
        }.statuses[0]
        #expect(status == 0 && f.list("done") == ["a"], "status \(String(describing: status)), running \(f.list("running"))")
    }

    /// One whose result.json cannot be written runs again, each try a used attempt with a
    /// growing delay, and after max_attempts fails saying why (it ran again at "attempt 1" for ever).
    @Test func aResultThatCannotBeWrittenUsesUpAttempts() throws {
        let f = try QueueFixture()
        try f.dropRecord("a", extra: #""max_attempts": 3"#)
        let fs = FaultyFileSystem(faults: [.init(.write, ENOSPC, pathContains: "result.json")])
        #expect(drain(f, fs: fs, limit: 30) == 0)
        let e = try #require(f.json(f.queueDir + "/failed/a/error.json"))
        #expect((e["message"] as? String)?.hasPrefix("gave up after 3 attempts; last: cannot write result.json") == true, "\(e)")
        let attempts = try #require(e["attempts"] as? [[String: Any]])
        #expect(attempts.map { $0["attempt"] as? Int } == [1, 2, 3] && attempts.allSatisfy { $0["outcome"] as? String == "not published" },
                "\(attempts)")
        #expect(f.ledger().filter { $0.id == "a" }.count == 3)
    }

    /// A failure whose error.json cannot be written goes back to the queue (it went to failed/
    /// without one, so its reason was lost); the next attempt records it.
    @Test func aFailureWhoseErrorJSONCannotBeWrittenIsNotPublishedWithoutIt() throws {
        let f = try QueueFixture()
        try f.dropRecord("broken", params: #""fail": "permanent""#)
        let fs = FaultyFileSystem(faults: [.init(.write, ENOSPC, pathContains: "error.json", limit: 1)])
        drainInProcess(f, fs: fs)
        #expect(fs.injections == 1 && f.list("failed") == ["broken"])
        let e = try #require(f.json(f.queueDir + "/failed/broken/error.json"))
        #expect(e["field"] as? String == "params.fail" && (e["attempts"] as? [Any])?.count == 2, "\(e)")
    }

    /// A failed job without error.json (an older fidq, or a cancel on a full disk) says so in
    /// status; its row was blank.
    @Test func statusFlagsAFailedJobWithoutErrorJSON() throws {
        let f = try QueueFixture()
        try FileManager.default.createDirectory(atPath: f.queueDir + "/failed/x", withIntermediateDirectories: true)
        let row = try #require(f.queue.status().first { $0.id == "x" })
        #expect(row.state == "failed" && row.detail?.contains("no readable error.json") == true, "\(row)")
    }

    /// A finished job handed back to be published, then cancelled while the queue also refuses
    /// failed/: the cancel's failure is what gets published (it went to done/ beside the
    /// cancel's error.json). A dead holder's result.json is published without a "lease expired"
    /// record for the attempt that decided it.
    @Test func aCancelAfterAnUnpublishedResultWins() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        #expect(drain(f, fs: FaultyFileSystem(faults: [.init(.rename, EROFS, pathContains: "/done/")])) == 1)
        let said = try control(f, FaultyFileSystem(faults: [.init(.rename, EROFS, pathContains: "/failed/")])).cancel("a")
        #expect(said.contains("refused its move to failed/"), "\(said)")
        drainInProcess(f)
        #expect(f.list("failed") == ["a"] && f.list("done").isEmpty, "\(f.list("done"))")
        #expect(f.json(f.queueDir + "/failed/a/error.json")?["status"] as? String == "cancelled")

        let dead = try f.plantClaim("dead", token: "h1", leaseS: 1, age: 60)
        try Data(#"{"id": "dead", "result": {}}"#.utf8).write(to: URL(fileURLWithPath: dead + "/result.json"))
        drainInProcess(f)
        #expect(f.list("done") == ["dead"] && f.ledger().filter { $0.id == "dead" }.isEmpty)
        #expect(!f.queue.readAttempts(f.queueDir + "/done/dead").contains { $0.outcome == "lease expired" })
    }

    /// Cancel of a job whose move to failed/ the queue refuses says so, and the job never runs:
    /// it said "taken by a worker meanwhile", left the claim held, and a worker later ran it.
    @Test func aCancelWhoseMoveIsRefusedStillStopsTheJob() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        let c = control(f, FaultyFileSystem(faults: [.init(.rename, EROFS, pathContains: "/failed/")]))
        let said = try c.cancel("a")
        #expect(said.contains("refused its move to failed/"), "\(said)")
        drainInProcess(f)
        #expect(f.list("failed") == ["a"] && f.ledger().isEmpty, "\(f.list("done")) \(f.ledger())")
        #expect(f.json(f.queueDir + "/failed/a/error.json")?["status"] as? String == "cancelled")
    }

    /// Cancel of a pending job on a queue that refuses the claim says why; it said "no pending
    /// or running job 'a' (hint: it is pending)".
    @Test func cancelOnAQueueThatRefusesTheClaimSaysSo() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        let c = control(f, FaultyFileSystem(faults: [.init(.mkdir, EROFS, pathContains: "/running/")]))
        let e = #expect(throws: JobError.self) { try c.cancel("a") }
        #expect(e?.message.contains("the queue refused to claim it") == true && e?.hint?.contains(f.cli("cancel", "a")) == true,
                "\(String(describing: e))")
        #expect(f.list("pending") == ["a.json"])
    }

    /// A queue another user's fidq made, without group write: the refusal says so and how to
    /// share a queue (it asked whether the disk was full or read-only).
    @Test func aPermissionRefusalNamesTheSharedQueueFix() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        let c = control(f, FaultyFileSystem(faults: [.init(.mkdir, EACCES, pathContains: "/running/")]))
        let e = #expect(throws: JobError.self) { try c.cancel("a") }
        #expect(e?.hint?.contains("not writable by this user") == true && e?.hint?.contains("umask 002") == true
                && e?.hint?.contains(f.cli("cancel", "a")) == true, "\(String(describing: e))")
        #expect(Queue.refusalCause("mkdir /q/running/x: Permission denied (errno 13)").contains("group-writable"))
        #expect(Queue.refusalCause("write /q/x: No space left on device (errno 28)") == "is its disk full or read-only?")
    }
}
