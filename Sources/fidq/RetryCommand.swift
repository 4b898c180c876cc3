// RetryCommand: `fidq retry [--fresh] ID`: move a failed job back to pending/, keeping its out/ unless --fresh.
import ArgumentParser
import Jobs

struct RetryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Move a failed (or cancelled) job back to pending/; its attempts start again.",
        discussion: "The job's out/ is kept, so a job that checkpoints (training) resumes from its latest checkpoint. --fresh discards out/ and starts over.")

    @OptionGroup var queueOptions: QueueOptions

    @Argument(help: "The job id.")
    var id: String

    @Flag(help: "Discard the job's out/ (checkpoints included): start over instead of resuming.")
    var fresh = false

    func run() throws {
        do { print(try fresh ? queueOptions.control().retryFresh(id) : queueOptions.control().retry(id)) } catch let e as JobError { throw fail(e.description) }
    }
}
