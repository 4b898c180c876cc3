// ControlTests: submit validates before dropping; cancel and retry move jobs as documented.
import Foundation
import Testing
@testable import Jobs
import JobsTesting

@Suite struct ControlTests {
    func control(_ f: QueueFixture) -> QueueControl {
        QueueControl(queue: f.queue, registry: testRegistry(), policy: PathPolicy(workspace: f.workspace, queue: f.queueDir))
    }

    func file(_ f: QueueFixture, _ name: String, _ json: String) throws -> String {
        let path = f.workspace + "/" + name
        try Data(json.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func submitDropsValidJobsNamedByID() throws {
        let f = try QueueFixture()
        let a = try file(f, "first.json", #"{"kind": "test.record", "id": "a"}"#)
        let b = try file(f, "b.json", #"{"kind": "test.record", "after": ["a"]}"#)
        #expect(try control(f).submit(files: [a, b]) == ["a", "b"])
        #expect(f.list("pending") == ["a.json", "b.json"])
    }

    /// Submits of one id at the same moment: each passes the checks, and a replacing rename let
    /// several report success while one job stayed. Exactly one succeeds; its file is queued.
    @Test func concurrentSubmitsOfOneIDQueueExactlyOne() throws {
        let f = try QueueFixture()
        for round in 0..<5 {
            let id = "dup\(round)"
            let files = try (0..<8).map { i in try file(f, "\(id)-\(i).json", #"{"kind": "test.record", "id": "\#(id)", "priority": \#(i)}"#) }
            let outcomes = Outcomes(count: files.count)
            DispatchQueue.concurrentPerform(iterations: files.count) { i in
                do {
                    _ = try control(f).submit(files: [files[i]])
                    outcomes.set(i, "ok")
                } catch let e as SubmitError {
                    outcomes.set(i, e.error.message)
                } catch {
                    outcomes.set(i, "\(error)")
                }
            }
            let all = outcomes.values
            let winners = all.indices.filter { all[$0] == "ok" }
            #expect(winners.count == 1, "round \(round): \(all)")
            #expect(all.allSatisfy { $0 == "ok" || $0.contains("already pending") || $0.contains("at the same moment") }, "\(all)")
            if let w = winners.first {
                #expect(f.read(f.queueDir + "/pending/\(id).json") == f.read(files[w]))
            }
        }
        #expect(f.list("pending").count == 5 && !f.list("pending").contains { $0.hasPrefix(".") })
    }

    /// A drop that fails part way (a full disk at the second job) names the jobs already
    /// dropped: they stay queued, and the CLI said "nothing was submitted".
    @Test func aSubmitFailingPartWayNamesWhatItDropped() throws {
        let f = try QueueFixture()
        let files = try ["a", "b", "c"].map { try file(f, "\($0).json", #"{"kind": "test.record", "id": "\#($0)"}"#) }
        let fs = FaultyFileSystem(faults: [.init(.write, ENOSPC, pathContains: "/pending/.b.json")])
        let control = QueueControl(queue: Queue(root: f.queueDir, fs: fs), registry: testRegistry(),
                                   policy: PathPolicy(workspace: f.workspace, queue: f.queueDir))
        do {
            _ = try control.submit(files: files)
            Issue.record("a failed drop was not reported")
        } catch let e as SubmitError {
            #expect(e.submitted == ["a"] && e.file == files[1], "\(e)")
        }
        #expect(f.list("pending") == ["a.json"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.queueDir + "/pending").filter { $0.hasSuffix(".tmp") }.isEmpty)
    }

    final class Outcomes: @unchecked Sendable {
        private let lock = NSLock()
        private var items: [String]
        init(count: Int) { items = Array(repeating: "", count: count) }
        func set(_ i: Int, _ v: String) { lock.lock(); items[i] = v; lock.unlock() }
        var values: [String] { lock.lock(); defer { lock.unlock() }; return items }
    }

    @Test func dryRunChecksEverythingAndDropsNothing() throws {
        let f = try QueueFixture()
        let a = try file(f, "a.json", #"{"kind": "test.record"}"#)
        let b = try file(f, "b.json", #"{"kind": "test.record", "after": ["a"]}"#)
        #expect(try control(f).submit(files: [a, b], dryRun: true) == ["a", "b"])
        #expect(f.list("pending").isEmpty)
        // Alone, b's dependency exists nowhere: refused as a real submit would be.
        #expect(throws: SubmitError.self) { try control(f).submit(files: [b], dryRun: true) }
        #expect(try control(f).submit(files: [a, b]) == ["a", "b"])
    }

    @Test(arguments: [
        (#"{"kind": "nope"}"#, "unknown kind"),
        (#"{"kind": "test.record", "params": {"sleep_ms": "x"}}"#, "params.sleep_ms"),
        (#"{"kind": "test.record", "params": {"ledger": "/etc"}}"#, "outside the workspace"),
        (#"{"kind": "test.record", "after": ["ghost"]}"#, "dependency 'ghost' is not in the queue"),
        // All missing at once; a `job:` path's dependency is said to come from the params.
        (#"{"kind": "count", "after": ["ghost"], "params": {"inputs": ["job:spook/x.txt"]}}"#,
         "dependencies 'ghost', 'spook' (a job:spook/… path in params) are not in the queue"),
        (#"{"kind": "count", "params": {"inputs": ["missing.txt"]}}"#, "does not exist"),
        ("{", "not valid JSON"),
    ])
    func submitRefusesWhatWouldFail(json: String, message: String) throws {
        let f = try QueueFixture()
        let path = try file(f, "x.json", json)
        do {
            _ = try control(f).submit(files: [path])
            Issue.record("accepted \(json)")
        } catch let e as SubmitError {
            #expect(e.description.contains(message), "\(e.description)")
        }
        #expect(f.list("pending").isEmpty, "nothing dropped")
    }

    /// Two jobs writing the same output (in one submit, or against a pending or running job)
    /// are refused, naming the other job: the later would replace the earlier's output. Other
    /// outputs, and an output of a done job, are fine.
    @Test func submitRefusesASecondWriterOfOneOutput() throws {
        let f = try QueueFixture()
        let input = try file(f, "in.txt", "x")
        func job(_ name: String, _ dest: String) throws -> String {
            try file(f, name + ".json", #"{"kind": "concat", "params": {"inputs": ["\#(input)"], "dest": "\#(dest)"}}"#)
        }
        let a = try job("a", "out/joined.txt"), b = try job("b", "out/./joined.txt"), c = try job("c", "out/other.txt")
        let both = #expect(throws: SubmitError.self) { try control(f).submit(files: [a, b]) }
        #expect(both?.description.contains("also written by job 'a' (in this submit)") == true
                && both?.description.contains("params.dest") == true, "\(String(describing: both))")
        #expect(f.list("pending").isEmpty)
        #expect(try control(f).submit(files: [a, c]) == ["a", "c"])
        let later = #expect(throws: SubmitError.self) { try control(f).submit(files: [b]) }
        #expect(later?.description.contains("also written by job 'a' (pending)") == true, "\(String(describing: later))")
        // Claimed by a worker: still refused; once done, a new job may redo the output.
        let claimed = f.queueDir + "/running/a@w.1"
        try FileManager.default.createDirectory(atPath: claimed, withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: f.queueDir + "/pending/a.json", toPath: claimed + "/job.json")
        let running = #expect(throws: SubmitError.self) { try control(f).submit(files: [b]) }
        #expect(running?.description.contains("also written by job 'a' (running)") == true, "\(String(describing: running))")
        try FileManager.default.moveItem(atPath: claimed, toPath: f.queueDir + "/done/a")
        #expect(try control(f).submit(files: [b]) == ["b"])
        // One output inside another's: written by both (a folder and a file in it), either way round.
        let folder = try job("d", "nest"), inner = try job("e", "nest/f.txt")
        let nested = #expect(throws: SubmitError.self) { try control(f).submit(files: [folder, inner]) }
        #expect(nested?.description.contains("also written by job 'd' (in this submit)") == true, "\(String(describing: nested))")
        let reversed = #expect(throws: SubmitError.self) { try control(f).submit(files: [inner, folder]) }
        #expect(reversed?.description.contains("also written by job 'e' (in this submit)") == true, "\(String(describing: reversed))")
        #expect(try control(f).submit(files: [try job("g", "nest2/f.txt"), try job("h", "nest2f.txt")]) == ["g", "h"], "a shared prefix is no overlap")
        // One waiting for the other (after) never runs with it: writing inside its folder is fine.
        let first = try file(f, "i.json", #"{"kind": "concat", "id": "i", "params": {"inputs": ["\#(input)"], "dest": "nest3"}}"#)
        let then = try file(f, "k.json", #"{"kind": "concat", "id": "k", "after": ["i"], "params": {"inputs": ["\#(input)"], "dest": "nest3/f.txt"}}"#)
        #expect(try control(f).submit(files: [first, then]) == ["i", "k"])
    }

    /// A failed job is not counted at submit, so a new job may take its output; retrying the
    /// failed one then would make two writers of one file: refused, naming the other job.
    @Test func retryRefusesAJobWhoseOutputANewerJobWrites() throws {
        let f = try QueueFixture()
        let input = try file(f, "in.txt", "x")
        func job(_ name: String, _ dest: String) throws -> String {
            try file(f, name + ".json", #"{"kind": "concat", "id": "\#(name)", "params": {"inputs": ["\#(input)"], "dest": "\#(dest)"}}"#)
        }
        let c = control(f)
        _ = try c.submit(files: [try job("a", "out/joined.txt"), try job("b", "out/b.txt")])
        _ = try c.cancel("a")
        _ = try c.cancel("b")
        #expect(try c.submit(files: [try job("a2", "out/./joined.txt")]) == ["a2"], "a failed job's output is free")
        for ids in [["a"], ["b", "a"]] {
            do {
                _ = try c.retry(ids)
                Issue.record("retried \(ids) while a2 writes its output")
            } catch let e as JobError {
                #expect(e.message.contains("'a' writes") && e.message.contains("job 'a2' (pending)") && e.field == "params.dest"
                        && e.hint == "let 'a2' finish (or \(f.cli("cancel", "a2"))), then \(f.cli("retry", "a"))", "\(e)")
            }
        }
        #expect(f.list("failed") == ["a", "b"] && f.list("pending") == ["a2.json"], "nothing moved")
        // Two failed jobs of one output, retried together, are refused too.
        _ = try c.cancel("a2")
        do {
            _ = try c.retry(["a", "a2"])
            Issue.record("retried two writers of one output")
        } catch let e as JobError {
            #expect(e.message.contains("job 'a' (retried with it)"), "\(e)")
        }
        // Once the newer job is done, the older may redo the output on purpose.
        _ = try c.retry(["a2"])
        drainInProcess(f)
        #expect(f.list("done") == ["a2"])
        #expect(try c.retry(["a", "b"]).count == 2)
    }

    @Test func submitRefusesDuplicatesAndCycles() throws {
        let f = try QueueFixture()
        let a = try file(f, "a.json", #"{"kind": "test.record"}"#)
        _ = try control(f).submit(files: [a])
        #expect(throws: SubmitError.self) { try control(f).submit(files: [a]) }
        let x = try file(f, "x.json", #"{"kind": "test.record", "after": ["y"]}"#)
        let y = try file(f, "y.json", #"{"kind": "test.record", "after": ["x"]}"#)
        #expect(throws: SubmitError.self) { try control(f).submit(files: [x, y]) }
        #expect(f.list("pending") == ["a.json"])
    }

    /// Outputs are compared as real paths: a symlink alias of the same folder is the same output.
    @Test func anOutputReachedThroughASymlinkIsTheSameOutput() throws {
        let f = try QueueFixture()
        let input = try file(f, "in.txt", "x")
        try FileManager.default.createDirectory(atPath: f.workspace + "/out", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: f.workspace + "/alias", withDestinationPath: "out")
        let a = try file(f, "a.json", #"{"kind": "concat", "params": {"inputs": ["\#(input)"], "dest": "out/r.txt"}}"#)
        let b = try file(f, "b.json", #"{"kind": "concat", "params": {"inputs": ["\#(input)"], "dest": "alias/r.txt"}}"#)
        #expect(try control(f).submit(files: [a]) == ["a"])
        let e = #expect(throws: SubmitError.self) { try control(f).submit(files: [b]) }
        #expect(e?.description.contains("also written by job 'a' (pending)") == true, "\(String(describing: e))")
    }

    /// A job that failed twice is kept as failed/<id> and failed/<id>~2: retry brings back the
    /// latest, and status lists both under the id.
    @Test func retryBringsBackTheLatestFailure() throws {
        let f = try QueueFixture()
        for (dir, payload) in [("x", "v1-broken"), ("x~2", "v2")] {
            let d = f.queueDir + "/failed/" + dir
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            try Data(#"{"kind": "test.record", "id": "x", "params": {"payload": "\#(payload)"}}"#.utf8).write(to: URL(fileURLWithPath: d + "/job.json"))
            try Data(#"{"kind": "test.record", "message": "failed \#(payload)"}"#.utf8).write(to: URL(fileURLWithPath: d + "/error.json"))
        }
        #expect(f.queue.status().filter { $0.id == "x" }.count == 2)
        // `fidq status x` shows the latest failure first (the oldest came first, by name: its
        // error.json was shown, and --json printed that row alone).
        #expect(Queue.current(f.queue.status().filter { $0.id == "x" }).map { NSStringPath($0.folder).last } == ["x~2", "x"])
        #expect(try control(f).retry(["x"]).first?.contains("pending again") == true)
        #expect(f.read(f.pending + "/x.json")?.contains("v2") == true, "\(f.read(f.pending + "/x.json") ?? "none")")
        #expect(f.list("failed") == ["x"])
    }

    /// A retry that cannot write `pending/<id>.json` (a full disk) leaves the failed folder whole:
    /// its out/ (the checkpoints) went to `pending/.<id>.out` first and stayed there.
    @Test func aRetryThatCannotBeWrittenLeavesTheFailureWhole() throws {
        let f = try QueueFixture()
        let d = f.queueDir + "/failed/x"
        try FileManager.default.createDirectory(atPath: d + "/out/checkpoint", withIntermediateDirectories: true)
        try Data(#"{"kind": "test.record", "id": "x"}"#.utf8).write(to: URL(fileURLWithPath: d + "/job.json"))
        try Data("step-3\n".utf8).write(to: URL(fileURLWithPath: d + "/out/checkpoint/latest"))
        let fs = FaultyFileSystem(faults: [.init(.write, ENOSPC, pathContains: "/pending/.x.json")])
        let full = QueueControl(queue: Queue(root: f.queueDir, fs: fs), registry: testRegistry(),
                                policy: PathPolicy(workspace: f.workspace, queue: f.queueDir))
        #expect(throws: (any Error).self) { try full.retry(["x"]) }
        #expect(FileManager.default.fileExists(atPath: d + "/out/checkpoint/latest"))
        #expect(!FileManager.default.fileExists(atPath: f.queueDir + "/pending/.x.out"))
        // Once the disk has room, the retry goes through with its out/.
        #expect(try control(f).retry(["x"]).first?.contains("with its out/") == true)
        #expect(FileManager.default.fileExists(atPath: f.queueDir + "/pending/.x.out/checkpoint/latest"))
    }

    /// A failure kept after a later run of the id succeeded: retry says so instead of sending it
    /// back to fail at once as already done.
    @Test func retryOfAnIDThatIsDoneIsRefused() throws {
        let f = try QueueFixture()
        for area in ["failed", "done"] {
            let d = f.queueDir + "/\(area)/x"
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            try Data(#"{"kind": "test.record", "id": "x"}"#.utf8).write(to: URL(fileURLWithPath: d + "/job.json"))
        }
        let e = #expect(throws: JobError.self) { try control(f).retry(["x"]) }
        #expect(e?.description.contains("also in done/") == true, "\(String(describing: e))")
        #expect(f.list("pending").isEmpty && f.list("failed") == ["x"])
    }

    /// Several ids that cannot be retried are all named at once (only the first was), and nothing moves.
    @Test func retryNamesEveryIdItRefuses() throws {
        let f = try QueueFixture()
        let d = f.queueDir + "/failed/ok"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        try Data(#"{"kind": "test.record", "id": "ok"}"#.utf8).write(to: URL(fileURLWithPath: d + "/job.json"))
        let e = #expect(throws: JobError.self) { try control(f).retry(["ok", "ghost", "bad id", "ghost2"]) }
        let m = e?.message ?? ""
        #expect(m.contains("3 of the 4 jobs cannot be retried, so none was") && m.contains("no failed job 'ghost'")
                && m.contains("'bad id' is not a job id") && m.contains("no failed job 'ghost2'") && !m.contains("'ok'"), "\(m)")
        #expect(f.list("pending").isEmpty && f.list("failed") == ["ok"])
        // One alone keeps its own error.
        let one = #expect(throws: JobError.self) { try control(f).retry(["ok", "ghost"]) }
        #expect(one?.message == "no failed job 'ghost'", "\(String(describing: one))")
    }

    /// A job: input is an implicit `after`: at submit its missing input waits for the job, as
    /// with `after`.
    @Test func aJobInputDefersTheMissingInputCheck() throws {
        let f = try QueueFixture()
        let input = try file(f, "in.txt", "x")
        let a = try file(f, "a.json", #"{"kind": "concat", "id": "a", "params": {"inputs": ["\#(input)"], "dest": "gen/a.txt"}}"#)
        let b = try file(f, "b.json", #"{"kind": "concat", "id": "b", "params": {"inputs": ["job:a/x.txt", "gen/a.txt"], "dest": "gen/b.txt"}}"#)
        #expect(try control(f).submit(files: [a, b]) == ["a", "b"])
    }

    @Test func cancelPendingThenRetry() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        let c = control(f)
        #expect(try c.cancel("a").contains("cancelled"))
        #expect(f.list("failed") == ["a"] && f.list("pending").isEmpty)
        #expect(f.json(f.queueDir + "/failed/a/error.json")?["reason"] as? String == "cancelled")
        #expect(f.queue.status().first?.state == "cancelled", "status tells a cancel from a failure")
        #expect(f.queue.status().first?.kind == "test.record", "status names the cancelled job's kind")
        #expect(throws: JobError.self) { try c.cancel("a") }
        #expect(try c.retry("a").contains("pending again"))
        #expect(f.list("pending") == ["a.json"] && f.list("failed").isEmpty)
        drainInProcess(f)
        _ = f.expectAllAccounted(["a"])
        #expect(f.list("done") == ["a"])
    }

    @Test func retryOfSeveralPutsDependenciesFirst() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        try f.dropRecord("b", extra: #""after": ["a"]"#)
        try f.dropRecord("c", extra: #""after": ["b"]"#)
        let c = control(f)
        _ = try c.cancel("a")
        drainInProcess(f)
        #expect(f.list("failed") == ["a", "b", "c"])
        #expect(f.read(f.queueDir + "/failed/b/error.json")?.contains(f.cli("retry", "a b") + "\"") == true, "one command retries both")
        #expect(f.read(f.queueDir + "/failed/c/error.json")?.contains(f.cli("retry", "a b c") + "\"") == true, "and the whole chain")
        // An id that is not failed refuses the whole command before anything moves.
        #expect(throws: JobError.self) { try c.retry(["c", "ghost"]) }
        // So does a job whose dependency would stay failed; the hint is the whole chain.
        for ids in [["c"], ["b", "c"]] {
            do {
                _ = try c.retry(ids)
                Issue.record("retried \(ids) with a failed dependency left out")
            } catch let e as JobError {
                #expect(e.message.contains("which is failed too") && e.hint == f.cli("retry", "a b c"), "\(e)")
            }
        }
        #expect(f.list("failed") == ["a", "b", "c"] && f.list("pending").isEmpty)
        // Given last-first, each job's dependency goes back first: a worker scanning between two
        // moves must never see a pending job whose dependency is still in failed/.
        let lines = try c.retry(["c", "b", "a"])
        #expect(lines.map { $0.split(separator: "'")[0] } == ["a", "b", "c"], "\(lines)")
        drainInProcess(f)
        #expect(f.list("done") == ["a", "b", "c"])
    }

    /// Cancelling a job whose worker died (its claim stale: no heartbeat for its lease) fails it
    /// now: the cancel file it got before waited for some worker to start, and status kept
    /// showing it stale. A live claim still gets the file and stops at its next safe point.
    @Test func cancelOfAStaleClaimFailsItNow() throws {
        let f = try QueueFixture()
        try f.plantClaim("dead", token: "h1", leaseS: 5, age: 60)
        let live = try f.plantClaim("alive", token: "h2", leaseS: 600, age: 1)
        let c = control(f)
        #expect(try c.cancel("dead").hasPrefix("cancelled 'dead'"))
        #expect(f.list("failed") == ["dead"] && f.json(f.queueDir + "/failed/dead/error.json")?["status"] as? String == "cancelled")
        // The dead attempt is recorded, as a worker's take-over records it.
        let attempts = f.json(f.queueDir + "/failed/dead/error.json")?["attempts"] as? [[String: Any]]
        #expect(attempts?.count == 1 && attempts?.first?["outcome"] as? String == "lease expired", "\(String(describing: attempts))")
        // And logged, as a worker's take-over logs it: the log read as if the job was never taken.
        let log = (try? String(contentsOfFile: f.queueDir + "/failed/dead/log.txt", encoding: .utf8)) ?? ""
        #expect(log.contains("lease expired; taken over by") && log.contains("(fidq cancel)"), "\(log)")
        #expect(try c.cancel("alive").hasPrefix("cancel requested"))
        #expect(FileManager.default.fileExists(atPath: live + "/cancel") && f.list("failed") == ["dead"])
    }

    /// A hint's command names the queue unless it is the default one (`queue` in the working
    /// directory): `fidq retry a` printed for a queue elsewhere acted on another queue, or none.
    @Test func hintCommandsNameTheQueueUnlessItIsTheDefault() {
        #expect(Queue(root: "queue").command("retry", ["a", "b"]) == "fidq retry a b")
        #expect(Queue(root: "./queue/").command("status", []) == "fidq status")
        #expect(Queue(root: "/srv/my queue").command("retry --fresh", ["a"]) == "fidq retry --fresh --queue '/srv/my queue' a")
        // Ids may start with "-": `--` first, or they read as options. A worker's hint always names the queue.
        #expect(Queue(root: "queue").command("retry", ["-a", "b"]) == "fidq retry -- -a b")
        #expect(Queue(root: "queue").command("retry", ["a"], anywhere: true) == "fidq retry --queue " + shellQuoted(FileManager.default.currentDirectoryPath + "/queue") + " a")
        #expect(Queue(root: "elsewhere").command("cancel", ["a"])
                == "fidq cancel --queue " + shellQuoted(FileManager.default.currentDirectoryPath + "/elsewhere") + " a")
    }

    /// A job waiting on a cancelled (or failed) dependency says so in status, with the retry that
    /// puts the chain back: it read as a plain wait, and the next scan fails it.
    @Test func statusNamesAFailedDependencyOfAWaitingJob() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        try f.dropRecord("b", extra: #""after": ["a"]"#)
        try f.dropRecord("c", extra: #""after": ["b"]"#)
        _ = try control(f).cancel("a")
        let rows = Dictionary(uniqueKeysWithValues: f.queue.status().map { ($0.id, $0) })
        #expect(rows["b"]?.state == "waiting" && rows["b"]?.detail == "after a (failed); " + f.cli("retry", "a"), "\(String(describing: rows["b"]?.detail))")
        #expect(rows["c"]?.detail == "after b", "b is pending: a plain wait")
        let current = Queue.current(f.queue.status().filter { $0.id == "a" })
        #expect(current.first?.state == "cancelled")
        // Two failed dependencies: one hint for both, and it works as printed.
        try f.dropRecord("x")
        try f.dropRecord("m", extra: #""after": ["a", "x"]"#)
        _ = try control(f).cancel("x")
        let m = try #require(f.queue.status().first { $0.id == "m" }?.detail)
        #expect(m == "after a (failed), x (failed); " + f.cli("retry", "a x"), "\(m)")
        let hinted = m.components(separatedBy: f.cli("retry", ""))[1].split(separator: " ").map(String.init)
        #expect(try control(f).retry(hinted).count == 2)
        drainInProcess(f)
        #expect(["a", "b", "c", "m", "x"].allSatisfy { f.list("done").contains($0) }, "\(f.list("done"))")
    }

    /// A dependency dropped again by hand after it failed, which then finished (or is pending
    /// again), leaves its old failed/ folder behind: retry of its dependant counted it failed and
    /// hinted `fidq retry a b`, which was refused in turn (a is done): no command worked.
    @Test func retryOfADependantWhoseDependencyRanSinceGoesAhead() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        try f.dropRecord("b", extra: #""after": ["a"]"#)
        let c = control(f)
        _ = try c.cancel("a")
        drainInProcess(f)
        #expect(f.list("failed") == ["a", "b"])
        // a again, by hand: pending first (b waits behind it), then done.
        try f.dropRecord("a")
        #expect(try c.retry(["b"]).first?.contains("pending again") == true)
        drainInProcess(f)
        #expect(f.list("done") == ["a", "b"] && f.list("failed") == ["a"])
        // The same with the dependency done again before the retry.
        try f.dropRecord("x")
        try f.dropRecord("y", extra: #""after": ["x"]"#)
        _ = try c.cancel("x")
        drainInProcess(f)
        try f.dropRecord("x")
        drainInProcess(f)
        #expect(f.list("failed") == ["a", "x", "y"] && f.list("done").contains("x"))
        #expect(try c.retry(["y"]).first?.contains("pending again") == true)
        drainInProcess(f)
        #expect(f.list("done") == ["a", "b", "x", "y"])
    }

    /// A job waiting on two failed jobs (a merge of two score shards): its hint, and retry's
    /// refusal, name both chains (they named the first only, and following that hint was refused).
    @Test func retryHintsNameEveryFailedDependency() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        try f.dropRecord("b")
        try f.dropRecord("m", extra: #""after": ["a", "b"]"#)
        let c = control(f)
        _ = try c.cancel("a")
        _ = try c.cancel("b")
        drainInProcess(f)
        #expect(f.list("failed") == ["a", "b", "m"])
        #expect(f.read(f.queueDir + "/failed/m/error.json")?.contains(f.cli("retry", "a b m") + "\"") == true,
                "\(f.read(f.queueDir + "/failed/m/error.json") ?? "")")
        for (ids, hint) in [(["m"], f.cli("retry", "a b m")), (["a", "m"], f.cli("retry", "b a m"))] {
            let e = #expect(throws: JobError.self) { try c.retry(ids) }
            #expect(e?.hint == hint, "\(String(describing: e))")
        }
        _ = try c.retry(["b", "a", "m"])
        drainInProcess(f)
        #expect(f.list("done") == ["a", "b", "m"])
    }

    @Test func submitSaysWhatAPathThatIsNoJobFileIs() throws {
        let f = try QueueFixture()
        for (path, message) in [(f.workspace + "/queue-typo", "no such file"), (f.workspace, "is a folder, not a job file")] {
            do {
                _ = try control(f).submit(files: [path])
                Issue.record("accepted \(path)")
            } catch let e as SubmitError {
                #expect(e.error.message == message && e.error.hint?.contains("--queue") == true, "\(e.description)")
            }
        }
    }

    @Test func statusShowsEveryState() throws {
        let f = try QueueFixture()
        try f.dropRecord("ok")
        try f.dropRecord("bad", params: #""fail": "permanent""#)
        drainInProcess(f)
        try f.dropRecord("later", extra: #""after": ["ghost"]"#)
        let rows = f.queue.status()
        #expect(Dictionary(uniqueKeysWithValues: rows.map { ($0.id, $0.state) }) == ["ok": "done", "bad": "failed", "later": "waiting"])
        let table = Queue.table(rows)
        #expect(table.contains("ghost (not in the queue)") && table.contains("1 done, 1 failed, 1 waiting"))
    }

    @Test func retryAndCancelTakeIDsNotPaths() throws {
        let f = try QueueFixture()
        try f.dropRecord("X")
        drainInProcess(f)
        #expect(f.list("done") == ["X"])
        let c = control(f)
        for bad in ["../done/X", "../done", "..", ".", "a/b", "", "X/../X"] {
            #expect(throws: JobError.self, "retry '\(bad)'") { try c.retry(bad) }
            #expect(throws: JobError.self, "cancel '\(bad)'") { try c.cancel(bad) }
        }
        #expect(f.list("done") == ["X"], "the committed job is untouched")
        #expect(FileManager.default.fileExists(atPath: f.queueDir + "/done/X/result.json"))
        #expect(f.list("pending").isEmpty)
        do { _ = try c.retry("../done/X") } catch let e as JobError {
            #expect(e.field == "id" && e.message.contains("not a job id"), "\(e)")
        }
    }

    @Test(arguments: [
        (#"{"kind": "test.record", "params": {"ledger": "queue/pending/x"}}"#, "queue/pending"),
        (#"{"kind": "test.record", "params": {"ledger": "queue/done/forged"}}"#, "queue/done"),
        (#"{"kind": "test.record", "params": {"ledger": "queue"}}"#, "the queue itself"),
        (#"{"kind": "test.record", "params": {"ledger": "job:a/x"}}"#, "a job: target"),
    ])
    func submitRefusesOutputsInsideTheQueue(json: String, what: String) throws {
        let f = try QueueFixture()
        let path = try file(f, "x.json", json)
        do {
            _ = try control(f).submit(files: [path])
            Issue.record("accepted an output into \(what)")
        } catch let e as SubmitError {
            #expect(e.error.field == "params.ledger" && e.description.contains("inside the queue folder"), "\(e.description)")
        }
        #expect(f.list("pending").isEmpty)
    }
}
