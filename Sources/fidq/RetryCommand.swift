// RetryCommand: `fidq retry [--fresh] ID…`: move failed jobs back to pending/, keeping their out/ unless --fresh.
import ArgumentParser
import Jobs

struct RetryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Move failed (or cancelled) jobs back to pending/; their attempts start again.",
        discussion: "A job's out/ is kept, so a job that checkpoints (training) resumes from its latest checkpoint. --fresh discards out/ and starts over. Several ids are retried with each one's dependencies first (fidq retry reader score: score waits for reader again); when some cannot be retried, all of those are named and none is moved.")

    @OptionGroup var queueOptions: QueueOptions

    @Argument(help: "The job ids.")
    var ids: [String]

    @Flag(help: "Discard the job's out/ (checkpoints included): start over instead of resuming.")
    var fresh = false

    func validate() throws {
        if ids.isEmpty { throw ValidationError("name at least one job id (fidq status lists the failed ones)") }
    }

    func run() throws {
        try queueOptions.checkQueue(mustExist: true)
        do {
            for line in try queueOptions.control().retry(ids, fresh: fresh) { print(line) }
        } catch let e as JobError { throw fail(e.description) }
    }
}
