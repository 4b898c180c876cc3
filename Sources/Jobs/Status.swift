// Status: every job's state, attempt, worker, age and progress, read straight from the folders.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// One row of `fidq status`.
public struct JobStatus: Codable, Sendable {
    public var id: String
    /// `pending`, `waiting`, `running`, `released`, `stale`, `done`, `failed`, `timeout`,
    /// `cancelled` (the last three all live in failed/).
    public var state: String
    public var kind: String?
    public var attempt: Int?
    public var worker: String?
    /// Seconds since the job entered this state (for a running job: since its claim).
    public var ageS: Double?
    public var progress: ProgressReporter.Snapshot?
    /// Waiting on what, why it failed, or where the outputs are.
    public var detail: String?
    public var folder: String

    enum CodingKeys: String, CodingKey {
        case id, state, kind, attempt, worker, progress, detail, folder
        case ageS = "age_s"
    }
}

extension Queue {
    /// Every job in the queue (lists all four folders; `done/` costs one listing).
    /// - Parameter lease: the lease for claims that do not record their holder's (`lease_s`).
    public func status(lease: Double = 90) -> [JobStatus] {
        let now = fsNow(probe: "status")
        // Listed in the order jobs move (pending → running → failed or done), so a job that moves
        // while we list is seen twice rather than not at all; the later folder wins below.
        let pendingNames = ((try? fs.list(pending)) ?? []).sorted()
        let runningNames = ((try? fs.list(running)) ?? []).sorted()
        let failedNames = ((try? fs.list(failed)) ?? []).sorted()
        let doneNames = ((try? fs.list(done)) ?? []).sorted()
        var rows: [JobStatus] = []
        var doneIDs = Set<String>()
        func doneRow(_ name: String) -> JobStatus {
            let dir = done + "/" + name
            var row = JobStatus(id: name, state: "done", folder: dir)
            if let data = try? fs.read(dir + "/result.json", limit: 1 << 20),
               case .object(let o)? = try? JSONDecoder().decode(JSONValue.self, from: data) {
                if case .string(let k)? = o["kind"] { row.kind = k }
                if case .number(let a)? = o["attempt"] { row.attempt = Int(a) }
                if case .string(let w)? = o["worker"] { row.worker = w }
            }
            row.ageS = (try? fs.info(dir + "/result.json")).map { now - $0.mtime }
            row.detail = "outputs: \(dir)/out"
            return row
        }
        func failedRow(_ name: String) -> JobStatus {
            let dir = failed + "/" + name
            // `<id>~N`: the job's Nth failure kept beside the first (ids have no `~`).
            let id = name.split(separator: "~", maxSplits: 1).first.map(String.init) ?? name
            var row = JobStatus(id: id, state: "failed", folder: dir)
            if let data = try? fs.read(dir + "/error.json", limit: 1 << 20),
               case .object(let o)? = try? JSONDecoder().decode(JSONValue.self, from: data) {
                if case .string(let k)? = o["kind"] { row.kind = k }
                if case .string(let m)? = o["message"] { row.detail = m }
                // error.json's status tells a timeout or a cancel from a failure (older files:
                // its reason).
                if case .string(let st)? = o["status"] ?? o["reason"], st == "timeout" || st == "cancelled" { row.state = st }
                if case .string(let f)? = o["field"] { row.detail = "\(f): " + (row.detail ?? "") }
                if case .array(let a)? = o["attempts"] { row.attempt = a.count }
                if case .string(let w)? = o["worker"] { row.worker = w }
            } else {
                // Failed while error.json could not be written (a full or read-only disk, or an
                // older fidq): the row said nothing at all.
                row.detail = "no readable error.json (was the disk full?); see its log.txt"
            }
            row.ageS = (try? fs.info(dir + "/error.json")).map { now - $0.mtime }
            if id != name { row.detail = "[failed/\(name)] " + (row.detail ?? "") }
            return row
        }
        for name in doneNames where !name.hasPrefix(".") {
            doneIDs.insert(name)
            rows.append(doneRow(name))
        }
        for name in failedNames where !name.hasPrefix(".") { rows.append(failedRow(name)) }
        for name in runningNames {
            guard let (id, _) = Queue.parseClaimName(name) else { continue }
            let dir = running + "/" + name
            guard fs.exists(dir + "/job.json") else { continue }
            var row = JobStatus(id: id, state: "running", folder: dir)
            let claim = readClaim(dir)
            if let claim {
                row.attempt = claim.attempt
                row.worker = claim.worker
                if claim.released {
                    row.state = "released"
                    row.detail = claim.note
                    if let nb = claim.notBefore, nb > now { row.detail = "retry in \(duration(nb - now)): " + (claim.note ?? "") }
                }
            }
            if let m = try? fs.info(dir + "/claim").mtime, row.state == "running" {
                if now - m > (claim?.lease(fallback: lease) ?? lease) {
                    row.state = "stale"
                    row.detail = "no heartbeat for \(duration(now - m))"
                } else if m > now + 1 {
                    // No renewal dates a claim ahead of the clock (a clock stepped back, a copy).
                    row.detail = "claim dated \(duration(m - now)) ahead of the filesystem's clock: taken over if it stays unchanged for its lease"
                }
            }
            if let data = try? fs.read(dir + "/job.json", limit: JobDescriptor.maxBytes + 1),
               let d = try? JobDescriptor.parse(data, fileName: id + ".json", idMayDiffer: true) { row.kind = d.kind }
            // Since the claim (job.json keeps the drop's mtime), by the filesystem's clock, as
            // `now`; an older claim has only the claimer's wall clock, compared with ours.
            row.ageS = claim?.claimedAtFS.map { now - $0 }
                ?? claim.flatMap { parseISOTimestamp($0.claimedAt) }.map { wallNow() - $0 }
                ?? (try? fs.info(dir + "/claim")).map { now - $0.mtime }
            if let data = try? fs.read(dir + "/progress.json", limit: 65536) {
                row.progress = try? JSONDecoder().decode(ProgressReporter.Snapshot.self, from: data)
            }
            rows.append(row)
        }
        // Ids running or failed (pending ones are asked of the folder): a set, since thousands of
        // jobs may wait behind one (a list scan per dependency made status quadratic).
        let listed = Set(rows.map(\.id))
        let failures = FailureLookup(self)
        for name in pendingNames where name.hasSuffix(".json") && !name.hasPrefix(".") {
            let path = pending + "/" + name
            var row = JobStatus(id: String(name.dropLast(5)), state: "pending", folder: path)
            row.ageS = (try? fs.info(path)).map { now - $0.mtime }
            if let data = try? fs.read(path, limit: JobDescriptor.maxBytes + 1) {
                do {
                    let d = try JobDescriptor.parse(data, fileName: name)
                    row.kind = d.kind
                    let missing = d.dependencies.filter { !doneIDs.contains($0) }
                    if !missing.isEmpty {
                        row.state = "waiting"
                        // A failed or cancelled dependency: the next scan fails this job (a
                        // worker skipping its kind never does), so say so, with the retry that
                        // puts every failed dependency's chain back (this job is still pending).
                        let failedDeps = missing.filter(failures.isFailed)
                        row.detail = "after " + missing.map { dep in
                            failedDeps.contains(dep) ? dep + " (failed)"
                                : fs.exists(pending + "/" + dep + ".json") || listed.contains(dep) ? dep : dep + " (not in the queue)"
                        }.joined(separator: ", ")
                        if !failedDeps.isEmpty {
                            row.detail! += "; " + command("retry", failures.chain(failedDeps))
                        }
                    }
                } catch {
                    row.detail = "invalid: \(JobError.classify(error).description)"
                }
            }
            rows.append(row)
        }
        // A job that finished while the rows were read (its claim gone before it was looked at)
        // is in a second listing of done/ and failed/.
        let seenDone = Set(doneNames), seenFailed = Set(failedNames)
        for name in ((try? fs.list(done)) ?? []).sorted() where !name.hasPrefix(".") && !seenDone.contains(name) {
            rows.append(doneRow(name))
        }
        for name in ((try? fs.list(failed)) ?? []).sorted() where !name.hasPrefix(".") && !seenFailed.contains(name) {
            rows.append(failedRow(name))
        }
        // A job seen in two folders moved between the listings: its pending file or claim folder
        // is gone, and the row of where it went is kept. A row whose file is still there stays
        // (a retried job whose older failure is kept in failed/, a re-drop of a failed id).
        var later: [String: [String]] = [:]  // id → folders of its rows past pending
        for row in rows where !["pending", "waiting"].contains(row.state) { later[row.id, default: []].append(row.folder) }
        return rows.filter { row in
            guard ["pending", "waiting", "running", "released", "stale"].contains(row.state),
                  later[row.id]?.contains(where: { $0 != row.folder }) == true else { return true }
            return fs.exists(row.folder)
        }
    }

    /// The rows of one id, the one `fidq retry` and `fidq cancel` act on first: the job as it is
    /// now (pending, running, done), else its latest failure (`failed/<id>~N` with the highest
    /// N; listed by name, `failed/<id>` came first, the oldest).
    public static func current(_ rows: [JobStatus]) -> [JobStatus] {
        func rank(_ r: JobStatus) -> Int {
            if ["pending", "waiting", "running", "released", "stale"].contains(r.state) { return 1 << 30 }
            if r.state == "done" { return 1 << 29 }
            let name = NSStringPath(r.folder).last
            return name.split(separator: "~", maxSplits: 1).dropFirst().first.flatMap { Int($0) } ?? 1
        }
        return rows.enumerated().sorted { (rank($0.element), -$0.offset) > (rank($1.element), -$1.offset) }.map(\.element)
    }

    /// `fidq status`'s table: one line per job, then counts by state.
    public static func table(_ rows: [JobStatus]) -> String {
        var lines = [["ID", "STATE", "KIND", "ATT", "WORKER", "AGE", "PROGRESS / DETAIL"]]
        for r in rows {
            let prog = r.progress.map { ProgressReporter.render($0) }
            lines.append([r.id, r.state, r.kind ?? "-", r.attempt.map(String.init) ?? "-", r.worker ?? "-",
                          r.ageS.map { duration(max($0, 0)) } ?? "-", [prog, r.detail].compactMap { $0 }.joined(separator: " ")])
        }
        let widths = (0..<6).map { c in lines.map { $0[c].count }.max() ?? 0 }
        var out = lines.map { row in
            (0..<6).map { row[$0] + String(repeating: " ", count: widths[$0] - row[$0].count) }.joined(separator: "  ")
                + "  " + row[6]
        }
        var byState: [String: Int] = [:]
        for r in rows { byState[r.state, default: 0] += 1 }
        out.append(byState.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
                   + (rows.isEmpty ? "empty queue" : ""))
        return out.joined(separator: "\n")
    }
}

/// Seconds since 1970 of `2026-11-28T18:40:01Z` (what `isoTimestamp` writes), nil otherwise.
func parseISOTimestamp(_ s: String) -> Double? {
    let u = Array(s.utf8)
    guard u.count == 20, u[4] == 45, u[7] == 45, u[10] == 84, u[13] == 58, u[16] == 58, u[19] == 90 else { return nil }
    func num(_ a: Int, _ b: Int) -> Int32? {
        var v: Int32 = 0
        for c in u[a..<b] {
            guard c >= 48 && c <= 57 else { return nil }
            v = v * 10 + Int32(c - 48)
        }
        return v
    }
    guard let y = num(0, 4), let mo = num(5, 7), let d = num(8, 10), let h = num(11, 13), let mi = num(14, 16),
          let sec = num(17, 19) else { return nil }
    var t = tm()
    t.tm_year = y - 1900
    t.tm_mon = mo - 1
    t.tm_mday = d
    t.tm_hour = h
    t.tm_min = mi
    t.tm_sec = sec
    return Double(timegm(&t))
}
