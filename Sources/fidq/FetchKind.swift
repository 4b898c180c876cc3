// FetchKind: the queue's `fetch` job kind, a thin adapter from Jobs' context to Fetcher.run.
import Fetch
import Foundation
import Jobs

/// `fetch` params are `FetchParams` (the same struct `fidq fetch` builds from its flags); it
/// decodes strictly itself, naming the field, so the registry only adds the path checks.
extension FetchParams: JobParams {
    public var outputPaths: [(field: String, path: String)] { [("dest", dest)] }
    public var inputPaths: [(field: String, path: String)] {
        var paths = passages.map { [("passages", $0)] } ?? []
        if let u = url, let parsed = URL(string: u), parsed.isFileURL { paths.append(("url", parsed.path)) }
        if let m = mirror, let parsed = URL(string: m), parsed.isFileURL { paths.append(("mirror", parsed.path)) }
        return paths
    }

    /// A `dest` the run would refuse at once (something else there, no `replace`) is refused at
    /// submit, as the fetcher words it (submit vouched for it, and the job failed at its start).
    public func validateInputs(resolve: (String) -> String) throws {
        let path = resolve(dest)
        // As `run` gives it to the fetcher: a `job:` passages read resolved, recorded as written.
        var asRun = self
        if let given = passages, given.hasPrefix("job:") {
            asRun.passages = resolve(given)
            asRun.passagesAsWritten = given
        }
        if Fetcher.destConflict(asRun, dest: path) {
            throw JobError.permanent("\(FetchError.destExists(path: path))", field: "params.dest")
        }
    }
}

/// The queue classifies fetch failures as the fetcher does: 4xx, checksum, hostile archive and
/// bad params are permanent; network, 5xx, timeouts and local IO are retried.
extension FetchError: ClassifiedError {
    public var permanence: Permanence { isPermanent ? .permanent : .transient }
    public var retryAfter: Double? {
        if case .retryLater(_, _, let seconds) = self { return seconds }
        return nil
    }
    public var field: String? {
        switch self {
        case .badParams(let field, _, _, _): return field == "params" ? field : "params." + field
        case .localFile(_, let field, _): return "params." + field
        default: return nil
        }
    }
}

struct FetchKind: JobKind {
    var name: String { "fetch" }

    func run(_ params: FetchParams, _ context: JobContext) throws -> FetchResult {
        // The fetcher resolves `dest` against the workspace and refuses escapes itself; the
        // registry has already checked it against the worker's allowed roots.
        let workspace = URL(fileURLWithPath: context.paths.workspace)
        let token = context.cancellation
        var lastPhase = ""
        // Queued jobs read only inside the roots that confine their writes (a shared queue must
        // not copy another user's files); `fidq fetch` in the foreground reads anything.
        let readCheck: ReadCheck = { path, field in
            do { _ = try context.paths.checkInput(path, field: "params." + field, fs: context.fs) } catch let e as JobError {
                throw FetchError.badParams(field: field, expected: "a file inside the workspace or an --allow-root folder",
                                           found: e.message, hint: e.hint)
            }
        }
        // `job:ID/…` names an earlier job's output; the fetcher itself knows only workspace paths.
        var params = params
        // Read at its path here; the marker records the reference as written, so a retry or an
        // identical fetch on a worker that mounts the shared storage elsewhere (or reaches the
        // queue through a symlink) finds this fetch's result, not "something else".
        if let given = params.passages, given.hasPrefix("job:") {
            params.passages = context.resolve(given)
            params.passagesAsWritten = given
        }
        do {
            return try Fetcher.run(
                params, workspace: workspace, roots: context.paths.allowedRoots.map { URL(fileURLWithPath: $0) }, attempt: Self.claimToken(context.folder), readCheck: readCheck,
                progress: { p in
                    if p.phase != lastPhase {
                        lastPhase = p.phase
                        context.log("fetch: \(p.phase) \(p.item)")
                    }
                    if p.phase == "preprocess" {  // counts examples, not bytes
                        context.progress.update(step: Int(p.done), total: p.total.map { Int($0) }, unit: "examples")
                    } else {
                        context.progress.update(step: Int(p.done) >> 20, total: p.total.map { Int($0) >> 20 }, unit: "MiB")
                    }
                },
                isCancelled: { token.isCancelled },
                log: { context.log($0) })
        } catch FetchError.cancelled {
            // Partial downloads stay beside dest; the next attempt resumes with a Range request.
            try context.checkCancelled()
            throw JobError.transient("fetch stopped before it finished")
        }
    }

    /// The claim token from the job folder's name (`running/<id>@<token>`): it names this
    /// attempt's work folder, so a take-over never shares files with a frozen earlier attempt.
    /// Nil for a folder without one (`fidq run --out DIR`); the fetcher makes one up.
    static func claimToken(_ folder: String) -> String? {
        let name = folder.split(separator: "/").last.map(String.init) ?? ""
        guard let at = name.lastIndex(of: "@") else { return nil }
        let token = String(name[name.index(after: at)...])
        return token.isEmpty ? nil : token
    }
}
