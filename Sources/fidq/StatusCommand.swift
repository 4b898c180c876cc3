// StatusCommand: `fidq status [ID] [--json]`: every job's state, or one job with its log tail.
import ArgumentParser
import Foundation
import Jobs

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "List jobs by state (pending, waiting, running, released, stale, done, failed, timeout, cancelled), or show one.")

    @OptionGroup var queueOptions: QueueOptions

    @Argument(help: "A job id: show its details and the end of its log.")
    var id: String?

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    @Option(help: "Lease in seconds for claims that do not record their holder's (older workers); others use their own.")
    var lease = 90.0

    @Option(help: "Log lines to show with an ID.")
    var tail = 20

    func validate() throws {
        if tail < 0 { throw ValidationError("--tail must be 0 or more lines, got \(tail)") }
    }

    func run() throws {
        try queueOptions.checkQueue(mustExist: true)
        let queue = Queue(root: queueOptions.queuePath)
        var rows = queue.status(lease: lease)
        if let id {
            // The current row first (its files are shown below); older failures after it.
            rows = Queue.current(rows.filter { $0.id == id })
            if rows.isEmpty { throw fail("no job '\(id)' in \(queue.root)") }
        }
        if json {
            var value = id == nil ? try JSONValue.from(rows) : try JSONValue.from(rows[0])
            // One job: its current row, with the rest (earlier failures kept in failed/) beside it.
            if id != nil, rows.count > 1, case .object(var o) = value {
                o["other_rows"] = try JSONValue.from(Array(rows.dropFirst()))
                value = .object(o)
            }
            print(String(decoding: try jsonEncoder().encode(value), as: UTF8.self))
            return
        }
        print(Queue.table(rows))
        if id != nil, let row = rows.first {
            let folder = row.folder
            print("\nfolder: \(folder)")  // where log.txt and out/ are (only --json named it)
            for name in ["error.json", "result.json"] {
                if let text = try? String(contentsOfFile: folder + "/" + name, encoding: .utf8) {
                    print("\n\(name):\n" + text)
                }
            }
            if let log = try? String(contentsOfFile: folder + "/log.txt", encoding: .utf8) {
                let lines = log.split(separator: "\n", omittingEmptySubsequences: false).suffix(tail + 1)
                print("\nlog.txt (last \(tail) lines):\n" + lines.joined(separator: "\n"))
            }
        }
    }
}
