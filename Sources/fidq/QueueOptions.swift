// QueueOptions: the --queue and --workspace flags every queue command shares.
import ArgumentParser
import Foundation
import Jobs

struct QueueOptions: ParsableArguments {
    @Option(help: "The queue folder (holds pending/, running/, done/, failed/).")
    var queue = "queue"

    @Option(help: "Relative job paths resolve here and outputs must stay inside (default: the queue's parent).")
    var workspace: String?

    @Option(name: .customLong("allow-root"), help: "Another folder jobs may read and write (repeatable).")
    var allowRoots: [String] = []

    /// An empty `--queue` (an unset variable in a unit file or script) would be the working
    /// directory, and a path that is not UTF-8 reaches us with its bad bytes replaced (U+FFFD):
    /// either names another, empty queue, which a worker would drain at once and exit 0.
    func validate() throws {
        if queue.isEmpty {
            throw ValidationError("--queue is empty (hint: an unset variable, such as FIDQ_QUEUE in the systemd unit's worker.env?)")
        }
        let paths = [("--queue", queue)] + (workspace.map { [("--workspace", $0)] } ?? []) + allowRoots.map { ("--allow-root", $0) }
        for (flag, value) in paths where value.unicodeScalars.contains("\u{FFFD}") {
            throw ValidationError("\(flag) \(value): the path is not valid UTF-8, so fidq cannot name that folder (hint: rename it to UTF-8)")
        }
    }

    var queuePath: String { PathPolicy.normalize(absolute(queue)) }

    var workspacePath: String {
        workspace.map { PathPolicy.normalize(absolute($0)) } ?? (queuePath as NSString).deletingLastPathComponent
    }

    var policy: PathPolicy { PathPolicy(workspace: workspacePath, queue: queuePath, allowedRoots: allowRoots) }

    /// Refuses a `--queue` that names a folder inside a queue (its `pending/`…: a job dropped
    /// there would go to a nested queue no worker reads) or a file, and, with `mustExist`, a
    /// path that holds no queue (a mistyped one would read as empty).
    func checkQueue(mustExist: Bool) throws {
        let path = queuePath, fm = FileManager.default
        let name = (path as NSString).lastPathComponent, parent = (path as NSString).deletingLastPathComponent
        if ["pending", "running", "done", "failed"].contains(name),
           ["pending", "running", "done", "failed"].allSatisfy({ fm.fileExists(atPath: parent + "/" + $0) }) {
            throw fail("\(path) is the \(name)/ folder of the queue \(parent) (hint: pass --queue \(parent))")
        }
        var isDir: ObjCBool = false
        let exists = fm.fileExists(atPath: path, isDirectory: &isDir)
        if exists && !isDir.boolValue { throw fail("--queue \(path) is a file, not a queue folder") }
        if mustExist && !exists {
            throw fail("no queue at \(path) (hint: pass --queue DIR; fidq submit or fidq worker creates one)")
        }
    }

    func control() -> QueueControl {
        QueueControl(queue: Queue(root: queuePath), registry: Kinds.registry(), policy: policy)
    }

    private func absolute(_ p: String) -> String {
        p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p
    }
}

/// Prints a message to stderr and exits with status 1 (for errors caused by input, not bugs).
func fail(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data(("fidq: " + message + "\n").utf8))
    return ExitCode(1)
}
