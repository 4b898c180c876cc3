// SubmitCommand: `fidq submit FILE…`: validate job files and drop them into pending/.
import ArgumentParser
import Foundation
import Jobs

struct SubmitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Validate job files and drop them into the queue; refuses anything that would fail.")

    @OptionGroup var queueOptions: QueueOptions

    @Argument(help: "Job descriptor files (JSON).")
    var files: [String] = []

    @Option(name: .customLong("files-from"),
            help: "Also read job file paths from this file, one per line ('-': standard input); for thousands of jobs, which the argument parser takes slowly.")
    var filesFrom: String?

    @Flag(name: .customLong("dry-run"), help: "Check the files as a submit would, and drop nothing.")
    var dryRun = false

    func validate() throws {
        if files.isEmpty && filesFrom == nil { throw ValidationError("give job files, or --files-from a list of them") }
    }

    func run() throws {
        try queueOptions.checkQueue(mustExist: false)
        let control = queueOptions.control()
        var all = files
        if let filesFrom {
            let data: Data
            if filesFrom == "-" {
                // A folder or write-only descriptor as stdin trapped in readDataToEndOfFile.
                var bytes = [UInt8](repeating: 0, count: 1 << 16), read = Data()
                while true {
                    let n = Glibc.read(0, &bytes, bytes.count)
                    if n < 0, errno == EINTR { continue }
                    if n < 0 { throw fail("--files-from -: cannot read standard input: \(String(cString: strerror(errno)))") }
                    if n == 0 { break }
                    read.append(contentsOf: bytes[0..<n])
                }
                data = read
            } else {
                guard let d = FileManager.default.contents(atPath: filesFrom) else { throw fail("--files-from: cannot read \(filesFrom)") }
                data = d
            }
            // One path a line (CRLF too); blank lines skipped, so `find … > list` and hand-made lists both work.
            all += String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).map(String.init)
                .filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            if all.isEmpty { throw fail("--files-from: \(filesFrom == "-" ? "standard input" : filesFrom) names no job file") }
        }
        do {
            for id in try control.submit(files: all, dryRun: dryRun) {
                print(dryRun ? "valid \(id) (dry run: not submitted)" : "submitted \(id) → \(control.queue.pending)/\(id).json")
            }
        } catch let e as SubmitError {
            for id in e.submitted { print("submitted \(id) → \(control.queue.pending)/\(id).json") }
            throw fail("refused \(e.description); " + (e.submitted.isEmpty ? "nothing was submitted"
                : e.submitted.count == 1 ? "the job above was submitted, the rest not"
                : "the \(e.submitted.count) jobs above were submitted, the rest not"))
        }
    }
}
