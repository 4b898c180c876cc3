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

    /// - Returns: the result as JSON.
    /// - Throws: `JobError` (bad descriptor, bad params, the handler's failure).
    public func run(registry: KindRegistry, fs: FileSystem = PosixFileSystem(), cancel: CancellationToken = CancellationToken()) throws -> JSONValue {
        let data = try fs.read(file, limit: JobDescriptor.maxBytes + 1)
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
        try fs.makeDirectories(folder + "/out")
        OutputFile.sweep(out: folder + "/out", fs: fs)  // a killed earlier run's partial outputs
        let echo: @Sendable (String) -> Void = { line in fputs(line + "\n", stderr) }
        let log = JobLog(path: folder + "/log.txt", fs: fs, echo: progressBar ? nil : echo)
        log("# reproduce: " + (reproduce ?? "fidq run \(file) --workspace \(policy.workspace) --out \(folder)"))
        let context = JobContext(
            id: d.id, kind: d.kind, attempt: 1, maxAttempts: 1, folder: folder, paths: policy, fs: fs,
            cancellation: cancel,
            progress: ProgressReporter(path: folder + "/progress.json", fs: fs, bar: progressBar, label: d.id, line: echo),
            log: log, threads: threads)
        do {
            let value = try prepared.run(context)
            let result: JSONValue = .object(["id": .string(d.id), "kind": .string(d.kind), "result": value, "finished": .string(isoTimestamp())])
            try fs.writeAtomically(folder + "/result.json", try jsonEncoder().encode(result), tag: "run")
            log("status: done")
            return value
        } catch {
            let e = JobError.classify(error)
            var o: [String: JSONValue] = ["id": .string(d.id), "kind": .string(d.kind), "message": .string(e.message),
                                          "permanence": .string(e.permanence.rawValue)]
            if let f = e.field { o["field"] = .string(f) }
            if let h = e.hint { o["hint"] = .string(h) }
            try? fs.writeAtomically(folder + "/error.json", (try? jsonEncoder().encode(JSONValue.object(o))) ?? Data(), tag: "run")
            log("status: failed: \(e.description)")
            throw e
        }
    }
}
