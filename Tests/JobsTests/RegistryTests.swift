// RegistryTests: kinds plug in with their params type; bad params, outputs and inputs name the field.
import Foundation
import Testing
@testable import Jobs

@Suite struct RegistryTests {
    func prepare(_ f: QueueFixture, _ json: String) throws -> PreparedJob {
        let d = try JobDescriptor.parse(Data(json.utf8), fileName: "x.json")
        return try testRegistry().prepare(d, policy: PathPolicy(workspace: f.workspace, queue: f.queueDir), fs: PosixFileSystem())
    }

    func error(_ f: QueueFixture, _ json: String) -> JobError? {
        do { _ = try prepare(f, json); return nil } catch { return error as? JobError }
    }

    @Test func unknownKindSuggestsTheClosest() throws {
        let f = try QueueFixture()
        let e = try #require(error(f, #"{"kind": "cout"}"#))
        #expect(e.field == "kind" && e.hint?.contains("did you mean 'count'?") == true, "\(e)")
    }

    @Test func paramsDecodeStrictlyNamingTheField() throws {
        let f = try QueueFixture()
        #expect(error(f, #"{"kind": "count", "params": {}}"#)?.field == "params.inputs")
        #expect(error(f, #"{"kind": "count", "params": {"inputs": []}}"#)?.field == "params.inputs")
        #expect(error(f, #"{"kind": "count", "params": {"inputs": [3]}}"#)?.field == "params.inputs[0]")
        #expect(error(f, #"{"kind": "count", "params": {"inputs": ["a"], "x": 1}}"#)?.field == "params.x")
        #expect(error(f, #"{"kind": "concat", "params": {"inputs": ["/etc/hostname"], "dest": "/etc/y"}}"#)?.field == "params.dest")
    }

    @Test func inputsMustExistExceptJobReferencesAtSubmit() throws {
        let f = try QueueFixture()
        #expect(error(f, #"{"kind": "count", "params": {"inputs": ["missing"]}}"#)?.field == "params.inputs[0]")
        let d = try JobDescriptor.parse(Data(#"{"kind": "count", "params": {"inputs": ["job:a/counts.json"]}}"#.utf8), fileName: "x.json")
        let policy = PathPolicy(workspace: f.workspace, queue: f.queueDir)
        _ = try testRegistry().prepare(d, policy: policy, fs: PosixFileSystem(), checkJobInputs: false)
        #expect(throws: JobError.self) { try testRegistry().prepare(d, policy: policy, fs: PosixFileSystem()) }
        // A job with `after` may read what a dependency writes into the workspace (a fetched folder):
        // submit defers its missing inputs, the worker's claim-time check still refuses them.
        let later = try JobDescriptor.parse(
            Data(#"{"kind": "count", "after": ["fetch"], "params": {"inputs": ["docs/README.md"]}}"#.utf8), fileName: "y.json")
        _ = try testRegistry().prepare(later, policy: policy, fs: PosixFileSystem(), checkJobInputs: false)
        #expect { try testRegistry().prepare(later, policy: policy, fs: PosixFileSystem()) } throws: { e in
            (e as? JobError)?.field == "params.inputs[0]"
        }
    }

    /// A missing `job:` input says why: no queue where the run looked (a foreground run given
    /// no --queue), the job not finished, or finished without the file. It always said the last.
    @Test func aMissingJobReferenceSaysWhy() throws {
        let f = try QueueFixture()
        let json = #"{"kind": "count", "params": {"inputs": ["job:a/counts.json"]}}"#
        try? FileManager.default.removeItem(atPath: f.queueDir)
        #expect(error(f, json)?.hint?.contains("there is no queue at \(f.queueDir): pass --queue") == true, "\(String(describing: error(f, json)))")
        try FileManager.default.createDirectory(atPath: f.queueDir + "/done", withIntermediateDirectories: true)
        #expect(error(f, json)?.hint?.hasPrefix("job 'a' has not finished (it is not in \(f.queueDir)/done): job: paths name a queued job's outputs") == true)
        try FileManager.default.createDirectory(atPath: f.queueDir + "/done/a/out", withIntermediateDirectories: true)
        #expect(error(f, json)?.hint == "the dependency finished without writing it")
        #expect(error(f, json)?.field == "params.inputs[0]")
    }

    @Test func inputsOutsideTheWorkspaceAreRefusedNamingTheField() throws {
        let f = try QueueFixture()
        // /etc/hostname exists and is readable: only the confinement refuses it.
        let e = try #require(error(f, #"{"kind": "count", "params": {"inputs": ["/etc/hostname"]}}"#))
        #expect(e.field == "params.inputs[0]" && e.message.contains("outside the workspace"), "\(e)")
        let q = try #require(error(f, #"{"kind": "count", "params": {"inputs": ["queue/pending/x.json"]}}"#))
        #expect(q.field == "params.inputs[0]" && q.message.contains("inside the queue folder"), "\(q)")
        // An output no file system takes is refused at submit (it failed at run time, folders made).
        let longName = String(repeating: "n", count: 300)
        let tooLong = try #require(error(f, #"{"kind": "test.record", "params": {"ledger": "led/\#(longName)"}}"#))
        #expect(tooLong.field == "params.ledger" && tooLong.message.contains("300 bytes"), "\(tooLong)")
        let deep = (0..<40).map { _ in String(repeating: "d", count: 120) }.joined(separator: "/")
        #expect(error(f, #"{"kind": "test.record", "params": {"ledger": "\#(deep)"}}"#)?.message.contains("at most 4095") == true)
        // A folder input inside the workspace whose files link elsewhere (a model folder of links
        // to another user's weights) is refused, naming the link; links within the workspace are fine.
        let fm = FileManager.default
        try fm.createDirectory(atPath: f.workspace + "/m/sub", withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: f.workspace + "/m/own.txt"))
        try fm.createSymbolicLink(atPath: f.workspace + "/m/alias.txt", withDestinationPath: f.workspace + "/m/own.txt")
        // (count reads files, so what passes the walk is refused as a folder, by count itself.)
        func passesTheWalk(_ e: JobError?) -> Bool { e?.message.contains("is a folder; expected a file") == true }
        #expect(passesTheWalk(error(f, #"{"kind": "count", "params": {"inputs": ["m"]}}"#)))
        try fm.createSymbolicLink(atPath: f.workspace + "/m/sub/weights.bin", withDestinationPath: "/etc/hostname")
        let linked = try #require(error(f, #"{"kind": "count", "params": {"inputs": ["m"]}}"#))
        #expect(linked.field == "params.inputs[0]" && linked.message.contains("m/sub/weights.bin") && linked.message.contains("outside the workspace"),
                "\(linked)")
        // The folder a checkpoint's `latest` names is what the run reads, so it is the one walked.
        try fm.createDirectory(atPath: f.workspace + "/ck/checkpoint/step-7", withIntermediateDirectories: true)
        try Data("step-7\n".utf8).write(to: URL(fileURLWithPath: f.workspace + "/ck/checkpoint/latest"))
        #expect(passesTheWalk(error(f, #"{"kind": "count", "params": {"inputs": ["ck/checkpoint/latest"]}}"#)))
        try fm.createSymbolicLink(atPath: f.workspace + "/ck/checkpoint/step-7/config.json", withDestinationPath: "/etc/hostname")
        #expect(error(f, #"{"kind": "count", "params": {"inputs": ["ck/checkpoint/latest"]}}"#)?.message.contains("step-7/config.json") == true)
        // A dangling link leads nowhere to read: fine. A folder past the walk's limit is refused,
        // never passed unchecked.
        try fm.createDirectory(atPath: f.workspace + "/d", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: f.workspace + "/d/old.lnk", withDestinationPath: "/nonexistent/old-run")
        #expect(passesTheWalk(error(f, #"{"kind": "count", "params": {"inputs": ["d"]}}"#)))
        let policy = PathPolicy(workspace: f.workspace, queue: f.queueDir)
        for i in 0..<5 { try Data().write(to: URL(fileURLWithPath: f.workspace + "/d/f\(i)")) }
        let many = #expect(throws: JobError.self) { try policy.checkInputTree("d", field: "params.x", fs: PosixFileSystem(), limit: 4) }
        #expect(many?.message.contains("more than 4 entries") == true, "\(String(describing: many))")
    }
}
