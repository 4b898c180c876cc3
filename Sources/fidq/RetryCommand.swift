// RetryCommand: `fidq retry ID`: move a failed job back to pending/.
import ArgumentParser
import Jobs

struct RetryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Move a failed (or cancelled) job back to pending/; its attempts start again.")

    @OptionGroup var queueOptions: QueueOptions

    @Argument(help: "The job id.")
    var id: String

    func run() throws {
        do { print(try queueOptions.control().retry(id)) } catch let e as JobError { throw fail(e.description) }
    }
}
