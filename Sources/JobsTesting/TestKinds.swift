// TestKinds: `test.record`, a job kind for the queue's own tests (registered only on request).
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Jobs

/// Kinds that exist to test the queue. `fidq` registers them only when `FIDQ_TEST_KINDS=1`.
public enum TestKinds {
    public static func register(into registry: KindRegistry) {
        registry.register(RecordKind())
    }
}

/// `test.record`: sleeps `steps × sleep_ms`, checkpointing after each step in `out/`, and appends
/// one line per finished execution to `<ledger>/<pid>.log`, so tests can count executions and
/// check which one was committed.
public struct RecordKind: JobKind {
    public struct Params: JobParams {
        /// Milliseconds per step.
        public var sleepMs = 0
        /// Steps; the job checkpoints after each and resumes from the last.
        public var steps = 1
        /// Folder (workspace-relative) that receives the execution ledger.
        public var ledger = "ledger"
        /// `none`, `permanent`, `transient` (every attempt), `transient-once` (attempt 1 only), `busy-once`
        /// (attempt 1 fails transiently asking for 2 s before the next, as a Retry-After does),
        /// `ignore-cancel` (spins without checking the token), `io` (writes outside its folder).
        public var fail = "none"
        /// Anything; echoed in the result.
        public var payload: String?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case steps, ledger, fail, payload
            case sleepMs = "sleep_ms"
        }

        public init() {}

        public init(from decoder: Decoder) throws {
            let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
            sleepMs = try c.require(try c.decode(.sleepMs, default: 0), .sleepMs, "milliseconds >= 0") { $0 >= 0 }
            steps = try c.require(try c.decode(.steps, default: 1), .steps, "an integer in 1…100000") { (1...100_000).contains($0) }
            ledger = try c.decode(.ledger, default: "ledger")
            fail = try c.require(try c.decode(.fail, default: "none"), .fail,
                                 "one of none, permanent, transient, transient-once, busy-once, enospc-once, ignore-cancel") {
                ["none", "permanent", "transient", "transient-once", "busy-once", "enospc-once", "ignore-cancel"].contains($0)
            }
            payload = try c.decodeIfPresent(String.self, forKey: .payload)
        }

        public var outputPaths: [(field: String, path: String)] { [("ledger", ledger)] }
        /// The ledger is a folder every test job appends its own file to.
        public var exclusiveOutputs: [(field: String, path: String)] { [] }
    }

    public struct Output: Codable, Sendable {
        public var id: String
        public var attempt: Int
        public var pid: Int32
        public var token: String
        public var resumedFrom: Int
        public var payload: String?

        enum CodingKeys: String, CodingKey {
            case id, attempt, pid, token, payload
            case resumedFrom = "resumed_from"
        }
    }

    public init() {}
    public var name: String { "test.record" }

    public func run(_ p: Params, _ context: JobContext) throws -> Output {
        let t0 = wallNow()
        let checkpoint = context.out + "/checkpoint"
        var step = 0
        if let s = try? context.fs.readString(checkpoint), let n = Int(s) { step = n }
        let resumedFrom = step
        context.log("test.record: \(p.steps) steps of \(p.sleepMs) ms from step \(step)")
        switch p.fail {
        case "permanent": throw JobError.permanent("test.record asked to fail permanently", field: "params.fail")
        case "transient": throw JobError.transient("test.record asked to fail transiently")
        case "transient-once" where context.attempt == 1: throw JobError.transient("test.record fails its first attempt")
        case "enospc-once" where context.attempt == 1:
            throw FSError("write", context.out + "/.x.tmp", ENOSPC)
        case "busy-once" where context.attempt == 1:
            var busy = JobError.transient("test.record is told to come back in 2 s")
            busy.retryAfter = 2
            throw busy
        case "ignore-cancel":
            while true { usleep(10_000) }
        default: break
        }
        while step < p.steps {
            // Safe point: a shutdown saves the checkpoint (already written) and stops here.
            try context.checkCancelled()
            try context.cancellation.sleep(Double(p.sleepMs) / 1000)
            step += 1
            try context.publish("checkpoint", Data("\(step)".utf8))
            context.progress.update(step: step, total: p.steps)
        }
        let token = String(context.folder.split(separator: "@").last ?? "")
        let ledgerDir = try context.output(p.ledger, field: "params.ledger")
        try context.fs.makeDirectories(ledgerDir)
        let line = "\(context.id) \(context.attempt) \(getpid()) \(token) \(String(format: "%.3f", t0)) \(String(format: "%.3f", wallNow()))\n"
        try context.fs.append(ledgerDir + "/\(getpid()).log", Data(line.utf8))
        return Output(id: context.id, attempt: context.attempt, pid: getpid(), token: token,
                      resumedFrom: resumedFrom, payload: p.payload)
    }
}
