// RunCommand: `fidq run JOB.json`: run one descriptor in the foreground, no queue, same code as a worker.
import ArgumentParser
import Foundation
import Jobs

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run one job descriptor in the foreground, without a queue.",
        discussion: "Writes log.txt, progress.json, result.json (or error.json) and out/ into --out, by default <id>.run/ next to the job file.")

    @Argument(help: "The job descriptor (JSON).")
    var file: String

    @Option(help: "Folder for the job's log, result and out/ (default: <id>.run next to the file).")
    var out: String?

    @Option(help: "Relative job paths resolve here; outputs must stay inside (default: the current folder).")
    var workspace: String?

    @Option(help: "Queue whose done/ answers job:ID references (default: <workspace>/queue).")
    var queue: String?

    @Option(name: .customLong("allow-root"), help: "Another folder the job may read and write (repeatable).")
    var allowRoots: [String] = []

    @OptionGroup var compute: ComputeOptions

    func run() throws {
        compute.apply()
        var job = ForegroundRun(file: file, workspace: workspace ?? FileManager.default.currentDirectoryPath)
        job.outDir = out
        job.queue = queue
        job.allowedRoots = allowRoots
        job.threads = compute.resolved
        job.progressBar = isatty(2) != 0
        do {
            let cancel = CancellationToken()
            StopSignals.install(cancelling: cancel)
            let value = try job.run(registry: Kinds.registry(), cancel: cancel)
            print(String(decoding: try jsonEncoder().encode(value), as: UTF8.self))
        } catch let e as JobError {
            throw fail("\(file): \(e.description)")
        }
    }
}
