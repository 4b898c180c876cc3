// Worker: the daemon loop: scan, claim, run with a heartbeat, then commit, release or fail.
import Dispatch
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Logging

/// How a worker runs: `fidq worker`'s flags.
public struct WorkerConfig: Sendable {
    /// The queue folder (holds pending/, running/, done/, failed/).
    public var queue: String
    /// Relative paths resolve here and outputs must stay inside; default: the queue's parent.
    public var workspace: String?
    /// Exit when nothing is left that this worker can run.
    public var drain = false
    /// Seconds without a heartbeat after which a claim may be taken over.
    public var lease = 90.0
    /// Run only these kinds (nil: every registered kind).
    public var kinds: [String]?
    /// Seconds between scans when idle.
    public var poll = 1.0
    /// First retry delay after a transient error, doubled per attempt (capped at 1 h).
    public var backoff = 10.0
    /// Seconds a cancelled job may take to reach a safe point before the worker gives up on it.
    public var grace = 60.0
    /// More folders outputs may be written to.
    public var allowedRoots: [String] = []
    /// `--threads`: a job's `threads` param defaults to this and is capped by it (all cores).
    public var threads = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    /// Draw a progress bar on stderr (on a terminal).
    public var progressBar = false
    /// Stop after this many jobs (tests and benchmarks).
    public var maxJobs: Int?
    /// Log warnings and errors only.
    public var quiet = false
    /// Seconds after its dependencies finished during which a job's missing input counts as not
    /// yet visible (NFS attribute caches on another host) and the job is retried, not failed.
    public var missingInputWindow = 60.0

    /// With `drain`: how long claims may keep failing because the queue cannot be written (its
    /// disk full or read-only) before the worker gives up with status 1.
    public var claimFailureLimit = 60.0
    public init(queue: String) { self.queue = queue }

    /// The workspace actually used.
    public var resolvedWorkspace: String {
        workspace ?? NSStringPath(PathPolicy.normalize(PathPolicy.absolute(queue))).parent
    }
}

/// One worker process's loop. `run()` returns the exit status.
public final class Worker: @unchecked Sendable {
    public let config: WorkerConfig
    public let queue: Queue
    public let registry: KindRegistry
    public let identity: WorkerIdentity
    public let policy: PathPolicy
    let logger: Logger
    let scanner: QueueScanner
    private let lock = NSLockLite()
    private var stopping = false
    private var current: CancellationToken?
    private var finalizing = false
    /// Jobs this worker finished by outcome (`done`, `failed`, `released`, `lost`).
    public private(set) var counts: [String: Int] = [:]

    public init(config: WorkerConfig, registry: KindRegistry, fs: FileSystem = PosixFileSystem(),
                identity: WorkerIdentity = WorkerIdentity(), logger: Logger? = nil) {
        self.config = config
        self.queue = Queue(root: config.queue, fs: fs)
        self.registry = registry
        self.identity = identity
        self.policy = PathPolicy(workspace: config.resolvedWorkspace, queue: config.queue, allowedRoots: config.allowedRoots)
        var log = logger ?? Logger(label: "fidq.worker")
        if config.quiet { log.logLevel = .warning }
        self.logger = log
        self.scanner = QueueScanner(queue: queue, registry: registry, kinds: config.kinds.map(Set.init),
                               lease: config.lease, probe: identity.newToken())
        self.scanner.spread = 8
    }

    /// Graceful stop: claim nothing new, ask the running job to stop and release its claim.
    public func requestStop() {
        lock.withLock {
            stopping = true
            current?.cancel(.shutdown)
        }
    }

    public var isStopping: Bool { lock.withLock { stopping } }

    /// Installs SIGTERM/SIGINT handling: the first signal stops gracefully, the second exits at once.
    public func installSignalHandlers() {
        StopSignals.install(stopping: { [self] in isStopping }, first: { [self] sig in
            logger.info("signal \(sig): finishing at the job's next safe point, then releasing its claim")
            requestStop()
        }, second: { [self] _ in
            logger.warning("second signal: exiting now; the claim's lease will expire")
            _exit(130)
        })
    }

    /// The loop. Returns 0 on a clean exit (drained or stopped), 1 when a drain cannot claim (the
    /// queue cannot be written) or cannot start a job's threads (the process limit), 2 when the
    /// queue is unusable.
    public func run() -> Int32 {
        if let kinds = config.kinds {
            for k in kinds where !registry.has(k) {
                logger.error("--kinds names '\(k)', which this worker does not know (known: \(registry.names.joined(separator: ", ")))")
                return 2
            }
        }
        do { try queue.createLayout() } catch {
            logger.error("cannot use queue \(queue.root): \(error)")
            return 2
        }
        logger.info("worker \(identity.name) on \(queue.root), workspace \(policy.workspace), \(config.threads) thread\(config.threads == 1 ? "" : "s"), lease \(config.lease)s\(config.drain ? ", draining" : "")")
        queue.sweepTmp(now: queue.fsNow(probe: "sweep-" + identity.nonce))
        var plan = Plan()
        var index = 0
        var jobs = 0
        while !isStopping {
            if let maxJobs = config.maxJobs, jobs >= maxJobs { break }
            // Reuse a plan for a while: one listing serves many claims (and 8 workers on 10,000
            // pending jobs must not spend their time re-listing).
            if index >= plan.candidates.count || monotonicNow() - plan.madeAt > max(0.25, 5 * scanner.lastScanSeconds) {
                plan = scanner.plan()
                index = 0
                if plan.candidates.isEmpty {
                    // A job handed back because its outcome could not be written waits out its
                    // delay: a drain that keeps failing to write stops rather than wait forever.
                    if drainShouldStop() { return 1 }
                    if config.drain && plan.waiting == 0 {
                        logger.info("drained: nothing left this worker can run")
                        break
                    }
                    idle()
                    continue
                }
            }
            let candidate = plan.candidates[index]
            index += 1
            if handle(candidate) { jobs += 1 }
            if let since = threadRefusedSince {
                // No thread for a job's heartbeat (the process limit): it spun, claiming and
                // handing back every poll for ever.
                if config.drain && monotonicNow() - since >= config.claimFailureLimit {
                    logger.error("cannot start threads for \(Int(config.claimFailureLimit)) s: \(threadRefusal); stopping the drain")
                    return 1
                }
                plan = Plan()
                idle(for: min(config.backoff * Double(1 << min(threadRefusals - 1, 10)), 60))
            }
            if let since = claimFailingSince {
                // The queue cannot be written: look again after a poll, not at once (it spun).
                if monotonicNow() - since >= config.claimFailureLimit, drainShouldStop() { return 1 }
                plan = Plan()
                idle()
            }
        }
        let tally = counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        logger.info("worker \(identity.name) exiting (\(tally.isEmpty ? "no jobs run" : tally))")
        return 0
    }

    /// Since when claims, take-overs or publishing have failed because the queue could not be
    /// written, and the last reason; reset by a claim or a publish that worked.
    private var claimFailingSince: Double?
    private var claimFailure = ""
    /// A probe found the queue writable once in this streak of refusals: the next time the limit
    /// is reached the drain stops (a refusal the probe does not test, such as one claim folder
    /// that cannot be renamed, kept a drain going for ever).
    private var probeRescued = false
    private var lastClaimWarning = -Double.infinity

    /// Notes a write the queue refused (full, read-only): a claim, a take-over, an outcome. The
    /// loop then waits a poll before its next try, and a drain stops after `claimFailureLimit`.
    /// A warning at most once a minute.
    private func claimFailed(_ why: String) {
        if claimFailingSince == nil { claimFailingSince = monotonicNow() }
        claimFailure = why
        if monotonicNow() - lastClaimWarning >= 60 {
            lastClaimWarning = monotonicNow()
            logger.warning("cannot write to the queue \(queue.root): \(why) (\(Queue.refusalCause(why))); trying again every \(config.poll) s")
        }
    }

    /// A draining worker whose queue writes have failed for `claimFailureLimit` stops, unless a
    /// probe of the queue's folders now works (the disk was freed: a job handed back may be
    /// due after the limit, and the drain stopped with it still in running/).
    private func drainShouldStop() -> Bool {
        guard config.drain, let since = claimFailingSince, monotonicNow() - since >= config.claimFailureLimit else { return false }
        if !probeRescued, queue.refusedWrite(probe: identity.newToken()) == nil {
            probeRescued = true
            claimFailingSince = nil
            return false
        }
        logger.error("cannot write to the queue \(queue.root) for \(Int(config.claimFailureLimit)) s: \(claimFailure); stopping the drain")
        return true
    }

    private func idle(for seconds: Double? = nil) {
        let end = monotonicNow() + (seconds ?? config.poll)
        while !isStopping && monotonicNow() < end { usleep(20_000) }
    }

    /// Since when, how many times in a row, and why a job's heartbeat thread could not start.
    private var threadRefusedSince: Double?
    private var threadRefusals = 0
    private var threadRefusal = ""

    private func count(_ outcome: String) { lock.withLock { counts[outcome, default: 0] += 1 } }

    /// One claim this worker holds, as `finish` and `release` need it.
    struct Held {
        var dir: String
        var token: String
        var id: String
        var kind: String?
        var attempt: Int
        /// When this attempt's handler started (nil: it never ran).
        var started: String?
    }

    /// What a failure may lead to. Every call site says which, so no default silently turns
    /// retries off.
    enum RetryPolicy {
        /// A transient error releases the claim for attempt + 1 while attempt < max.
        case upTo(Int)
        /// Nothing to retry: the job cannot be read or parsed, or failing is the point.
        case never
        /// Every allowed attempt is used up and already recorded in `attempts.json`.
        case exhausted
    }

    /// Acts on one candidate; true when a job was claimed.
    @discardableResult
    func handle(_ candidate: Candidate) -> Bool {
        switch candidate {
        case .cleanUp(let name):
            guard let (id, _) = Queue.parseClaimName(name) else { return false }
            return cleanUp(name: name, id: id)
        case .pending(let name, let folder, let descriptor, let error):
            guard queue.fs.exists(queue.pending + "/" + name) else { return false }  // taken meanwhile
            let token = identity.newToken()
            let record = ClaimRecord(id: folder, token: token, worker: identity.name, attempt: 1,
                                     claimedAt: isoTimestamp(), released: false, leaseS: config.lease,
                                     claimedAtFS: queue.fsNow(probe: identity.nonce))
            guard let dir = queue.claimPending(name: name, id: folder, record: record) else {
                if let why = queue.lastClaimFailure { claimFailed(why) }
                return false
            }
            (claimFailingSince, probeRescued) = (nil, false)
            // The folder moves to done/ or failed/, so job.json is relative; the rerun's folder
            // must lie outside the queue.
            queue.log(dir, "# reproduce: " + policy.runCommand("job.json", out: policy.workspace + "/" + folder + ".rerun") + "   # run from this job's folder")
            let held = Held(dir: dir, token: token, id: folder, kind: descriptor?.kind, attempt: 1, started: nil)
            if let error {
                // A retried job failing at once (its dependency failed again) keeps its out/ and
                // names its earlier records, as a cancel does: the next retry still resumes.
                RetainedOutput.adopt(queue: queue, id: folder, dir: dir)
                finish(held, .failure(error), retry: .never)
                return true
            }
            // Parse what was actually claimed: the scan's copy may be of an earlier file of that name.
            guard let data = try? queue.fs.retrying({ try queue.fs.read(dir + "/job.json", limit: JobDescriptor.maxBytes + 1) }) else {
                finish(held, .failure(JobError.transient("cannot read the claimed job.json")),
                       retry: .upTo(descriptor?.maxAttempts ?? 3))
                return true
            }
            do {
                execute(dir: dir, token: token, record: record, descriptor: try JobDescriptor.parse(data, fileName: name), fresh: true)
            } catch {
                finish(held, .failure(JobError.classify(error)), retry: .never)
            }
            return true
        case .takeOver(let name, let id, let stale):
            let token = identity.newToken()
            guard let dir = queue.takeOver(name: name, id: id, token: token) else {
                if let why = queue.lastClaimFailure { claimFailed(why) }
                return false
            }
            return resume(dir: dir, id: id, token: token, stale: stale, old: queue.readClaim(dir))
        }
    }

    /// A stale claim folder that seemed to hold no job (its claimer died between `mkdir` and
    /// moving the job in). Take it first (rename to our name), then look again: a paused claimer
    /// may have moved its job in since the scan. Nothing is deleted on a negative answer: only
    /// `claim` is unlinked and the folder `rmdir`ed, which fails on a folder that is not empty;
    /// such a folder (the lookup lied: a cached "not found") is run as a take-over.
    private func cleanUp(name: String, id: String) -> Bool {
        let token = identity.newToken()
        guard let dir = queue.takeOver(name: name, id: id, token: token) else {
            if let why = queue.lastClaimFailure { claimFailed(why) }
            return false
        }
        let old = queue.readClaim(dir)
        switch queue.fs.presence(dir + "/job.json") {
        case .present:
            return resume(dir: dir, id: id, token: token, stale: true, old: old)
        case .unknown(let why):
            // Cannot tell: hold it as a take-over; if job.json stays unreadable the claim we
            // write goes stale and the next worker looks again.
            logger.warning("\(id): cannot tell whether \(dir)/job.json exists (\(why)); taking the claim over")
            return resume(dir: dir, id: id, token: token, stale: true, old: old)
        case .absent:
            // The protocol's own small files go first: a claimer killed while writing its claim
            // leaves `.claim.<token>.tmp`, and a folder taken over before leaves log.txt and
            // attempts.json. Never job.json or out/: if the lookup lied, they are the job.
            try? queue.fs.retrying { try queue.fs.unlink(dir + "/claim") }
            for name in (try? queue.fs.retrying({ try queue.fs.list(dir) })) ?? [] where Worker.isClaimLitter(name) {
                try? queue.fs.retrying { try queue.fs.unlink(dir + "/" + name) }
            }
            do {
                try queue.fs.retrying { try queue.fs.rmdir(dir) }
                return false
            } catch let e as FSError where e.code == ENOENT {
                return false
            } catch {
                logger.warning("\(id): claim folder without job.json is not empty (\(error)); running it as a take-over")
                return resume(dir: dir, id: id, token: token, stale: true, old: old)
            }
        }
    }

    /// Files a claim folder holds before and around its job, which a clean-up of a folder
    /// without job.json may remove: the claim, its temporary names, and the folder's records.
    static func isClaimLitter(_ name: String) -> Bool {
        ["claim", "log.txt", "attempts.json", "progress.json", "cancel"].contains(name)
            || (name.hasPrefix(".") && name.hasSuffix(".tmp"))
    }

    /// Continues a taken-over claim: records the dead attempt, then runs or fails the job.
    /// `old` is the previous holder's claim, read right after the take-over.
    private func resume(dir: String, id: String, token: String, stale: Bool, old: ClaimRecord?) -> Bool {
        let dead = old?.attempt ?? (queue.readAttempts(dir).count + 1)
        let attempt = stale ? dead + 1 : dead
        let record = ClaimRecord(id: id, token: token, worker: identity.name, attempt: attempt,
                                 claimedAt: isoTimestamp(), released: false, leaseS: config.lease,
                                     claimedAtFS: queue.fsNow(probe: identity.nonce))
        do { try queue.writeClaim(dir, record) } catch {
            // Another worker's take-over of the same stale job moved the folder first: nothing is held.
            if !queue.fs.exists(dir) {
                logger.info("\(id): another worker took it over first")
                return false
            }
            // The folder is ours but still holds the old stale claim, so the next scan offers it
            // again: noted as a refused write, so that is a poll away, not at once.
            // The warning is claimFailed's, once a minute (it was logged every poll, for ever).
            claimFailed("took over \(id) but could not write its claim: \(error)")
            return false
        }
        // An outcome an earlier holder decided but could not publish (the queue refused the move,
        // or it died just after): published now, not run again (a finished job ran again, or
        // failed as "gave up" although it had succeeded).
        if let decided = decidedOutcome(dir) {
            publishDecided(Held(dir: dir, token: token, id: id, kind: nil, attempt: dead, started: nil), as: decided)
            return true
        }
        if stale {  // recorded once the claim is ours (each refused take-over logged it again)
            let who = old?.worker ?? "unknown worker"
            try? queue.appendAttempt(dir, AttemptRecord(
                attempt: dead, worker: who, started: old?.claimedAt, ended: isoTimestamp(), outcome: "lease expired",
                error: "worker \(who) stopped renewing its lease (killed, crashed or paused; out of memory?)"), tag: token)
            queue.log(dir, "attempt \(dead) by \(who): lease expired; taken over by \(identity.name)")
        }
        guard let data = try? queue.fs.retrying({ try queue.fs.read(dir + "/job.json", limit: JobDescriptor.maxBytes + 1) }) else {
            logger.warning("took over \(id) but cannot read its job.json; its lease will expire")
            return false
        }
        let descriptor: JobDescriptor
        do { descriptor = try JobDescriptor.parse(data, fileName: id + ".json") } catch {
            finish(Held(dir: dir, token: token, id: id, kind: nil, attempt: attempt, started: nil),
                   .failure(JobError.classify(error)), retry: .never)
            return true
        }
        if attempt > descriptor.maxAttempts, !queue.fs.exists(dir + "/cancel") {
            let history = queue.readAttempts(dir)
            finish(Held(dir: dir, token: token, id: id, kind: descriptor.kind, attempt: attempt - 1, started: nil),
                   .failure(JobError.transient("gave up after \(descriptor.maxAttempts) attempts; last: \(history.last?.error ?? old?.note ?? "?")")),
                   retry: .exhausted)
            return true
        }
        execute(dir: dir, token: token, record: record, descriptor: descriptor)
        return true
    }

    /// Runs one claimed job and publishes its outcome. `fresh`: claimed from `pending/` (not a
    /// take-over or a handed-back attempt).
    private func execute(dir: String, token: String, record: ClaimRecord, descriptor d: JobDescriptor, fresh: Bool = false) {
        let started = isoTimestamp()
        let t0 = monotonicNow()
        let held = Held(dir: dir, token: token, id: d.id, kind: d.kind, attempt: record.attempt, started: started)
        queue.log(dir, "attempt \(record.attempt)/\(d.maxAttempts) of \(d.kind) job \(d.id) by \(identity.name) (\(token))")
        logger.info("claimed \(d.id) (\(d.kind), attempt \(record.attempt))")
        // Re-checked on disk: the cached set may still hold an id that was archived or retried.
        if scanner.isDone(d.id, fresh: true) {
            finish(held, .failure(JobError.permanent("id '\(d.id)' is already in done/", field: "id",
                                                     hint: "ids are unique; submit under a new id")), retry: .never)
            return
        }
        // `fidq cancel` of a job whose holder died leaves only this file (no heartbeat reads
        // it): whoever takes the job over must not run it again.
        if queue.fs.exists(dir + "/cancel") {
            finish(held, .failure(CancellationError(reason: .cancelled)), retry: .never)
            return
        }
        // Before `prepare`, which may hand the job back (a missing input that may just be
        // invisible): its next attempt is a take-over, which is not checked.
        if fresh, let conflict = outputTakenByRunningJob(d) {
            finish(held, .failure(conflict), retry: .never)
            return
        }
        let prepared: PreparedJob
        do { prepared = try registry.prepare(d, policy: policy, fs: queue.fs) } catch {
            if let missing = error as? JobError, missing.isMissingInput, let wait = inputMayBeInvisible(d) {
                // A dependency just committed it; another host's NFS cache may not show it yet.
                let delay = min(config.backoff, wait)
                queue.log(dir, "status: \(missing.description); its dependencies finished \(format3(config.missingInputWindow - wait, 1))s ago, so it may not be visible here yet: retry in \(format3(delay, 1))s")
                logger.warning("\(d.id): \(missing.description); retrying for up to \(format3(wait, 1))s more")
                release(held, attempt: record.attempt, notBefore: delay, note: missing.description)
                return
            }
            finish(held, .failure(JobError.classify(error)), retry: .upTo(d.maxAttempts))
            return
        }
        let cancel = CancellationToken()
        lock.withLock {
            current = cancel
            if stopping { cancel.cancel(.shutdown) }
        }
        defer { lock.withLock { current = nil } }
        let echo: @Sendable (String) -> Void = { [logger] line in logger.info("\(line)") }
        let context = JobContext(
            id: d.id, kind: d.kind, attempt: record.attempt, maxAttempts: d.maxAttempts, folder: dir, paths: policy,
            fs: queue.fs, cancellation: cancel,
            progress: ProgressReporter(path: dir + "/progress.json", fs: queue.fs, bar: config.progressBar,
                                       label: d.id, line: echo),
            log: JobLog(path: dir + "/log.txt", fs: queue.fs, echo: nil))
        context.startOver = queue.command("retry --fresh", [d.id], anywhere: true) + " starts over"
        context.stoppedFolder = queue.failed + "/" + d.id
        context.runAgain = queue.command("retry", [d.id], anywhere: true)
        let heartbeat = Heartbeat(queue: queue, dir: dir, lease: record.lease(fallback: config.lease), token: cancel,
                                  timeout: d.timeoutS, grace: config.grace) { [self] reason in
            logger.error("job \(d.id) ignored '\(reason.rawValue)' for \(config.grace)s; recording it and exiting")
            finish(held, .failure(CancellationError(reason: reason)), retry: .never)
            _exit(3)
        }
        do { try heartbeat.start() } catch {
            // Without renewals a peer would take the job over midway: hand it back untouched, at
            // once for a worker with room; this one waits longer each time before its next claim,
            // and a drain stops after `claimFailureLimit`.
            threadRefusedSince = threadRefusedSince ?? monotonicNow()
            threadRefusals += 1
            threadRefusal = "\(error)"
            queue.log(dir, "status: \(error); handed back untouched")
            logger.warning("\(d.id): \(error); handed back untouched")
            release(held, attempt: record.attempt, notBefore: 0, note: "\(error)")
            return
        }
        (threadRefusedSince, threadRefusals) = (nil, 0)
        var outcome: Result<JSONValue, Error>
        do {
            context.threadCap = config.threads
            RetainedOutput.adopt(queue: queue, id: d.id, dir: dir)  // out/ kept by `fidq retry`
            OutputFile.sweep(out: context.out, fs: queue.fs)  // streamed outputs killed attempts left
            // One level, never with intermediates: those would re-create a claim folder that was
            // taken over meanwhile (under our old name, without claim or job.json).
            do { try queue.fs.retrying { try queue.fs.mkdir(context.out) } } catch let e as FSError where e.code == EEXIST {
                // Whatever stands at out/ must be a folder, never a symlink the job would write through.
                if (try? queue.fs.info(context.out))?.kind != .directory {
                    throw JobError.permanent("\(context.out) is not a folder (a symlink or file planted there); the job writes only into its own out/")
                }
            } catch let e as FSError where e.code == ENOENT || e.code == ENOTDIR {
                throw CancellationError(reason: .leaseLost)
            } catch {}  // anything else: the handler's first write reports it
            outcome = .success(try prepared.run(context))
        } catch {
            outcome = .failure(error)
        }
        context.noteThreadShortfall()
        heartbeat.stop()
        // A cancel decides the outcome of a failed run, whatever error the stop surfaced as.
        if case .failure = outcome, let reason = cancel.reason { outcome = .failure(CancellationError(reason: reason)) }
        logger.debug("\(d.id) ran \(format3(monotonicNow() - t0, 3))s")
        finish(held, outcome, retry: .upTo(d.maxAttempts))
    }

    /// An error when a job in `running/` (other than `d`) writes one of `d`'s exclusive outputs:
    /// `submit` refuses such a pair, but a descriptor dropped into `pending/` by hand is checked
    /// only here, and running it would silently replace the other's output (or mix two jobs'
    /// files). Checked at a fresh claim only, so the job that started second fails and the one
    /// already running (or resumed after a take-over) goes on; two claimed at the same moment may
    /// both fail, which loses nothing. A best effort, not a lock: on NFS another host's claim may
    /// not be listed yet (directory caches hold for up to a minute), and then both run.
    private func outputTakenByRunningJob(_ d: JobDescriptor) -> JobError? {
        let mine = registry.exclusiveOutputs(of: d, policy: policy)
        guard !mine.isEmpty else { return nil }
        let others = queue.runningExclusiveOutputs(registry: registry, policy: policy).filter { $0.id != d.id }
        for o in mine {
            let key = PathPolicy.realOf(o.path, fs: queue.fs)
            guard let other = others.first(where: { PathPolicy.overlap($0.key, key) }) else { continue }
            let holder = queue.readClaim(queue.running + "/" + other.claim).map { " by \($0.worker)" } ?? ""
            let field = o.field.hasPrefix("params.") ? String(o.field.dropFirst(7)) : o.field
            return .permanent("\(o.path) is also written by job '\(other.id)', running\(holder): one would replace the other's output",
                              field: o.field,
                              hint: "give this job its own \(field), or let it run after '\(other.id)' (\"after\": [\"\(other.id)\"]); then \(queue.command("retry", [d.id], anywhere: true))")
        }
        return nil
    }

    /// Seconds left in the window during which `d`'s missing input may just be invisible here,
    /// or nil when it is really missing: `d` has no dependencies, one is not in `done/`, or the
    /// newest finished longer than `missingInputWindow` ago (filesystem time).
    private func inputMayBeInvisible(_ d: JobDescriptor) -> Double? {
        let deps = d.dependencies
        guard !deps.isEmpty, config.missingInputWindow > 0 else { return nil }
        var newest = -Double.infinity
        for dep in deps {
            let dir = queue.done + "/" + dep
            guard let t = (try? queue.fs.info(dir + "/result.json"))?.mtime ?? (try? queue.fs.info(dir))?.mtime else { return nil }
            newest = max(newest, t)
        }
        let left = config.missingInputWindow - (queue.fsNow(probe: identity.nonce) - newest)
        return left > 0 ? left : nil
    }

    /// Publishes an outcome: commit to done/, release for a retry or a stop, or fail.
    private func finish(_ job: Held, _ outcome: Result<JSONValue, Error>, retry: RetryPolicy) {
        let first = lock.withLock { () -> Bool in
            if finalizing { return false }
            finalizing = true
            return true
        }
        guard first else { return }
        defer { lock.withLock { finalizing = false } }
        let (dir, token, id, attempt) = (job.dir, job.token, job.id, job.attempt)
        let fs = queue.fs
        // Taken over meanwhile (only a take-over removes a claim): write nothing. A folder still
        // under our name then holds neither claim nor job.json: a handler's intermediate mkdir
        // made it anew after the rename, so it holds only this attempt's outputs and goes, or it
        // would linger in running/ as litter that no clean-up may remove. The folder's listing
        // decides, not one lookup (NFS may cache a "not found"); a listing that shows the claim
        // keeps the attempt going.
        if fs.presence(dir + "/claim") == .absent {
            let names = try? fs.retrying { try fs.list(dir) }
            if names?.contains("claim") != true {
                if let names, !names.contains("job.json") {
                    logger.warning("\(id): removing \(dir), re-created by this attempt after the take-over")
                    queue.discard(dir, token: token)
                }
                count("lost")
                logger.warning("\(id): lease lost (another worker took the job over); output discarded")
                return
            }
        }
        switch outcome {
        case .success(let value):
            let result: JSONValue = .object([
                "id": .string(id), "kind": .string(job.kind ?? ""), "attempt": .number(Double(attempt)),
                "worker": .string(identity.name), "token": .string(token),
                "started": .string(job.started ?? ""), "finished": .string(isoTimestamp()), "fidq": .string(fidqVersion),
                // Paths as they will be once committed, not under running/.
                "result": value.replacingPathPrefix(dir, with: queue.done + "/" + id),
            ])
            do {
                try fs.writeAtomically(dir + "/result.json", try jsonEncoder().encode(result), tag: token)
            } catch {
                unpublished(job, "cannot write result.json: \(error)", recorded: false)
                return
            }
            try? queue.appendAttempt(dir, AttemptRecord(attempt: attempt, worker: identity.name, started: job.started,
                                                        ended: isoTimestamp(), outcome: "done", error: nil), tag: token)
            queue.log(dir, "status: done")
            switch queue.commit(dir, id: id, token: token) {
            case .published:
                count("done")
                (claimFailingSince, probeRescued) = (nil, false)
                logger.info("done \(id)")
            case .leaseLost:
                count("lost")
                logger.warning("\(id): lease lost (another worker took the job over); output discarded")
            case .alreadyCommitted:
                count("lost")
                logger.warning("\(id): already committed by another worker; output discarded")
                queue.discard(dir, token: token)
            case .failed(let why):
                unpublished(job, "cannot move it to done/: \(why)", recorded: true)
            }
        case .failure(let error):
            let cancelled = error as? CancellationError
            if let c = cancelled {
                switch c.reason {
                case .shutdown:
                    queue.log(dir, "status: released (worker stopping); attempt \(attempt) continues elsewhere")
                    release(job, attempt: attempt, notBefore: 0, note: "worker stopped")
                    return
                case .leaseLost:
                    if queue.readClaim(dir)?.token == token {
                        release(job, attempt: attempt, notBefore: 0, note: "lease renewal failed")
                    } else {
                        count("lost")
                        logger.warning("\(id): lease lost (another worker took the job over); output discarded")
                    }
                    return
                case .cancelled, .timeout:
                    break
                }
            }
            var err = JobError.classify(error)
            if let c = cancelled {
                err = c.reason == .timeout ? .permanent("timed out (timeout_s)", field: "timeout_s")
                                           : .permanent("cancelled (fidq cancel)")
            }
            // A full, over-quota or read-only storage outlasts a backoff of seconds: at the default
            // --backoff its attempts were spent in half a minute, failing every job after it.
            if cancelled == nil, err.permanence == .transient, let what = JobError.storageTrouble(err.description) {
                err.retryAfter = max(err.retryAfter ?? 0, Self.storageWait(backoff: config.backoff))
                if err.hint == nil {
                    err.hint = "the storage is \(what): free space there (or raise the quota, or make it writable); each attempt waits "
                        + "\(format3(Self.storageWait(backoff: config.backoff), 0)) s (\(Int(Self.storageWaitFactor)) × --backoff, at most an hour), and once failed, fidq retry \(id) resumes it"
                }
            }
            // `timeout` and `cancelled` are their own end states (status shows them apart from
            // `failed`); both still live in failed/.
            let outcomeName = cancelled.map { $0.reason == .timeout ? "timeout" : "cancelled" }
                ?? (err.permanence == .permanent ? "permanent error" : "transient error")
            let record = AttemptRecord(attempt: attempt, worker: identity.name, started: job.started, ended: isoTimestamp(),
                                       outcome: outcomeName, error: err.description)
            if err.permanence == .transient, case .upTo(let maxAttempts) = retry, attempt < maxAttempts {
                try? queue.appendAttempt(dir, record, tag: token)
                let delay = max(retryDelay(after: attempt), err.retryAfter ?? 0)
                queue.log(dir, "status: transient error, retry \(attempt + 1)/\(maxAttempts) in \(format3(delay, 1))s: \(err.description)")
                logger.warning("\(id): transient error (attempt \(attempt)/\(maxAttempts)): \(err.description)")
                release(job, attempt: attempt + 1, notBefore: delay, note: err.description)
                return
            }
            if case .exhausted = retry {} else { try? queue.appendAttempt(dir, record, tag: token) }
            var fields: [String: JSONValue] = [
                "id": .string(id), "status": .string(cancelled.map { $0.reason == .timeout ? "timeout" : "cancelled" } ?? "failed"),
                "reason": .string(outcomeName), "message": .string(err.message),
                "permanence": .string(err.permanence.rawValue), "worker": .string(identity.name),
                "attempts": (try? JSONValue.from(queue.readAttempts(dir))) ?? .array([]),
            ]
            if let kind = job.kind { fields["kind"] = .string(kind) }
            if let f = err.field { fields["field"] = .string(f) }
            if let h = err.hint { fields["hint"] = .string(h) }
            do {
                try fs.writeAtomically(dir + "/error.json", try jsonEncoder().encode(JSONValue.object(fields)), tag: token)
            } catch {
                // In failed/ without error.json the reason would be lost (status showed nothing).
                unpublished(job, "cannot write error.json: \(error); the attempt failed: \(err.description)", recorded: true)
                return
            }
            queue.log(dir, "status: \(cancelled == nil ? "failed" : outcomeName): \(err.description)")
            switch queue.fail(dir, id: id, token: token) {
            case .published(let path):
                count("failed")
                (claimFailingSince, probeRescued) = (nil, false)
                logger.warning("failed \(id): \(err.description) → \(path)")
            case .leaseLost, .alreadyCommitted:
                count("lost")
                logger.warning("\(id): lease lost while failing it; outcome discarded")
            case .failed(let why):
                unpublished(job, "cannot move it to failed/: \(why); the attempt failed: \(err.description)", recorded: true)
            }
        }
    }

    /// "done" or "failed" when the claim folder holds a decided outcome (result.json, error.json);
    /// a cancel's error.json wins over a result.json it came after: the cancel said it fails.
    private func decidedOutcome(_ dir: String) -> String? {
        let fs = queue.fs, failed = fs.exists(dir + "/error.json")
        return failed && fs.exists(dir + "/cancel") ? "failed" : fs.exists(dir + "/result.json") ? "done" : failed ? "failed" : nil
    }

    /// Moves a folder whose outcome an earlier holder decided to done/ or failed/; a refusal hands
    /// it back again (same attempt: nothing runs), and counts toward a drain's limit.
    private func publishDecided(_ job: Held, as state: String) {
        queue.log(job.dir, "status: publishing the outcome decided before (\(state)); nothing runs again")
        let outcome = state == "done" ? queue.commit(job.dir, id: job.id, token: job.token) : queue.fail(job.dir, id: job.id, token: job.token)
        switch outcome {
        case .published(let path):
            count(state)
            (claimFailingSince, probeRescued) = (nil, false)
            logger.info("\(state) \(job.id) (decided by an earlier attempt) → \(path)")
        case .leaseLost:
            count("lost")
        case .alreadyCommitted:
            count("lost")
            logger.warning("\(job.id): already committed by another worker; this copy discarded")
            queue.discard(job.dir, token: job.token)
        case .failed(let why):
            claimFailed(why)
            release(job, attempt: job.attempt, notBefore: config.backoff, note: "cannot move it to \(state)/: \(why)")
        }
    }

    /// The queue refused this attempt's outcome (result.json, error.json, the move to done/ or
    /// failed/: a full or read-only disk). Written but not moved: handed back as it is, for the
    /// next holder to publish. Not written: handed back as a used attempt with the growing
    /// delay of a transient error (at the same attempt and a fixed delay, a job ran again and
    /// again at "attempt 1" and never reached failed/). `recorded`: attempts.json holds this
    /// attempt already (a failure's record keeps its error; the claim's note says the rest).
    private func unpublished(_ job: Held, _ why: String, recorded: Bool) {
        claimFailed(why)
        if decidedOutcome(job.dir) != nil {  // the next holder publishes it: nothing runs again
            queue.log(job.dir, "status: not published (\(why)); handed back for the next holder to publish in \(format3(config.backoff, 1))s")
            logger.warning("\(job.id): \(why); handed back to be published")
            release(job, attempt: job.attempt, notBefore: config.backoff, note: why)
            return
        }
        if !recorded {
            try? queue.appendAttempt(job.dir, AttemptRecord(attempt: job.attempt, worker: identity.name, started: job.started,
                                                            ended: isoTimestamp(), outcome: "not published", error: why), tag: job.token)
        }
        let delay = retryDelay(after: job.attempt)
        queue.log(job.dir, "status: not published (\(why)); handed back as attempt \(job.attempt + 1) in \(format3(delay, 1))s")
        logger.warning("\(job.id): \(why); handed back as attempt \(job.attempt + 1) in \(format3(delay, 1))s")
        release(job, attempt: job.attempt + 1, notBefore: delay, note: why)
    }

    /// The least wait after a storage error (ENOSPC, EDQUOT, EROFS), in units of `--backoff`
    /// (5 minutes at its default 10 s).
    static let storageWaitFactor = 30.0

    /// The least wait after a storage error: `storageWaitFactor` × `backoff`, at most an hour.
    static func storageWait(backoff: Double) -> Double { min(storageWaitFactor * backoff, 3600) }

    /// The wait before attempt + 1: `--backoff`, doubled per attempt, at most an hour.
    private func retryDelay(after attempt: Int) -> Double { min(config.backoff * Double(1 << min(attempt - 1, 20)), 3600) }

    /// Leaves the claim in running/ with `released: true`, so any worker may take it after `notBefore` s.
    private func release(_ job: Held, attempt: Int, notBefore: Double, note: String) {
        let now = queue.fsNow(probe: identity.nonce)
        let record = ClaimRecord(id: job.id, token: job.token, worker: identity.name, attempt: attempt,
                                 claimedAt: isoTimestamp(), released: true,
                                 notBefore: notBefore > 0 ? now + notBefore : nil, note: note, leaseS: config.lease)
        guard queue.readClaim(job.dir)?.token == job.token else {
            count("lost")
            return
        }
        do {
            try queue.writeClaim(job.dir, record)
            count("released")
            logger.info("released \(job.id) (\(note))")
        } catch {
            // The lease will expire instead; the job is not lost.
            logger.warning("\(job.id): cannot release claim (\(error)); its lease will expire")
        }
    }
}
