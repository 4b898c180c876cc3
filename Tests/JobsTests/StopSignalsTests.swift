// StopSignalsTests: Ctrl-C (SIGINT) or SIGTERM to a foreground `fidq run` stops it at a safe point,
// keeping its checkpoints, and the same command resumes to the uninterrupted result.
import Foundation
import Testing
@testable import Jobs
import JobsTesting

@Suite(.serialized) struct StopSignalsTests {
    /// `fidq run JOB --out OUT` with the test kinds; stdout and stderr to `log`.
    func start(_ f: QueueFixture, _ job: String, out: String, log: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Binary.fidq)
        p.arguments = ["run", job, "--workspace", f.workspace, "--out", out]
        var env = ProcessInfo.processInfo.environment
        env["FIDQ_TEST_KINDS"] = "1"
        p.environment = env
        FileManager.default.createFile(atPath: log, contents: nil)
        let h = FileHandle(forWritingAtPath: log)!
        p.standardOutput = h
        p.standardError = h
        try p.run()
        return p
    }

    func finish(_ p: Process, _ seconds: Double) -> Int32? {
        let end = Date().addingTimeInterval(seconds)
        while p.isRunning && Date() < end { usleep(20_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit(); return nil }
        return p.terminationStatus
    }

    @Test(arguments: [SIGINT, SIGTERM])
    func aSignalStopsAtASafePointAndTheSameCommandResumes(sig: Int32) throws {
        try #require(Binary.available, "build first: swift build (looked for \(Binary.fidq))")
        let f = try QueueFixture()
        let job = f.workspace + "/train.json"
        try Data(#"{"kind": "test.train", "params": {"steps": 400, "step_ms": 10, "checkpoint_every": 10}}"#.utf8)
            .write(to: URL(fileURLWithPath: job))
        let out = f.workspace + "/train.run"
        let first = try start(f, job, out: out, log: f.workspace + "/first.log")
        let steps = out + "/out/steps.log"
        #expect(f.wait(30) { (f.read(steps)?.split(separator: "\n").count ?? 0) >= 25 }, "no progress: \(f.read(f.workspace + "/first.log") ?? "")")
        kill(first.processIdentifier, sig)
        let status = finish(first, 20)
        let firstLog = f.read(f.workspace + "/first.log") ?? ""
        // Stopped by itself (status 1, a message), not killed by the signal, with its checkpoints.
        #expect(status == 1 && first.terminationReason == .exit, "status \(String(describing: status)): \(firstLog)")
        #expect(firstLog.contains("stopping at the next safe point") && firstLog.contains("run the same command again"), "\(firstLog)")
        #expect(f.read(out + "/log.txt")?.contains("status: stopped") == true)
        let kept = f.read(steps)?.split(separator: "\n").count ?? 0
        #expect(kept >= 25 && kept < 400, "\(kept) steps before the stop")
        let second = try start(f, job, out: out, log: f.workspace + "/second.log")
        #expect(finish(second, 60) == 0, "\(f.read(f.workspace + "/second.log") ?? "")")
        let result = try #require(f.json(out + "/result.json")?["result"] as? [String: Any])
        #expect(result["state"] as? String == TrainTestKind.hex(TrainTestKind.expected(steps: 400)))
        let resumed = result["resumed_from"] as? Int ?? 0
        #expect(resumed >= 20 && resumed <= kept, "resumed from \(resumed), \(kept) steps ran before")
    }
}
