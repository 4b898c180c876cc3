// ThreadsParamTests: every kind accepts `threads`; it reaches the handler capped by the worker's --threads.
import Foundation
import Testing
@testable import Jobs
import JobsTesting

@Suite struct ThreadsParamTests {
    func prepare(_ f: QueueFixture, _ json: String) throws -> PreparedJob {
        let d = try JobDescriptor.parse(Data(json.utf8), fileName: "x.json")
        return try trainRegistry().prepare(d, policy: PathPolicy(workspace: f.workspace, queue: f.queueDir), fs: PosixFileSystem())
    }

    @Test func everyKindAcceptsThreadsWithoutDeclaringIt() throws {
        let f = try QueueFixture()
        try Data("a b\n".utf8).write(to: URL(fileURLWithPath: f.workspace + "/in.txt"))
        // test.record, count and test.train decode their params strictly and none declares threads.
        for json in [#"{"kind": "test.record", "params": {"threads": 4}}"#,
                     #"{"kind": "count", "params": {"inputs": ["in.txt"], "threads": 4}}"#,
                     #"{"kind": "test.train", "params": {"steps": 3, "threads": 4}}"#] {
            #expect(try prepare(f, json).threads == 4, "\(json)")
        }
        #expect(try prepare(f, #"{"kind": "test.record"}"#).threads == nil)
        #expect(try prepare(f, #"{"kind": "test.record", "params": {"threads": null}}"#).threads == nil)
        // Strictness is untouched for every other key.
        #expect(throws: JobError.self) { try prepare(f, #"{"kind": "test.record", "params": {"thread": 4}}"#) }
    }

    @Test(arguments: [#""four""#, "0", "-2", "1.5", "true", "[2]", "100000"])
    func badThreadsNameTheField(value: String) throws {
        let f = try QueueFixture()
        do {
            _ = try prepare(f, #"{"kind": "test.record", "params": {"threads": \#(value)}}"#)
            Issue.record("threads \(value) was accepted")
        } catch let e as JobError {
            #expect(e.field == "params.threads" && e.message.contains("expected an integer") && e.message.contains("found"), "\(e)")
        }
    }

    @Test func theWorkersThreadsAreTheDefaultAndTheCap() throws {
        let f = try QueueFixture()
        for (id, threads) in [("none", ""), ("fewer", #", "threads": 2"#), ("more", #", "threads": 64"#)] {
            try f.drop(id, #"{"kind": "test.train", "params": {"steps": 2\#(threads)}}"#)
        }
        drainTrain(f) { $0.threads = 3 }
        func threads(_ id: String) -> Int? {
            (f.json(f.queueDir + "/done/\(id)/result.json")?["result"] as? [String: Any])?["threads"] as? Int
        }
        #expect(threads("none") == 3 && threads("fewer") == 2 && threads("more") == 3)
    }

    @Test func theRegistryHookSeesTheCappedValue() throws {
        let f = try QueueFixture()
        let registry = trainRegistry()
        let seen = ThreadsSeen()
        registry.willRun = { seen.set($0.threads) }
        let d = try JobDescriptor.parse(Data(#"{"kind": "test.train", "params": {"steps": 1, "threads": 5}}"#.utf8), fileName: "x.json")
        let job = try registry.prepare(d, policy: PathPolicy(workspace: f.workspace, queue: f.queueDir), fs: PosixFileSystem())
        _ = try job.run(try makeContext(f, token: "a.1", threads: 4))
        #expect(seen.value == 4)
    }
}

final class ThreadsSeen: @unchecked Sendable {
    private let lock = NSLock()
    private var v: Int?
    var value: Int? { lock.withLock { v } }
    func set(_ x: Int) { lock.withLock { v = x } }

    /// `fidq run` without --threads or a threads param runs with FIDQ_THREADS (it ran on every
    /// core), --threads still wins, and without either it takes the cores the process may use:
    /// under `taskset -c 0`, one.
    @Test func aForegroundRunTakesFIDQ_THREADSThenItsAffinity() throws {
        try #require(Binary.available, "build first: swift build (looked for \(Binary.fidq))")
        let f = try QueueFixture()
        let job = f.workspace + "/t.json"
        try Data(#"{"kind": "test.train", "params": {"steps": 2}}"#.utf8).write(to: URL(fileURLWithPath: job))
        func threads(_ run: String) -> Int? {
            (f.json(f.workspace + "/\(run)/result.json")?["result"] as? [String: Any])?["threads"] as? Int
        }
        for (run, flags, env, expected) in [("env.run", [String](), "1", 1), ("flag.run", ["--threads", "3"], "1", 3)] {
            let p = try WorkerProcess(f, command: ["run", job, "--workspace", f.workspace, "--out", f.workspace + "/" + run] + flags,
                                      tag: run, env: ["FIDQ_THREADS": env])
            #expect(p.wait(60) == 0, "\(p.log)")
            #expect(threads(run) == expected, "\(run): \(p.log)")
        }
        // 0 is no thread count (it ran on one thread without a word).
        for bad in [["--threads", "0"], ["--threads=-2"]] {
            let p = try WorkerProcess(f, command: ["run", job, "--workspace", f.workspace, "--out", f.workspace + "/bad.run"] + bad, tag: "bad")
            #expect(p.wait(60) != 0 && p.log.contains("--threads: expected an integer in 1…4096"), "\(bad): \(p.log)")
        }
        let taskset = "/usr/bin/taskset"
        try #require(FileManager.default.isExecutableFile(atPath: taskset), "taskset (util-linux) is needed to pin the process")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: taskset)
        p.arguments = ["-c", "0", Binary.fidq, "run", job, "--workspace", f.workspace, "--out", f.workspace + "/pinned.run"]
        var env = ProcessInfo.processInfo.environment
        env["FIDQ_TEST_KINDS"] = "1"
        env["FIDQ_THREADS"] = nil
        p.environment = env
        p.standardError = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0 && threads("pinned.run") == 1, "pinned to one core: \(String(describing: threads("pinned.run"))) threads")
    }
}
