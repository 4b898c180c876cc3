// PathPolicyTests: workspace resolution, job: references, and outputs kept inside the allowed roots.
import Foundation
import Testing
@testable import Jobs

@Suite struct PathPolicyTests {
    let fs = PosixFileSystem()

    @Test func resolvesRelativeAbsoluteAndJobReferences() throws {
        let p = PathPolicy(workspace: "/w", queue: "/w/queue")
        #expect(p.resolve("data/x.json") == "/w/data/x.json")
        #expect(p.resolve("/abs/./y/../z") == "/abs/z")
        #expect(p.resolve("job:nq-reader/best") == "/w/queue/done/nq-reader/out/best")
        #expect(p.resolve("job:a") == "/w/queue/done/a/out")
    }

    @Test func keepsOutputsInsideTheWorkspace() throws {
        let f = try QueueFixture()
        let p = PathPolicy(workspace: f.workspace, queue: f.queueDir)
        #expect(try p.checkOutput("out/a", field: "params.dest", fs: fs) == f.workspace + "/out/a")
        #expect(try p.checkOutput(f.workspace + "/b", field: "params.dest", fs: fs) == f.workspace + "/b")
        for bad in ["../escape", "/etc/passwd", "a/../../x", "/tmp"] {
            #expect(throws: JobError.self, "\(bad)") { try p.checkOutput(bad, field: "params.dest", fs: fs) }
        }
        do {
            _ = try p.checkOutput("/etc/x", field: "params.dest", fs: fs)
        } catch let e as JobError {
            #expect(e.field == "params.dest" && e.message.contains("outside the workspace") && e.hint != nil)
        }
    }

    /// An output the job writes as a whole may not hold the queue: a fetch into the folder
    /// holding it, with `replace`, deleted every job. Refused at submit, naming the field.
    @Test func anOutputHoldingTheQueueIsRefused() throws {
        let f = try QueueFixture("holds")
        let queue = f.workspace + "/state/queue"
        try Queue(root: queue).createLayout()
        let policy = PathPolicy(workspace: f.workspace, queue: queue)
        try Data("a\n".utf8).write(to: URL(fileURLWithPath: f.workspace + "/a.txt"))
        for dest in ["state", ".", "state/queue"] {
            let job = JobDescriptor(kind: "concat", id: "c", params: .object(["inputs": .array([.string("a.txt")]), "dest": .string(dest)]))
            let e = #expect(throws: JobError.self, "\(dest)") { try testRegistry().prepare(job, policy: policy, fs: fs) }
            #expect(e?.field == "params.dest" && (e?.message.contains("holds the queue") == true || e?.message.contains("inside the queue") == true),
                    "\(dest): \(String(describing: e))")
        }
        let beside = JobDescriptor(kind: "concat", id: "c", params: .object(["inputs": .array([.string("a.txt")]), "dest": .string("state/x.txt")]))
        _ = try testRegistry().prepare(beside, policy: policy, fs: fs)
        // A queue submit has not made yet counts too (the first submit accepted what the second refused).
        let later = PathPolicy(workspace: f.workspace, queue: f.workspace + "/sub/q")
        let job = JobDescriptor(kind: "concat", id: "c", params: .object(["inputs": .array([.string("a.txt")]), "dest": .string("sub")]))
        let e = #expect(throws: JobError.self) { try testRegistry().prepare(job, policy: later, fs: fs) }
        #expect(e?.message.contains("holds the queue") == true, "\(String(describing: e))")
    }

    @Test func followsSymlinksThatLeaveTheWorkspace() throws {
        let f = try QueueFixture()
        let outside = f.workspace + "-outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: outside) }
        try FileManager.default.createSymbolicLink(atPath: f.workspace + "/link", withDestinationPath: outside)
        try FileManager.default.createSymbolicLink(atPath: f.workspace + "/dangling", withDestinationPath: outside + "/nope")
        let p = PathPolicy(workspace: f.workspace, queue: f.queueDir)
        #expect(throws: JobError.self) { try p.checkOutput("link/file", field: "f", fs: fs) }
        #expect(throws: JobError.self) { try p.checkOutput("dangling", field: "f", fs: fs) }
        // An allowed root makes the same path legal.
        let q = PathPolicy(workspace: f.workspace, queue: f.queueDir, allowedRoots: [outside])
        #expect(try q.checkOutput("link/file", field: "f", fs: fs) == f.workspace + "/link/file")
    }

    @Test func confinesInputsLikeOutputsButAllowsPublishedOutputs() throws {
        let f = try QueueFixture()
        let outside = f.workspace + "-outside-in"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: outside) }
        try FileManager.default.createSymbolicLink(atPath: f.workspace + "/in-link", withDestinationPath: outside)
        let p = PathPolicy(workspace: f.workspace, queue: f.queueDir)
        #expect(try p.checkInput("data/x.json", field: "f", fs: fs) == f.workspace + "/data/x.json")
        #expect(try p.checkInput("job:a/model", field: "f", fs: fs) == f.queueDir + "/done/a/out/model")
        // Outside the workspace, through a symlink, and the queue's own state are all refused.
        for bad in ["/etc/passwd", "../x", "in-link/secret", f.queueDir + "/pending/other.json",
                    f.queueDir + "/done/a/log.txt", f.queueDir + "/running", "job:a/../../pending/x.json"] {
            #expect(throws: JobError.self, "\(bad)") { try p.checkInput(bad, field: "params.inputs[0]", fs: fs) }
        }
        do {
            _ = try p.checkInput(f.queueDir + "/pending/other.json", field: "params.inputs[0]", fs: fs)
            Issue.record("a pending descriptor was accepted as an input")
        } catch let e as JobError {
            #expect(e.field == "params.inputs[0]" && e.message.contains("inside the queue folder"))
        }
        let q = PathPolicy(workspace: f.workspace, queue: f.queueDir, allowedRoots: [outside])
        #expect(try q.checkInput("in-link/secret", field: "f", fs: fs) == f.workspace + "/in-link/secret")
    }
}
