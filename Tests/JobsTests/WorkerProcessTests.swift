// WorkerProcessTests: real `fidq worker` processes on one queue: contention, kill -9, SIGSTOP, SIGTERM, bad input.
import Foundation
import Testing
@testable import Jobs

/// Multi-process tests run one at a time: each starts up to 8 processes on 2 cores.
@Suite(.serialized) struct WorkerProcessTests {
    let fast = ["--drain", "--poll", "0.05", "--backoff", "0.05"]

    init() throws {
        try #require(Binary.available, "build first: swift build --build-tests (looked for \(Binary.fidq))")
    }

    /// Under umask 002 (a queue a group shares) everything fidq creates is group-writable: with
    /// fixed 0755/0644 modes no other user's worker could claim, take over or publish a job.
    @Test func filesAndFoldersFollowTheUmask() throws {
        try #require(Binary.available, "build first: swift build (looked for \(Binary.fidq))")
        let f = try QueueFixture()
        try Data(#"{"kind": "test.record", "params": {"steps": 2}}"#.utf8).write(to: URL(fileURLWithPath: f.workspace + "/j.json"))
        let q = f.workspace + "/shared"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "umask 002; export FIDQ_TEST_KINDS=1; \"$0\" submit --queue \"$1\" \"$2\" && exec \"$0\" worker --queue \"$1\" --drain --poll 0.05 2>/dev/null",
                       Binary.fidq, q, f.workspace + "/j.json"]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        for path in [q, q + "/pending", q + "/running", q + "/done", q + "/failed", q + "/done/j", q + "/done/j/out",
                     q + "/done/j/result.json", q + "/done/j/log.txt", q + "/done/j/job.json"] {
            let mode = ((try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int) ?? 0
            #expect(mode & 0o020 != 0, "\(path): mode \(String(mode, radix: 8)) is not group-writable")
        }
    }

    /// A working folder that was deleted, or whose path is not UTF-8, is refused before any
    /// command runs: the first made the workspace / (a submit created /queue), the second named a
    /// sibling folder with U+FFFD in its name.
    /// At the process limit (`ulimit -u`) a worker that cannot start a job's heartbeat thread
    /// hands the job back untouched, saying why, waits longer each time, and a drain stops after
    /// a minute (status 1); a worker with room then runs the job as its first attempt.
    /// libdispatch's threads waited for ever instead: the worker hung, silently; then a drain
    /// claimed and handed back every second for ever. Runs as an unused uid, since the limit
    /// binds no root.
    @Test(.enabled(if: getuid() == 0, "SKIPPED: needs root, to run the worker as another user under a process limit (RLIMIT_NPROC binds no root)"))
    func aWorkerAtTheProcessLimitHandsTheJobBack() throws {
        let f = try QueueFixture()
        chmod(f.workspace, 0o777)
        try Data(#"{"kind": "test.train", "params": {"steps": 20, "step_ms": 5, "checkpoint_every": 10}}"#.utf8)
            .write(to: URL(fileURLWithPath: f.workspace + "/j.json"))
        // A copy the other uid can reach (the build folder may sit in a folder only root may enter).
        let bin = f.workspace + "/fidq"
        try FileManager.default.copyItem(atPath: Binary.fidq, toPath: bin)
        let log = f.workspace + "/limited.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        // Two threads: the worker's own and its signal watcher (OpenBLAS kept to none of its own).
        p.arguments = ["-c", "umask 000; export FIDQ_TEST_KINDS=1 OPENBLAS_NUM_THREADS=1; \"$0\" submit --queue \"$1\" \"$2\" >/dev/null && chmod -R a+rwX \"$1\" && "
                       + "exec setpriv --reuid=48271 --regid=48271 --clear-groups prlimit --nproc=2:2 -- \"$3\" worker --queue \"$1\" --drain --poll 0.05 --backoff 0.2",
                       Binary.fidq, f.queueDir, f.workspace + "/j.json", bin]
        let handle = try #require(FileHandle(forWritingAtPath: log))
        p.standardError = handle
        p.standardOutput = handle
        try p.run()
        let end = Date().addingTimeInterval(120)
        while p.isRunning && Date() < end { usleep(50_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        let text = f.read(log) ?? ""
        #expect(p.terminationReason == .exit && p.terminationStatus == 1, "status \(p.terminationStatus): \(text)")
        #expect(text.contains("cannot start the job's heartbeat thread") && text.contains("ulimit -u"), "\(text)")
        #expect(text.contains("stopping the drain"), "\(text)")
        // Waits that grow (0.2 s doubling, at most 60 s): a handful of claims in the minute, not one per poll.
        let claims = text.components(separatedBy: "handed back untouched").count - 1
        #expect(claims >= 2 && claims <= 12, "\(claims) claims handed back: \(text)")
        #expect(!FileManager.default.fileExists(atPath: f.queueDir + "/done/j") && !FileManager.default.fileExists(atPath: f.queueDir + "/failed/j"))
        // Nothing was used up: a worker with room runs it as its first attempt.
        let w = try WorkerProcess(f, args: fast, tag: "room")
        #expect(w.wait(60) == 0, "\(w.log)")
        #expect(f.read(f.queueDir + "/done/j/log.txt")?.contains("attempt 1") == true, "\(f.read(f.queueDir + "/done/j/log.txt") ?? "")")
        #expect(FileManager.default.fileExists(atPath: f.queueDir + "/done/j/result.json"))
    }

    @Test func aWorkingFolderGoneOrNotUTF8IsRefused() throws {
        let f = try QueueFixture()
        try Data(#"{"kind": "test.record"}"#.utf8).write(to: URL(fileURLWithPath: f.workspace + "/j.json"))
        for (setup, says) in [("d=\"$1/gone\"; mkdir \"$d\" && cd \"$d\" && rmdir \"$d\"", "no longer exists"),
                              ("d=\"$1/$(printf 'lat\\351n')\"; mkdir \"$d\" && cd \"$d\"", "not UTF-8")] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", setup + " && exec \"$0\" submit --queue queue \"$1/j.json\" 2> \"$1/err.txt\"", Binary.fidq, f.workspace]
            try p.run()
            p.waitUntilExit()
            let err = f.read(f.workspace + "/err.txt") ?? ""
            #expect(p.terminationStatus == 1 && err.contains(says), "status \(p.terminationStatus): \(err)")
        }
        #expect(!FileManager.default.fileExists(atPath: "/queue/pending/j.json"))
    }

    @Test func manyWorkersRunEveryJobExactlyOnce() throws {
        let (workers, jobs) = (8, 500)
        print("WorkerProcessTests: \(workers) workers × \(jobs) jobs (the issue's full size)")
        let f = try QueueFixture()
        let ids = (0..<jobs).map { String(format: "job%04d", $0) }
        for (i, id) in ids.enumerated() { try f.dropRecord(id, sleepMs: i % 4) }
        let t0 = Date()
        let procs = try (0..<workers).map { try WorkerProcess(f, args: fast + ["--lease", "10"], tag: "w\($0)") }
        for p in procs { #expect(p.wait(300) == 0, "worker exit: \(p.log.suffix(500))") }
        let elapsed = Date().timeIntervalSince(t0)
        print("WorkerProcessTests: \(jobs) jobs by \(workers) workers in \(String(format: "%.1f", elapsed)) s")
        let (done, failed) = f.expectAllAccounted(ids)
        #expect(done.count == jobs && failed.isEmpty)
        let ledger = f.ledger()
        #expect(ledger.count == jobs, "without crashes every job runs exactly once: \(ledger.count) executions")
        #expect(Set(ledger.map(\.pid)).count > 1, "the work was shared between processes")
    }

    @Test func killNineRoundsLoseNothing() throws {
        let jobs = stressFull ? 500 : 150
        print("WorkerProcessTests: kill -9 rounds over \(jobs) jobs\(stressFull ? " (FIDQ_STRESS=1)" : " (default; FIDQ_STRESS=1 runs 500 jobs)")")
        let f = try QueueFixture()
        let ids = (0..<jobs).map { String(format: "k%04d", $0) }
        for (i, id) in ids.enumerated() {
            // Long enough that the queue outlasts the ten kill rounds even on a quiet machine.
            try f.dropRecord(id, sleepMs: 20 + i % 40, steps: 2, extra: #""max_attempts": 4"#)
        }
        let args = fast + ["--lease", "1"]
        // Half the workers also kill themselves at protocol steps (claim, commit, take-over).
        let crash = ["FIDQ_TEST_CRASH": "claim:0.03,claimed:0.03,takeover:0.1,commit:0.03"]
        var live = try (0..<4).map { try WorkerProcess(f, args: args, tag: "k\($0)", env: crash) }
        live += try (4..<6).map { try WorkerProcess(f, args: args, tag: "k\($0)") }
        var killed = 0
        for round in 0..<10 {
            usleep(UInt32.random(in: 30_000...150_000))
            var running = live.filter { $0.process.isRunning }
            if running.isEmpty {
                // Crash points may have taken every worker down: start one to kill at a random moment.
                let fresh = try WorkerProcess(f, args: args, tag: "v\(round)")
                live.append(fresh)
                usleep(UInt32.random(in: 20_000...100_000))
                running = [fresh]
            }
            if let victim = running.randomElement(), victim.process.isRunning {
                victim.signal(SIGKILL)
                victim.process.waitUntilExit()
                if victim.process.terminationReason == .uncaughtSignal { killed += 1 }
            }
            // Every other replacement is armed with crash points too.
            live.append(try WorkerProcess(f, args: args, tag: "r\(round)", env: round % 2 == 0 ? crash : [:]))
        }
        // Survivors and replacements drain the queue, taking over every expired lease.
        let finisher = try WorkerProcess(f, args: args, tag: "final")
        for p in live + [finisher] { p.wait(300) }
        #expect(killed == 10)
        let selfKilled = (live + [finisher]).filter { $0.process.terminationReason == .uncaughtSignal }.count - killed
        print("WorkerProcessTests: kill -9: \(killed) external kills, \(selfKilled) crash-point kills, \(jobs) jobs")
        // Crash-point workers may all die before the end; run clean workers until drained.
        var extra = 0
        while !(f.list("pending").isEmpty && f.list("running").isEmpty) && extra < 5 {
            let p = try WorkerProcess(f, args: args, tag: "clean\(extra)")
            p.wait(300)
            extra += 1
        }
        let (done, failed) = f.expectAllAccounted(ids)
        #expect(done.count + failed.count == jobs)
        for name in failed {
            let e = f.json(f.queueDir + "/failed/\(name)/error.json")
            let attempts = e?["attempts"] as? [[String: Any]] ?? []
            #expect(attempts.count == 4, "\(name): every attempt's error is kept: \(attempts.count)")
        }
        #expect(f.ledger().count >= done.count)
        let takenOver = done.filter { f.read(f.queueDir + "/done/\($0)/attempts.json")?.contains("lease expired") == true }
        print("WorkerProcessTests: kill -9: \(takenOver.count) jobs finished after a take-over, \(failed.count) failed")
        #expect(!takenOver.isEmpty, "killed workers' jobs were taken over and finished")
    }

    @Test func pausedWorkerLosesItsCommit() throws {
        let f = try QueueFixture()
        try f.dropRecord("paused", sleepMs: 100, steps: 15)
        let a = try WorkerProcess(f, args: ["--poll", "0.05", "--lease", "1"], tag: "a")
        #expect(f.wait(10) { !f.list("running").isEmpty })
        usleep(300_000)
        a.signal(SIGSTOP)
        let b = try WorkerProcess(f, args: fast + ["--lease", "1"], tag: "b")
        #expect(b.wait(60) == 0)
        let result = try #require(f.json(f.queueDir + "/done/paused/result.json"))
        #expect((result["result"] as? [String: Any])?["pid"] as? Int == Int(b.pid), "the job was finished by the second worker")
        #expect(result["attempt"] as? Int == 2)
        a.signal(SIGCONT)
        #expect(f.wait(10) { a.log.contains("lease lost") }, "the continued worker learns it lost: \(a.log.suffix(400))")
        a.signal(SIGTERM)
        #expect(a.wait(20) == 0)
        #expect(f.list("done") == ["paused"] && f.list("running").isEmpty && f.list("failed").isEmpty,
                "\(f.list("done")) \(f.list("running")) \(f.list("failed")) \(a.log.suffix(1500))")
        #expect(f.ledger().filter { $0.pid == Int(a.pid) }.isEmpty, "the paused worker's execution was not recorded as finished")
        #expect(f.read(f.queueDir + "/done/paused/attempts.json")?.contains("lease expired") == true)
    }

    @Test func sigtermReleasesTheClaimAndAnotherWorkerResumes() throws {
        let f = try QueueFixture()
        try f.dropRecord("long", sleepMs: 50, steps: 60)
        let a = try WorkerProcess(f, args: ["--poll", "0.05", "--lease", "30"], tag: "a")
        #expect(f.wait(10) {
            f.list("running").contains { (try? String(contentsOfFile: f.queueDir + "/running/\($0)/out/checkpoint", encoding: .utf8)).flatMap { Int($0) }.map { $0 >= 5 } ?? false }
        })
        let t0 = Date()
        a.signal(SIGTERM)
        #expect(a.wait(10) == 0, "graceful exit: \(a.log.suffix(400))")
        #expect(Date().timeIntervalSince(t0) < 3, "stopped at the next safe point")
        let claim = try #require(f.list("running").first)
        #expect(f.read(f.queueDir + "/running/\(claim)/claim")?.contains("\"released\" : true") == true)
        // A released claim is taken at once, not after the 30 s lease.
        let b = try WorkerProcess(f, args: fast + ["--lease", "30"], tag: "b")
        #expect(b.wait(30) == 0)
        let result = try #require(f.json(f.queueDir + "/done/long/result.json"))
        let r = try #require(result["result"] as? [String: Any])
        #expect(result["attempt"] as? Int == 1, "a graceful stop does not use up an attempt")
        #expect((r["resumed_from"] as? Int ?? 0) >= 5, "resumed from the checkpoint: \(r)")
        #expect(r["pid"] as? Int == Int(b.pid))
        #expect(f.read(f.queueDir + "/done/long/log.txt")?.contains("released (worker stopping)") == true)
    }

    @Test func killedWorkersJobResumesAndGivesUpAfterMaxAttempts() throws {
        let f = try QueueFixture()
        try f.dropRecord("resume", sleepMs: 50, steps: 40)
        try f.dropRecord("doomed", sleepMs: 100, steps: 1000, extra: #""max_attempts": 2, "priority": -1"#)
        let a = try WorkerProcess(f, args: ["--poll", "0.05", "--lease", "1"], tag: "a")
        #expect(f.wait(10) {
            (try? String(contentsOfFile: f.queueDir + "/running/" + (f.list("running").first ?? "x") + "/out/checkpoint", encoding: .utf8))
                .flatMap { Int($0) }.map { $0 >= 3 } ?? false
        })
        a.signal(SIGKILL)
        a.wait(5)
        usleep(1_500_000)  // past the 1 s lease, so b's first scan offers the take-over
        // b resumes "resume" from its checkpoint, then starts "doomed"; kill b during doomed, then c.
        let b = try WorkerProcess(f, args: ["--poll", "0.05", "--lease", "1"], tag: "b")
        #expect(f.wait(30) { f.list("done").contains("resume") && f.list("running").contains { $0.hasPrefix("doomed@") } },
                "\(f.list("done")) \(f.list("running")) \(b.log.suffix(800))")
        usleep(300_000)
        b.signal(SIGKILL)
        b.wait(5)
        usleep(1_500_000)
        let c = try WorkerProcess(f, args: ["--poll", "0.05", "--lease", "1"], tag: "c")
        #expect(f.wait(30) { f.read(f.queueDir + "/running/" + (f.list("running").first ?? "x") + "/claim")?.contains("\"attempt\" : 2") == true })
        usleep(300_000)
        c.signal(SIGKILL)
        c.wait(5)
        usleep(1_500_000)
        let d = try WorkerProcess(f, args: fast + ["--lease", "1"], tag: "d")
        #expect(d.wait(30) == 0)
        let r = try #require(f.json(f.queueDir + "/done/resume/result.json"))
        #expect(r["attempt"] as? Int == 2)
        #expect(((r["result"] as? [String: Any])?["resumed_from"] as? Int ?? 0) >= 3, "resumed, not restarted: \(r)")
        let e = try #require(f.json(f.queueDir + "/failed/doomed/error.json"))
        let attempts = try #require(e["attempts"] as? [[String: Any]])
        #expect(attempts.count == 2 && attempts.allSatisfy { $0["outcome"] as? String == "lease expired" }, "\(attempts)")
        #expect((e["message"] as? String)?.contains("gave up after 2 attempts") == true)
    }

    @Test func jobThatIgnoresItsTimeoutIsAbandonedAndTheWorkerExits() throws {
        let f = try QueueFixture()
        try f.dropRecord("stubborn", extra: #""timeout_s": 0.3"#, params: #""fail": "ignore-cancel""#)
        let w = try WorkerProcess(f, args: fast + ["--lease", "5", "--grace", "0.5"], tag: "w")
        #expect(w.wait(20) == 3, "a worker exits 3 after abandoning a job: \(w.log.suffix(400))")
        let e = try #require(f.json(f.queueDir + "/failed/stubborn/error.json"))
        #expect(e["reason"] as? String == "timeout")
        #expect(f.list("running").isEmpty)
    }

    @Test func badDescriptorsFailAndTheWorkerGoesOn() throws {
        let f = try QueueFixture()
        var bad: [(name: String, expect: String)] = []
        func drop(_ name: String, _ content: String, _ expect: String) throws {
            try Data(content.utf8).write(to: URL(fileURLWithPath: f.pending + "/.\(name).tmp"))
            try FileManager.default.moveItem(atPath: f.pending + "/.\(name).tmp", toPath: f.pending + "/\(name).json")
            bad.append((name, expect))
        }
        // Invalid JSON and garbage.
        for (i, text) in ["{", "}", "[", "{\"kind\": }", "{'kind': 'x'}", "nul", "{\"kind\": \"a\",}", "\"just a string\"",
                          "42", "[1, 2]", "{\"kind\": \"test.record\"} trailing", "   ", "\n"].enumerated() {
            // A trailing comma too (Foundation's parser accepts it; fidq's strict reader first refuses it).
            try drop("json\(i)", text, i == 7 || i == 8 || i == 9 ? "expected" : "JSON")
        }
        var rng = SystemRandomNumberGenerator()
        for i in 0..<6 {
            let bytes = (0..<(64 << i)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            try Data(bytes).write(to: URL(fileURLWithPath: f.pending + "/garbage\(i).json"))
            bad.append(("garbage\(i)", "JSON"))
        }
        try Data().write(to: URL(fileURLWithPath: f.pending + "/empty.json"))
        bad.append(("empty", "empty file"))
        try Data(repeating: 0x20, count: JobDescriptor.maxBytes + 10).write(to: URL(fileURLWithPath: f.pending + "/huge.json"))
        bad.append(("huge", "limit"))
        try drop("deep", String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000), "")
        // Wrong types and values, unknown kind or keys.
        let cases: [(String, String, String)] = [
            ("kind-int", #"{"kind": 7}"#, "kind"), ("kind-empty", #"{"kind": ""}"#, "kind"),
            ("kind-unknown", #"{"kind": "train_readr"}"#, "unknown kind"),
            ("no-kind", #"{"params": {}}"#, "kind"),
            ("after-string", #"{"kind": "test.record", "after": "x"}"#, "after"),
            ("after-ints", #"{"kind": "test.record", "after": [1]}"#, "after"),
            ("prio-string", #"{"kind": "test.record", "priority": "high"}"#, "priority"),
            ("prio-float", #"{"kind": "test.record", "priority": 1.5}"#, "priority"),
            ("attempts-zero", #"{"kind": "test.record", "max_attempts": 0}"#, "max_attempts"),
            ("attempts-big", #"{"kind": "test.record", "max_attempts": 1000}"#, "max_attempts"),
            ("timeout-neg", #"{"kind": "test.record", "timeout_s": -5}"#, "timeout_s"),
            ("timeout-str", #"{"kind": "test.record", "timeout_s": "1h"}"#, "timeout_s"),
            ("params-list", #"{"kind": "test.record", "params": [1]}"#, "params"),
            ("params-str", #"{"kind": "test.record", "params": "x"}"#, "params"),
            ("unknown-top", #"{"kind": "test.record", "retries": 3}"#, "unknown key 'retries'"),
            ("unknown-param", #"{"kind": "test.record", "params": {"sleep": 1}}"#, "unknown key 'sleep'"),
            ("param-type", #"{"kind": "test.record", "params": {"steps": "ten"}}"#, "params.steps"),
            ("param-range", #"{"kind": "test.record", "params": {"steps": 0}}"#, "params.steps"),
            ("param-null", #"{"kind": "test.record", "params": {"fail": "sometimes"}}"#, "params.fail"),
            ("id-slash", #"{"kind": "test.record", "id": "a/b"}"#, "id"),
            ("id-dotdot", #"{"kind": "test.record", "id": ".."}"#, "id"),
            ("id-other", #"{"kind": "test.record", "id": "someone-else"}"#, "differs from the file name"),
            ("after-dotdot", #"{"kind": "test.record", "after": ["../etc"]}"#, "after"),
            ("ref-dotdot", #"{"kind": "test.record", "params": {"payload": "job:../x"}}"#, "bad id"),
            ("out-abs", #"{"kind": "test.record", "params": {"ledger": "/etc/fidq"}}"#, "outside the workspace"),
            ("out-up", #"{"kind": "test.record", "params": {"ledger": "../../escape"}}"#, "outside the workspace"),
            ("out-tmp", #"{"kind": "test.record", "params": {"ledger": "/tmp"}}"#, "outside the workspace"),
            ("out-link", #"{"kind": "test.record", "params": {"ledger": "escape-link/x"}}"#, "outside the workspace"),
            ("concat-out", #"{"kind": "concat", "params": {"inputs": ["/etc/hostname"], "dest": "/etc/passwd"}}"#, "outside the workspace"),
            ("missing-input", #"{"kind": "count", "params": {"inputs": ["no/such/file"]}}"#, "does not exist"),
            ("self-dep", #"{"kind": "test.record", "after": ["self-dep"]}"#, "itself"),
            ("cyc-a", #"{"kind": "test.record", "after": ["cyc-b"]}"#, "cycle"),
            ("cyc-b", #"{"kind": "test.record", "after": ["cyc-a"]}"#, "cycle"),
            ("bad-utf8", "{\"kind\": \"test.record\", \"params\": {\"payload\": \"\u{FFFD}\"}, \"x\": 1}", "unknown key"),
        ]
        try FileManager.default.createSymbolicLink(atPath: f.workspace + "/escape-link", withDestinationPath: "/tmp")
        for (name, json, expect) in cases { try drop(name, json, expect) }
        // Invalid UTF-8 bytes, a symlink, a folder and a bad file name.
        try Data([0x7B, 0x22, 0xFF, 0xFE, 0x22, 0x7D]).write(to: URL(fileURLWithPath: f.pending + "/utf8.json"))
        bad.append(("utf8", ""))
        try Data(#"{"kind": "test.record"}"#.utf8).write(to: URL(fileURLWithPath: f.workspace + "/target.json"))
        try FileManager.default.createSymbolicLink(atPath: f.pending + "/symlink.json", withDestinationPath: f.workspace + "/target.json")
        bad.append(("symlink", "symbolic link"))
        try FileManager.default.createDirectory(atPath: f.pending + "/folder.json", withIntermediateDirectories: false)
        bad.append(("folder", "not a regular file"))
        try Data(#"{"kind": "test.record"}"#.utf8).write(to: URL(fileURLWithPath: f.pending + "/bad name!.json"))
        #expect(bad.count >= 50, "\(bad.count) bad descriptors")

        let w = try WorkerProcess(f, args: ["--poll", "0.05", "--lease", "5"], tag: "w")
        #expect(f.wait(60) { f.list("pending").isEmpty && f.list("running").isEmpty }, "pending: \(f.list("pending"))")
        try f.dropRecord("good-after-bad")
        #expect(f.wait(30) { f.list("done") == ["good-after-bad"] }, "the worker goes on: \(w.log.suffix(600))")
        w.signal(SIGTERM)
        #expect(w.wait(20) == 0)
        let failed = f.list("failed")
        #expect(failed.count == bad.count + 1)
        for (name, expect) in bad {
            let e = f.json(f.queueDir + "/failed/\(name)/error.json")
            #expect(e != nil, "\(name): no error.json in failed/ (\(failed.filter { $0.hasPrefix(name.prefix(3)) }))")
            let text = [e?["message"], e?["field"], e?["hint"]].compactMap { $0 as? String }.joined(separator: " ")
            #expect(expect.isEmpty ? !text.isEmpty : text.contains(expect), "\(name): '\(text)' lacks '\(expect)'")
        }
        #expect(failed.contains { $0.hasPrefix("bad-bad_name_") }, "a bad file name gets a safe folder: \(failed)")
        #expect(!FileManager.default.fileExists(atPath: "/etc/fidq"))
    }

    /// The issue's case: a worker started with `--lease 3` next to a holder started with
    /// `--lease 60`, which renews every 20 s. The claim carries the holder's lease, so the short
    /// one waits instead of taking the healthy job over between two heartbeats.
    @Test func aShortLeaseWorkerLeavesALongLeaseHoldersJobAlone() throws {
        let f = try QueueFixture()
        try f.dropRecord("held", sleepMs: 100, steps: 50)  // ~5 s, well past the taker's 3 s lease
        let holder = try WorkerProcess(f, args: ["--poll", "0.05", "--lease", "60"], tag: "holder")
        // The claim folder is made before its `claim` file is renamed in: wait for the file.
        func heldClaim() -> [String: Any]? {
            f.list("running").first.flatMap { f.json(f.queueDir + "/running/" + $0 + "/claim") }
        }
        #expect(f.wait(20) { heldClaim() != nil }, "\(holder.log.suffix(400))")
        let claim = try #require(heldClaim())
        #expect(claim["lease_s"] as? Double == 60, "the claim records its holder's lease: \(claim)")
        let taker = try WorkerProcess(f, args: fast + ["--lease", "3"], tag: "taker")
        #expect(taker.wait(120) == 0, "the taker drains once the holder is done: \(taker.log.suffix(600))")
        holder.signal(SIGTERM)
        #expect(holder.wait(20) == 0)
        let result = try #require(f.json(f.queueDir + "/done/held/result.json"))
        #expect((result["result"] as? [String: Any])?["pid"] as? Int == Int(holder.pid), "finished by its holder")
        #expect(result["attempt"] as? Int == 1)
        #expect(f.read(f.queueDir + "/done/held/attempts.json")?.contains("lease expired") == false)
        #expect(f.ledger().count == 1, "executed once")
    }

    /// `fidq retry ../done/X` through the real command: refused, and the committed job stays.
    @Test func retryOfAPathIsRefusedByTheCommand() throws {
        let f = try QueueFixture()
        try f.dropRecord("X")
        let w = try WorkerProcess(f, args: fast + ["--lease", "5"], tag: "w")
        #expect(w.wait(60) == 0)
        #expect(f.list("done") == ["X"])
        let (status, text) = try Self.fidq(["retry", "--queue", f.queueDir, "../done/X"])
        #expect(status == 1 && text.contains("not a job id"), "\(text)")
        #expect(f.list("done") == ["X"] && f.list("pending").isEmpty)
    }

    /// `fidq status` on a mistyped --queue says there is no queue, rather than "empty queue".
    @Test func statusOfAMissingQueueSaysSo() throws {
        let f = try QueueFixture()
        let (status, text) = try Self.fidq(["status", "--queue", f.workspace + "/queu"])
        #expect(status == 1 && text.contains("no queue at " + f.workspace + "/queu"), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: f.workspace + "/queu"), "status creates nothing")
    }

    /// Queue commands refuse a --queue that is a folder inside a queue (a job would go to a
    /// nested queue no worker reads), a file, or (cancel, retry) a path without a queue.
    @Test func queueCommandsRefuseAWrongQueuePath() throws {
        let f = try QueueFixture()
        let job = f.workspace + "/w.json"
        try Data(#"{"kind": "test.record"}"#.utf8).write(to: URL(fileURLWithPath: job))
        let (nested, t1) = try Self.fidq(["submit", "--queue", f.queueDir + "/pending", job])
        #expect(nested == 1 && t1.contains("is the pending/ folder of the queue " + f.queueDir), "\(t1)")
        #expect(!FileManager.default.fileExists(atPath: f.queueDir + "/pending/pending"))
        let (file, t2) = try Self.fidq(["submit", "--queue", job, job])
        #expect(file == 1 && t2.contains("is a file, not a queue folder"), "\(t2)")
        let (missing, t3) = try Self.fidq(["cancel", "--queue", f.workspace + "/nope", "x"])
        #expect(missing == 1 && t3.contains("no queue at"), "\(t3)")
    }

    /// Numbers the worker and status cannot use are refused up front: NaN and inf leases and
    /// polls (inf made every claim fail to encode; NaN polls spun), negative backoff, grace and
    /// tail (a negative tail crashed status).
    @Test func badNumbersAreRefusedByTheCommands() throws {
        let f = try QueueFixture()
        for flag in ["--lease=inf", "--lease=nan", "--poll=nan", "--backoff=-1", "--grace=-5"] {
            let (status, text) = try Self.fidq(["worker", "--queue", f.queueDir, "--drain", flag])
            #expect(status == 64 && text.contains(String(flag.dropFirst(2).prefix { $0 != "=" })), "\(flag): \(status) \(text)")
        }
        let (tail, text) = try Self.fidq(["status", "--queue", f.queueDir, "x", "--tail=-5"])
        #expect(tail == 64 && text.contains("--tail must be 0 or more"), "\(tail) \(text)")
    }

    /// `fidq status ID` names the job's folder (where log.txt and out/ are; only --json did).
    @Test func statusOfOneJobNamesItsFolder() throws {
        let f = try QueueFixture()
        try f.dropRecord("x")
        let (status, text) = try Self.fidqStdout(["status", "--queue", f.queueDir, "x"])
        #expect(status == 0 && text.contains("\nfolder: \(f.pending)/x.json\n"), "\(text)")
    }

    /// `--print-params` prints only params a job would accept (a typo was printed, exit 0).
    @Test func printParamsRefusesWhatAJobWouldRefuse() throws {
        let (typo, text) = try Self.fidq(["example", "--print-params", "--sed", "1"])
        #expect(typo != 0 && text.contains("did you mean 'seed'"), "\(typo) \(text)")
        let (good, _) = try Self.fidq(["example", "--print-params", "--seed", "3"])
        #expect(good == 0)
        // The kind's own checks too (printed, exit 0, then refused at submit), and a type error
        // shows the value given.
        let (range, rangeText) = try Self.fidq(["example", "--print-params", "--decoys_min", "5", "--decoys_max", "2"])
        #expect(range != 0 && rangeText.contains("decoys_max") && rangeText.contains("found 2"), "\(range) \(rangeText)")
        let (lr, lrText) = try Self.fidq(["train-reader", "--print-params", "--train_data", "x.json", "--model_config", "c.json",
                                          "--tokenizer", "t.json", "--lr", "0"])
        #expect(lr != 0 && lrText.contains("--lr: expected lr > 0"), "\(lr) \(lrText)")
        let (type, typeText) = try Self.fidq(["example", "--print-params", "--seed", "ten"])
        #expect(type != 0 && typeText.contains(#"found "ten""#), "\(type) \(typeText)")
    }

    /// A kind's `--help` lists its params from the kind's own decoder: required ones first, the
    /// defaults the params take, FiD's options that change nothing; a usage error in a kind's
    /// flags shows that kind's usage, and a missing param is named as its flag.
    @Test func kindHelpListsParamsAndErrorsNameFlags() throws {
        let (status, help) = try Self.fidqStdout(["example", "--help"])
        #expect(status == 0, "\(help)")
        let lines = help.split(separator: "\n").map { String($0) }
        let params = lines.drop { !$0.hasPrefix("PARAMS") }.dropFirst().prefix { $0.hasPrefix("  --") }
        #expect(params.first == "  --decoys_max <integer>  default 6", "\(help)")
        #expect(params.contains("  --train <integer>       default 600") && params.contains("  --seed <integer>        default 0"), "\(help)")
        #expect(params.count == 9, "\(help)")
        #expect(params.contains("  --exercises <integer>   default 0"), "\(help)")
        let (tr, trainHelp) = try Self.fidqStdout(["train-reader", "--help"])
        #expect(tr == 0)
        #expect(trainHelp.contains("\n  --train_data <string>           required\n"), "\(trainHelp)")
        #expect(trainHelp.contains("  --use_checkpoint                default false\n"), "\(trainHelp)")
        // A rule of the kind's validate (one start of two) is listed too.
        #expect(trainHelp.contains("  --model_path <string>           required: give model_path (a T5 folder) or\n"), "\(trainHelp)")
        #expect(trainHelp.contains("  --maxload <value>               accepted; no effect here (FiD's option)\n"), "\(trainHelp)")
        let (ambiguous, text) = try Self.fidq(["train-reader", "--n", "3"])
        #expect(ambiguous == 64 && text.contains("--n is ambiguous") && text.contains("Usage: fidq train-reader ["), "\(text)")
        let (missing, why) = try Self.fidq(["train-reader", "--n_context", "3", "--print-params"])
        #expect(missing == 1 && why.contains("--train_data: missing required field"), "\(why)")
        // The kind's own name, as descriptors spell it, is the same subcommand (it was "Unknown
        // option '--n_context'" of fidq itself); errors name the subcommand once.
        let (alias, aliasText) = try Self.fidq(["train_reader", "--n_context", "3", "--print-params"])
        #expect(alias == 1 && aliasText.contains("fidq: --train_data: missing required field"), "\(aliasText)")
        let (run, runText) = try Self.fidq(["index_bm25", "--passages", "/nonexistent/psgs.tsv", "--out", NSTemporaryDirectory() + "fidq-alias-\(getpid()).run"])
        #expect(run == 1 && runText.hasPrefix("fidq: index-bm25: --passages: input '/nonexistent/psgs.tsv' does not exist"), "\(runText)")
    }

    /// `fidq cancel A B C` and `fidq retry C B A` through the real commands: a missing id is
    /// reported without stopping the others; the retry puts dependencies back first.
    @Test func cancelAndRetryTakeSeveralIDs() throws {
        let f = try QueueFixture()
        try f.dropRecord("a")
        try f.dropRecord("b", extra: #""after": ["a"]"#)
        try f.dropRecord("c", extra: #""after": ["b"]"#)
        let (status, text) = try Self.fidq(["cancel", "--queue", f.queueDir, "a", "ghost", "b", "c"])
        #expect(status == 1 && text.contains("ghost: no pending or running job 'ghost'"), "\(text)")
        #expect(f.list("failed") == ["a", "b", "c"] && f.list("pending").isEmpty)
        let (retried, log) = try Self.fidq(["retry", "--queue", f.queueDir, "c", "b", "a"])
        #expect(retried == 0, "\(log)")
        let w = try WorkerProcess(f, args: fast + ["--lease", "5"], tag: "w")
        #expect(w.wait(60) == 0)
        #expect(f.list("done") == ["a", "b", "c"], "\(w.log)")
    }

    /// A worker under a file-size limit (`ulimit -f`, as Slurm passes it on): a write past it
    /// fails the job with the system's error (EFBIG), retried, then failed; the worker is not
    /// killed by SIGXFSZ and leaves no staging file behind.
    @Test func aFileSizeLimitFailsTheJobNotTheWorker() throws {
        let f = try QueueFixture()
        let big = f.workspace + "/big.txt"
        try Data(repeating: 0x61, count: 1 << 20).write(to: URL(fileURLWithPath: big))
        try f.drop("large", #"{"kind": "concat", "max_attempts": 2, "params": {"inputs": ["big.txt"], "dest": "out/joined.txt"}}"#)
        // The test runner ignores SIGXFSZ, and children inherit that: give the worker the default
        // action, which kills (as in a login shell or a Slurm job), so only fidq's own handling
        // can keep it alive. 256 blocks (128 or 256 KiB, by the shell) is far below the output.
        let (reason, status, text) = try Self.shell(#"ulimit -f 256 && exec "$0" worker --queue "$1" --drain --poll 0.05 --backoff 0.05"#,
                                                    [f.queueDir], defaultSignal: "XFSZ")
        #expect(reason == .exit && status == 0, "status \(status): \(text)")
        let e = try #require(f.json(f.queueDir + "/failed/large/error.json"), "\(text)")
        #expect((e["message"] as? String)?.contains("File too large") == true, "\(e)")
        #expect((e["attempts"] as? [Any])?.count == 2, "\(e)")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: f.workspace + "/out")) ?? []
        #expect(left.isEmpty, "staging files left: \(left)")
    }

    /// A data file too large to map under the address-space limit (`ulimit -v`, h_vmem) says so:
    /// it read "cannot mmap … (hint: FiD data: a JSON list or JSON Lines …)", as if malformed.
    /// A sparse 64 GiB file takes no disk.
    @Test func aFileBeyondTheAddressSpaceLimitIsNamedAsSuch() throws {
        let f = try QueueFixture()
        let (reason, status, text) = try Self.shell(
            #"truncate -s 64G "$1/big.json" && ulimit -v 8000000 && exec "$0" evaluate-retrieval --data "$1/big.json" --out "$1/run""#,
            [f.workspace])
        #expect(reason == .exit && status == 1, "status \(status): \(text)")
        #expect(text.contains("big.json: cannot map its 68719476736 bytes: no address space left") && text.contains("ulimit -v")
                && !text.contains("JSON Lines"), "\(text)")
    }

    /// Output to a closed pipe (`| tee` killed by the same Ctrl-C) fails the write, not the
    /// process: with SIGPIPE's default action (the test runner ignores it, so it is restored
    /// for the child) the run died at its first log line and saved nothing.
    @Test func aClosedPipeDoesNotKillARun() throws {
        let f = try QueueFixture()
        let job = f.workspace + "/rec.json"
        try Data(#"{"kind": "test.record", "params": {"steps": 3}}"#.utf8).write(to: URL(fileURLWithPath: job))
        _ = try Self.shell(#"exec "$0" run "$1" --out "$2" 2>&1 | true"#, [job, f.workspace + "/rec.run"], defaultSignal: "PIPE", in: f.workspace)
        #expect(FileManager.default.fileExists(atPath: f.workspace + "/rec.run/result.json"), "the run was killed by SIGPIPE")
    }

    /// `fidq tokenize | head -1` ends when head does: with SIGPIPE ignored, the failed write must
    /// stop the loop (it tokenised stdin forever).
    @Test func tokenizeStopsWhenItsReaderDoes() throws {
        let f = try QueueFixture()
        let spiece = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("TokenizersTests/Fixtures/spiece.model").path
        let first = f.workspace + "/first.txt"
        // `timeout` bounds a regression (tokenize would never stop); the pipeline's time tells.
        let t0 = Date()
        _ = try Self.shell(#"yes "hello world" | timeout -s KILL 20 "$0" tokenize --tokenizer "$1" | head -1 > "$2" 2>/dev/null"#, [spiece, first])
        #expect(Date().timeIntervalSince(t0) < 15, "tokenize went on after head exited")
        let line = (try? String(contentsOfFile: first, encoding: .utf8)) ?? ""
        #expect(line.split(separator: "\n").count == 1 && line.split(whereSeparator: { $0 == " " || $0 == "\n" }).allSatisfy { Int($0) != nil }, "\(line)")
    }

    /// An empty `--queue` (an unset variable) and a path that is not UTF-8 are refused: each
    /// named another, empty queue, which a draining worker left at once with status 0.
    @Test func anEmptyOrUndecodableQueuePathIsRefused() throws {
        // In a scratch folder: were the refusal to regress, the working directory becomes a queue.
        let f = try QueueFixture()
        let (empty, text) = try Self.fidq(["worker", "--queue", "", "--drain"], in: f.workspace)
        #expect(empty != 0 && text.contains("--queue is empty"), "\(empty): \(text)")
        let (_, status, message) = try Self.shell(#"exec "$0" worker --drain --queue "$1/$(printf 'lat\351in')""#, [f.workspace], in: f.workspace)
        #expect(status != 0 && message.contains("not valid UTF-8"), "\(status): \(message)")
        let made = (try? FileManager.default.contentsOfDirectory(atPath: f.workspace)) ?? []
        #expect(!made.contains { $0.hasPrefix("lat") }, "a queue was created: \(made)")
    }

    /// Runs a short `fidq` command to its end: its status and stderr.
    static func fidq(_ args: [String], in folder: String? = nil) throws -> (Int32, String) {
        let r = try run(Binary.fidq, args, in: folder)
        return (r.status, r.stderr)
    }

    /// Runs `script` in /bin/sh with `$0` the fidq binary and `$1`… `args`, test kinds on, and
    /// `defaultSignal` (e.g. XFSZ, which the test runner ignores and children inherit) back to
    /// its default action.
    static func shell(_ script: String, _ args: [String], defaultSignal: String? = nil, in folder: String? = nil) throws
        -> (reason: Process.TerminationReason, status: Int32, stderr: String) {
        let sh = ["/bin/sh", "-c", script, Binary.fidq] + args
        return try defaultSignal.map { try run("/usr/bin/env", ["--default-signal=\($0)"] + sh, in: folder) }
            ?? run(sh[0], Array(sh.dropFirst()), in: folder)
    }

    /// Runs a short `fidq` command to its end: its status and stdout.
    static func fidqStdout(_ args: [String]) throws -> (Int32, String) {
        var text = ""
        let r = try run(Binary.fidq, args, stdout: { text = $0 })
        return (r.status, text)
    }

    /// Runs `executable` to its end: how it ended and its stderr (and its stdout to `stdout`,
    /// through a file so that no pipe fills).
    static func run(_ executable: String, _ args: [String], in folder: String? = nil, stdout: ((String) -> Void)? = nil) throws
        -> (reason: Process.TerminationReason, status: Int32, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["FIDQ_TEST_KINDS"] = "1"
        p.environment = env
        if let folder { p.currentDirectoryURL = URL(fileURLWithPath: folder) }
        let err = Pipe()
        p.standardError = err
        let outFile = FileManager.default.temporaryDirectory.appendingPathComponent("fidq-stdout-\(UUID().uuidString)")
        if stdout != nil {
            FileManager.default.createFile(atPath: outFile.path, contents: nil)
            p.standardOutput = try FileHandle(forWritingTo: outFile)
        } else {
            p.standardOutput = FileHandle.nullDevice
        }
        defer { try? FileManager.default.removeItem(at: outFile) }
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        stdout?(String(decoding: (try? Data(contentsOf: outFile)) ?? Data(), as: UTF8.self))
        return (p.terminationReason, p.terminationStatus, text)
    }
}
