// TextKindsTests: `count` counts like wc; `concat` joins into a destination inside the workspace.
import Foundation
import Testing
@testable import Jobs

@Suite struct TextKindsTests {
    @Test func countAndConcatRunThroughForegroundRun() throws {
        let f = try QueueFixture()
        try Data("one two\nthree\n\n four  \n".utf8).write(to: URL(fileURLWithPath: f.workspace + "/a.txt"))
        try Data(#"{"kind": "count", "params": {"inputs": ["a.txt"]}}"#.utf8).write(to: URL(fileURLWithPath: f.workspace + "/c.json"))
        let value = try ForegroundRun(file: f.workspace + "/c.json", workspace: f.workspace).run(registry: testRegistry())
        guard case .object(let o) = value else { Issue.record("not an object: \(value)"); return }
        #expect(o["lines"] == .number(4) && o["words"] == .number(4) && o["bytes"] == .number(23))
        #expect(FileManager.default.fileExists(atPath: f.workspace + "/c.run/out/counts.json"))
        #expect(f.read(f.workspace + "/c.run/log.txt")?.contains("status: done") == true)
        // Which binary, where and when: a foreground result.json had only its end time.
        let result = try #require(f.json(f.workspace + "/c.run/result.json"))
        #expect(result["fidq"] as? String == fidqVersion && result["host"] as? String == WorkerIdentity().host
                && (result["started"] as? String).flatMap(parseISOTimestamp) != nil, "\(result)")

        try Data(#"{"kind": "concat", "params": {"inputs": ["a.txt", "a.txt"], "dest": "r/both.txt"}}"#.utf8)
            .write(to: URL(fileURLWithPath: f.workspace + "/j.json"))
        var run = ForegroundRun(file: f.workspace + "/j.json", workspace: f.workspace)
        run.outDir = f.workspace + "/jout"
        _ = try run.run(registry: testRegistry())
        #expect(f.read(f.workspace + "/r/both.txt")?.count == 46)
        #expect(f.read(f.workspace + "/jout/out/both.txt")?.count == 46)
    }

    @Test func foregroundRunWritesErrorJSONOnFailure() throws {
        let f = try QueueFixture()
        try Data(#"{"kind": "test.record", "params": {"fail": "permanent"}}"#.utf8).write(to: URL(fileURLWithPath: f.workspace + "/bad.json"))
        #expect(throws: JobError.self) { try ForegroundRun(file: f.workspace + "/bad.json", workspace: f.workspace).run(registry: testRegistry()) }
        #expect(f.json(f.workspace + "/bad.run/error.json")?["field"] as? String == "params.fail")
    }

    /// A folder among the inputs is refused at submit naming the param (it passed the existence
    /// check and failed at run time as "Is a directory", no param named); a run that skipped
    /// submit names it too.
    @Test func aFolderAsAnInputIsRefusedNamingIt() throws {
        let f = try QueueFixture()
        try FileManager.default.createDirectory(atPath: f.workspace + "/texts", withIntermediateDirectories: true)
        try Data("a b\n".utf8).write(to: URL(fileURLWithPath: f.workspace + "/a.txt"))
        for kind in ["count", "concat"] {
            let file = f.workspace + "/\(kind).json"
            let dest = kind == "concat" ? #", "dest": "joined.txt""# : ""
            try Data(#"{"kind": "\#(kind)", "params": {"inputs": ["a.txt", "texts"]\#(dest)}}"#.utf8).write(to: URL(fileURLWithPath: file))
            let control = QueueControl(queue: f.queue, registry: testRegistry(), policy: PathPolicy(workspace: f.workspace, queue: f.queueDir))
            do {
                _ = try control.submit(files: [file], dryRun: true)
                Issue.record("\(kind): a folder input was accepted")
            } catch let e as SubmitError {
                #expect(e.error.field == "params.inputs[1]" && e.error.message.contains("is a folder"), "\(e)")
            }
            let context = JobContext(id: "x", kind: kind, attempt: 1, maxAttempts: 1, folder: f.workspace + "/ctx-\(kind)",
                                     paths: PathPolicy(workspace: f.workspace, queue: f.queueDir), fs: PosixFileSystem(),
                                     cancellation: CancellationToken(), progress: ProgressReporter(path: nil, fs: PosixFileSystem(), bar: false, label: "x", line: nil),
                                     log: JobLog(path: nil, fs: PosixFileSystem(), echo: nil), threads: 1)
            let e = #expect(throws: JobError.self) { _ = try TextKinds.read("texts", field: "params.inputs[1]", context) }
            #expect(e?.field == "params.inputs[1]", "\(String(describing: e))")
        }
    }

    /// concat holds its inputs together in memory: over 1 GiB in all is refused at submit,
    /// naming the param (three of 400 MB, each allowed, aborted in an allocation under ulimit -v,
    /// leaving no error). count reads one at a time: accepted. Sparse files take no disk.
    @Test func concatRefusesInputsOverItsLimitTogether() throws {
        let f = try QueueFixture()
        for name in ["a", "b", "c"] {
            let path = f.workspace + "/\(name).txt"
            FileManager.default.createFile(atPath: path, contents: nil)
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try h.truncate(atOffset: 400 << 20)
            try h.close()
        }
        let control = QueueControl(queue: f.queue, registry: testRegistry(), policy: PathPolicy(workspace: f.workspace, queue: f.queueDir))
        for kind in ["count", "concat"] {
            let file = f.workspace + "/\(kind).json"
            let dest = kind == "concat" ? #", "dest": "joined.txt""# : ""
            try Data(#"{"kind": "\#(kind)", "params": {"inputs": ["a.txt", "b.txt", "c.txt"]\#(dest)}}"#.utf8).write(to: URL(fileURLWithPath: file))
            do {
                _ = try control.submit(files: [file], dryRun: true)
                #expect(kind == "count", "concat of 1.2 GB was accepted")
            } catch let e as SubmitError {
                #expect(kind == "concat" && e.error.field == "params.inputs" && e.error.message.contains("together"), "\(e)")
            }
        }
    }

    /// Two runs never share a folder: while one holds it, another is refused, naming --out; once
    /// the first is over the folder is free again.
    @Test func aFolderInUseByAnotherRunIsRefused() throws {
        let f = try QueueFixture()
        try Data("a b\n".utf8).write(to: URL(fileURLWithPath: f.workspace + "/a.txt"))
        try Data(#"{"kind": "count", "params": {"inputs": ["a.txt"]}}"#.utf8).write(to: URL(fileURLWithPath: f.workspace + "/c.json"))
        let run = ForegroundRun(file: f.workspace + "/c.json", workspace: f.workspace)
        try FileManager.default.createDirectory(atPath: f.workspace + "/c.run", withIntermediateDirectories: true)
        let held = try ForegroundRun.lockFolder(f.workspace + "/c.run")  // the other run
        do {
            _ = try run.run(registry: testRegistry())
            Issue.record("ran in a folder another run holds")
        } catch let e as JobError {
            #expect(e.field == "--out" && e.message.contains("in use") && e.hint?.contains("--out") == true, "\(e)")
        }
        #expect(!FileManager.default.fileExists(atPath: f.workspace + "/c.run/out/counts.json"))
        close(held)
        _ = try run.run(registry: testRegistry())
        #expect(FileManager.default.fileExists(atPath: f.workspace + "/c.run/out/counts.json"))
        _ = try run.run(registry: testRegistry())  // its own lock is released when it ends
    }

    /// A folder belongs to one run's settings: rerunning them resumes (here: runs again), other
    /// params or another kind are refused with the differences named; `threads` may differ.
    @Test func aFolderOfOtherSettingsIsRefused() throws {
        let f = try QueueFixture()
        try Data("a b\n".utf8).write(to: URL(fileURLWithPath: f.workspace + "/a.txt"))
        try Data("c\n".utf8).write(to: URL(fileURLWithPath: f.workspace + "/b.txt"))
        var run = ForegroundRun(file: f.workspace + "/c.json", workspace: f.workspace)
        run.outDir = f.workspace + "/shared.run"
        func job(_ kind: String, _ params: String) throws -> JobDescriptor {
            try JobDescriptor.parse(Data(#"{"kind": "\#(kind)", "id": "c", "params": \#(params)}"#.utf8), fileName: "c.json", idMayDiffer: true)
        }
        _ = try run.run(try job("count", #"{"inputs": ["a.txt"]}"#), registry: testRegistry())
        _ = try run.run(try job("count", #"{"inputs": ["a.txt"], "threads": 1}"#), registry: testRegistry())
        for (kind, params, expected) in [("count", #"{"inputs": ["b.txt"], "threads": 2}"#, #"inputs: ["a.txt"] there, ["b.txt"] here"#),
                                         ("concat", #"{"inputs": ["a.txt"], "dest": "x.txt"}"#, "kind: count there, concat here")] {
            do {
                _ = try run.run(try job(kind, params), registry: testRegistry())
                Issue.record("\(kind) \(params) ran in another run's folder")
            } catch let e as JobError {
                #expect(e.field == "--out" && e.message.contains(expected) && e.hint?.contains("--out") == true, "\(e)")
                #expect(!e.message.contains("threads"), "threads may differ, so it is not named: \(e)")
            }
        }
        #expect(f.read(f.workspace + "/shared.run/out/counts.json")?.contains("\"words\" : 2") == true, "the first run's result stays")
    }

    /// A run its kind refuses before writing anything does not keep the folder from the
    /// corrected command (fidq embed --num_shards 100000, then the right number).
    @Test func aRunThatFailedBeforeWritingLeavesTheFolderFree() throws {
        let f = try QueueFixture()
        var run = ForegroundRun(file: f.workspace + "/r.json", workspace: f.workspace)
        run.outDir = f.workspace + "/r.run"
        func job(_ params: String) throws -> JobDescriptor {
            try JobDescriptor.parse(Data(#"{"kind": "test.record", "id": "r", "params": \#(params)}"#.utf8), fileName: "r.json", idMayDiffer: true)
        }
        #expect(throws: JobError.self) { try run.run(try job(#"{"fail": "permanent"}"#), registry: testRegistry()) }
        #expect(!FileManager.default.fileExists(atPath: f.workspace + "/r.run/run.json"))
        _ = try run.run(try job(#"{"steps": 1}"#), registry: testRegistry())
        #expect(FileManager.default.fileExists(atPath: f.workspace + "/r.run/run.json"), "the run that worked claims it")
    }
}
