// Control: submit, cancel and retry, the commands that change a queue from outside a worker.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// A file `submit` refused, with the reason.
public struct SubmitError: Error, CustomStringConvertible {
    public var file: String
    public var error: JobError
    /// Jobs this command dropped before the error (a submit raced by another of the same id).
    public var submitted: [String] = []
    public var description: String {
        "\(file): \(error.description)"
    }
}

/// Operations on a queue that users run: `fidq submit`, `cancel`, `retry`.
public final class QueueControl {
    public let queue: Queue
    public let registry: KindRegistry
    public let policy: PathPolicy
    let identity = WorkerIdentity()

    public init(queue: Queue, registry: KindRegistry, policy: PathPolicy) {
        self.queue = queue
        self.registry = registry
        self.policy = policy
    }

    private var fs: FileSystem { queue.fs }

    /// Where `id` is now: `pending`, `running`, `done`, `failed`, or nil.
    public func state(of id: String) -> String? {
        if fs.exists(queue.pending + "/" + id + ".json") { return "pending" }
        if !runningDirs(id).isEmpty { return "running" }
        if fs.exists(queue.done + "/" + id) { return "done" }
        if fs.exists(queue.failed + "/" + id) { return "failed" }
        return nil
    }

    func runningDirs(_ id: String) -> [String] {
        ((try? fs.list(queue.running)) ?? []).filter { Queue.parseClaimName($0)?.id == id }
    }

    /// The first output of `batch` that another job of the batch, a pending one or a running one
    /// also writes (`JobParams.exclusiveOutputs`, compared as resolved paths): the later writer
    /// would silently replace the other's output. Done and failed jobs are not counted, so a job
    /// may redo a finished one's output on purpose (`retry` checks a failed one as it goes back).
    func exclusiveOutputConflict(_ batch: [JobDescriptor], pending: [JobDescriptor], batchState: String)
        -> (index: Int, field: String, path: String, other: String, state: String)? {
        // Keyed by the real path (symlinks in the existing part followed), so an alias is the same output.
        var owner: [String: (id: String, state: String)] = [:]
        // Each owned path under every folder above it, so the paths overlapping one (itself, its
        // folders, what lies inside it: `PathPolicy.overlap`) are found by lookups, not by a
        // scan of every owner (quadratic: thousands of jobs in one submit took seconds).
        var inside: [String: [String]] = [:]
        func own(_ k: String, _ value: (id: String, state: String)) {
            if owner.updateValue(value, forKey: k) == nil, k.hasPrefix("/") {
                for a in ancestors(k) { inside[a, default: []].append(k) }
            }
        }
        func ancestors(_ k: String) -> [String] {
            var out: [String] = []
            var p = Substring(k)
            while let slash = p.lastIndex(of: "/") {
                p = p[..<slash]
                out.append(p.isEmpty ? "/" : String(p))
            }
            return out
        }
        func overlapping(_ k: String) -> [String] {
            guard k.hasPrefix("/") else { return [] }  // as `overlap`: only absolute paths meet
            return ([k] + ancestors(k)).filter { owner[$0] != nil } + (inside[k] ?? [])
        }
        func key(_ path: String) -> String { PathPolicy.realOf(path, fs: fs) }
        for d in pending {
            for o in registry.exclusiveOutputs(of: d, policy: policy) { own(key(o.path), (d.id, "pending")) }
        }
        for o in queue.runningExclusiveOutputs(registry: registry, policy: policy) { own(o.key, (o.id, "running")) }
        // Jobs one of which waits for the other (`after`, `job:`) never run together: one may
        // write inside the other's output (an example world, then an index in its folder).
        var deps: [String: [String]] = [:]
        for d in pending + batch { deps[d.id] = d.dependencies }
        func waits(_ a: String, for b: String) -> Bool {
            var seen: Set<String> = [], stack = [a]
            while let x = stack.popLast() {
                for y in deps[x] ?? [] where seen.insert(y).inserted {
                    if y == b { return true }
                    stack.append(y)
                }
            }
            return false
        }
        for (i, d) in batch.enumerated() {
            for o in registry.exclusiveOutputs(of: d, policy: policy) {
                let k = key(o.path)
                for path in overlapping(k) {
                    guard let other = owner[path], other.id != d.id,
                          k == path || !(waits(d.id, for: other.id) || waits(other.id, for: d.id)) else { continue }
                    return (i, o.field, o.path, other.id, other.state)
                }
                own(k, (d.id, batchState))
            }
        }
        return nil
    }

    /// The descriptors in `pending/` (unreadable ones skipped: a worker fails them).
    func pendingDescriptors() -> [JobDescriptor] {
        ((try? fs.list(queue.pending)) ?? []).compactMap { name in
            guard name.hasSuffix(".json") && !name.hasPrefix("."),
                  let data = try? fs.read(queue.pending + "/" + name, limit: JobDescriptor.maxBytes + 1) else { return nil }
            return try? JobDescriptor.parse(data, fileName: name)
        }
    }

    /// The bytes of a job file a user named: a regular file of at most `JobDescriptor.maxBytes`
    /// (a folder, link or FIFO named, not a raw errno). Errors leave the file's name to the caller.
    static func readJobFile(_ file: String, fs: FileSystem) throws -> Data {
        guard let info = try? fs.info(file) else {
            throw JobError.permanent(fs.exists(file) ? "cannot read the file" : "no such file",
                                     hint: "pass job descriptor files; the queue folder is given with --queue")
        }
        switch info.kind {
        case .regular: break
        case .directory:
            throw JobError.permanent("is a folder, not a job file",
                                     hint: "pass the job files in it (\(file)/*.json); the queue folder is given with --queue")
        case .symlink: throw JobError.permanent("is a symbolic link, not a regular file", hint: "pass the file it points to")
        case .other: throw JobError.permanent("not a regular file (a FIFO, socket or device)")
        }
        if info.size > Int64(JobDescriptor.maxBytes) { throw JobError.permanent("larger than \(JobDescriptor.maxBytes) bytes") }
        return try fs.read(file, limit: JobDescriptor.maxBytes + 1)
    }

    /// Validates every file, then drops them all into `pending/` (temp name + exclusive link), or
    /// none; a drop that fails part way (another submit of an id at the same moment, a full disk)
    /// throws naming the ones already dropped (`SubmitError.submitted`).
    ///
    /// Refused: unreadable or invalid descriptors, unknown kinds, bad params, outputs outside the
    /// workspace, missing inputs, ids already in the queue, dependencies that failed or exist
    /// nowhere (neither queued nor in this batch), dependency cycles, and an output another
    /// pending, running or submitted job also writes.
    /// With `dryRun` every check runs and nothing is written (`fidq submit --dry-run`).
    /// - Returns: the ids dropped (or that would be), in order.
    public func submit(files: [String], dryRun: Bool = false) throws -> [String] {
        var batch: [(file: String, d: JobDescriptor, data: Data)] = []
        var seen: [String: String] = [:]  // id → the file that has it
        for file in files {
            func refuse(_ e: JobError) -> SubmitError { SubmitError(file: file, error: e) }
            let data: Data
            do { data = try Self.readJobFile(file, fs: fs) } catch { throw refuse(JobError.classify(error)) }
            var d: JobDescriptor
            do {
                d = try JobDescriptor.parse(data, fileName: NSStringPath(file).last, idMayDiffer: true)
                _ = try registry.prepare(d, policy: policy, fs: fs, checkJobInputs: false)
            } catch { throw refuse(JobError.classify(error)) }
            if let where_ = state(of: d.id) {
                throw refuse(.permanent("id '\(d.id)' is already \(where_)", field: "id",
                                        hint: where_ == "failed" ? queue.command("retry", [d.id]) : "pick a new id"))
            }
            if let first = seen[d.id] {
                throw refuse(.permanent("id '\(d.id)' appears twice: \(first) has it too", field: "id", hint: "give each job its own id"))
            }
            seen[d.id] = file
            batch.append((file, d, data))
        }
        let batchIDs = Set(batch.map(\.d.id))
        var graph: [String: JobDescriptor] = [:]
        for d in pendingDescriptors() { graph[d.id] = d }
        for b in batch {
            graph[b.d.id] = b.d
            var missing: [String] = []
            for dep in b.d.dependencies where !batchIDs.contains(dep) {
                switch state(of: dep) {
                case "failed":
                    throw SubmitError(file: b.file, error: .permanent("dependency '\(dep)' failed", field: "after", hint: queue.command("retry", [dep])))
                case nil: missing.append(dep)
                default: break
                }
            }
            if !missing.isEmpty {
                // Every missing one at once, and where each comes from: a `job:` path in the
                // params is a dependency too, which `after` does not show.
                let named = missing.map { "'\($0)'" + (b.d.after.contains($0) ? "" : " (a job:\($0)/… path in params)") }
                throw SubmitError(file: b.file, error: .permanent(
                    (missing.count == 1 ? "dependency \(named[0]) is" : "dependencies \(named.joined(separator: ", ")) are") + " not in the queue",
                    field: "after", hint: "submit \(missing.count == 1 ? "it" : "them") first or in the same command"))
            }
        }
        if let c = exclusiveOutputConflict(batch.map(\.d), pending: graph.values.filter { !batchIDs.contains($0.id) },
                                              batchState: "in this submit") {
            throw SubmitError(file: batch[c.index].file, error: .permanent(
                "\(c.path) is also written by job '\(c.other)' (\(c.state)): one would replace the other's output",
                field: c.field, hint: "give each job its own \(c.field.hasPrefix("params.") ? String(c.field.dropFirst(7)) : c.field)"))
        }
        let cycles = QueueScanner.cycleMembers(graph)
        for b in batch { if let c = cycles[b.d.id] { throw SubmitError(file: b.file, error: .permanent("dependency cycle: \(c)", field: "after")) } }
        if dryRun { return batch.map(\.d.id) }
        try queue.createLayout()
        // Each drop is exclusive: another submit of the same id at the same moment passed the
        // checks above too, and a replacing rename would let both report success with one job
        // (where the file system has no hard links, `publish` falls back to a check and rename).
        for (i, b) in batch.enumerated() {
            let dropped: Bool
            do {
                dropped = try fs.publish(queue.pending + "/" + b.d.id + ".json", b.data, tag: identity.newToken())
            } catch {
                throw SubmitError(file: b.file, error: JobError.classify(error), submitted: batch.prefix(i).map(\.d.id))
            }
            if !dropped {
                throw SubmitError(file: b.file, error: .permanent(
                    "id '\(b.d.id)' was submitted by another command at the same moment; its job is the queued one",
                    field: "id", hint: queue.command("status", [b.d.id]) + "; pick a new id to queue this one as well"),
                    submitted: batch.prefix(i).map(\.d.id))
            }
        }
        return batch.map(\.d.id)
    }

    /// Refuses anything but a job id (`[A-Za-z0-9._-]{1,128}`, not `.` or `..`), as descriptors
    /// do: ids become path components, and `fidq retry ../done/X` must not reach done/.
    static func checkID(_ id: String) throws {
        if !JobDescriptor.isValidID(id) {
            throw JobError.permanent("'\(id)' is not a job id", field: "id",
                                     hint: "ids match [A-Za-z0-9._-]{1,128}; see fidq status")
        }
    }

    /// Cancels a pending job (moved to `failed/` now) or a running one (asked to stop).
    /// - Returns: what happened, for the user.
    public func cancel(_ id: String) throws -> String {
        try QueueControl.checkID(id)
        let token = identity.newToken()
        let record = ClaimRecord(id: id, token: token, worker: identity.name + " (fidq cancel)", attempt: 1,
                                 claimedAt: isoTimestamp(), released: false)
        if fs.exists(queue.pending + "/" + id + ".json"),
           let dir = queue.claimPending(name: id + ".json", id: id, record: record) {
            RetainedOutput.adopt(queue: queue, id: id, dir: dir)  // so a later retry still resumes
            return failCancelled(dir, id: id, token: token)
        }
        if let why = queue.lastClaimFailure, fs.exists(queue.pending + "/" + id + ".json") {
            // The queue refused the claim (full, read-only): it said "no pending job … it is pending".
            throw JobError.transient("cannot cancel '\(id)', pending: the queue refused to claim it (\(why))",
                                     hint: (why.contains("(errno 13)") || why.contains("(errno 1)") ? Queue.refusalCause(why) + ", " : "free space in (or remount) \(queue.root), ")
                                        + "then run \(queue.command("cancel", [id])) again")
        }
        let dirs = runningDirs(id)
        if dirs.isEmpty {
            throw JobError.permanent("no pending or running job '\(id)'", hint: state(of: id).map { "it is \($0)" })
        }
        let now = queue.fsNow(probe: "cancel")
        for name in dirs {
            let dir = queue.running + "/" + name
            // A released claim, or a stale one (its worker died: no heartbeat for its lease, as
            // a worker's scan judges it), has no one to stop at a safe point: taken over and
            // failed now. A cancel file there waited for the next worker to start.
            guard let claim = queue.readClaim(dir) else {
                try fs.writeAtomically(dir + "/cancel", Data(isoTimestamp().utf8), tag: token)
                continue
            }
            let heartbeat = (try? fs.info(dir + "/claim").mtime) ?? now
            let stale = !claim.released && now - heartbeat > claim.lease(fallback: 90) && fs.exists(dir + "/job.json")
            if claim.released || stale, let mine = queue.takeOver(name: name, id: id, token: token) {
                if stale {  // the dead attempt, as a worker's take-over records it
                    try? queue.appendAttempt(mine, AttemptRecord(
                        attempt: claim.attempt, worker: claim.worker, started: claim.claimedAt, ended: isoTimestamp(), outcome: "lease expired",
                        error: "worker \(claim.worker) stopped renewing its lease (killed, crashed or paused; out of memory?)"), tag: token)
                    queue.log(mine, "attempt \(claim.attempt) by \(claim.worker): lease expired; taken over by \(identity.name) (fidq cancel)")
                }
                var r = record
                r.attempt = claim.attempt
                try queue.writeClaim(mine, r)
                return failCancelled(mine, id: id, token: token)
            }
            try fs.writeAtomically(dir + "/cancel", Data(isoTimestamp().utf8), tag: token)
        }
        return "cancel requested: '\(id)' stops at its next safe point and goes to failed/ (to done/ if it finishes first)"
    }

    private func failCancelled(_ dir: String, id: String, token: String) -> String {
        var fields: [String: JSONValue] = [
            "id": .string(id), "status": .string("cancelled"), "reason": .string("cancelled"), "message": .string("cancelled (fidq cancel)"),
            "permanence": .string("permanent"), "attempts": (try? JSONValue.from(queue.readAttempts(dir))) ?? .array([]),
        ]
        // The kind, so status shows what was cancelled (a job cancelled before it ran has no attempt).
        if let data = try? fs.read(dir + "/job.json", limit: JobDescriptor.maxBytes + 1),
           let d = try? JobDescriptor.parse(data, fileName: id + ".json") {
            fields["kind"] = .string(d.kind)
        }
        let error: JSONValue = .object(fields)
        var unrecorded = ""
        do { try fs.writeAtomically(dir + "/error.json", try jsonEncoder().encode(error), tag: token) } catch {
            unrecorded = " (its error.json could not be written: \(error))"
        }
        queue.log(dir, "status: failed: cancelled (fidq cancel)")
        switch queue.fail(dir, id: id, token: token) {
        case .published(let path): return "cancelled '\(id)' → \(path)" + unrecorded
        case .failed(let why):
            // The queue refused the move (it said "taken by a worker meanwhile", and the job then
            // ran): the claim is handed back with a cancel file, and whoever takes it publishes
            // the failure written here (or, without it, stops the job at once).
            try? fs.writeAtomically(dir + "/cancel", Data(isoTimestamp().utf8), tag: token)
            var r = queue.readClaim(dir) ?? ClaimRecord(id: id, token: token, worker: identity.name + " (fidq cancel)", attempt: 1,
                                                        claimedAt: isoTimestamp(), released: false)
            r.released = true
            r.note = "cancelled; the move to failed/ was refused: \(why)"
            try? queue.writeClaim(dir, r)
            return "cancel of '\(id)' recorded, but the queue refused its move to failed/ (\(why)); the next worker to take it fails it"
        default: return "'\(id)' was taken by a worker meanwhile; run \(queue.command("cancel", [id])) again"
        }
    }

    /// `fidq retry A B …`: every id checked first, then retried with each one's dependencies
    /// among them first. A job whose dependency is still in failed/ when a worker scans fails
    /// again at once, so the order matters, and a failed dependency left out is refused.
    public func retry(_ ids: [String], fresh: Bool = false) throws -> [String] {
        var after: [String: [String]] = [:]
        // Every id is checked, and every one that cannot be retried named, before anything moves.
        var refused: [(id: String, error: JobError)] = []
        for id in ids {
            do {
                try QueueControl.checkID(id)
                guard fs.exists(queue.latestFailed(id)) else {
                    throw JobError.permanent("no failed job '\(id)'", hint: state(of: id).map { "it is \($0)" })
                }
                try refuseIfDone(id)
                after[id] = queue.failedDependencies(id)
            } catch let e as JobError { refused.append((id, e)) }
        }
        if refused.count == 1 { throw refused[0].error }
        if refused.count > 1 {
            throw JobError.permanent("\(refused.count) of the \(ids.count) jobs cannot be retried, so none was: "
                                         + refused.map { $0.error.message + ($0.error.hint.map { " (\($0))" } ?? "") }.joined(separator: "; "),
                                     hint: queue.command("status", []) + " lists the failed jobs")
        }
        // A job whose dependency stays in failed/ would fail again at the next scan: name the chain.
        for id in ids {
            for dep in after[id] ?? [] where after[dep] == nil && queue.stillFailed(dep) {
                // Every failed dependency left out, of every id: a hint naming only this one
                // would be refused in turn for the next.
                let missing = ids.flatMap { after[$0] ?? [] }.filter { after[$0] == nil && queue.stillFailed($0) }
                let ancestry = queue.failedAncestry(of: missing)
                let chain = ancestry + ids.filter { !ancestry.contains($0) }
                throw JobError.permanent("'\(id)' depends on '\(dep)', which is failed too; retried alone, it would fail again at once",
                                         hint: queue.command(fresh ? "retry --fresh" : "retry", chain))
            }
        }
        // Back in pending/, a job must not write what a job submitted since it failed writes.
        let retried = ids.compactMap { id in
            (try? fs.read(queue.latestFailed(id) + "/job.json", limit: JobDescriptor.maxBytes + 1))
                .flatMap { try? JobDescriptor.parse($0, fileName: id + ".json") }
        }
        if let c = exclusiveOutputConflict(retried, pending: pendingDescriptors(), batchState: "retried with it") {
            let id = retried[c.index].id
            throw JobError.permanent("'\(id)' writes \(c.path), which job '\(c.other)' (\(c.state)) also writes: one would replace the other's output",
                                     field: c.field, hint: "let '\(c.other)' finish (or \(queue.command("cancel", [c.other]))), then \(queue.command("retry", [id]))")
        }
        var order: [String] = []
        var visiting: Set<String> = []
        func visit(_ id: String) {
            if order.contains(id) || visiting.contains(id) { return }
            visiting.insert(id)
            for dep in after[id] ?? [] where after[dep] != nil { visit(dep) }
            order.append(id)
        }
        for id in ids { visit(id) }
        var lines: [String] = []
        for id in order {
            do { lines.append(try fresh ? retryFresh(id) : retry(id)) } catch var e as JobError where !lines.isEmpty {
                e.message += " (already pending again: \(order.prefix(lines.count).joined(separator: ", ")))"
                throw e
            }
        }
        return lines
    }

    /// A failed id that is also in done/ (an earlier failure kept after a later run succeeded)
    /// would fail at once as already done: refused, saying so.
    private func refuseIfDone(_ id: String) throws {
        guard fs.exists(queue.done + "/" + id) else { return }
        throw JobError.permanent("'\(id)' is also in done/ (a later run of it succeeded); retried, it would fail at once as already done",
                                 hint: "to run it again, archive \(queue.done)/\(id) first (see queue/README.md), then \(queue.command("retry", [id]))")
    }

    /// Moves `id`'s latest failure (`failed/<id>`, or `failed/<id>~N` after several) back to
    /// `pending/<id>.json`; attempts start again at 1.
    public func retry(_ id: String) throws -> String {
        try QueueControl.checkID(id)
        let dir = queue.latestFailed(id)
        guard fs.exists(dir) else { throw JobError.permanent("no failed job '\(id)'", hint: state(of: id).map { "it is \($0)" }) }
        if let s = state(of: id), s == "pending" || s == "running" { throw JobError.permanent("'\(id)' is already \(s)") }
        try refuseIfDone(id)
        let data = try fs.read(dir + "/job.json", limit: JobDescriptor.maxBytes + 1)
        let token = identity.newToken()
        // Its out/ is kept at `pending/.<id>.out` and adopted by the next claim, so a job that
        // checkpoints resumes (`retryFresh` starts over). The failed folder's out/ is newer than
        // any kept by an earlier retry; without one, a crashed earlier retry may have parked it.
        var kept = fs.exists(RetainedOutput.path(queue, id)), moved = false
        if fs.exists(dir + "/out") {
            RetainedOutput.discard(queue: queue, id: id, token: token)
            try fs.retrying { try fs.rename(dir + "/out", RetainedOutput.path(queue, id)) }
            (kept, moved) = (true, true)
        }
        let history = RetainedOutput.historyPath(queue, id, token: token), marker = RetainedOutput.historyMarker(queue, id)
        let marked = (try? fs.writeAtomically(marker, Data((history + "\n").utf8), tag: token)) != nil
        do { try fs.writeAtomically(queue.pending + "/" + id + ".json", data, tag: token) } catch {
            try? fs.unlink(marker)
            // Not retried (a full disk, say): its out/ goes back where `fidq status` shows it.
            if moved { try? fs.rename(RetainedOutput.path(queue, id), dir + "/out") }
            throw error
        }
        // The failed folder's records stay beside it (out/ went on with the job); the next log names them.
        let keptLog = marked && (try? fs.retrying { try fs.rename(dir, history) }) != nil
        if !keptLog {
            try? fs.unlink(marker)
            queue.discard(dir, token: token)
        }
        return "'\(id)' is pending again" + (kept ? " with its out/ (it resumes from its checkpoints; --fresh starts over)" : "")
            + (keptLog ? "; its earlier log: \(history)/log.txt" : "")
    }

    /// `fidq retry --fresh`: discards the failed job's `out/` (and any kept by an earlier retry),
    /// then retries it: the job starts over.
    public func retryFresh(_ id: String) throws -> String {
        guard JobDescriptor.isValidID(id) else {
            throw JobError.permanent("'\(id)' is not a job id", field: "id", hint: "ids match [A-Za-z0-9._-]{1,128}; see fidq status")
        }
        let dir = queue.latestFailed(id)
        guard fs.exists(dir) else { throw JobError.permanent("no failed job '\(id)'", hint: state(of: id).map { "it is \($0)" }) }
        if let s = state(of: id), s == "pending" || s == "running" { throw JobError.permanent("'\(id)' is already \(s)") }
        try refuseIfDone(id)
        let token = identity.newToken()
        RetainedOutput.discard(queue: queue, id: id, token: token)
        let trash = queue.tmp + "/discard-out-" + id + "-" + token
        if (try? fs.retrying { try fs.rename(dir + "/out", trash) }) != nil { try? fs.removeTree(trash) }
        return try retry(id)
    }
}

extension Queue {
    /// The exclusive outputs (`JobParams.exclusiveOutputs`) of the jobs in `running/`, keyed by
    /// real path (symlinks in the existing part followed, so an alias is the same output), with
    /// the claim folder's name. Unreadable claims are skipped.
    func runningExclusiveOutputs(registry: KindRegistry, policy: PathPolicy)
        -> [(key: String, id: String, claim: String, field: String, path: String)] {
        var found: [(key: String, id: String, claim: String, field: String, path: String)] = []
        for name in (try? fs.list(running)) ?? [] {
            guard let claim = Queue.parseClaimName(name),
                  let data = try? fs.read(running + "/" + name + "/job.json", limit: JobDescriptor.maxBytes + 1),
                  let d = try? JobDescriptor.parse(data, fileName: claim.id + ".json") else { continue }
            for o in registry.exclusiveOutputs(of: d, policy: policy) {
                found.append((PathPolicy.realOf(o.path, fs: fs), d.id, name, o.field, o.path))
            }
        }
        return found
    }
}
