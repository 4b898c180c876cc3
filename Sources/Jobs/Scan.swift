// Scan: one pass over pending/ and running/ that orders what a worker may claim next.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Something a worker can do next.
enum Candidate {
    /// Claim `pending/<name>` and run it (or fail it at once when `error` is set).
    case pending(name: String, folder: String, descriptor: JobDescriptor?, error: JobError?)
    /// Take over `running/<name>`: `stale` (holder died, attempt + 1) or released (same attempt).
    case takeOver(name: String, id: String, stale: Bool)
    /// Remove `running/<name>`: a claim that never received its job (crash between mkdir and rename).
    case cleanUp(name: String)
}

/// The ordered result of one scan.
struct Plan {
    var candidates: [Candidate] = []
    /// Jobs this worker could run later (dependencies pending or running, live claims, backoff).
    var waiting = 0
    var madeAt = 0.0
}

/// Parses and caches pending descriptors and builds plans. Never lists `done/` or `failed/`.
final class QueueScanner {
    let queue: Queue
    let registry: KindRegistry
    let kinds: Set<String>?
    let lease: Double
    let probe: String
    /// Parsed pending entries by name, keyed by what `lstat` says of the file (inode, size,
    /// mtime): a file rewritten in place or still being copied in by a plain `cp` is parsed
    /// again once it changes. The claimed `job.json` is parsed again before it runs, so a
    /// re-drop under a name that was just claimed cannot run stale params.
    private var cache: [String: (key: FileKey, result: Result<JobDescriptor, JobError>)] = [:]
    /// A file that does not parse is failed only once it has not changed for this long
    /// (filesystem time): a `cp` in progress is read again when complete, not failed half-written.
    var settleS = 2.0
    /// Seconds the last scan took (plans are reused for a multiple of it).
    private(set) var lastScanSeconds = 0.0
    private var runningKinds: [String: String] = [:]
    private var knownDone: Set<String> = []

    /// Files whose mtime is ahead of the filesystem's clock (a server clock stepped back, `cp -p`
    /// or `touch -d` of a claim), by `kind:name`: that mtime, and when (monotonic) this scanner
    /// first saw it. Their age cannot be read off the clock, so it counts from that sighting: a
    /// live holder's renewal soon sets a current mtime, a dead one's claim goes stale a lease
    /// later instead of when the clock catches up (hours, for a copied file).
    private var aheadSince: [String: (mtime: Double, since: Double)] = [:]
    private var aheadSeen: Set<String> = []

    /// How old a file of `mtime` is at filesystem time `now` (see `aheadSince`).
    private func age(_ key: String, mtime: Double, now: Double) -> Double {
        guard mtime > now + 1 else { return now - mtime }
        aheadSeen.insert(key)
        let t = monotonicNow()
        if let seen = aheadSince[key], seen.mtime == mtime { return t - seen.since }
        aheadSince[key] = (mtime, t)
        return 0
    }

    /// Rotate the first `spread` equal-priority candidates by a per-worker offset, so workers
    /// scanning the same list do not all race for the same oldest job (1: strict order).
    var spread = 1

    init(queue: Queue, registry: KindRegistry, kinds: Set<String>?, lease: Double, probe: String) {
        self.queue = queue
        self.registry = registry
        self.kinds = kinds
        self.lease = lease
        self.probe = probe
    }

    private var fs: FileSystem { queue.fs }

    /// Whether this worker runs `kind` (its `--kinds` list, or every registered kind).
    func handles(_ kind: String) -> Bool { kinds.map { $0.contains(kind) } ?? true }

    /// A folder name for a pending file whose stem is not a valid id.
    static func folderName(forFile name: String) -> String {
        let stem = name.hasSuffix(".json") ? String(name.dropLast(5)) : name
        if JobDescriptor.isValidID(stem) { return stem }
        let clean = String(stem.map { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) ? $0 : "_" }.prefix(100))
        var h: UInt64 = 1469598103934665603
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 1099511628211 }
        return "bad-" + clean + "-" + String(h & 0xFFFFFF, radix: 36)
    }

    /// What identifies one version of a pending file.
    struct FileKey: Equatable {
        var inode: UInt64
        var size: Int64
        var mtime: Double
    }

    /// Reads and parses one pending entry, or nil when it vanished (claimed meanwhile).
    private func parse(_ name: String) -> (mtime: Double, result: Result<JobDescriptor, JobError>)? {
        guard let info = try? fs.retrying({ try fs.info(queue.pending + "/" + name) }) else { return nil }
        let key = FileKey(inode: info.inode, size: info.size, mtime: info.mtime)
        if let hit = cache[name], hit.key == key { return (info.mtime, hit.result) }
        let result: Result<JobDescriptor, JobError>
        switch info.kind {
        case .symlink:
            result = .failure(.permanent("pending/\(name) is a symbolic link", hint: "drop regular files; fidq submit copies the file"))
        case .directory, .other:
            result = .failure(.permanent("pending/\(name) is not a regular file", hint: "drop regular JSON files"))
        case .regular:
            if info.size > Int64(JobDescriptor.maxBytes) {
                result = .failure(.permanent("descriptor is \(info.size) bytes, over the \(JobDescriptor.maxBytes)-byte limit",
                                             hint: "large inputs belong in files the params name"))
                break
            }
            do {
                let data = try fs.retrying { try fs.read(queue.pending + "/" + name, limit: JobDescriptor.maxBytes + 1) }
                do { result = .success(try JobDescriptor.parse(data, fileName: name)) } catch {
                    result = .failure(JobError.classify(error))
                }
            } catch let e as FSError where e.code == ENOENT {
                cache[name] = nil
                return nil
            } catch {
                return nil  // EIO and friends: try again next scan, do not cache
            }
        }
        cache[name] = (key, result)
        return (info.mtime, result)
    }

    /// `true` once `done/<id>` exists. Cached for dependency checks (done jobs rarely leave);
    /// `fresh` re-checks the disk, as before failing a resubmitted id as "already done": the
    /// earlier job may have been archived or retried since.
    func isDone(_ id: String, fresh: Bool = false) -> Bool {
        if knownDone.contains(id) && !fresh { return true }
        if fs.exists(queue.done + "/" + id) {
            knownDone.insert(id)
            return true
        }
        knownDone.remove(id)
        return false
    }

    func plan() -> Plan {
        var plan = Plan()
        plan.madeAt = monotonicNow()
        let now = queue.fsNow(probe: probe)
        aheadSeen.removeAll(keepingCapacity: true)
        defer { aheadSince = aheadSince.filter { aheadSeen.contains($0.key) } }
        let names = ((try? fs.retrying { try fs.list(queue.pending) }) ?? [])
            .filter { !$0.hasPrefix(".") && $0.hasSuffix(".json") }
        var entries: [(name: String, mtime: Double, result: Result<JobDescriptor, JobError>)] = []
        for name in names {
            guard let (mtime, r) = parse(name) else { continue }
            if case .failure = r, age("p:" + name, mtime: mtime, now: now) < settleS {
                plan.waiting += 1  // maybe a copy in progress: judge it once it stops changing
                continue
            }
            entries.append((name, mtime, r))
        }
        let live = Set(names)
        cache = cache.filter { live.contains($0.key) }

        // running/: takeovers, clean-ups, and what is alive (for dependencies and --drain).
        var runningIDs = Set<String>()
        var takeovers: [Candidate] = []
        let runningNames = (try? fs.retrying { try fs.list(queue.running) }) ?? []
        for name in runningNames {
            guard let (id, _) = Queue.parseClaimName(name) else { continue }
            let dir = queue.running + "/" + name
            let claim = queue.readClaim(dir)
            let leaseTime = (try? fs.info(dir + "/claim").mtime) ?? (try? fs.info(dir).mtime)
            guard let leaseTime else { continue }  // vanished
            // The holder's lease, written into its claim, decides; ours only for old claims.
            let stale = age("r:" + name, mtime: leaseTime, now: now) > (claim?.lease(fallback: lease) ?? lease)
            switch fs.presence(dir + "/job.json") {
            case .present: break
            case .absent:
                // Litter of a claimer that died before moving its job in (the job is still in
                // pending/): cleaned once stale; until then a draining worker waits for it, unless
                // it was taken over before (attempts.json): a folder whose files kept the clean-up
                // from removing it is not waited for, or a drain would never end.
                if stale { takeovers.append(.cleanUp(name: name)) }
                else if !fs.exists(dir + "/attempts.json") { plan.waiting += 1 }
                continue
            case .unknown:
                plan.waiting += 1  // cannot tell what it holds: look again next scan
                continue
            }
            runningIDs.insert(id)
            let kind = runningKind(name, dir)
            guard kind.map(handles) ?? true else { continue }
            if let claim, claim.released {
                if (claim.notBefore ?? 0) <= now { takeovers.append(.takeOver(name: name, id: id, stale: false)) }
                else { plan.waiting += 1 }
            } else if stale {
                takeovers.append(.takeOver(name: name, id: id, stale: true))
            } else {
                plan.waiting += 1
            }
        }
        runningKinds = runningKinds.filter { runningNames.contains($0.key) }

        // pending/: fail-now entries, waiting entries, runnable entries in priority order.
        var byID: [String: JobDescriptor] = [:]
        for e in entries { if case .success(let d) = e.result { byID[d.id] = d } }
        let onCycle = QueueScanner.cycleMembers(byID)
        var failNow: [Candidate] = []
        var runnable: [(d: JobDescriptor, name: String, mtime: Double)] = []
        let failures = Queue.FailureLookup(queue)
        for e in entries {
            switch e.result {
            case .failure(let err):
                failNow.append(.pending(name: e.name, folder: QueueScanner.folderName(forFile: e.name), descriptor: nil, error: err))
            case .success(let d):
                let known = registry.has(d.kind)
                if kinds != nil && !handles(d.kind) { continue }
                if !known {
                    var hint = "known kinds: \(registry.names.joined(separator: ", "))"
                    if let near = closest(d.kind, in: registry.names) { hint = "did you mean '\(near)'? " + hint }
                    failNow.append(.pending(name: e.name, folder: d.id, descriptor: d,
                                            error: .permanent("unknown kind '\(d.kind)'", field: "kind", hint: hint)))
                    continue
                }
                if let cycle = onCycle[d.id] {
                    failNow.append(.pending(name: e.name, folder: d.id, descriptor: d, error: .permanent(
                        "dependency cycle: \(cycle)", field: "after", hint: "remove one of the 'after' links")))
                    continue
                }
                // The same id running (dropped again by hand while it runs): it waits, and once
                // the first is done it fails visibly as already done, rather than both running
                // and one being discarded at commit.
                if runningIDs.contains(d.id) {
                    plan.waiting += 1
                    continue
                }
                var ready = true
                var failedDep: String?
                for dep in d.dependencies where !isDone(dep) {
                    ready = false
                    if byID[dep] != nil || runningIDs.contains(dep) {
                        plan.waiting += 1
                        break
                    }
                    if fs.exists(queue.failed + "/" + dep) { failedDep = dep; break }
                    // Exists nowhere: may be submitted later; does not keep a draining worker.
                }
                if let dep = failedDep {
                    // The hint puts back every failed dependency's chain: one left out would be
                    // refused by that retry (a merge of two failed score shards names both).
                    let chain = failures.chain(d.dependencies.filter { $0 == dep || failures.isFailed($0) })
                    failNow.append(.pending(name: e.name, folder: d.id, descriptor: d, error: .permanent(
                        "dependency '\(dep)' failed (see failed/\(dep)/error.json)", field: "after",
                        hint: queue.command("retry", chain + [d.id], anywhere: true))))
                } else if ready, d.dependencies.allSatisfy({ isDone($0, fresh: true) }) {
                    // The cache may remember a done/ folder archived since: checked again before running.
                    runnable.append((d, e.name, e.mtime))
                } else if ready {
                    plan.waiting += 1
                }
            }
        }
        runnable.sort {
            if $0.d.priority != $1.d.priority { return $0.d.priority > $1.d.priority }
            if $0.mtime != $1.mtime { return $0.mtime < $1.mtime }
            return $0.d.id < $1.d.id
        }
        if spread > 1, runnable.count > 1 {
            let head = runnable.prefix { $0.d.priority == runnable[0].d.priority }.prefix(spread).count
            var h: UInt64 = 1469598103934665603
            for b in probe.utf8 { h = (h ^ UInt64(b)) &* 1099511628211 }
            let k = Int(h % UInt64(head))
            runnable = Array(runnable[k..<head] + runnable[0..<k] + runnable[head...])
        }
        plan.candidates = takeovers + failNow
            + runnable.map { .pending(name: $0.name, folder: $0.d.id, descriptor: $0.d, error: nil) }
        lastScanSeconds = monotonicNow() - plan.madeAt
        return plan
    }

    private func runningKind(_ name: String, _ dir: String) -> String? {
        if let k = runningKinds[name] { return k }
        guard let data = try? fs.read(dir + "/job.json", limit: JobDescriptor.maxBytes + 1),
              let d = try? JobDescriptor.parse(data, fileName: (Queue.parseClaimName(name)?.id ?? "") + ".json", idMayDiffer: true) else { return nil }
        runningKinds[name] = d.kind
        return d.kind
    }

    /// Pending ids that sit on a dependency cycle (or wait on one), with the cycle spelled out.
    /// Kahn's algorithm peels off everything that can finish; what remains cannot.
    static func cycleMembers(_ jobs: [String: JobDescriptor]) -> [String: String] {
        var indegree: [String: Int] = [:]
        var dependents: [String: [String]] = [:]
        for (id, d) in jobs {
            let deps = d.dependencies.filter { jobs[$0] != nil }
            indegree[id] = deps.count
            for dep in deps { dependents[dep, default: []].append(id) }
        }
        var ready = indegree.filter { $0.value == 0 }.map(\.key)
        while let id = ready.popLast() {
            for dependent in dependents[id] ?? [] {
                indegree[dependent]! -= 1
                if indegree[dependent] == 0 { ready.append(dependent) }
            }
        }
        let stuck = Set(indegree.filter { $0.value > 0 }.map(\.key))
        var out: [String: String] = [:]
        for id in stuck.sorted() {
            // Follow stuck dependencies until one repeats: that loop is a cycle.
            var path: [String] = [id]
            var seen: [String: Int] = [id: 0]
            var cur = id
            while let next = jobs[cur]!.dependencies.first(where: { stuck.contains($0) }) {
                if let at = seen[next] {
                    out[id] = (path[at...] + [next]).joined(separator: " → ")
                    break
                }
                seen[next] = path.count
                path.append(next)
                cur = next
            }
            if out[id] == nil { out[id] = "waits on a cycle through " + path.joined(separator: " → ") }
        }
        return out
    }
}
