// QueueFixture: temp queues on local disk, job drops, worker processes and the ledger, for JobsTests.
import Foundation
import Testing
@testable import Jobs
import JobsTesting

/// A fresh workspace with `queue/` under /tmp, removed when the fixture is released.
final class QueueFixture: @unchecked Sendable {
    let workspace: String
    var queueDir: String { workspace + "/queue" }
    var pending: String { queueDir + "/pending" }
    let queue: Queue

    init(_ name: String = #function) throws {
        let clean = String(name.filter { $0.isLetter || $0.isNumber }.prefix(30))
        workspace = "/tmp/fidq-jobs-\(clean)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: workspace, withIntermediateDirectories: true)
        queue = Queue(root: workspace + "/queue")
        try queue.createLayout()
    }

    deinit { try? FileManager.default.removeItem(atPath: workspace) }

    /// A hint's command on this queue: `fidq retry --queue <queueDir> a b` (the tests' working
    /// directory is not the workspace, so hints name the queue).
    func cli(_ subcommand: String, _ args: String) -> String { "fidq \(subcommand) --queue \(queueDir) \(args)" }

    /// Drops a descriptor the way users should: temp name, then rename.
    func drop(_ id: String, _ json: String) throws {
        let tmp = pending + "/.\(id).tmp"
        try Data(json.utf8).write(to: URL(fileURLWithPath: tmp))
        try FileManager.default.moveItem(atPath: tmp, toPath: pending + "/\(id).json")
    }

    /// Plants `running/<id>@<token>/` as a claimer would leave it: `claim` (with the holder's
    /// lease when given), its mtime `age` seconds old, and the job moved in when `withJob`.
    @discardableResult
    func plantClaim(_ id: String, token: String, leaseS: Double?, age: Double, withJob: Bool = true,
                    job: String = #"{"kind": "test.record"}"#) throws -> String {
        let dir = queue.claimDir(id, token)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try queue.writeClaim(dir, ClaimRecord(id: id, token: token, worker: "elsewhere:1", attempt: 1,
                                              claimedAt: isoTimestamp(), released: false, leaseS: leaseS))
        if withJob { try Data(job.utf8).write(to: URL(fileURLWithPath: dir + "/job.json")) }
        try setAge(dir + "/claim", age)
        return dir
    }

    /// Sets a file's mtime to `age` seconds ago.
    func setAge(_ path: String, _ age: Double) throws {
        let t = Date().addingTimeInterval(-age)
        try FileManager.default.setAttributes([.modificationDate: t], ofItemAtPath: path)
    }

    func dropRecord(_ id: String, sleepMs: Int = 0, steps: Int = 1, extra: String = "", params: String = "") throws {
        let p = "\"sleep_ms\": \(sleepMs), \"steps\": \(steps)" + (params.isEmpty ? "" : ", " + params)
        try drop(id, "{\"kind\": \"test.record\"\(extra.isEmpty ? "" : ", " + extra), \"params\": {\(p)}}")
    }

    func list(_ area: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: queueDir + "/" + area)) ?? [])
            .filter { !$0.hasPrefix(".") }.sorted()
    }

    func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    func json(_ path: String) -> [String: Any]? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    /// Every ledger line: (id, attempt, pid, token).
    func ledger() -> [(id: String, attempt: Int, pid: Int, token: String)] {
        let dir = workspace + "/ledger"
        var out: [(String, Int, Int, String)] = []
        for f in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            for line in (read(dir + "/" + f) ?? "").split(separator: "\n") {
                let p = line.split(separator: " ").map(String.init)
                if p.count >= 4 { out.append((p[0], Int(p[1]) ?? -1, Int(p[2]) ?? -1, p[3])) }
            }
        }
        return out
    }

    /// Waits until `cond` holds, polling every 20 ms; false on timeout.
    func wait(_ seconds: Double, _ cond: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if cond() { return true }
            usleep(20_000)
        }
        return cond()
    }

    /// Checks the invariants every test ends with: each id once in done/ or failed/, nothing left
    /// in pending/ or running/, and each done job's committed token executed exactly once.
    /// `allowEmptyClaims`: with injected faults a claim folder that never received its job may
    /// stay behind until its lease is stale (then any worker sweeps it); it holds no job.
    func expectAllAccounted(_ ids: [String], allowEmptyClaims: Bool = false,
                            sourceLocation: SourceLocation = #_sourceLocation) -> (done: [String], failed: [String]) {
        let done = list("done"), failed = list("failed")
        #expect(list("pending").isEmpty, "pending not empty: \(list("pending").prefix(5))", sourceLocation: sourceLocation)
        let running = list("running").filter {
            !allowEmptyClaims || FileManager.default.fileExists(atPath: queueDir + "/running/\($0)/job.json")
        }
        let leftovers = running.prefix(3).map { name in
            let dir = queueDir + "/running/" + name
            return "\(name): claim \(read(dir + "/claim") ?? "none"), files \((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []), log \(read(dir + "/log.txt") ?? "")"
        }
        #expect(running.isEmpty, "running not empty: \(leftovers)", sourceLocation: sourceLocation)
        let failedIDs = failed.map { String($0.split(separator: "~").first!) }
        #expect(Set(done).isDisjoint(with: failedIDs), "ids both done and failed", sourceLocation: sourceLocation)
        #expect(Set(done).union(failedIDs) == Set(ids), "lost: \(Set(ids).subtracting(done).subtracting(failedIDs).sorted().prefix(10))",
                sourceLocation: sourceLocation)
        #expect(failedIDs.count == Set(failedIDs).count, "a job failed twice", sourceLocation: sourceLocation)
        let ledger = ledger()
        var byToken: [String: Int] = [:]
        for l in ledger { byToken[l.token, default: 0] += 1 }
        for id in done {
            let result = json(queueDir + "/done/\(id)/result.json")
            let token = (result?["result"] as? [String: Any])?["token"] as? String
            #expect(token != nil, "\(id): no result.json token", sourceLocation: sourceLocation)
            if let token { #expect(byToken[token] == 1, "\(id): committed token \(token) executed \(byToken[token] ?? 0) times", sourceLocation: sourceLocation) }
        }
        return (done, failed)
    }
}

/// The fidq executable built next to the test bundle.
enum Binary {
    static let fidq: String = {
        let argv0 = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var candidates = [argv0.deletingLastPathComponent().appendingPathComponent("fidq").path]
        // swift test runs .build/<triple>/debug/fidqPackageTests.xctest; look in .build/debug too.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(root.appendingPathComponent(".build/debug/fidq").path)
        candidates.append(root.appendingPathComponent(".build/release/fidq").path)
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[1]
    }()

    static var available: Bool { FileManager.default.isExecutableFile(atPath: fidq) }
}

/// A `fidq worker` (or other command) process with test kinds enabled; stderr goes to a file.
final class WorkerProcess: @unchecked Sendable {
    let process = Process()
    let logPath: String

    convenience init(_ fixture: QueueFixture, args: [String], tag: String, env extra: [String: String] = [:]) throws {
        try self.init(fixture, command: ["worker", "--queue", fixture.queueDir] + args, tag: tag, env: extra)
    }

    /// Any fidq command (`["run", JOB, …]`), its output in `<workspace>/worker-<tag>.log`.
    init(_ fixture: QueueFixture, command: [String], tag: String, env extra: [String: String] = [:]) throws {
        logPath = fixture.workspace + "/worker-\(tag).log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: Binary.fidq)
        process.arguments = command
        var env = ProcessInfo.processInfo.environment
        env["FIDQ_TEST_KINDS"] = "1"
        // Never setenv in the test process: in-process workers of other suites would read it.
        env.merge(extra) { $1 }
        process.environment = env
        let handle = FileHandle(forWritingAtPath: logPath)!
        process.standardError = handle
        process.standardOutput = handle
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    func signal(_ sig: Int32) { kill(pid, sig) }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits for exit; nil on timeout (the process is then killed).
    @discardableResult
    func wait(_ seconds: Double) -> Int32? {
        let end = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < end { usleep(20_000) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }
}

/// Whether the full-size stress tests were asked for (`FIDQ_STRESS=1`).
let stressFull = ProcessInfo.processInfo.environment["FIDQ_STRESS"] == "1"

/// A registry with the test kind, for in-process workers.
func testRegistry() -> KindRegistry {
    let r = KindRegistry()
    TestKinds.register(into: r)
    TextKinds.register(into: r)
    return r
}
