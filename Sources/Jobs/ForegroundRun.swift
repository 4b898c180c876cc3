// ForegroundRun: `fidq run JOB.json`: one descriptor, no queue, the same handler code a worker runs.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Runs one descriptor in the foreground into `outDir` (log.txt, progress.json, result.json or
/// error.json, and `out/`), exactly as a worker would run it, without claims or leases.
public struct ForegroundRun {
    public var file: String
    /// Default: `<folder of the file>/<id>.run`.
    public var outDir: String?
    public var workspace: String
    /// For `job:` references; default `<workspace>/queue`.
    public var queue: String?
    public var allowedRoots: [String] = []
    public var progressBar = false
    /// `--threads`: the default and the cap of the job's `threads` param (all cores).
    public var threads = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    /// The log's first line: the command that reproduces the run (default: `fidq run FILE …`).
    public var reproduce: String?

    public init(file: String, workspace: String) {
        self.file = file
        self.workspace = workspace
    }

    /// The queue `folder` lies in: the folder itself or an ancestor holding pending/, running/,
    /// done/ and failed/; nil when none.
    static func queueHolding(_ folder: String, fs: FileSystem) -> String? {
        // A folder is a queue by its layout: the policy's default `queue/` may be a plain folder
        // (the repository's `queue/examples/`).
        var dir = PathPolicy.realOf(folder, fs: fs)
        while dir != "/" && !dir.isEmpty {
            if ["pending", "running", "done", "failed"].allSatisfy({ (try? fs.info(dir + "/" + $0))?.kind == .directory }) { return dir }
            dir = NSStringPath(dir).parent
        }
        return nil
    }

    /// - Returns: the result as JSON.
    /// - Throws: `JobError` (bad descriptor, bad params, the handler's failure).
    public func run(registry: KindRegistry, fs: FileSystem = PosixFileSystem(), cancel: CancellationToken = CancellationToken()) throws -> JSONValue {
        let data = try QueueControl.readJobFile(file, fs: fs)  // the caller names the file (RunCommand does)
        let d = try JobDescriptor.parse(data, fileName: NSStringPath(file).last, idMayDiffer: true)
        return try run(d, registry: registry, fs: fs, cancel: cancel)
    }

    /// Runs `d` (built in memory, e.g. from a subcommand's flags) as `run(registry:)` runs a file;
    /// `file` only places the default `outDir`.
    public func run(_ d: JobDescriptor, registry: KindRegistry, fs: FileSystem = PosixFileSystem(),
                    cancel: CancellationToken = CancellationToken()) throws -> JSONValue {
        let policy = PathPolicy(workspace: workspace, queue: queue ?? workspace + "/queue", allowedRoots: allowedRoots)
        let prepared = try registry.prepare(d, policy: policy, fs: fs)
        let parent = NSStringPath(PathPolicy.normalize(PathPolicy.absolute(file))).parent
        let folder = PathPolicy.normalize(PathPolicy.absolute(outDir ?? parent + "/" + d.id + ".run"))
        if let queueRoot = Self.queueHolding(folder, fs: fs) {
            // A run's folder in a queue reads as a job there (`done/<x>` satisfies `after` and
            // `job:` paths), or sits in pending/ where workers sweep.
            throw JobError.permanent("the run's folder \(folder) is inside the queue \(queueRoot)", field: "--out",
                                     hint: "give --out a folder outside the queue (a job file in pending/ is run by a worker, or from a copy elsewhere)")
        }
        if let info = try? fs.info(folder), info.kind != .directory {
            throw JobError.permanent("\(folder) is a file, not a folder", field: "--out", hint: "give --out a new or existing folder")
        }
        try Self.checkApart(folder, from: prepared.inputs, fs: fs)
        try Self.checkApart(folder, outputs: registry.exclusiveOutputs(of: d, policy: policy), fs: fs)
        try fs.makeDirectories(folder + "/out")
        // One run per folder: a second one in it would resume, sweep or overwrite the first's files
        // (two `fidq embed` shards in one folder would mix their blocks). The lock goes with the process.
        let lock = try Self.lockFolder(folder)
        defer { close(lock) }
        try Self.claim(folder, for: d, workspace: policy.workspace, mayChange: prepared.resumableChanges, canonical: prepared.canonical, fs: fs)
        OutputFile.sweep(out: folder + "/out", fs: fs)  // a killed earlier run's partial outputs
        // An earlier run's verdict is not this one's: a failed rerun beside the old result.json
        // (or a finished one beside an old error.json) would say both.
        for name in ["result.json", "error.json"] where fs.exists(folder + "/" + name) { try fs.unlink(folder + "/" + name) }
        let echo: @Sendable (String) -> Void = { line in fputs(line + "\n", stderr) }
        let progress = ProgressReporter(path: folder + "/progress.json", fs: fs, bar: progressBar, label: d.id, line: echo)
        // On a terminal the log lines (evals, resumes, warnings) go above the bar, not nowhere.
        let log = JobLog(path: folder + "/log.txt", fs: fs, echo: progressBar ? { progress.printLine($0) } : echo)
        defer { progress.endBar() }  // what the caller prints next (a result, an error) starts a line
        log("# reproduce: " + (reproduce ?? policy.runCommand(PathPolicy.normalize(PathPolicy.absolute(file)), out: folder)))
        let context = JobContext(
            id: d.id, kind: d.kind, attempt: 1, maxAttempts: 1, folder: folder, paths: policy, fs: fs,
            cancellation: cancel, progress: progress, log: log, threads: threads)
        // A kind's own subcommand (`fidq train-reader …`) is what its user runs again.
        if let reproduce, case let words = reproduce.split(separator: " "), words.count > 1, words[0] == "fidq" {
            context.runAgain = "the same fidq \(words[1])"
            context.startOver = "rm -r \(shellQuoted(folder + "/out")), then the same fidq \(words[1]), starts over"
        }
        let started = isoTimestamp()
        do {
            defer { context.noteThreadShortfall() }
            let value = try prepared.run(context)
            let result: JSONValue = .object([
                "id": .string(d.id), "kind": .string(d.kind), "result": value, "host": .string(WorkerIdentity().host),
                "fidq": .string(fidqVersion), "started": .string(started), "finished": .string(isoTimestamp()),
            ])
            try fs.writeAtomically(folder + "/result.json", try jsonEncoder().encode(result), tag: "run")
            log("status: done")
            return value
        } catch let c as CancellationError where c.reason == .shutdown {
            // Stopped by a signal at a safe point: what the kind kept (checkpoints, finished
            // batches) stays in the folder, and the same command carries on from it.
            log("status: stopped (signal); the same command resumes from what this run kept")
            throw JobError.transient("stopped by a signal at a safe point; \(folder) keeps what was done",
                                     hint: "run the same command again to resume")
        } catch {
            let e = JobError.classify(error)
            var o: [String: JSONValue] = ["id": .string(d.id), "kind": .string(d.kind), "message": .string(e.message),
                                          "permanence": .string(e.permanence.rawValue)]
            if let f = e.field { o["field"] = .string(f) }
            if let h = e.hint { o["hint"] = .string(h) }
            try? fs.writeAtomically(folder + "/error.json", (try? jsonEncoder().encode(JSONValue.object(o))) ?? Data(), tag: "run")
            log("status: failed: \(e.description)")
            // A run refused by its kind before it wrote anything (a bad value the kind checks
            // against its data) leaves no files to protect: the corrected command may use the folder.
            if e.permanence == .permanent, (try? fs.list(folder + "/out"))?.isEmpty == true {
                try? fs.unlink(folder + "/run.json")
            }
            throw e
        }
    }

    /// Refuses a run folder that is an input or lies inside one (its run.json, log and result
    /// would land among the input's files: `merge --out` inside a shard replaced the shard's
    /// result), or whose `out/` holds one (the outputs would replace it).
    static func checkApart(_ folder: String, from inputs: [(field: String, path: String)], fs: FileSystem) throws {
        let real = PathPolicy.realOf(folder, fs: fs)
        for (field, path) in inputs {
            let input = PathPolicy.realOf(path, fs: fs)
            if PathPolicy.isInside(real, input) || PathPolicy.isInside(input, real + "/out")
                || ["run.json", "log.txt", "progress.json", "result.json", "error.json"].contains(where: { input == real + "/" + $0 }) {
                throw JobError.permanent("the run's folder \(real) overlaps the input \(input)", field: "--out",
                                         hint: "give --out a folder apart from \(field)'s; the run writes run.json, log.txt, result.json and out/ there")
            }
        }
    }

    /// Refuses an output that is one of the run folder's own files (`retrieve`'s `output_path`
    /// naming the run's result.json was replaced by it, and a log.txt output had the log
    /// appended) or its `out/`, or that holds the run folder (the job would write over its log).
    static func checkApart(_ folder: String, outputs: [(field: String, path: String)], fs: FileSystem) throws {
        let real = PathPolicy.realOf(folder, fs: fs)
        let own = ["run.json", "log.txt", "progress.json", "result.json", "error.json", "out", ".run.lock"].map { real + "/" + $0 }
        for (field, path) in outputs {
            let output = PathPolicy.realOf(path, fs: fs)
            if own.contains(output) || PathPolicy.isInside(real, output) {
                throw JobError.permanent("\(field) \(output) overlaps the run's folder \(real)", field: field,
                                         hint: "write it under \(real)/out/ or apart from --out's folder, which holds run.json, log.txt, progress.json and result.json")
            }
        }
    }

    /// What a folder's `run.json` records: the run its files belong to.
    struct Claim: Codable, Equatable {
        var kind: String
        var workspace: String
        /// The params as given (compared less `threads` and the kind's resumable changes).
        var params: JSONValue
        /// The folder's path from the workspace when it lies inside it: the same on a host that
        /// mounts the shared storage elsewhere, so there the workspace counts as the same one.
        var out: String?
    }

    /// Records in `<folder>/run.json` which run the folder's files belong to, and refuses a run of
    /// another kind, workspace or params there (`threads` and `mayChange` aside): the kinds resume
    /// from what they find in `out/` (checkpoints, committed batches, a finished result), which
    /// another run's files would silently stand in for. (A folder from before `run.json` is taken
    /// as it is.)
    static func claim(_ folder: String, for d: JobDescriptor, workspace: String, mayChange: Set<String> = [],
                      canonical: (JSONValue) -> JSONValue? = { _ in nil }, fs: FileSystem) throws {
        let inside = folder.hasPrefix(workspace + "/") ? String(folder.dropFirst(workspace.count + 1)) : nil
        let mine = Claim(kind: d.kind, workspace: workspace, params: d.params, out: inside)
        // A path that exists compares by where it leads: `data/x.json` and `/ws/data/x.json` from
        // the same workspace are one setting (the rerun of a stopped run typed it the other way).
        func samePlace(_ v: JSONValue, _ workspace: String) -> JSONValue {
            switch v {
            case .string(let s) where !s.isEmpty:
                let absolute = PathPolicy.normalize(s.hasPrefix("/") ? s : workspace + "/" + s)
                return fs.exists(absolute) ? .string(PathPolicy.realOf(absolute, fs: fs)) : v
            case .array(let items): return .array(items.map { samePlace($0, workspace) })
            default: return v
            }
        }
        /// `c` as the kind reads it, its params' paths resolved in its workspace.
        func comparable(_ c: Claim) -> Claim {
            var c = c
            c.out = nil
            if let read = canonical(c.params) { c.params = read }  // a default written out is the default
            if case .object(var o) = c.params {
                for key in mayChange.union(["threads"]) { o[key] = nil }
                for (key, value) in o { o[key] = samePlace(value, c.workspace) }
                c.params = .object(o)
            }
            return c
        }
        let path = folder + "/run.json"
        guard let data = try? fs.read(path, limit: 16 << 20), var found = try? JSONDecoder().decode(Claim.self, from: data) else {
            try fs.writeAtomically(path, try jsonEncoder().encode(mine), tag: "run")
            return
        }
        if found.workspace != mine.workspace, let there = found.out, there == mine.out {
            found.workspace = mine.workspace  // this folder at the same place in it: the same workspace, mounted elsewhere
        }
        if comparable(found) != comparable(mine) {
            // Named as typed, leaving out params that differ only in spelling.
            var same = mayChange.union(["threads"])  // may differ: never named
            if case .object(let a) = comparable(found).params, case .object(let b) = comparable(mine).params {
                same.formUnion(a.keys.filter { a[$0] == b[$0] })
                // Options the kind reads as no setting at all (FiD's that change nothing) are in neither.
                var typed = Set<String>()
                for c in [found, mine] { if case .object(let o) = c.params { typed.formUnion(o.keys) } }
                same.formUnion(typed.filter { a[$0] == nil && b[$0] == nil })
            }
            let differences = Self.differences(found, mine, ignoring: same)
            let elsewhere = found.workspace != mine.workspace
                ? "to continue it, run from \(found.workspace) (or pass --workspace \(shellQuoted(found.workspace))) with the same settings; " : ""
            throw JobError.permanent("\(folder) holds a run of other settings (\(differences)); its files are not this run's",
                                     field: "--out", hint: elsewhere + "give this run its own --out folder, or remove \(folder) to start over there")
        }
        try fs.writeAtomically(path, try jsonEncoder().encode(mine), tag: "run")
    }

    /// The first few differences between two claims, as `name: there → here`.
    static func differences(_ a: Claim, _ b: Claim, ignoring same: Set<String> = []) -> String {
        var out: [String] = []
        if a.kind != b.kind { out.append("kind: \(a.kind) there, \(b.kind) here") }
        if a.workspace != b.workspace { out.append("workspace: \(a.workspace) there, \(b.workspace) here") }
        let pa: [String: JSONValue], pb: [String: JSONValue]
        if case .object(let x) = a.params { pa = x } else { pa = [:] }
        if case .object(let y) = b.params { pb = y } else { pb = [:] }
        func text(_ v: JSONValue?) -> String {
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]  // a path reads as typed, not "data\/x"
            guard let v, let data = try? e.encode(v) else { return "unset" }
            return String(decoding: data, as: UTF8.self)
        }
        for key in Set(pa.keys).union(pb.keys).sorted() where pa[key] != pb[key] && !same.contains(key) {
            out.append("\(key): \(text(pa[key])) there, \(text(pb[key])) here")
        }
        return out.prefix(4).joined(separator: "; ") + (out.count > 4 ? "; …" : "")
    }

    /// An exclusive `flock` on `<folder>/.run.lock`, returned as its descriptor (close releases it).
    static func lockFolder(_ folder: String) throws -> Int32 {
        let path = folder + "/.run.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o666)
        guard fd >= 0 else { throw JobError.permanent("cannot open \(path): \(String(cString: strerror(errno)))", field: "--out") }
        // A lock just released can stay held for a moment: a process spawned by its holder's
        // process (a test runner's, a worker's) shares the descriptor between fork and exec.
        // So a held lock is tried again for up to a second before the folder counts as in use.
        var tries = 0
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            tries += 1
            if tries < 20 {
                usleep(50_000)
                continue
            }
            close(fd)
            throw JobError.permanent("\(folder) is in use by another run (it holds \(path))", field: "--out",
                                     hint: "give each run its own --out folder")
        }
        return fd
    }
}

/// `word` as a POSIX shell reads it back: as is when it holds only safe characters, else in single
/// quotes (a quote inside written `'\''`), so a logged command can be pasted and run.
public func shellQuoted(_ word: String) -> String {
    let safe = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@%+=:,./-")
    if !word.isEmpty && word.allSatisfy({ safe.contains($0) }) { return word }
    var quoted = "'"
    for c in word { quoted += c == "'" ? "'\\''" : String(c) }
    return quoted + "'"
}
