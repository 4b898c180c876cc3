// OpsFilesTests: ops/fidq-worker.sbatch execs the worker (one SIGTERM, its exit code) with --grace from the notice.
import Foundation
import Testing

@Suite struct OpsFilesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// Runs the sbatch script with a fake `fidq` that records its pid and arguments, then exits 7.
    func runScript(env extra: [String: String] = [:]) throws -> (status: Int32, scriptPid: Int32, record: [String]) {
        let f = try QueueFixture()
        let fake = f.workspace + "/fake-fidq"
        let record = f.workspace + "/record"
        // Written through an O_CLOEXEC descriptor: a process another test spawns meanwhile must not
        // inherit it open for writing, or executing the fake fails with ETXTBSY (bash's 126).
        let fd = open(fake, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
        try #require(fd >= 0, "cannot create \(fake): errno \(errno)")
        let script = Array("#!/bin/bash\necho \"$$ $*\" > \(record)\nexit 7\n".utf8)
        let wrote = script.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        try #require(wrote == script.count, "short write to \(fake)")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [OpsFilesTests.root + "/ops/fidq-worker.sbatch", f.queueDir, "--lease", "120"]
        var env = ProcessInfo.processInfo.environment
        env["FIDQ"] = fake
        env["SLURM_CPUS_PER_TASK"] = "4"
        env.merge(extra) { $1 }
        p.environment = env
        try p.run()
        p.waitUntilExit()
        let line = (f.read(record) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        return (p.terminationStatus, p.processIdentifier, line.split(separator: " ").map(String.init))
    }

    @Test func theBatchScriptExecsTheWorkerAndPassesItsExitCode() throws {
        let (status, pid, record) = try runScript()
        #expect(status == 7, "the worker's exit status is the task's")
        #expect(record.first == String(pid), "exec: the worker is the batch shell's process, so Slurm's SIGTERM reaches it once")
        let args = Array(record.dropFirst()).joined(separator: " ")
        #expect(args.contains("worker --queue") && args.contains("--threads 4") && args.hasSuffix("--lease 120"), "\(args)")
        #expect(args.contains("--grace 270"), "grace from the 300 s notice of --signal=B:TERM@300: \(args)")
    }

    /// Runs an ops script to its end: its status and stderr.
    static func ops(_ script: String, _ args: [String]) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: root + "/ops/" + script)
        p.arguments = args
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    /// Mistakes refused at once, before a release build, a set-up or a venv: a benchmark name
    /// that is none (it was found after minutes of building and installing), an empty
    /// `--workspace=` (the demo ran in a temporary folder), a SECONDS that is no number.
    @Test func opsScriptsRefuseMistakesFirst() throws {
        let (bench, benchText) = try Self.ops("bench", ["gemm", "nosuch"])
        #expect(bench == 2 && benchText.contains("unknown benchmark nosuch") && !benchText.contains("building"), "\(benchText)")
        let (demo, demoText) = try Self.ops("demo", ["--workspace="])
        #expect(demo == 2 && demoText.contains("--workspace= needs a folder"), "\(demoText)")
        let ws = NSTemporaryDirectory() + "ops-report-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: ws + "/queue/done", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: ws) }
        let (report, reportText) = try Self.ops("demo-report", [ws, "abc"])
        #expect(report == 1 && reportText.contains("SECONDS must be a number"), "\(reportText)")
    }

    @Test func graceFollowsAnOverriddenNotice() throws {
        let short = try runScript(env: ["FIDQ_SIGNAL_NOTICE": "60"])
        #expect(short.record.joined(separator: " ").contains("--grace 30"), "status \(short.status), record \(short.record)")
        let long = try runScript(env: ["FIDQ_SIGNAL_NOTICE": "900"])
        #expect(long.record.joined(separator: " ").contains("--grace 870"), "status \(long.status), record \(long.record)")
    }
}
