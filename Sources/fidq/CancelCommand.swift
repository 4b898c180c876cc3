// CancelCommand: `fidq cancel ID`: fail a pending job now, or ask a running one to stop.
import ArgumentParser
import Jobs

struct CancelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Cancel a pending job (moved to failed/) or a running one (stops at its next safe point).")

    @OptionGroup var queueOptions: QueueOptions

    @Argument(help: "The job id.")
    var id: String

    func run() throws {
        do { print(try queueOptions.control().cancel(id)) } catch let e as JobError { throw fail(e.description) }
    }
}
