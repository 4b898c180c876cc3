// TrainTestKind: `test.train`, a job kind that "trains" a deterministic state with checkpoints (tests only).
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Jobs

/// `test.train`: updates a UInt64 hash chain once per step, checkpoints it every
/// `checkpoint_every` steps through `JobContext.checkpoints`, and resumes from `latest`. Every
/// executed step appends `<step> <token>` to `out/steps.log`, so tests can count re-executions
/// per attempt. Registered by `fidq` only when `FIDQ_TEST_KINDS=1`. Uses only the public API of
/// `Jobs`, so it can live in a testing module.
public struct TrainTestKind: JobKind {
    public struct Params: JobParams {
        public var steps = 100
        public var checkpointEvery = 10
        /// Milliseconds per step (a cancellable sleep).
        public var stepMs = 0
        /// Step checkpoints kept.
        public var keepLast = 2
        /// Fail permanently on reaching this step, unless the run resumed from a checkpoint
        /// (so `fidq retry` resumes past it and `fidq retry --fresh` fails again).
        public var failAtStep: Int?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case steps
            case checkpointEvery = "checkpoint_every"
            case stepMs = "step_ms"
            case keepLast = "keep_last"
            case failAtStep = "fail_at_step"
        }

        public init() {}

        public init(from decoder: Decoder) throws {
            let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
            steps = try c.require(try c.decode(.steps, default: 100), .steps, "an integer in 1…1000000") { (1...1_000_000).contains($0) }
            checkpointEvery = try c.require(try c.decode(.checkpointEvery, default: 10), .checkpointEvery, "an integer >= 1") { $0 >= 1 }
            stepMs = try c.require(try c.decode(.stepMs, default: 0), .stepMs, "milliseconds in 0…60000") { (0...60_000).contains($0) }
            keepLast = try c.require(try c.decode(.keepLast, default: 2), .keepLast, "an integer >= 1") { $0 >= 1 }
            failAtStep = try c.decodeIfPresent(Int.self, forKey: .failAtStep)
        }
    }

    public struct Output: Codable, Sendable {
        /// The final state, as 16 hex digits (JSON numbers cannot hold every UInt64).
        public var state: String
        public var steps: Int
        public var resumedFrom: Int
        public var attempt: Int
        public var token: String
        public var threads: Int

        enum CodingKeys: String, CodingKey {
            case state, steps, attempt, token, threads
            case resumedFrom = "resumed_from"
        }
    }

    /// What each checkpoint holds.
    struct Saved: Codable {
        var step: Int
        var state: String
    }

    public init() {}
    public var name: String { "test.train" }

    public static let initialState: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// One training step: a splitmix64 round over the state and the step number.
    public static func advance(_ state: UInt64, step: Int) -> UInt64 {
        var z = state &+ 0x9E37_79B9_7F4A_7C15 &+ UInt64(step) &* 0xD1B5_4A32_D192_ED03
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The state after `steps` uninterrupted steps.
    public static func expected(steps: Int) -> UInt64 {
        var s = initialState
        if steps > 0 { for step in 1...steps { s = advance(s, step: step) } }
        return s
    }

    public static func hex(_ v: UInt64) -> String {
        let h = String(v, radix: 16)
        return String(repeating: "0", count: 16 - h.count) + h
    }

    public func run(_ p: Params, _ context: JobContext) throws -> Output {
        let ckpt = try context.checkpoints(keepLast: p.keepLast)
        var step = 0
        var state = TrainTestKind.initialState
        if let (s, dir) = ckpt.latest() {
            let data = try context.fs.read(dir + "/state.json", limit: 65536)
            let saved = try JSONDecoder().decode(Saved.self, from: data)
            guard saved.step == s, let v = UInt64(saved.state, radix: 16) else {
                throw JobError.permanent("checkpoint \(dir) holds step \(saved.step), state '\(saved.state)'",
                                         hint: "the checkpoint folder is corrupt; " + context.startOver)
            }
            (step, state) = (s, v)
        }
        let resumedFrom = step
        context.log("test.train: steps \(step + 1)…\(p.steps), checkpoint every \(p.checkpointEvery)")
        let log = context.out + "/steps.log"
        while step < p.steps {
            try context.checkCancelled()
            if step + 1 == p.failAtStep && resumedFrom == 0 {
                throw JobError.permanent("test.train asked to fail at step \(step + 1)", field: "params.fail_at_step")
            }
            try context.cancellation.sleep(Double(p.stepMs) / 1000)
            step += 1
            // Fails once the job was taken over (its folder name is gone); the worker then
            // learns from its lease that the job is lost.
            try context.fs.append(log, Data("\(step) \(context.token)\n".utf8))
            state = TrainTestKind.advance(state, step: step)
            context.progress.update(step: step, total: p.steps)
            if step % p.checkpointEvery == 0 {
                let saved = Saved(step: step, state: TrainTestKind.hex(state))
                try ckpt.save(step: step) { dir in
                    try context.fs.write(dir + "/state.json", try jsonEncoder().encode(saved), sync: false)
                }
            }
        }
        return Output(state: TrainTestKind.hex(state), steps: step, resumedFrom: resumedFrom, attempt: context.attempt,
                      token: context.token, threads: context.threads)
    }
}
