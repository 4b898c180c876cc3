// QueueWriteFaultTests: a queue that refuses writes (full, read-only) while a worker takes a job
// over or publishes its outcome: no spin, no endless re-runs, no failure without its reason.
import Foundation
import Testing
@testable import Jobs
import JobsTesting

@Suite struct QueueWriteFaultTests {
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
        let fs = FaultyFileSystem(faults: [.init(.rename, EROFS, pathContains: "/running/dead@")])
        #expect(drain(f, fs: fs) == 1)
        #expect(fs.injections <= 40, "\(fs.injections) renames tried")
        #expect(f.list("running").count == 1, "the job stays where it was")
    }

    /// The rename works but the claim cannot be written: the folder still holds the stale
    /// claim, so the next scan offers it again: also a poll apart, and the drain stops.
    @Test func aTakeOverWhoseClaimCannotBeWrittenIsNotSpunOn() throws {
        let f = try QueueFixture()
        try f.plantClaim("dead", token: "h1", leaseS: 1, age: 60)
        let fs = FaultyFileSystem(faults: [.init(.write, ENOSPC, pathContains: "claim")])
        #expect(drain(f, fs: fs) == 1)
        #expect(fs.injections <= 40, "\(fs.injections) claims written")
        #expect(f.list("running").count == 1 && f.list("done").isEmpty)
    }

    /// A job whose move to done/ is refused every time: each try is a used attempt with a
    /// growing delay, and after max_attempts it goes to failed/ saying why (it ran again and
    /// again as "attempt 1" and never ended).
    @Test func anOutcomeThatCannotBePublishedUsesUpAttempts() throws {
        let f = try QueueFixture()
        try f.dropRecord("a", extra: #""max_attempts": 3"#)
        let fs = FaultyFileSystem(faults: [.init(.rename, EROFS, pathContains: "/done/a")])
        #expect(drain(f, fs: fs, limit: 30) == 0)
        #expect(f.list("failed") == ["a"] && f.list("running").isEmpty, "\(f.list("running"))")
        let e = try #require(f.json(f.queueDir + "/failed/a/error.json"))
        #expect((e["message"] as? String)?.hasPrefix("gave up after 3 attempts; last: cannot move it to done/") == true, "\(e)")
        let attempts = try #require(e["attempts"] as? [[String: Any]])
        #expect(attempts.map { $0["attempt"] as? Int } == [1, 2, 3] && attempts.allSatisfy { $0["outcome"] as? String == "not published" },
                "\(attempts)")
    }

    /// So does one whose result.json cannot be written; a drain that keeps failing stops.
    @Test func aResultThatCannotBeWrittenStopsTheDrain() throws {
        let f = try QueueFixture()
        try f.dropRecord("a", extra: #""max_attempts": 50"#)
        let fs = FaultyFileSystem(faults: [.init(.write, ENOSPC, pathContains: "result.json")])
        #expect(drain(f, fs: fs, limit: 0.3) == 1)
        let claim = try #require(f.list("running").first.flatMap { f.queue.readClaim(f.queueDir + "/running/" + $0) })
        #expect(claim.released && claim.attempt > 1 && claim.note?.hasPrefix("cannot write result.json") == true, "\(claim)")
        #expect(f.queue.readAttempts(f.queueDir + "/running/" + f.list("running")[0]).first?.outcome == "not published")
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

    /// Cancel of a pending job on a queue that refuses the claim says why; it said "no pending
    /// or running job 'a' (hint: it is pending)".
    @Test func cancelOnAQueueThatRefusesTheClaimSaysSo() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        let fs = FaultyFileSystem(faults: [.init(.mkdir, EROFS, pathContains: "/running/")])
        let c = QueueControl(queue: Queue(root: f.queueDir, fs: fs), registry: testRegistry(),
                             policy: PathPolicy(workspace: f.workspace, queue: f.queueDir))
        let e = #expect(throws: JobError.self) { try c.cancel("a") }
        #expect(e?.message.contains("the queue refused to claim it") == true && e?.hint?.contains(f.cli("cancel", "a")) == true,
                "\(String(describing: e))")
        #expect(f.list("pending") == ["a.json"])
    }
}
