// TrainReaderWorkerTests: a `train_reader` job run by real `fidq worker` processes, SIGKILLed twice
// mid-training, resumes from `latest` each time and ends with the weights of an uninterrupted run.
import Foundation
import Testing
@testable import FiD
import Jobs
import Tensor

/// `fidq worker` on a queue, output to a log file (the binary ScoreWorkerTests' `FidqBinary` finds).
final class Worker {
    let process = Process()
    let logPath: String

    init(queue: String, workspace: String, tag: String, args: [String]) throws {
        logPath = workspace + "/worker-\(tag).log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: FidqBinary.path)
        process.arguments = ["worker", "--queue", queue, "--workspace", workspace] + args
        let handle = FileHandle(forWritingAtPath: logPath)!
        process.standardError = handle
        process.standardOutput = handle
        try process.run()
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    @discardableResult
    func wait(_ seconds: Double) -> Int32? {
        let end = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < end { usleep(20_000) }
        if process.isRunning {
            kill9()
            return nil
        }
        return process.terminationStatus
    }
}

@Suite(.serialized) struct TrainReaderWorkerTests {
    init() throws {
        try #require(FileManager.default.isExecutableFile(atPath: FidqBinary.path), "build first: swift build --build-tests")
    }

    @Test func killedTwiceResumesAndEndsBitEqualToAnUninterruptedRun() throws {
        let ws = try ReaderWorkspace(train: 80, dev: 8, nContext: 2, dropout: 0.1)
        // Accumulation 3 with save_freq 25: most checkpoints hold pending gradients.
        let params: [String: JSONValue] = [
            "n_context": .number(2), "text_maxlength": .number(32), "answer_maxlength": .number(6), "per_gpu_batch_size": .number(4),
            "accumulation_steps": .number(3), "lr": .number(3e-3), "optim": .string("adamw"), "scheduler": .string("linear"),
            "warmup_steps": .number(10), "total_steps": .number(400), "eval_freq": .number(100), "save_freq": .number(25),
            "eval_print_freq": .number(50), "seed": .number(4),
        ]
        // The workers compute on the thread count this process runs (bits are equal on the same count).
        let reference = try ws.run("reference", params)
        guard case .object(let r) = reference, case .string(let refLatest)? = r["latest"] else {
            Issue.record("reference result: \(reference)")
            return
        }
        // The same job through a queue.
        let queue = ws.root + "/queue"
        try Queue(root: queue).createLayout()
        var descriptor = try JSONSerialization.jsonObject(with: ws.descriptor("killed", params)) as! [String: Any]
        descriptor["max_attempts"] = 5
        try JSONSerialization.data(withJSONObject: descriptor).write(to: URL(fileURLWithPath: queue + "/pending/killed.json"))
        let args = ["--poll", "0.05", "--lease", "1", "--threads", "\(Threads.count)"]
        func checkpointStep() -> Int {
            let running = ((try? FileManager.default.contentsOfDirectory(atPath: queue + "/running")) ?? []).filter { $0.hasPrefix("killed@") }
            guard let dir = running.first,
                  let text = try? String(contentsOfFile: queue + "/running/\(dir)/out/checkpoint/latest", encoding: .utf8) else { return 0 }
            return Int(text.trimmingCharacters(in: .whitespacesAndNewlines).dropFirst(5)) ?? 0
        }
        func waitFor(_ step: Int, _ w: Worker) -> Bool {
            let end = Date().addingTimeInterval(120)
            while Date() < end && w.process.isRunning {
                if checkpointStep() >= step { return true }
                usleep(20_000)
            }
            return false
        }
        var killedAt: [Int] = []
        for (tag, step) in [("a", 75), ("b", 225)] {
            let w = try Worker(queue: queue, workspace: ws.root, tag: tag, args: args)
            #expect(waitFor(step, w), "no checkpoint \(step): \(w.log.suffix(1500))")
            usleep(UInt32.random(in: 0...150_000))  // somewhere between checkpoints
            w.kill9()
            killedAt.append(checkpointStep())
            usleep(1_500_000)  // past the 1 s lease
        }
        let last = try Worker(queue: queue, workspace: ws.root, tag: "c", args: args + ["--drain"])
        #expect(last.wait(300) == 0, "\(last.log.suffix(2000))")
        let done = queue + "/done/killed"
        let result = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: done + "/result.json"))) as! [String: Any]
        let out = try #require(result["result"] as? [String: Any])
        print("TrainReaderWorkerTests: killed at checkpoints \(killedAt); final attempt \(result["attempt"] ?? "?") resumed from \(out["resumed_from"] ?? "?")")
        #expect(result["attempt"] as? Int == 3, "two kills, three attempts")
        #expect((out["resumed_from"] as? Int ?? 0) >= 225, "the last attempt resumed, not restarted: \(out)")
        let log = try String(contentsOfFile: done + "/log.txt", encoding: .utf8)
        #expect(log.components(separatedBy: "resumed from").count - 1 == 2, "each take-over resumed from latest")
        for f in ["model.safetensors", "optimizer.safetensors"] {
            let want = try Data(contentsOf: URL(fileURLWithPath: refLatest + "/" + f))
            let got = try Data(contentsOf: URL(fileURLWithPath: done + "/out/checkpoint/step-400/" + f))
            #expect(got == want, "\(f) differs from the uninterrupted run's")
        }
        // What transformers needs is there: config.json, weights, tokenizer.
        for f in ["config.json", "model.safetensors", "spiece.model", "trainer_state.json"] {
            #expect(FileManager.default.fileExists(atPath: done + "/out/checkpoint/step-400/" + f), "\(f)")
        }
    }
}
