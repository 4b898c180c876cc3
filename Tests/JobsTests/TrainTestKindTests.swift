// TrainTestKindTests: a "training" job SIGKILLed mid-run by real workers resumes from its checkpoints
// to the same final state as an uninterrupted run, re-running only steps after the last checkpoint.
import Foundation
import Testing
@testable import Jobs
import JobsTesting

/// The queue tests' registry plus `test.train`.
func trainRegistry() -> KindRegistry {
    let r = testRegistry()
    r.register(TrainTestKind())
    return r
}

/// Runs one in-process worker with `test.train` until the queue drains.
func drainTrain(_ f: QueueFixture, timeout: Double = 60, configure: (inout WorkerConfig) -> Void = { _ in }) {
    var config = WorkerConfig(queue: f.queueDir)
    config.drain = true
    config.lease = 5
    config.poll = 0.02
    config.backoff = 0.01
    config.quiet = true
    configure(&config)
    let worker = Worker(config: config, registry: trainRegistry())
    let done = DispatchSemaphore(value: 0)
    Thread { _ = worker.run(); done.signal() }.start()
    if done.wait(timeout: .now() + timeout) == .timedOut {
        worker.requestStop()
        _ = done.wait(timeout: .now() + 10)
        Issue.record("the worker did not drain within \(timeout)s")
    }
}

@Suite(.serialized) struct TrainTestKindTests {
    /// `<step> <token>` lines of a steps.log, in order.
    func stepLog(_ path: String) -> [(step: Int, token: String)] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map {
            let p = $0.split(separator: " ")
            return (Int(p[0]) ?? -1, String(p[1]))
        }
    }

    /// The uninterrupted reference: `fidq run`'s code path, in this process.
    func uninterrupted(_ f: QueueFixture, steps: Int, every: Int) throws -> String {
        let file = f.workspace + "/ref.json"
        try Data(#"{"kind": "test.train", "id": "ref", "params": {"steps": \#(steps), "checkpoint_every": \#(every)}}"#.utf8)
            .write(to: URL(fileURLWithPath: file))
        let run = ForegroundRun(file: file, workspace: f.workspace)
        let value = try run.run(registry: trainRegistry())
        guard case .object(let o) = value, case .string(let state)? = o["state"] else { throw JobError.permanent("no state in \(value)") }
        #expect(stepLog(f.workspace + "/ref.run/out/steps.log").map(\.step) == Array(1...steps))
        return state
    }

    @Test func stateIsAPureFunctionOfTheSteps() throws {
        let f = try QueueFixture()
        let state = try uninterrupted(f, steps: 25, every: 4)
        #expect(state == TrainTestKind.hex(TrainTestKind.expected(steps: 25)))
        #expect(state != TrainTestKind.hex(TrainTestKind.expected(steps: 24)))
        // Resuming the same folder from its checkpoint (step 24) ends in the same state.
        #expect(f.read(f.workspace + "/ref.run/out/checkpoint/latest") == "step-24\n")
        #expect(entries(f.workspace + "/ref.run/out/checkpoint") == ["latest", "step-20", "step-24"])
    }

    @Test func killedAgainAndAgainItEndsInTheUninterruptedState() throws {
        try #require(Binary.available, "build first: swift build --build-tests (looked for \(Binary.fidq))")
        // FIDQ_STRESS=1: more kills over a longer run.
        let (steps, every, kills) = stressFull ? (400, 10, 10) : (150, 10, 3)
        print("TrainTestKindTests: \(kills) SIGKILLs over \(steps) steps\(stressFull ? " (FIDQ_STRESS=1)" : " (FIDQ_STRESS=1: 10 over 400)")")
        let f = try QueueFixture()
        let reference = try uninterrupted(f, steps: steps, every: every)
        try f.drop("train", #"{"kind": "test.train", "max_attempts": \#(kills + 2), "params": {"steps": \#(steps), "checkpoint_every": \#(every), "step_ms": 15}}"#)
        let args = ["--drain", "--poll", "0.05", "--backoff", "0.05", "--lease", "1"]
        func claim() -> String? { f.list("running").first.map { f.queueDir + "/running/" + $0 } }
        func pointer() -> Int {
            guard let dir = claim(), let text = f.read(dir + "/out/checkpoint/latest") else { return 0 }
            return Int(text.dropFirst(5).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        }
        func executed() -> Int { claim().map { stepLog($0 + "/out/steps.log").last?.step ?? 0 } ?? 0 }
        var committedAtKill: [Int] = []
        var (leftovers, midSave) = (0, 0)
        var workers: [WorkerProcess] = []
        for k in 0..<kills {
            let w = try WorkerProcess(f, args: args, tag: "w\(k)")
            workers.append(w)
            // Kill only once this attempt committed a checkpoint of its own and ran past it, so
            // the kill lands mid-interval and each step can run at most twice.
            let last = committedAtKill.last ?? 0
            #expect(f.wait(60) { pointer() > last && executed() > pointer() + 1 },
                    "attempt \(k + 1) made no progress: pointer \(pointer()), \(w.log.suffix(600))")
            // Anywhere in the next interval or two, sometimes inside a save (between the rename
            // of step-N and the move of latest).
            usleep(UInt32.random(in: 0...250_000))
            w.signal(SIGKILL)
            w.process.waitUntilExit()
            #expect(w.process.terminationReason == .uncaughtSignal, "the worker was killed mid-run, not finished")
            committedAtKill.append(pointer())
            // What the kill left in checkpoint/ (staged folders, a step renamed before `latest` moved).
            let left = entries((claim() ?? "") + "/out/checkpoint")
            if left.contains(where: { $0.hasPrefix(".") }) { leftovers += 1 }
            if left.compactMap({ Checkpoints.parseStep($0) }).contains(where: { $0 > pointer() }) { midSave += 1 }
        }
        let finisher = try WorkerProcess(f, args: args, tag: "final")
        #expect(finisher.wait(120) == 0, "\(finisher.log.suffix(800))")
        #expect(f.list("done") == ["train"], "running \(f.list("running")) failed \(f.list("failed"))")
        let result = try #require(f.json(f.queueDir + "/done/train/result.json"))
        let r = try #require(result["result"] as? [String: Any])
        #expect(r["state"] as? String == reference, "the final state equals the uninterrupted run's")
        #expect(r["resumed_from"] as? Int == committedAtKill.last, "the last attempt resumed from the last committed checkpoint")
        #expect(result["attempt"] as? Int == kills + 1)
        #expect(f.read(f.queueDir + "/done/train/attempts.json")?.components(separatedBy: "lease expired").count == kills + 1)

        // Split the execution log into attempts (by token) and check each re-execution.
        let log = stepLog(f.queueDir + "/done/train/out/steps.log")
        var attempts: [(token: String, steps: [Int])] = []
        for (step, token) in log {
            if attempts.last?.token != token { attempts.append((token, [])) }
            attempts[attempts.count - 1].steps.append(step)
        }
        #expect(attempts.count == kills + 1, "\(attempts.map(\.token))")
        var counts: [Int: Int] = [:]
        for (step, _) in log { counts[step, default: 0] += 1 }
        #expect(Set(counts.keys) == Set(1...steps), "every step ran")
        #expect(counts.values.allSatisfy { $0 <= 2 }, "no step ran more than twice: \(counts.filter { $0.value > 2 })")
        for (i, a) in attempts.enumerated() {
            let from = i == 0 ? 0 : committedAtKill[i - 1]
            #expect(a.steps == Array((from + 1)...(a.steps.last ?? from + 1)),
                    "attempt \(i + 1) ran consecutive steps from just after checkpoint \(from): \(a.steps.prefix(3))…\(a.steps.suffix(2))")
        }
        for (i, c) in committedAtKill.enumerated() {
            let later = attempts.dropFirst(i + 1).flatMap(\.steps)
            #expect(!later.contains { $0 <= c }, "no step at or before checkpoint \(c) ran again after kill \(i + 1)")
        }
        let twice = counts.filter { $0.value == 2 }.count
        print("TrainTestKindTests: \(kills) SIGKILLs at checkpoints \(committedAtKill); \(twice) of \(steps) steps ran twice; "
              + "\(leftovers) kills left temporary names, \(midSave) fell between a step's rename and the move of latest")
        #expect(entries(f.queueDir + "/done/train/out/checkpoint").allSatisfy { !$0.hasPrefix(".") }, "no temporary folders committed")
    }
}
