// Queue: the on-disk protocol of queue/README.md: claim, lease, take over, release, publish.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// The `claim` file inside a claim folder; its mtime is the lease.
public struct ClaimRecord: Codable, Equatable, Sendable {
    public var id: String
    public var token: String
    /// `host:pid`.
    public var worker: String
    public var attempt: Int
    public var claimedAt: String
    /// The claim's time by the filesystem's clock (`Queue.fsNow`), which every host reads alike:
    /// `claimedAt` is the claimer's wall clock, hours off another host's when clocks drift.
    /// Nil in claims written before it existed.
    public var claimedAtFS: Double?
    /// No live holder: any worker may take it (after `notBefore`, filesystem time).
    public var released: Bool
    public var notBefore: Double?
    public var note: String?
    /// The holder's lease in seconds: the claim is stale once its `mtime` is older than this.
    /// It belongs to the claim, not to the worker judging it, so a worker started with a short
    /// `--lease` never takes a healthy job from one with a long lease. Nil in claims written
    /// before it existed (the reader's own lease then applies).
    public var leaseS: Double?

    public init(id: String, token: String, worker: String, attempt: Int, claimedAt: String, released: Bool,
                notBefore: Double? = nil, note: String? = nil, leaseS: Double? = nil, claimedAtFS: Double? = nil) {
        self.id = id
        self.claimedAtFS = claimedAtFS
        self.token = token
        self.worker = worker
        self.attempt = attempt
        self.claimedAt = claimedAt
        self.released = released
        self.notBefore = notBefore
        self.note = note
        self.leaseS = leaseS
    }

    enum CodingKeys: String, CodingKey {
        case id, token, worker, attempt, released, note
        case claimedAt = "claimed_at"
        case claimedAtFS = "claimed_at_fs"
        case notBefore = "not_before"
        case leaseS = "lease_s"
    }

    /// The lease that decides whether this claim is stale: the holder's, else `fallback`.
    public func lease(fallback: Double) -> Double { leaseS ?? fallback }
}

/// One finished attempt, kept in `attempts.json` and copied into `error.json`.
public struct AttemptRecord: Codable, Equatable, Sendable {
    public var attempt: Int
    public var worker: String
    public var started: String?
    public var ended: String
    /// `done`, `transient error`, `permanent error`, `lease expired`, `released`, `timeout`, `cancelled`.
    public var outcome: String
    public var error: String?
}

/// The process-wide identity claims are named after.
/// This build's version: `fidq --version`, and the `fidq` of every result.json (which binary made
/// an output).
public let fidqVersion = "0.1.0"

public final class WorkerIdentity: @unchecked Sendable {
    public let host: String
    public let pid: Int32
    public let nonce: String
    private let lock = NSLockLite()
    private var counter = 0

    public init() {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, 255)
        let raw = String(cString: buf)
        host = String(raw.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "-" }.prefix(32))
        pid = getpid()
        var r = SystemRandomNumberGenerator()
        nonce = String(r.next() & 0xFFFFFF, radix: 36)
    }

    /// `host:pid`, as shown by status.
    public var name: String { "\(host):\(pid)" }

    /// A name no other claim anywhere will use: `host.pid.nonce.n`.
    public func newToken() -> String {
        let n = lock.withLock { () -> Int in
            counter += 1
            return counter
        }
        return "\(host).\(pid).\(nonce).\(n)"
    }
}

/// Where a publish ended.
public enum PublishOutcome: Equatable, Sendable {
    case published(String)
    /// Our claim folder is gone: another worker took the job over.
    case leaseLost
    /// `done/<id>` already holds another worker's commit.
    case alreadyCommitted
    /// The rename kept failing; the claim is still ours.
    case failed(String)
}

/// The queue folders and every protocol step on them.
public final class Queue: @unchecked Sendable {
    public let root: String
    public let fs: FileSystem
    public var pending: String { root + "/pending" }
    public var running: String { root + "/running" }
    public var done: String { root + "/done" }
    public var failed: String { root + "/failed" }
    public var tmp: String { root + "/.tmp" }

    public init(root: String, fs: FileSystem = PosixFileSystem()) {
        self.root = PathPolicy.normalize(PathPolicy.absolute(root))
        self.fs = fs
    }

    /// What a refused queue write most likely means, from its error text: a permission error
    /// (another user's files) or a full or read-only disk.
    static func refusalCause(_ why: String) -> String {
        why.contains("(errno 13)") || why.contains("(errno 1)")
            ? "not writable by this user: a queue a group shares needs umask 002 when every worker and submit runs, and its folders group-writable (chmod -R g+w)"
            : "is its disk full or read-only?"
    }

    /// `fidq SUBCOMMAND [--queue ROOT] ARGS…` on this queue, as a hint prints it: `--queue` unless
    /// this is the default queue (`queue` in the working directory), so the hint works as pasted
    /// (a hint without it, run from elsewhere, acted on another queue or on none).
    /// `anywhere`: always with `--queue` (a hint a worker writes is read from another folder).
    /// Ids may start with "-": then `--` goes before them, or they read as options.
    public func command(_ subcommand: String, _ args: [String], anywhere: Bool = false) -> String {
        let flag = !anywhere && root == PathPolicy.normalize(PathPolicy.absolute("queue")) ? "" : " --queue " + shellQuoted(root)
        return "fidq " + subcommand + flag + (args.contains { $0.hasPrefix("-") } ? " --" : "") + args.map { " " + shellQuoted($0) }.joined()
    }

    /// Whether the queue takes what a job's moves need now: a claim's folder made in running/,
    /// 4 KiB written in `.tmp/` (an empty file fits on a full disk) and renamed into each folder
    /// as a dot-name (which scans skip), then removed; nil when all work, else the first refusal.
    public func refusedWrite(probe: String) -> String? {
        let folder = running + "/.probe-dir-" + probe
        do {
            try fs.mkdir(folder)
            try? fs.rmdir(folder)
        } catch { return "\(error)" }
        for dir in [pending, running, done, failed] {
            let staged = tmp + "/.probe-" + probe, path = dir + "/.probe-" + probe
            defer {
                try? fs.unlink(staged)
                try? fs.unlink(path)
            }
            do {
                try fs.write(staged, Data(count: 4096), sync: false)
                try fs.rename(staged, path)
            } catch { return "\(error)" }
        }
        return nil
    }

    /// Creates the five folders if missing.
    public func createLayout() throws {
        for dir in [pending, running, done, failed, tmp] { try fs.makeDirectories(dir) }
    }

    // MARK: clock

    /// Filesystem time: touch a probe file and read its mtime, so hosts with skewed clocks agree.
    public func fsNow(probe: String) -> Double {
        let path = tmp + "/clock-" + probe
        do {
            do { try fs.retrying { try fs.touch(path) } } catch let e as FSError where e.code == ENOENT {
                // Exclusive create: a concurrent prober of the same name (EEXIST) made it for us.
                do { try fs.retrying { try fs.write(path, Data(), sync: false) } } catch let e as FSError where e.code == EEXIST {}
            }
            return try fs.retrying { try fs.info(path) }.mtime
        } catch {
            return wallNow()
        }
    }

    // MARK: claim files

    public func claimDir(_ id: String, _ token: String) -> String { running + "/" + id + "@" + token }

    /// `(id, token)` of a `running/` entry name, nil for anything else.
    public static func parseClaimName(_ name: String) -> (id: String, token: String)? {
        guard !name.hasPrefix("."), let at = name.lastIndex(of: "@") else { return nil }
        let id = String(name[..<at])
        let token = String(name[name.index(after: at)...])
        guard JobDescriptor.isValidID(id) || id.hasPrefix("bad-"), !token.isEmpty else { return nil }
        return (id, token)
    }

    /// `failed/<id>` exists and nothing since replaced it: the job is not done, pending or
    /// running again (one dropped again by hand, or retried, leaves its old failure behind).
    func stillFailed(_ id: String) -> Bool {
        guard fs.exists(failed + "/" + id) else { return false }
        if fs.exists(done + "/" + id) || fs.exists(pending + "/" + id + ".json") { return false }
        return !((try? fs.list(running)) ?? []).contains { Queue.parseClaimName($0)?.id == id }
    }

    /// `stillFailed` and `failedAncestry` asked once per id and per set of failed dependencies,
    /// for one status listing or one scan: thousands of jobs may wait behind one failed job, and
    /// each look lists running/ and failed/.
    final class FailureLookup {
        let queue: Queue
        private var failed: [String: Bool] = [:], chains: [String: [String]] = [:]
        init(_ queue: Queue) { self.queue = queue }

        func isFailed(_ id: String) -> Bool {
            if let known = failed[id] { return known }
            let f = queue.stillFailed(id)
            failed[id] = f
            return f
        }

        func chain(_ deps: [String]) -> [String] {
            let key = deps.joined(separator: " ")
            if let known = chains[key] { return known }
            let c = queue.failedAncestry(of: deps)
            chains[key] = c
            return c
        }
    }

    /// `deps` and the failed jobs they waited on, dependencies first, each id once: what one
    /// `fidq retry` needs to put a chain back (b failed because a did; c's hint names both).
    func failedAncestry(of deps: [String]) -> [String] {
        var order: [String] = []
        func visit(_ id: String) {
            guard order.count < 64, !order.contains(id) else { return }
            for up in failedDependencies(id) where stillFailed(up) { visit(up) }
            if !order.contains(id) { order.append(id) }
        }
        deps.forEach(visit)
        return order
    }

    /// The folder of `id`'s latest failure: `failed/<id>~N` with the highest N (`fail` numbers
    /// later failures so), else `failed/<id>`.
    public func latestFailed(_ id: String) -> String {
        var best = (n: 1, name: id)
        for name in (try? fs.list(failed)) ?? [] where name.hasPrefix(id + "~") {
            if let n = Int(name.dropFirst(id.count + 1)), n > best.n { best = (n, name) }
        }
        return failed + "/" + best.name
    }

    /// The `after` list of the failed job `id` (empty when its job.json cannot be read).
    func failedDependencies(_ id: String) -> [String] {
        let data = try? fs.read(latestFailed(id) + "/job.json", limit: JobDescriptor.maxBytes + 1)
        return data.flatMap { try? JobDescriptor.parse($0, fileName: id + ".json") }?.dependencies ?? []
    }

    public func readClaim(_ dir: String) -> ClaimRecord? {
        guard let data = try? fs.retrying({ try fs.read(dir + "/claim", limit: 65536) }) else { return nil }
        return try? JSONDecoder().decode(ClaimRecord.self, from: data)
    }

    public func writeClaim(_ dir: String, _ record: ClaimRecord) throws {
        try fs.writeAtomically(dir + "/claim", try jsonEncoder().encode(record), tag: record.token, sync: false)
    }

    public func readAttempts(_ dir: String) -> [AttemptRecord] {
        guard let data = try? fs.retrying({ try fs.read(dir + "/attempts.json", limit: 16 << 20) }) else { return [] }
        return (try? JSONDecoder().decode([AttemptRecord].self, from: data)) ?? []
    }

    public func appendAttempt(_ dir: String, _ record: AttemptRecord, tag: String) throws {
        let all = readAttempts(dir) + [record]
        try fs.writeAtomically(dir + "/attempts.json", try jsonEncoder().encode(all), tag: tag, sync: false)
    }

    /// Appends a timestamped line to `<dir>/log.txt` (best effort).
    public func log(_ dir: String, _ line: String) {
        try? fs.retrying { try fs.append(dir + "/log.txt", Data((isoTimestamp() + " " + line + "\n").utf8)) }
    }

    // MARK: claiming

    /// Why the last `claimPending` could not even start its claim, or the last `takeOver` could
    /// not rename (the queue full or read-only); nil after one that could, or that lost a race.
    public private(set) var lastClaimFailure: String?

    /// Claims `pending/<name>` into `running/<id>@<token>/job.json`.
    ///
    /// `mkdir` our unique folder, write `claim`, then rename the job in. A rename error is
    /// re-checked: if our `job.json` exists the claim is ours (NFS reported failure after
    /// success); otherwise another worker won and our folder is removed.
    /// - Returns: the claim folder, or nil when another worker won or the disk refused.
    public func claimPending(name: String, id: String, record: ClaimRecord) -> String? {
        let dir = claimDir(id, record.token)
        do {
            do { try fs.retrying { try fs.mkdir(dir) } } catch let e as FSError where e.code == EEXIST {
                // Our name is unique: EEXIST can only be our own retransmitted mkdir.
                guard (try? fs.retrying { try fs.info(dir) })?.kind == .directory else { throw e }
            }
            try writeClaim(dir, record)
        } catch {
            try? fs.removeTree(dir)
            lastClaimFailure = "\(error)"
            return nil
        }
        lastClaimFailure = nil
        StepHook.reached("claim")
        do {
            try fs.retrying { try fs.rename(pending + "/" + name, dir + "/job.json") }
            StepHook.reached("claimed")
            return dir
        } catch {
            if fs.exists(dir + "/job.json") { return dir }
            // ENOENT: another worker won. Anything else is the queue refusing (pending/ read-only),
            // which the worker must not retry at once (it spun on mkdir and rmdir, silently).
            if (error as? FSError)?.code != ENOENT { lastClaimFailure = "\(error)" }
            // Never removeTree here: if `exists` lied, job.json is inside. rmdir fails on a
            // non-empty folder, which then goes stale and is taken over like any claim.
            try? fs.retrying { try fs.unlink(dir + "/claim") }
            try? fs.retrying { try fs.rmdir(dir) }
            return nil
        }
    }

    /// Takes over `running/<name>` (stale or released) by renaming it to our unique name.
    /// Only one taker can succeed; the old holder's paths stop existing.
    /// - Returns: the new folder, or nil when someone else took it first.
    public func takeOver(name: String, id: String, token: String) -> String? {
        let dst = claimDir(id, token)
        do {
            try fs.retrying { try fs.rename(running + "/" + name, dst) }
            StepHook.reached("takeover")
            lastClaimFailure = nil
            return dst
        } catch {
            if fs.exists(dst) { lastClaimFailure = nil; return dst }
            // ENOENT: another worker renamed it first. Anything else (EROFS, EACCES…) is the
            // queue refusing, which the worker must not retry at once (it spun on it).
            lastClaimFailure = (error as? FSError)?.code == ENOENT ? nil : "\(error)"
            return nil
        }
    }

    /// Touches the lease. Throws `ENOENT` once another worker took the claim over.
    public func renewLease(_ dir: String) throws {
        try fs.retrying { try fs.touch(dir + "/claim") }
    }

    // MARK: publishing

    /// Moves a finished claim folder to `done/<id>` (no-replace: a folder cannot be renamed onto
    /// a non-empty one), re-checking the outcome by the token in the published `claim`.
    public func commit(_ dir: String, id: String, token: String) -> PublishOutcome {
        publish(dir, to: done + "/" + id, token: token)
    }

    /// Moves a claim folder to `failed/<id>`, or `<id>~2`, `<id>~3`… when a failed job of that id
    /// is already kept.
    public func fail(_ dir: String, id: String, token: String) -> PublishOutcome {
        for n in 1...1000 {
            let dst = failed + "/" + id + (n == 1 ? "" : "~\(n)")
            let outcome = publish(dir, to: dst, token: token)
            if outcome != .alreadyCommitted { return outcome }
        }
        return .failed("failed/\(id)~1…1000 all exist")
    }

    private func publish(_ dir: String, to dst: String, token: String) -> PublishOutcome {
        // Cheap fence first: a claim that was taken over no longer names us.
        // Only a real "absent" means the folder was taken; "could not tell" keeps it ours.
        guard let mine = readClaim(dir) else { return fs.presence(dir) == .absent ? .leaseLost : .failed("claim unreadable") }
        if mine.token != token { return .leaseLost }
        var lastError = ""
        StepHook.reached("commit")
        for attempt in 0..<5 {
            do {
                try fs.retrying { try fs.rename(dir, dst) }
                return .published(dst)
            } catch {
                lastError = "\(error)"
                // The outcome, not the return code, decides (NFS retransmits).
                if readClaim(dst)?.token == token { return .published(dst) }
                if fs.presence(dir) == .absent { return .leaseLost }
                if let e = error as? FSError, e.code == EEXIST || e.code == ENOTEMPTY { return .alreadyCommitted }
                usleep(UInt32(20_000 * (attempt + 1)))
            }
        }
        return .failed(lastError)
    }

    /// Renames a claim folder we lost to `.tmp/` and deletes it.
    public func discard(_ dir: String, token: String) {
        let trash = tmp + "/discard-" + NSStringPath(dir).last + "-" + token
        if (try? fs.rename(dir, trash)) != nil { try? fs.removeTree(trash) }
    }

    /// Deletes `.tmp/` entries older than `age` seconds (filesystem time).
    public func sweepTmp(now: Double, age: Double = 86_400) {
        for name in (try? fs.list(tmp)) ?? [] {
            let path = tmp + "/" + name
            if let i = try? fs.info(path), now - i.mtime > age { try? fs.removeTree(path) }
        }
    }
}
