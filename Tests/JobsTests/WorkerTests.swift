// WorkerTests: in-process workers: faults in the file layer, retries, timeouts, cancel, order.
import Foundation
import Testing
@testable import Jobs
import JobsTesting

/// Runs `count` workers on threads until they drain; returns them (for their counts).
@discardableResult
func drainInProcess(_ f: QueueFixture, workers count: Int = 1, fs: FileSystem = PosixFileSystem(),
                    timeout: Double = 60, configure: (inout WorkerConfig) -> Void = { _ in }) -> [Worker] {
    drainWithStatus(f, workers: count, fs: fs, timeout: timeout, configure: configure).workers
}

/// `drainInProcess`, also returning each worker's exit status (nil: it did not end).
func drainWithStatus(_ f: QueueFixture, workers count: Int = 1, fs: FileSystem = PosixFileSystem(),
                     timeout: Double = 60, configure: (inout WorkerConfig) -> Void = { _ in }) -> (workers: [Worker], statuses: [Int32?]) {
    var config = WorkerConfig(queue: f.queueDir)
    config.drain = true
    config.lease = 2
    config.poll = 0.02
    config.backoff = 0.01
    config.grace = 5
    config.quiet = true
    configure(&config)
    let workers = (0..<count).map { _ in Worker(config: config, registry: testRegistry(), fs: fs) }
    final class Statuses: @unchecked Sendable {
        let lock = NSLock()
        var values: [Int32?]
        init(_ n: Int) { values = Array(repeating: nil, count: n) }
    }
    let statuses = Statuses(count), group = DispatchGroup()
    for (i, w) in workers.enumerated() {
        group.enter()
        Thread {
            let status = w.run()
            statuses.lock.withLock { statuses.values[i] = status }
            group.leave()
        }.start()
    }
    if group.wait(timeout: .now() + timeout) == .timedOut {
        workers.forEach { $0.requestStop() }
        _ = group.wait(timeout: .now() + 10)
        Issue.record("workers did not drain within \(timeout)s")
    }
    return (workers, statuses.lock.withLock { statuses.values })
}

@Suite struct WorkerTests {
    @Test(arguments: [42, 7] + (stressFull ? [1, 2, 3, 4, 5, 6] : []))
    func faultsInTheFileLayerLoseNothingAndCommitOnce(seed: UInt64) throws {
        let f = try QueueFixture()
        let ids = (0..<120).map { "j\($0)" }
        for id in ids { try f.dropRecord(id, extra: #""max_attempts": 20"#) }
        // The faults of queue-notes §6.5: EIO, ENOSPC, ESTALE, EINTR, and NFS's lies.
        let fs = FaultyFileSystem(faults: [
            .init(.write, EIO, probability: 0.03),
            .init(.write, ENOSPC, probability: 0.03),
            .init(.append, ENOSPC, probability: 0.02),
            .init(.info, ESTALE, probability: 0.05),
            .init(.read, ESTALE, probability: 0.05),
            .init(.read, EINTR, probability: 0.03),
            .init(.rename, ENOENT, probability: 0.08, afterSuccess: true),
            .init(.rename, EIO, probability: 0.03),
            .init(.mkdir, EEXIST, probability: 0.1, afterSuccess: true),
            .init(.touch, EIO, probability: 0.05),
            .init(.list, ESTALE, probability: 0.1),
        ], seed: seed)
        drainInProcess(f, workers: 3, fs: fs, timeout: 120)
        #expect(fs.injections > 100, "faults were injected: \(fs.injected)")
        let (done, _) = f.expectAllAccounted(ids, allowEmptyClaims: true)
        #expect(done.count > 100, "most jobs survive 20 attempts of faults: \(done.count)")
    }

    /// A queue that cannot be written (full, read-only) makes every claim fail: the worker waits
    /// a poll between tries instead of spinning, and a drain gives up with status 1 after
    /// `claimFailureLimit` (it never ended).
    @Test func aQueueThatCannotBeWrittenIsNotSpunOn() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        let fs = FaultyFileSystem(faults: [.init(.mkdir, EROFS, pathContains: "/running/")])
        let status = drainWithStatus(f, fs: fs, timeout: 20) {
            $0.poll = 0.05
            $0.claimFailureLimit = 0.5
        }.statuses[0]
        #expect(status == 1, "status \(String(describing: status))")
        // About one claim a poll (0.5 s / 0.05 s), not thousands.
        #expect(fs.injections <= 40, "\(fs.injections) claims tried")
        #expect(f.list("pending") == ["a.json"])
    }

    @Test func transientErrorsRetryWithBackoffThenFailWithEveryAttempt() throws {
        let f = try QueueFixture()
        try f.dropRecord("flaky", params: #""fail": "transient-once""#)
        try f.dropRecord("hopeless", extra: #""max_attempts": 3"#, params: #""fail": "transient""#)
        try f.dropRecord("broken", params: #""fail": "permanent""#)
        drainInProcess(f)
        _ = f.expectAllAccounted(["flaky", "hopeless", "broken"])
        #expect(f.json(f.queueDir + "/done/flaky/result.json")?["attempt"] as? Int == 2)
        #expect(f.json(f.queueDir + "/done/flaky/result.json")?["fidq"] as? String == fidqVersion, "which binary made it")
        let hopeless = try #require(f.json(f.queueDir + "/failed/hopeless/error.json"))
        let attempts = try #require(hopeless["attempts"] as? [[String: Any]])
        #expect(attempts.count == 3 && attempts.allSatisfy { ($0["outcome"] as? String) == "transient error" })
        let broken = try #require(f.json(f.queueDir + "/failed/broken/error.json"))
        #expect((broken["attempts"] as? [Any])?.count == 1, "permanent errors are not retried")
        #expect(broken["field"] as? String == "params.fail")
        let log = try #require(f.read(f.queueDir + "/failed/hopeless/log.txt"))
        // Its rerun's folder lies outside the queue (`--out rerun` from the job's folder was refused as inside it).
        #expect(log.split(separator: "\n").first!.hasSuffix("# reproduce: fidq run job.json --workspace \(f.workspace) --out \(f.workspace)/hopeless.rerun   # run from this job's folder"),
                "\(log.prefix(300))")
        #expect(log.split(separator: "\n").last!.contains("status: failed"))
    }

    /// A transient failure that says when to come back (a server's Retry-After, carried by the
    /// error) is not retried sooner, though the backoff alone would be 0.01 s.
    @Test func aRetryAfterDelaysTheNextAttempt() throws {
        let f = try QueueFixture()
        try f.dropRecord("busy", params: #""fail": "busy-once""#)
        let t0 = Date()
        drainInProcess(f)
        #expect(Date().timeIntervalSince(t0) >= 2, "retried after \(Date().timeIntervalSince(t0)) s")
        #expect(f.json(f.queueDir + "/done/busy/result.json")?["attempt"] as? Int == 2)
    }

    /// A full disk (ENOSPC) is retried after at least 30 × --backoff, not --backoff's seconds, and
    /// the log says why and what to do (its attempts were spent in half a minute at the defaults).
    @Test func aFullDiskWaitsLongerBeforeTheNextAttempt() throws {
        let f = try QueueFixture()
        try f.dropRecord("full", params: #""fail": "enospc-once""#)
        let t0 = Date()
        drainInProcess(f) { $0.backoff = 0.05 }  // the storage wait: 1.5 s
        #expect(Date().timeIntervalSince(t0) >= 1.5, "retried after \(Date().timeIntervalSince(t0)) s")
        #expect(f.json(f.queueDir + "/done/full/result.json")?["attempt"] as? Int == 2)
        let log = (try? String(contentsOfFile: f.queueDir + "/done/full/log.txt", encoding: .utf8)) ?? ""
        #expect(log.contains("retry 2/3 in 1.5s") && log.contains("the storage is full (ENOSPC): free space there"), "\(log)")
        // 5 minutes at the default --backoff, never over an hour.
        #expect(Worker.storageWait(backoff: 10) == 300 && Worker.storageWait(backoff: 600) == 3600)
    }

    @Test func timeoutStopsTheJob() throws {
        let f = try QueueFixture()
        try f.dropRecord("slow", sleepMs: 100, steps: 100, extra: #""timeout_s": 0.5"#)
        let t0 = Date()
        drainInProcess(f)
        #expect(Date().timeIntervalSince(t0) < 5)
        let e = try #require(f.json(f.queueDir + "/failed/slow/error.json"))
        #expect(e["reason"] as? String == "timeout" && e["field"] as? String == "timeout_s")
    }

    @Test func dependenciesRunInOrderAndPrioritiesFirst() throws {
        let f = try QueueFixture()
        try f.dropRecord("c", extra: #""after": ["b"], "priority": 100"#)
        try f.dropRecord("b", extra: #""after": ["a"]"#)
        try f.dropRecord("a", extra: #""priority": -5"#)
        try f.dropRecord("low", extra: #""priority": -1"#)
        try f.dropRecord("high", extra: #""priority": 50"#)
        try f.dropRecord("uses-ref", params: #""payload": "job:high/checkpoint""#)
        drainInProcess(f)
        let order = f.ledger().map(\.id)
        #expect(order.count == 6)
        #expect(order.first == "high", "\(order)")
        func at(_ id: String) -> Int { order.firstIndex(of: id) ?? -1 }
        #expect(at("a") < at("b") && at("b") < at("c"), "\(order)")
        #expect(at("high") < at("uses-ref") && at("low") < at("a"), "\(order)")
    }

    @Test func failedDependencyFailsTheDependent() throws {
        let f = try QueueFixture()
        try f.dropRecord("base", params: #""fail": "permanent""#)
        try f.dropRecord("next", extra: #""after": ["base"]"#)
        drainInProcess(f)
        let e = try #require(f.json(f.queueDir + "/failed/next/error.json"))
        #expect((e["message"] as? String)?.contains("dependency 'base' failed") == true)
    }

    @Test func cancelStopsARunningJob() throws {
        let f = try QueueFixture()
        try f.dropRecord("long", sleepMs: 50, steps: 200)
        let control = QueueControl(queue: f.queue, registry: testRegistry(),
                                   policy: PathPolicy(workspace: f.workspace, queue: f.queueDir))
        Thread {
            _ = f.wait(10) { !f.list("running").isEmpty }
            usleep(200_000)
            _ = try? control.cancel("long")
        }.start()
        let t0 = Date()
        drainInProcess(f)
        #expect(Date().timeIntervalSince(t0) < 8, "cancelled well before its 10 s of work")
        let e = try #require(f.json(f.queueDir + "/failed/long/error.json"))
        #expect(e["reason"] as? String == "cancelled")
    }

    /// `fidq cancel` of a job whose worker died (a stale claim: only a `cancel` file is left) ends
    /// it cancelled at the take-over; it never runs again.
    @Test func aCancelledJobOfADeadWorkerIsNotRunAgain() throws {
        let f = try QueueFixture()
        let dir = try f.plantClaim("orphan", token: "t1", leaseS: 1, age: 0,
                                   job: #"{"kind": "test.record", "params": {"ledger": "ran"}}"#)
        let control = QueueControl(queue: f.queue, registry: testRegistry(),
                                   policy: PathPolicy(workspace: f.workspace, queue: f.queueDir))
        // One on its last attempt: cancelled, not "gave up after 1 attempts".
        let last = try f.plantClaim("last", token: "t2", leaseS: 1, age: 0,
                                    job: #"{"kind": "test.record", "max_attempts": 1, "params": {"ledger": "ran"}}"#)
        #expect(try control.cancel("orphan").contains("cancel requested"))
        #expect(try control.cancel("last").contains("cancel requested"))
        #expect(FileManager.default.fileExists(atPath: dir + "/cancel"))
        try f.setAge(dir + "/claim", 30)
        try f.setAge(last + "/claim", 30)
        drainInProcess(f)
        for id in ["orphan", "last"] {
            let e = try #require(f.json(f.queueDir + "/failed/\(id)/error.json"))
            #expect(e["reason"] as? String == "cancelled", "\(id): \(e)")
        }
        #expect(!FileManager.default.fileExists(atPath: f.workspace + "/ran"), "the job ran again")
    }

    /// A stale claim folder whose job.json a lookup fails to see, twice: once in the scan, once in
    /// the clean-up's own check. The job is there (the claimer's rename landed) and must run.
    @Test(arguments: [ENOENT, EIO])
    func cleanUpNeverDeletesOnANegativeAnswer(code: Int32) throws {
        let f = try QueueFixture()
        try f.plantClaim("x", token: "dead", leaseS: 0.5, age: 10,
                         job: #"{"kind": "test.record", "params": {"payload": "survives"}}"#)
        // ENOENT: NFS's cached "not found"; EIO: a lookup that says nothing.
        let fault: FaultyFileSystem.Fault = code == ENOENT ? .cachedNotFound("/job.json", times: 2) : .statIOError("/job.json", times: 2)
        let fs = FaultyFileSystem(faults: [fault])
        drainInProcess(f, fs: fs)
        #expect(fs.injections == 2)
        _ = f.expectAllAccounted(["x"])
        let result = try #require(f.json(f.queueDir + "/done/x/result.json"))
        #expect((result["result"] as? [String: Any])?["payload"] as? String == "survives")
    }

    @Test func anEmptyStaleClaimIsRemovedWithoutRecursiveDelete() throws {
        let f = try QueueFixture()
        try f.plantClaim("y", token: "dead", leaseS: 0.5, age: 10, withJob: false)
        try f.dropRecord("other")
        drainInProcess(f)
        #expect(f.list("running").isEmpty, "the empty claim folder was removed")
        #expect(f.list("done") == ["other"])
    }

    /// A claimer killed while writing its claim leaves `.claim.<token>.tmp` (and earlier takers
    /// log.txt, attempts.json) beside no job.json: the clean-up removes that litter and the folder,
    /// instead of taking over a folder with no job again and again, and the drain does not wait
    /// on it forever. Anything else (out/) stays.
    @Test func aStaleClaimWithOnlyProtocolLitterIsRemoved() throws {
        let f = try QueueFixture()
        let dir = try f.plantClaim("z", token: "dead", leaseS: 0.5, age: 10, withJob: false)
        try FileManager.default.removeItem(atPath: dir + "/claim")
        for name in [".claim.dead.1.tmp", "log.txt", "attempts.json"] {
            try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/" + name))
        }
        try f.setAge(dir, 10)
        let kept = try f.plantClaim("w", token: "dead", leaseS: 0.5, age: 10, withJob: false)
        try FileManager.default.createDirectory(atPath: kept + "/out", withIntermediateDirectories: true)
        try Data("checkpoint".utf8).write(to: URL(fileURLWithPath: kept + "/out/state"))
        try f.dropRecord("z")
        drainInProcess(f, timeout: 20)
        #expect(f.list("done") == ["z"], "the job itself, still in pending, ran")
        let left = f.list("running")
        #expect(!left.contains { $0.hasPrefix("z@") }, "the litter-only folder was removed: \(left)")
        // A folder holding out/ but no job.json is never deleted (the lookup may have lied).
        let w = try #require(left.first { $0.hasPrefix("w@") }, "a folder holding out/ is kept: \(left)")
        #expect(f.read(f.queueDir + "/running/" + w + "/out/state") == "checkpoint")
    }

    @Test func aResubmittedIDRunsAfterTheFirstWasArchived() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        try f.dropRecord("b", extra: #""after": ["a"]"#)  // makes the scanner remember a as done
        var config = WorkerConfig(queue: f.queueDir)
        config.drain = true
        config.poll = 0.02
        config.quiet = true
        let w = Worker(config: config, registry: testRegistry())
        #expect(w.run() == 0)
        #expect(f.list("done") == ["a", "b"])
        try FileManager.default.createDirectory(atPath: f.workspace + "/archive", withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: f.queueDir + "/done/a", toPath: f.workspace + "/archive/a")
        try f.dropRecord("a", params: #""payload": "again""#)
        #expect(w.run() == 0)
        #expect(f.list("failed").isEmpty, "not failed as 'already done': \(f.list("failed"))")
        let result = try #require(f.json(f.queueDir + "/done/a/result.json"))
        #expect((result["result"] as? [String: Any])?["payload"] as? String == "again")
    }

    @Test func aMissingInputOfAJustFinishedDependencyIsRetriedThenFails() throws {
        let f = try QueueFixture()
        try FileManager.default.createDirectory(atPath: f.workspace + "/data", withIntermediateDirectories: true)
        try f.dropRecord("dep")
        try f.drop("use", #"{"kind": "count", "after": ["dep"], "params": {"inputs": ["data/late.txt"]}}"#)
        // The input shows up a while after the dependency committed (another host's NFS cache).
        let creator = Thread {
            _ = f.wait(20) {
                f.list("running").contains { f.read(f.queueDir + "/running/\($0)/claim")?.contains("does not exist") == true }
            }
            _ = FileManager.default.createFile(atPath: f.workspace + "/data/late.txt", contents: Data("one two\n".utf8))
        }
        creator.start()
        drainInProcess(f) { $0.missingInputWindow = 60 }
        #expect(f.list("done") == ["dep", "use"], "\(f.list("failed"))")
        #expect(f.list("pending").isEmpty && f.list("running").isEmpty && f.list("failed").isEmpty)
        #expect(f.read(f.queueDir + "/done/use/log.txt")?.contains("may not be visible here yet") == true)
        let result = try #require(f.json(f.queueDir + "/done/use/result.json"))
        #expect(result["attempt"] as? Int == 1, "waiting for visibility uses up no attempt")

        // Past the window the same missing input is permanent, naming the field.
        let g = try QueueFixture()
        try g.dropRecord("dep")
        try g.drop("use", #"{"kind": "count", "after": ["dep"], "params": {"inputs": ["data/never.txt"]}}"#)
        drainInProcess(g) { $0.missingInputWindow = 0 }
        let e = try #require(g.json(g.queueDir + "/failed/use/error.json"))
        #expect(e["field"] as? String == "params.inputs[0]")
        #expect((e["message"] as? String)?.contains("does not exist") == true)
    }

    @Test func anOutputInsideTheQueueIsRefusedAtClaim() throws {
        let f = try QueueFixture()
        try FileManager.default.createSymbolicLink(atPath: f.workspace + "/q-link", withDestinationPath: f.queueDir)
        try f.dropRecord("into-done", params: #""ledger": "queue/done/forged""#)
        try f.dropRecord("into-pending", params: #""ledger": "queue/pending""#)
        try f.dropRecord("via-link", params: #""ledger": "q-link/done/forged2""#)
        drainInProcess(f)
        _ = f.expectAllAccounted(["into-done", "into-pending", "via-link"])
        #expect(f.list("done").isEmpty, "nothing was written into done/: \(f.list("done"))")
        for id in ["into-done", "into-pending", "via-link"] {
            let e = try #require(f.json(f.queueDir + "/failed/\(id)/error.json"))
            #expect(e["field"] as? String == "params.ledger")
            #expect((e["message"] as? String)?.contains("inside the queue folder") == true, "\(e)")
        }
    }

    /// A descriptor dropped by hand (no `submit` to refuse it) whose output a running job also
    /// writes fails at its claim, naming the other job; the running one is left alone, a job with
    /// another output runs, and a taken-over attempt of a job that was running first goes on.
    @Test func aSecondWriterOfARunningJobsOutputFailsAtClaim() throws {
        let f = try QueueFixture()
        try FileManager.default.createDirectory(atPath: f.workspace + "/data", withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: f.workspace + "/data/in.txt"))
        func concat(_ dest: String) -> String { #"{"kind": "concat", "params": {"inputs": ["data/in.txt"], "dest": "\#(dest)"}}"# }
        let live = try f.plantClaim("first", token: "t1", leaseS: 600, age: 0, job: concat("out/joined.txt"))
        try f.drop("second", concat("out/./joined.txt"))
        try f.drop("other", concat("out/other.txt"))
        // Stale (its worker died) and live claims of one output: the stale one was there first.
        try f.plantClaim("resumed", token: "t2", leaseS: 1, age: 30, job: concat("out/shared.txt"))
        try f.plantClaim("newer", token: "t3", leaseS: 600, age: 0, job: concat("out/shared.txt"))
        // The live claims would keep a drain waiting: a worker stopped once the others settled.
        var config = WorkerConfig(queue: f.queueDir)
        config.lease = 2
        config.poll = 0.02
        config.quiet = true
        let worker = Worker(config: config, registry: testRegistry())
        Thread {
            _ = f.wait(30) { f.list("failed") == ["second"] && f.list("done") == ["other", "resumed"] }
            worker.requestStop()
        }.start()
        _ = worker.run()
        let e = try #require(f.json(f.queueDir + "/failed/second/error.json"))
        #expect(e["field"] as? String == "params.dest")
        #expect((e["message"] as? String)?.contains("also written by job 'first', running by elsewhere:1") == true, "\(e)")
        #expect((e["hint"] as? String)?.contains(f.cli("retry", "second")) == true, "\(e)")
        #expect(f.list("done") == ["other", "resumed"], "\(f.list("done"))")
        #expect(FileManager.default.fileExists(atPath: live + "/job.json"), "the running job is untouched")
    }

    @Test func timeoutAndCancelAreToldApartFromFailure() throws {
        let f = try QueueFixture()
        try f.dropRecord("slow", sleepMs: 100, steps: 100, extra: #""timeout_s": 0.3"#)
        try f.dropRecord("broken", params: #""fail": "permanent""#)
        drainInProcess(f)
        #expect(f.json(f.queueDir + "/failed/slow/error.json")?["status"] as? String == "timeout")
        #expect(f.json(f.queueDir + "/failed/broken/error.json")?["status"] as? String == "failed")
        let states = Dictionary(uniqueKeysWithValues: f.queue.status().map { ($0.id, $0.state) })
        #expect(states == ["slow": "timeout", "broken": "failed"])
    }
}

/// A test kind whose first run does `first` (what the test stages around the attempt) and whose
/// later runs only succeed; its output says which run it was.
struct FirstRunKind: JobKind {
    struct Params: JobParams {}
    struct Output: Codable, Sendable { var first: Bool }
    let name: String
    let first: @Sendable (JobContext) throws -> Void
    let once = Once()

    func run(_ params: Params, _ context: JobContext) throws -> Output {
        guard once.first() else { return Output(first: false) }
        try first(context)
        return Output(first: true)
    }
}

/// Writes `out/model/weights` and reports it, the folder itself, and paths that only look alike.
struct PathsKind: JobKind {
    struct Params: JobParams {}
    struct Output: Codable, Sendable { var weights: String; var folder: String; var outputs: [String]; var sibling: String; var relative: String }
    let name = "test.paths"

    func run(_ params: Params, _ context: JobContext) throws -> Output {
        try context.fs.makeDirectories(context.out + "/model")
        try context.fs.writeAtomically(context.out + "/model/weights", Data("w".utf8), tag: "t")
        return Output(weights: context.out + "/model/weights", folder: context.folder, outputs: [context.out],
                      sibling: context.folder + "x/out", relative: "out/model/weights")
    }
}

/// True the first time only.
final class Once: @unchecked Sendable {
    private let lock = NSLockLite()
    private var used = false
    func first() -> Bool { lock.withLock { defer { used = true }; return !used } }
}

@Suite struct WorkerTakeOverTests {
    /// The flake of `killNineRoundsLoseNothing`: a worker paused past its lease kept running, and
    /// an intermediate mkdir re-created its old claim folder, which then held `out/`,
    /// `result.json` and `attempts.json` but neither claim nor job.json: no clean-up may remove
    /// that (it could be the job behind a lying lookup), so it stayed in running/ for good. The
    /// attempt that lost its claim must write nothing and remove what it re-created.
    @Test func anAttemptWhoseClaimWasTakenOverLeavesNoFolderBehind() throws {
        let f = try QueueFixture()
        try f.drop("s", #"{"kind": "test.stolen"}"#)
        let registry = testRegistry()
        // The first run plays a peer taking its claim over (renames the folder to `s@peer`,
        // released, as a stopping worker leaves it), then, as a handler that makes nested output
        // folders with intermediates, re-creates `out/…` under its old name.
        let queue = f.queue
        registry.register(FirstRunKind(name: "test.stolen") { context in
            let peer = queue.claimDir(context.id, "peer")
            try context.fs.rename(context.folder, peer)
            try queue.writeClaim(peer, ClaimRecord(id: context.id, token: "peer", worker: "peer:1", attempt: 1,
                                                   claimedAt: isoTimestamp(), released: true, leaseS: 30))
            try context.fs.makeDirectories(context.out + "/checkpoint/step-1")
        })
        var config = WorkerConfig(queue: f.queueDir)
        config.drain = true
        config.poll = 0.02
        config.quiet = true
        let w = Worker(config: config, registry: registry)
        #expect(w.run() == 0)
        #expect(f.list("running").isEmpty, "no folder left in running/: \(f.list("running"))")
        #expect(f.list("done") == ["s"] && f.list("failed").isEmpty)
        let result = try #require(f.json(f.queueDir + "/done/s/result.json"))
        #expect((result["result"] as? [String: Any])?["first"] as? Bool == false, "the peer's folder ran and committed")
    }

    /// A result names its outputs under the attempt's folder, `running/<id>@<token>/out/…`, which
    /// the commit renames: result.json must name them where they end up, under `done/<id>`.
    @Test func aResultNamesItsOutputsWhereTheCommitPutsThem() throws {
        let f = try QueueFixture()
        try f.drop("p", #"{"kind": "test.paths"}"#)
        let registry = testRegistry()
        registry.register(PathsKind())
        var config = WorkerConfig(queue: f.queueDir)
        config.drain = true
        config.poll = 0.02
        config.quiet = true
        #expect(Worker(config: config, registry: registry).run() == 0)
        let result = try #require(f.json(f.queueDir + "/done/p/result.json")?["result"] as? [String: Any])
        let done = f.queueDir + "/done/p"
        let weights = try #require(result["weights"] as? String)
        #expect(weights == done + "/out/model/weights")
        #expect(f.read(weights) == "w", "the reported path holds the output")
        #expect(result["folder"] as? String == done)
        #expect(result["outputs"] as? [String] == [done + "/out"])
        // Only the folder and paths under it move: a longer name sharing its prefix, or a relative
        // path, is left as the handler wrote it.
        let sibling = try #require(result["sibling"] as? String)
        #expect(sibling.contains("/running/p@") && sibling.hasSuffix("x/out"))
        #expect(result["relative"] as? String == "out/model/weights")
    }

    /// The other side of that fence: one lookup that wrongly says the claim is gone (NFS's cached
    /// "not found") must not cost the attempt its result; the folder's listing shows the claim.
    @Test func aLyingLookupOfTheClaimDoesNotDropTheResult() throws {
        let f = try QueueFixture()
        try f.drop("l", #"{"kind": "test.lie"}"#)
        let fs = FaultyFileSystem()
        let registry = testRegistry()
        // The first run arms one lie for the end of its attempt: the next lookup of `claim` says
        // "not found" although the claim is there and ours.
        registry.register(FirstRunKind(name: "test.lie") { _ in fs.setFaults([.cachedNotFound("/claim", times: 1)]) })
        var config = WorkerConfig(queue: f.queueDir)
        config.drain = true
        config.poll = 0.02
        config.lease = 1
        config.quiet = true
        let w = Worker(config: config, registry: registry, fs: fs)
        #expect(w.run() == 0)
        #expect(fs.injections == 1, "the lie was told: \(fs.injected)")
        #expect(f.list("done") == ["l"] && f.list("running").isEmpty && f.list("failed").isEmpty)
        let result = try #require(f.json(f.queueDir + "/done/l/result.json"))
        #expect(result["attempt"] as? Int == 1, "committed by the attempt that was told the lie, not a rerun")
        #expect((result["result"] as? [String: Any])?["first"] as? Bool == true)
    }
}
