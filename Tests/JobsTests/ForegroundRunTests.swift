// ForegroundRunTests: the reproduce line's words read back through a real shell as written.
import Foundation
import Testing
@testable import Jobs

@Suite struct ForegroundRunTests {
    /// Each word, quoted, comes back from /bin/sh unchanged: spaces, quotes, unicode, `$`, empty.
    @Test func shellQuotedWordsReadBackUnchanged() throws {
        let words = ["plain-path/a_b.json", "my rün", "it's", "a\"b", "$HOME", "", "x;rm -rf y", "tab\there", "--flag=1"]
        #expect(shellQuoted("plain-path/a_b.json") == "plain-path/a_b.json", "safe words stay bare")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "for w in " + words.map(shellQuoted).joined(separator: " ") + "; do printf '%s\\n' \"$w\"; done"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init) == words, "\(text)")
    }

    /// A run's folder inside a queue (the default one or any folder holding pending/, running/,
    /// done/, failed/) is refused: `--out queue/done/x` made a fake finished job, and `fidq run
    /// queue/pending/j.json` wrote its folder into pending/. An --out that is a file is named.
    @Test func aRunFolderInsideAQueueOrOnAFileIsRefused() throws {
        let f = try QueueFixture()
        let other = f.workspace + "/elsewhere/q"
        try Queue(root: other).createLayout()
        try f.dropRecord("j")
        try Data("x".utf8).write(to: URL(fileURLWithPath: f.workspace + "/afile"))
        for out in [f.queueDir + "/done/fake", nil, other + "/done/fake2", f.workspace + "/afile"] as [String?] {
            var run = ForegroundRun(file: f.pending + "/j.json", workspace: f.workspace)
            run.outDir = out
            let e = #expect(throws: JobError.self) { try run.run(registry: testRegistry()) }
            #expect(e?.field == "--out", "\(out ?? "default"): \(String(describing: e))")
            #expect(e?.message.contains(out == f.workspace + "/afile" ? "is a file" : "inside the queue") == true, "\(String(describing: e))")
        }
        #expect(f.list("done").isEmpty && !FileManager.default.fileExists(atPath: other + "/done/fake2"))
        #expect(!FileManager.default.fileExists(atPath: f.pending + "/j.run"))
        var fine = ForegroundRun(file: f.pending + "/j.json", workspace: f.workspace)
        fine.outDir = f.workspace + "/j.run"
        _ = try fine.run(registry: testRegistry())
        // A folder named queue/ that is no queue (the repository's queue/examples/) is fine.
        let plain = f.workspace + "/repo/queue/examples"
        try FileManager.default.createDirectory(atPath: plain, withIntermediateDirectories: true)
        try Data(#"{"kind": "test.record"}"#.utf8).write(to: URL(fileURLWithPath: plain + "/k.json"))
        _ = try ForegroundRun(file: plain + "/k.json", workspace: f.workspace + "/repo").run(registry: testRegistry())
        #expect(FileManager.default.fileExists(atPath: plain + "/k.run/result.json"))
    }

    /// A rerun into the same --out may spell an existing path another way (relative or absolute,
    /// through a link): the same setting. From another workspace the refusal says where to run it.
    @Test func aRerunMaySpellAPathAnotherWay() throws {
        let f = try QueueFixture()
        try FileManager.default.createDirectory(atPath: f.workspace + "/led", withIntermediateDirectories: true)
        func run(_ ledger: String, workspace: String) throws {
            let job = f.workspace + "/j.json"
            try Data(#"{"kind": "test.record", "params": {"ledger": "\#(ledger)"}}"#.utf8).write(to: URL(fileURLWithPath: job))
            var r = ForegroundRun(file: job, workspace: workspace)
            r.outDir = f.workspace + "/j.run"
            r.allowedRoots = ["/"]
            _ = try r.run(registry: testRegistry())
        }
        try run("led", workspace: f.workspace)
        try run(f.workspace + "/led", workspace: f.workspace)
        try run("./led/", workspace: f.workspace)
        let e = #expect(throws: JobError.self) { try run("led", workspace: f.workspace + "/led") }
        #expect(e?.hint?.contains("run from \(f.workspace)") == true, "\(String(describing: e))")
    }

    /// A rerun that writes a default out (or a number another way) is the same run; another value
    /// is not, and the refusal names it as typed.
    @Test func aDefaultWrittenOutIsTheSameSetting() throws {
        let f = try QueueFixture()
        try FileManager.default.createDirectory(atPath: f.workspace + "/led", withIntermediateDirectories: true)
        func run(_ params: String) throws {
            let job = f.workspace + "/j.json"
            try Data(#"{"kind": "test.record", "params": {"ledger": "led"\#(params)}}"#.utf8).write(to: URL(fileURLWithPath: job))
            var r = ForegroundRun(file: job, workspace: f.workspace)
            r.outDir = f.workspace + "/j.run"
            r.allowedRoots = ["/"]
            _ = try r.run(registry: testRegistry())
        }
        try run("")
        try run(#", "steps": 1.0, "fail": "none", "sleep_ms": 0"#)
        try run(#", "threads": 2"#)
        let e = #expect(throws: JobError.self) { try run(#", "steps": 2, "sleep_ms": 0"#) }
        #expect(e?.message.contains("steps: unset there, 2 here") == true && e?.message.contains("fail") == false, "\(String(describing: e))")
    }

    /// The same workspace on a host that mounts the storage at another path (here: moved): the
    /// folder's place in it shows it is the same run, which goes on; relative params resolve there.
    @Test func theSameRunFromAnotherMountGoesOn() throws {
        let f = try QueueFixture()
        let a = f.workspace + "/hostA/ws", b = f.workspace + "/hostB/ws"
        try FileManager.default.createDirectory(atPath: a + "/led", withIntermediateDirectories: true)
        func run(_ ws: String, ledger: String = "led") throws {
            let job = ws + "/j.json"
            try Data(#"{"kind": "test.record", "params": {"ledger": "\#(ledger)"}}"#.utf8).write(to: URL(fileURLWithPath: job))
            var r = ForegroundRun(file: job, workspace: ws)
            r.outDir = ws + "/runs/j"
            r.allowedRoots = ["/"]
            _ = try r.run(registry: testRegistry())
        }
        try run(a)
        try FileManager.default.moveItem(atPath: f.workspace + "/hostA", toPath: f.workspace + "/hostB")
        try run(b)
        // Other params are still other settings there.
        try FileManager.default.createDirectory(atPath: b + "/led2", withIntermediateDirectories: true)
        let e = #expect(throws: JobError.self) { try run(b, ledger: "led2") }
        #expect(e?.message.contains("ledger") == true && e?.message.contains("workspace") == false, "\(String(describing: e))")
    }

    /// A run's folder ends with one verdict: an earlier run's error.json (or result.json) goes
    /// when the run starts, so a rerun that finished does not sit beside the old failure.
    @Test func anEarlierVerdictGoesWhenARunStarts() throws {
        let f = try QueueFixture()
        let job = f.workspace + "/j.json", folder = f.workspace + "/j.run"
        try Data(#"{"kind": "test.record", "params": {"ledger": "led"}}"#.utf8).write(to: URL(fileURLWithPath: job))
        var r = ForegroundRun(file: job, workspace: f.workspace)
        r.outDir = folder
        _ = try r.run(registry: testRegistry())
        try Data(#"{"message": "an earlier failure"}"#.utf8).write(to: URL(fileURLWithPath: folder + "/error.json"))
        _ = try r.run(registry: testRegistry())
        #expect(!FileManager.default.fileExists(atPath: folder + "/error.json"))
        #expect(FileManager.default.fileExists(atPath: folder + "/result.json"))
    }

    /// A run's folder that is an input, lies inside one, or holds one in its out/ is refused
    /// before anything is written (`merge --out` inside a shard replaced the shard's result).
    @Test func aRunFolderOverlappingAnInputIsRefused() throws {
        let ws = NSTemporaryDirectory() + "fg-apart-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: ws + "/shard/out", withIntermediateDirectories: true)
        let inputs = [(field: "params.shards[0]", path: ws + "/shard")]
        for folder in [ws + "/shard", ws + "/shard/out", ws + "/shard/run"] {
            let e = #expect(throws: JobError.self) { try ForegroundRun.checkApart(folder, from: inputs, fs: PosixFileSystem()) }
            #expect(e?.field == "--out" && e?.hint?.contains("params.shards[0]") == true, "\(folder): \(String(describing: e))")
        }
        let e = #expect(throws: JobError.self) {
            try ForegroundRun.checkApart(ws, from: [(field: "params.data", path: ws + "/out/data.json")], fs: PosixFileSystem())
        }
        #expect(e?.message.contains("overlaps the input") == true)
        try ForegroundRun.checkApart(ws + "/merge.run", from: inputs, fs: PosixFileSystem())
        try ForegroundRun.checkApart(ws + "/sha", from: inputs, fs: PosixFileSystem())  // a prefix of the name is no overlap
    }

    /// An output among the run folder's own files, or one holding the run folder, is refused
    /// before anything is written (`output_path` naming the run's result.json was replaced by
    /// the result, one naming log.txt had the log appended); `out/` is the job's own.
    @Test func anOutputAmongTheRunFoldersOwnFilesIsRefused() throws {
        let f = try QueueFixture()
        try Data("text\n".utf8).write(to: URL(fileURLWithPath: f.workspace + "/a.txt"))
        func run(dest: String, out: String) throws {
            let job = f.workspace + "/c.json"
            try Data(#"{"kind": "concat", "params": {"inputs": ["a.txt"], "dest": "\#(dest)"}}"#.utf8).write(to: URL(fileURLWithPath: job))
            var r = ForegroundRun(file: job, workspace: f.workspace)
            r.outDir = f.workspace + "/" + out
            _ = try r.run(registry: testRegistry())
        }
        for (dest, out) in [("rr/result.json", "rr"), ("rr/log.txt", "rr"), ("rr/out", "rr"), ("rs", "rs/inner")] {
            let e = #expect(throws: JobError.self) { try run(dest: dest, out: out) }
            #expect(e?.field == "params.dest" && e?.message.contains("overlaps the run's folder") == true, "\(dest): \(String(describing: e))")
            #expect(!FileManager.default.fileExists(atPath: f.workspace + "/" + out + "/run.json"), "\(dest): nothing written")
        }
        try run(dest: "rr/out/joined.txt", out: "rr")
        #expect(FileManager.default.contents(atPath: f.workspace + "/rr/out/joined.txt") == Data("text\n".utf8))
        try run(dest: "rr.txt", out: "rr2")  // a prefix of the name is no overlap
        try run(dest: "rr3/notes.txt", out: "rr3")  // beside the run's files, none of them
    }

    /// A job file that is a folder, a link or a FIFO is named as submit names it (a raw errno
    /// was printed, and a FIFO read as an empty file).
    @Test func aJobFileThatIsNotAPlainFileIsNamed() throws {
        let f = try QueueFixture()
        let fm = FileManager.default
        try fm.createDirectory(atPath: f.workspace + "/dir.json", withIntermediateDirectories: true)
        try Data(#"{"kind": "test.record"}"#.utf8).write(to: URL(fileURLWithPath: f.workspace + "/real.json"))
        try fm.createSymbolicLink(atPath: f.workspace + "/link.json", withDestinationPath: f.workspace + "/real.json")
        #expect(mkfifo(f.workspace + "/fifo.json", 0o600) == 0)
        for (name, says) in [("dir.json", "is a folder"), ("link.json", "symbolic link"), ("fifo.json", "FIFO"), ("none.json", "no such file")] {
            let e = #expect(throws: JobError.self) { try ForegroundRun(file: f.workspace + "/" + name, workspace: f.workspace).run(registry: testRegistry()) }
            #expect(e?.message.contains(says) == true, "\(name): \(String(describing: e))")
        }
    }

    /// The reproduce line names the queue when it is not the workspace's default, and each
    /// --allow-root: pasted as written, the rerun reads the same `job:` inputs.
    @Test func theReproduceLineNamesTheQueueAndRoots() {
        #expect(PathPolicy(workspace: "/w", queue: "/w/queue").runCommand("job.json", out: "/w/j.rerun")
                == "fidq run job.json --workspace /w --out /w/j.rerun")
        #expect(PathPolicy(workspace: "/w", queue: "/q", allowedRoots: ["/data x"]).runCommand("/w/j.json", out: "/w/j.run")
                == "fidq run /w/j.json --workspace /w --queue /q --allow-root '/data x' --out /w/j.run")
    }

    /// A refused --out names each differing param as it was typed: paths without JSON's `\/`.
    @Test func settingsDifferencesQuotePathsAsTyped() {
        let a = ForegroundRun.Claim(kind: "score", workspace: "/w", params: .object(["eval_data": .string("data/dev_gold.json"), "n_context": .number(10)]))
        let b = ForegroundRun.Claim(kind: "score", workspace: "/w", params: .object(["eval_data": .string("data/nq_dev.json"), "n_context": .number(10)]))
        #expect(ForegroundRun.differences(a, b) == #"eval_data: "data/dev_gold.json" there, "data/nq_dev.json" here"#)
    }
}
