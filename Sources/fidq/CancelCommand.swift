// CancelCommand: `fidq cancel ID…`: fail pending jobs now, or ask running ones to stop.
import ArgumentParser
import Jobs

struct CancelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Cancel a pending job (moved to failed/) or a running one (stops at its next safe point).",
        discussion: "Several ids are cancelled in the order given; one that cannot be (not pending or running) is reported and the others still are, and the command then exits 1.")

    @OptionGroup var queueOptions: QueueOptions

    @Argument(help: "The job ids.")
    var ids: [String]

    func validate() throws {
        if ids.isEmpty { throw ValidationError("name at least one job id (fidq status lists them)") }
    }

    func run() throws {
        try queueOptions.checkQueue(mustExist: true)
        let control = queueOptions.control()
        var refused: [String] = []
        for id in ids {
            do { print(try control.cancel(id)) } catch let e as JobError { refused.append("\(id): \(e.description)") }
        }
        if !refused.isEmpty { throw fail(refused.joined(separator: "\n")) }
    }
}
