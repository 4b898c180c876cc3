// WorkerCommand: `fidq worker`: claim and run jobs from a queue until stopped (or drained).
import ArgumentParser
import Foundation
import Jobs
import Logging

struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Claim and run jobs from a queue folder; many workers may share one queue (see queue/README.md).")

    @OptionGroup var queueOptions: QueueOptions
    @OptionGroup var compute: ComputeOptions

    @Flag(help: "Exit when nothing is left that this worker can run.")
    var drain = false

    @Option(help: "Seconds without a heartbeat before another worker may take this worker's job over (written into each claim, so peers use it too).")
    var lease = 90.0

    @Option(help: "Run only these kinds (comma-separated; default: every kind).")
    var kinds: String?

    @Option(help: "Seconds between scans of an idle queue.")
    var poll = 1.0

    @Option(help: "First retry delay in seconds after a transient error (doubles per attempt).")
    var backoff = 10.0

    @Option(help: "Seconds a cancelled job may take to stop before the worker gives up on it and exits.")
    var grace = 60.0

    @Option(name: .customLong("missing-input-window"),
            help: "Seconds after a job's dependencies finished during which a missing input is retried as not yet visible (NFS), not failed.")
    var missingInputWindow = 60.0

    @Option(name: .customLong("max-jobs"), help: ArgumentHelp("Exit after this many jobs.", visibility: .hidden))
    var maxJobs: Int?

    func validate() throws {
        // Written as `!(x ok)` so NaN, which fails every comparison, is refused too.
        if !(lease >= 0.5 && lease.isFinite) { throw ValidationError("--lease must be a finite number of seconds, at least 0.5, got \(lease)") }
        if !(poll > 0 && poll.isFinite) { throw ValidationError("--poll must be a finite number of seconds > 0, got \(poll)") }
        if !(backoff >= 0 && backoff.isFinite) { throw ValidationError("--backoff must be a finite number of seconds >= 0, got \(backoff)") }
        if !(grace >= 0 && grace.isFinite) { throw ValidationError("--grace must be a finite number of seconds >= 0, got \(grace)") }
        if !(missingInputWindow >= 0 && missingInputWindow.isFinite) {
            throw ValidationError("--missing-input-window must be a finite number of seconds >= 0, got \(missingInputWindow)")
        }
        if let kinds, kinds.split(separator: ",").allSatisfy({ $0.trimmingCharacters(in: .whitespaces).isEmpty }) {
            throw ValidationError("--kinds names no kind (give a comma-separated list, e.g. --kinds train_reader,score)")
        }
    }

    func run() throws {
        try queueOptions.checkQueue(mustExist: false)
        compute.apply()
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var config = WorkerConfig(queue: queueOptions.queuePath)
        config.workspace = queueOptions.workspacePath
        config.allowedRoots = queueOptions.allowRoots
        config.threads = compute.resolved
        config.drain = drain
        config.lease = lease
        config.kinds = kinds.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
        config.poll = poll
        config.backoff = backoff
        config.grace = grace
        config.maxJobs = maxJobs
        config.missingInputWindow = missingInputWindow
        config.progressBar = isatty(2) != 0
        let worker = Worker(config: config, registry: Kinds.registry())
        worker.installSignalHandlers()
        let status = worker.run()
        if status != 0 { throw ExitCode(status) }
    }
}
