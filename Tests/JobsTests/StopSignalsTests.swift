// StopSignalsTests: Ctrl-C (SIGINT) or SIGTERM to a foreground `fidq run` stops it at a safe point,
// keeping its checkpoints, and the same command resumes to the uninterrupted result.
import Foundation
import Testing
@testable import Jobs
import JobsTesting

@Suite(.serialized) struct StopSignalsTests {
    /// A `test.train` job file in the fixture's workspace: `steps` steps of `stepMs` each.
    static func trainJob(_ f: QueueFixture, steps: Int, stepMs: Int) throws -> String {
        try #require(Binary.available, "build first: swift build (looked for \(Binary.fidq))")
        let job = f.workspace + "/train.json"
        try Data(#"{"kind": "test.train", "params": {"steps": \#(steps), "step_ms": \#(stepMs), "checkpoint_every": 10}}"#.utf8)
            .write(to: URL(fileURLWithPath: job))
        return job
    }

    @Test(arguments: [SIGINT, SIGTERM])
    func aSignalStopsAtASafePointAndTheSameCommandResumes(sig: Int32) throws {
        let f = try QueueFixture()
        let job = try Self.trainJob(f, steps: 400, stepMs: 10)
        let out = f.workspace + "/train.run"
        let run = ["run", job, "--workspace", f.workspace, "--out", out]
        let first = try WorkerProcess(f, command: run, tag: "first")
        let steps = out + "/out/steps.log"
        #expect(f.wait(30) { (f.read(steps)?.split(separator: "\n").count ?? 0) >= 25 }, "no progress: \(first.log)")
        first.signal(sig)
        let status = first.wait(20)
        let firstLog = first.log
        // Stopped by itself (status 1, a message), not killed by the signal, with its checkpoints.
        #expect(status == 1 && first.process.terminationReason == .exit, "status \(String(describing: status)): \(firstLog)")
        #expect(firstLog.contains("stopping at the next safe point") && firstLog.contains("run the same command again"), "\(firstLog)")
        #expect(f.read(out + "/log.txt")?.contains("status: stopped") == true)
        let kept = f.read(steps)?.split(separator: "\n").count ?? 0
        #expect(kept >= 25 && kept < 400, "\(kept) steps before the stop")
        let second = try WorkerProcess(f, command: run, tag: "second")
        #expect(second.wait(60) == 0, "\(second.log)")
        let result = try #require(f.json(out + "/result.json")?["result"] as? [String: Any])
        #expect(result["state"] as? String == TrainTestKind.hex(TrainTestKind.expected(steps: 400)))
        let resumed = result["resumed_from"] as? Int ?? 0
        #expect(resumed >= 20 && resumed <= kept, "resumed from \(resumed), \(kept) steps ran before")
    }

    /// A signal in a run's first milliseconds is never lost: the run dies of it (before the
    /// handler exists) or stops at its first safe point. A signal source ignored it until
    /// libdispatch had registered the source, and the run went on (4 tries in 60, 44–60 ms in).
    /// Spawned from a test's thread, the run starts with SIGTERM blocked, so an early signal waits
    /// pending: setting it ignored discarded it.
    @Test func aSignalInTheFirstMillisecondsIsNeverLost() throws {
        let f = try QueueFixture()
        let job = try Self.trainJob(f, steps: 1000, stepMs: 10)
        var lost: [Int] = []
        for (i, ms) in stride(from: 10, through: 90, by: 2).enumerated() {
            let p = try WorkerProcess(f, command: ["run", job, "--workspace", f.workspace, "--out", f.workspace + "/r\(i)"], tag: "early\(i)")
            usleep(UInt32(ms * 1000))
            p.signal(SIGTERM)
            if p.wait(5) == nil { lost.append(ms) }  // still running 5 s after the signal, of a 10 s run
            if lost.count == 3 { break }
        }
        #expect(lost.isEmpty, "SIGTERM lost when sent \(lost) ms after the start")
    }

    /// Started with stdout and stderr closed, a run finishes: the signal pipe took descriptors 1
    /// and 2, each message read as a signal, and the second exited the run with 130.
    @Test func aRunWithItsOutputsClosedFinishes() throws {
        let f = try QueueFixture()
        let job = try Self.trainJob(f, steps: 30, stepMs: 1)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "FIDQ_TEST_KINDS=1 exec \"$0\" run \"$1\" --workspace \"$2\" --out \"$2/closed\" >&- 2>&-", Binary.fidq, job, f.workspace]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "status \(p.terminationStatus)")
        #expect(f.read(f.workspace + "/closed/log.txt")?.contains("status: done") == true, "\(f.read(f.workspace + "/closed/log.txt") ?? "no log")")
    }
}
