// RetainedOutput: the out/ that `fidq retry` keeps for a failed job's next attempt.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `fidq retry ID` parks `failed/<id>/out` at `pending/.<id>.out` (a dot-name, which scans and
/// status ignore) beside `pending/<id>.json`; the worker that claims the job renames it to its
/// claim's `out/` before the handler starts, so a failed training resumes from its checkpoints.
/// `fidq retry --fresh ID` discards it instead.
enum RetainedOutput {
    static func path(_ queue: Queue, _ id: String) -> String { queue.pending + "/." + id + ".out" }

    /// `pending/.<id>.history`: where `fidq retry` kept the failed attempts' folder (log.txt,
    /// error.json, attempts.json), which the next attempt's log names.
    static func historyMarker(_ queue: Queue, _ id: String) -> String { queue.pending + "/." + id + ".history" }

    /// Where `fidq retry` keeps a failed folder's own records: beside it under a dot-name (scans
    /// and status skip it). A retry deleted them, and with them every earlier attempt's log (its
    /// evaluations, its error). The marker naming it is written before the job is pending again,
    /// so its first claim reads it.
    static func historyPath(_ queue: Queue, _ id: String, token: String) -> String { queue.failed + "/." + id + ".retried-" + token }

    /// Moves a kept `out/` into the claim folder `dir` (before `out/` is created there). If the
    /// claim was taken over meanwhile the rename finds no `dir` and the taker adopts it instead.
    /// The log names where the earlier attempts' records were kept.
    static func adopt(queue: Queue, id: String, dir: String) {
        let fs = queue.fs
        let marker = historyMarker(queue, id)
        if let data = try? fs.read(marker, limit: 4096), let kept = String(data: data, encoding: .utf8)?.split(separator: "\n").first {
            queue.log(dir, "earlier attempts (before fidq retry): \(kept)/log.txt")
            try? fs.unlink(marker)
        }
        let kept = path(queue, id)
        guard let info = try? fs.info(kept) else { return }
        // Only a real folder: a symlink planted at the kept name (anyone may write pending/)
        // became out/, and the job wrote and swept wherever it pointed.
        guard info.kind == .directory else {
            try? fs.unlink(kept)
            queue.log(dir, "ignored \(kept): not a folder kept by fidq retry (a \(info.kind == .symlink ? "symlink" : "file")); removed")
            return
        }
        do {
            // rename onto an absent (or empty) out/; a non-empty out/ is never replaced.
            try fs.retrying { try fs.rename(kept, dir + "/out") }
        } catch {
            // A retransmitted NFS rename may report failure after it worked.
            if fs.exists(kept) || !fs.exists(dir + "/out") {
                queue.log(dir, "could not adopt the out/ kept by fidq retry (\(error)); it stays at \(kept)")
                return
            }
        }
        queue.log(dir, "out/ kept by fidq retry adopted: the job resumes from its checkpoints")
    }

    /// Renames a kept `out/` to `.tmp/` and deletes it.
    static func discard(queue: Queue, id: String, token: String) {
        let kept = path(queue, id)
        guard queue.fs.exists(kept) else { return }
        let trash = queue.tmp + "/discard-retained-" + id + "-" + token
        if (try? queue.fs.rename(kept, trash)) != nil { try? queue.fs.removeTree(trash) }
    }
}
