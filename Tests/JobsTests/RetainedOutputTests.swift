// RetainedOutputTests: `fidq retry` keeps out/ so a failed training resumes; `--fresh` starts over.
import Foundation
import Testing
@testable import Jobs
import JobsTesting

@Suite struct RetainedOutputTests {
    func control(_ f: QueueFixture) -> QueueControl {
        QueueControl(queue: f.queue, registry: trainRegistry(), policy: PathPolicy(workspace: f.workspace, queue: f.queueDir))
    }

    func steps(_ path: String, _ f: QueueFixture) -> [Int: Int] {
        var n: [Int: Int] = [:]
        for line in (f.read(path) ?? "").split(separator: "\n") { n[Int(line.split(separator: " ")[0])!, default: 0] += 1 }
        return n
    }

    @Test func retryKeepsOutAndTheJobResumesFromItsLatestCheckpoint() throws {
        let f = try QueueFixture()
        try f.drop("t", #"{"kind": "test.train", "params": {"steps": 30, "checkpoint_every": 5, "fail_at_step": 13}}"#)
        drainTrain(f)
        #expect(f.list("failed") == ["t"])
        #expect(f.read(f.queueDir + "/failed/t/out/checkpoint/latest") == "step-10\n")
        let message = try control(f).retry("t")
        #expect(message.contains("pending again with its out/"), "\(message)")
        #expect(f.list("pending") == ["t.json"] && f.list("failed").isEmpty)
        #expect(FileManager.default.fileExists(atPath: f.pending + "/.t.out/checkpoint/step-10"), "out/ is parked beside the job")
        drainTrain(f)
        #expect(f.list("done") == ["t"] && f.list("pending").isEmpty, "\(f.list("failed"))")
        let result = try #require(f.json(f.queueDir + "/done/t/result.json")?["result"] as? [String: Any])
        #expect(result["resumed_from"] as? Int == 10)
        #expect(result["state"] as? String == TrainTestKind.hex(TrainTestKind.expected(steps: 30)))
        let n = steps(f.queueDir + "/done/t/out/steps.log", f)
        #expect((1...30).allSatisfy { n[$0] == ($0 == 11 || $0 == 12 ? 2 : 1) }, "only the steps after the checkpoint ran again: \(n)")
        #expect(f.read(f.queueDir + "/done/t/log.txt")?.contains("out/ kept by fidq retry adopted") == true)
        #expect(!FileManager.default.fileExists(atPath: f.pending + "/.t.out"))
        // The failed attempt's log is kept, and the new log names it (a retry deleted it).
        let log = try #require(f.read(f.queueDir + "/done/t/log.txt"))
        let named = try #require(log.split(separator: "\n").first { $0.contains("earlier attempts (before fidq retry): ") })
        let earlier = String(named.components(separatedBy: "earlier attempts (before fidq retry): ")[1])
        #expect(message.contains("its earlier log: " + earlier), "\(message)")
        #expect(f.read(earlier)?.contains("test.train asked to fail at step 13") == true, "\(earlier)")
        #expect(f.queue.status().map(\.id) == ["t"], "the kept records are not a job")
        #expect(!FileManager.default.fileExists(atPath: RetainedOutput.historyMarker(f.queue, "t")))
    }

    /// A kept checkpoint that cannot be read fails the retried job with the command that starts
    /// over, on this queue: it said `fidq retry --fresh`, with no id and no --queue.
    @Test func aDamagedKeptCheckpointHintsTheFreshRetryOfThisJob() throws {
        let f = try QueueFixture()
        try f.drop("t", #"{"kind": "test.train", "params": {"steps": 30, "checkpoint_every": 5, "fail_at_step": 13}}"#)
        drainTrain(f)
        try Data(#"{"step": 3, "state": "zz"}"#.utf8).write(to: URL(fileURLWithPath: f.queueDir + "/failed/t/out/checkpoint/step-10/state.json"))
        _ = try control(f).retry("t")
        drainTrain(f)
        let e = try #require(f.json(f.queueDir + "/failed/t/error.json"))
        #expect(e["hint"] as? String == "the checkpoint folder is corrupt; " + f.cli("retry --fresh", "t") + " starts over", "\(e)")
        _ = try control(f).retry(["t"], fresh: true)
        drainTrain(f)
        // The hinted command works: the job starts over (and fails at step 13 as asked, not at the checkpoint).
        let again = try #require(f.json(f.queue.latestFailed("t") + "/error.json"))
        #expect(again["message"] as? String == "test.train asked to fail at step 13", "\(again)")
    }

    @Test func cancellingARetriedPendingJobKeepsItsOutForTheNextRetry() throws {
        let f = try QueueFixture()
        try f.drop("t", #"{"kind": "test.train", "params": {"steps": 30, "checkpoint_every": 5, "fail_at_step": 13}}"#)
        drainTrain(f)
        let c = control(f)
        _ = try c.retry("t")
        #expect(try c.cancel("t").contains("cancelled"))
        #expect(f.read(f.queueDir + "/failed/t/out/checkpoint/latest") == "step-10\n", "out/ went to failed/ with the job")
        #expect(!FileManager.default.fileExists(atPath: f.pending + "/.t.out"))
        #expect(try c.retry("t").contains("with its out/"))
        drainTrain(f)
        #expect((f.json(f.queueDir + "/done/t/result.json")?["result"] as? [String: Any])?["resumed_from"] as? Int == 10)
    }

    /// A symlink planted at the kept name (anyone may write pending/) is not adopted as out/: the
    /// job wrote its files, and swept its `.part` files, wherever it pointed.
    @Test func aSymlinkAtTheKeptNameIsNotAdopted() throws {
        let f = try QueueFixture()
        let victim = f.workspace + "/../victim-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: victim, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: victim) }
        try Data("keep".utf8).write(to: URL(fileURLWithPath: victim + "/.important.part"))
        try FileManager.default.createSymbolicLink(atPath: f.pending + "/.t.out", withDestinationPath: victim)
        try f.drop("t", #"{"kind": "test.train", "params": {"steps": 3, "checkpoint_every": 1}}"#)
        drainTrain(f)
        #expect(f.list("done") == ["t"], "\(f.list("failed"))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: victim) == [".important.part"], "the job wrote through the link")
        let out = try FileManager.default.attributesOfItem(atPath: f.queueDir + "/done/t/out")[.type] as? FileAttributeType
        #expect(out == .typeDirectory)
        #expect(f.read(f.queueDir + "/done/t/log.txt")?.contains("not a folder kept by fidq retry") == true)
    }

    @Test func retryFreshStartsOver() throws {
        let f = try QueueFixture()
        try f.drop("t", #"{"kind": "test.train", "params": {"steps": 30, "checkpoint_every": 5, "fail_at_step": 13}}"#)
        drainTrain(f)
        // --fresh discards the failed out/ (checkpoints at steps 5 and 10) instead of parking it.
        let message = try control(f).retryFresh("t")
        #expect(message.hasPrefix("'t' is pending again; its earlier log: ") && !message.contains("with its out/"), "\(message)")
        #expect(!FileManager.default.fileExists(atPath: f.pending + "/.t.out"))
        drainTrain(f)
        #expect(f.list("failed") == ["t"], "started from step 0, so it fails at step 13 again")
        #expect(throws: JobError.self) { try control(f).retryFresh("../done/x") }
        let e = try #require(f.json(f.queueDir + "/failed/t/error.json"))
        #expect((e["message"] as? String)?.contains("fail at step 13") == true)
        #expect(steps(f.queueDir + "/failed/t/out/steps.log", f) == Dictionary(uniqueKeysWithValues: (1...12).map { ($0, 1) }),
                "a fresh out/: no steps of the first run")
    }

    @Test func aKeptOutIsAdoptedByATakeOverWhenTheClaimerDiedFirst() throws {
        let f = try QueueFixture()
        // Parked out/ and a claim folder whose worker died before adopting it.
        try FileManager.default.createDirectory(atPath: f.pending + "/.t.out/checkpoint", withIntermediateDirectories: true)
        try Data("kept".utf8).write(to: URL(fileURLWithPath: f.pending + "/.t.out/marker"))
        let dir = f.queueDir + "/running/t@dead.1"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data(#"{"kind": "test.train", "params": {"steps": 3}}"#.utf8).write(to: URL(fileURLWithPath: dir + "/job.json"))
        let claim = ClaimRecord(id: "t", token: "dead.1", worker: "x:1", attempt: 1, claimedAt: isoTimestamp(), released: true)
        try f.queue.writeClaim(dir, claim)
        drainTrain(f)
        #expect(f.list("done") == ["t"])
        #expect(f.read(f.queueDir + "/done/t/out/marker") == "kept")
    }
}
