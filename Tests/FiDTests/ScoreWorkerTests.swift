// ScoreWorkerTests: a `score` job run by a real `fidq worker` process, killed with SIGKILL mid-job,
// finished by a second worker that resumes from the batches the first committed; and `fidq score`.
import Formats
import Foundation
import Jobs
import Tensor
import Testing
@testable import FiD

enum FidqBinary {
    static let path: String = {
        let argv0 = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let candidates = [argv0.deletingLastPathComponent().appendingPathComponent("fidq").path,
                          TestData.root.appendingPathComponent(".build/debug/fidq").path]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[1]
    }()

    /// Starts fidq with `args`; stdout and stderr go to `log`.
    static func start(_ args: [String], log: String, cwd: String? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        FileManager.default.createFile(atPath: log, contents: nil)
        let h = FileHandle(forWritingAtPath: log)!
        p.standardOutput = h
        p.standardError = h
        try p.run()
        return p
    }

    static func wait(_ p: Process, _ seconds: Double) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while p.isRunning && Date() < end { usleep(20_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit(); return false }
        return true
    }
}

@Suite(.serialized) struct ScoreWorkerTests {
    init() throws {
        try #require(FileManager.default.isExecutableFile(atPath: FidqBinary.path), "build first: swift build --build-tests (\(FidqBinary.path))")
    }

    /// A workspace with the fixture model, the T5 tokenizer and `copies` copies of the fixture's eval set.
    static func workspace(copies: Int) throws -> String {
        let ws = TestData.scratch("worker")
        let fm = FileManager.default
        try fm.createDirectory(atPath: ws + "/model", withIntermediateDirectories: true)
        for f in ["config.json", "model.safetensors"] {
            try fm.copyItem(atPath: ReaderFixture.folder + "/" + f, toPath: ws + "/model/" + f)
        }
        try fm.copyItem(atPath: try TestData.t5TokenizerPath(), toPath: ws + "/model/tokenizer.json")
        var items: [JSONNode] = []
        try JSONStream(path: ReaderFixture.folder + "/eval.json").forEachElement { items.append($0.value) }
        let all = (0..<copies).flatMap { _ in items }
        try TestData.write(PyJSON.indented(.array(all)), to: ws + "/eval.json")
        for d in ["pending", "running", "done", "failed"] { try fm.createDirectory(atPath: ws + "/queue/" + d, withIntermediateDirectories: true) }
        return ws
    }

    @Test func killedWorkerIsResumedByAnother() throws {
        let ws = try Self.workspace(copies: 60)  // 360 questions, one per batch
        let params = #"{"model_path": "model", "eval_data": "eval.json", "n_context": 3, "text_maxlength": 24, "per_gpu_batch_size": 1, "write_crossattention_scores": true, "threads": 1}"#
        try TestData.write(#"{"kind": "score", "max_attempts": 3, "params": \#(params)}"#, to: ws + "/queue/pending/nq-score.json")
        let first = try FidqBinary.start(["worker", "--queue", ws + "/queue", "--drain", "--lease", "1", "--poll", "0.05"], log: ws + "/w1.log")
        // Kill once some batches are committed, well before the end.
        let end = Date().addingTimeInterval(120)
        var parts = 0
        while Date() < end && first.isRunning {
            let running = (try? FileManager.default.contentsOfDirectory(atPath: ws + "/queue/running")) ?? []
            if let claim = running.first(where: { $0.hasPrefix("nq-score@") }) {
                parts = ((try? FileManager.default.contentsOfDirectory(atPath: ws + "/queue/running/\(claim)/out/parts")) ?? [])
                    .filter { !$0.hasPrefix(".") }.count
                if parts >= 5 { break }
            }
            usleep(5_000)
        }
        try #require(first.isRunning && parts >= 5, "the first worker should be mid-job: \(parts) parts")
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let second = try FidqBinary.start(["worker", "--queue", ws + "/queue", "--drain", "--lease", "1", "--poll", "0.05"], log: ws + "/w2.log")
        #expect(FidqBinary.wait(second, 300), "second worker did not finish")
        let done = ws + "/queue/done/nq-score"
        let log = (try? String(contentsOfFile: done + "/log.txt", encoding: .utf8)) ?? ""
        #expect(log.contains("batches done by an earlier attempt"), "log: \(log.suffix(800))")
        // Each attempt names the kernels it computed with (a worker on another CPU rounds otherwise).
        #expect(log.components(separatedBy: "kernels: " + KernelSwitch.summary + "\n").count == 3, "log: \(log.prefix(1200))")
        // The same files as an uninterrupted run of the same job.
        var p = try ReaderFixture.baseParams()
        p["model_path"] = .string(ws + "/model")
        p["eval_data"] = .string(ws + "/eval.json")
        p["per_gpu_batch_size"] = .number(1)
        p["write_crossattention_scores"] = .bool(true)
        let (ref, _) = try ReaderFixture.runScore(p)
        for name in ["predictions.jsonl", "dataset_wscores.json"] {
            let a = try? Data(contentsOf: URL(fileURLWithPath: done + "/out/" + name))
            let b = try Data(contentsOf: URL(fileURLWithPath: ref + "/out/" + name))
            #expect(a == b, "\(name) after a kill differs from an uninterrupted run")
        }
    }

    @Test func scoreCommandBuildsTheSameParams() throws {
        let ws = try Self.workspace(copies: 1)
        let log = ws + "/cli.log"
        let printed = try FidqBinary.start(["score", "--model_path", "model", "--eval_data", "eval.json", "--n_context", "3",
                                            "--text_maxlength", "24", "--per_gpu_batch_size", "2", "--write_crossattention_scores",
                                            "--tokenizer", "007", "--print-params"], log: log, cwd: ws)
        #expect(FidqBinary.wait(printed, 60) && printed.terminationStatus == 0)
        let json = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: URL(fileURLWithPath: log)))
        #expect(json == .object(["model_path": .string("model"), "eval_data": .string("eval.json"), "n_context": .number(3),
                                 "text_maxlength": .number(24), "per_gpu_batch_size": .number(2),
                                 "write_crossattention_scores": .bool(true), "tokenizer": .string("007")]))
        let run = try FidqBinary.start(["score", "--model_path", "model", "--eval_data", "eval.json", "--n_context", "3",
                                        "--text_maxlength", "24", "--per_gpu_batch_size", "2", "--write_results",
                                        "--out", "cli", "--threads", "1"], log: log, cwd: ws)
        #expect(FidqBinary.wait(run, 120) && run.terminationStatus == 0, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        let out = try String(contentsOfFile: ws + "/cli/out/final_output.txt", encoding: .utf8)
        let fx = try ReaderFixture.load()
        #expect(out == fx.batches.flatMap(\.rows).enumerated().map { i, r in "\(["q0", "1", "7", "q3", "q4", "q5"][i])\t\(r.answer)\n" }.joined())
        // Shards run side by side from one folder (FiD's --shard_id, a process each): each gets
        // its own default --out, which one run holds at a time.
        let shards = try (0..<2).map { k in
            try FidqBinary.start(["score", "--model_path", "model", "--eval_data", "eval.json", "--n_context", "3",
                                  "--text_maxlength", "24", "--per_gpu_batch_size", "2", "--shard_id", "\(k)", "--num_shards", "2",
                                  "--threads", "1"], log: ws + "/shard\(k).log", cwd: ws)
        }
        for (k, p) in shards.enumerated() {
            #expect(FidqBinary.wait(p, 120) && p.terminationStatus == 0, "\((try? String(contentsOfFile: ws + "/shard\(k).log", encoding: .utf8)) ?? "")")
            let result = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: URL(fileURLWithPath: ws + "/score-\(k).run/result.json")))
            guard case .object(let o) = result, case .object(let r)? = o["result"] else { Issue.record("shard \(k): \(result)"); continue }
            #expect(r["shard_id"] == .number(Double(k)) && r["num_shards"] == .number(2), "\(r)")
        }
        let bad = try FidqBinary.start(["score", "--model_path", "model", "--eval_data", "eval.json", "--n_context", "0"], log: log, cwd: ws)
        #expect(FidqBinary.wait(bad, 60) && bad.terminationStatus != 0)
        // Named as the flag that sets it.
        #expect((try String(contentsOfFile: log, encoding: .utf8)).contains("--n_context: expected an integer >= 1"))
    }
}
