// SubmitCommand: `fidq submit FILE…`: validate job files and drop them into pending/.
import ArgumentParser
import Jobs

struct SubmitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Validate job files and drop them into the queue; refuses anything that would fail.")

    @OptionGroup var queueOptions: QueueOptions

    @Argument(help: "Job descriptor files (JSON).")
    var files: [String]

    @Flag(name: .customLong("dry-run"), help: "Check the files as a submit would, and drop nothing.")
    var dryRun = false

    func run() throws {
        try queueOptions.checkQueue(mustExist: false)
        let control = queueOptions.control()
        do {
            for id in try control.submit(files: files, dryRun: dryRun) {
                print(dryRun ? "valid \(id) (dry run: not submitted)" : "submitted \(id) → \(control.queue.pending)/\(id).json")
            }
        } catch let e as SubmitError {
            throw fail("refused \(e.description); nothing was submitted")
        }
    }
}
