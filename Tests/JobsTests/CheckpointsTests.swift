// CheckpointsTests: step-N folders and the latest pointer: keep-last-K, crash leftovers, no-replace, zombies.
import Foundation
import Testing
@testable import Jobs

/// A job folder `running/<id>@<token>/out/` and a context on it, as a worker makes them.
func makeContext(_ f: QueueFixture, id: String = "train", token: String, threads: Int = 1) throws -> JobContext {
    let dir = f.queueDir + "/running/\(id)@\(token)"
    try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: true)
    return jobContext(folder: dir, id: id, threads: threads)
}

/// A context on an existing (or moved-away) folder.
func jobContext(folder: String, id: String = "train", threads: Int = 1) -> JobContext {
    let fs = PosixFileSystem()
    return JobContext(id: id, kind: "test.train", attempt: 1, maxAttempts: 3, folder: folder,
                      paths: PathPolicy(workspace: "/tmp", queue: "/tmp/queue"), fs: fs, cancellation: CancellationToken(),
                      progress: ProgressReporter(path: nil, fs: fs, bar: false, label: id, line: nil),
                      log: JobLog(path: nil, fs: fs, echo: nil), threads: threads)
}

func entries(_ dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
}

@Suite struct CheckpointsTests {
    func write(_ text: String) -> (String) throws -> Void {
        { dir in try Data(text.utf8).write(to: URL(fileURLWithPath: dir + "/state.txt")) }
    }

    func content(_ dir: String) -> String? { try? String(contentsOfFile: dir + "/state.txt", encoding: .utf8) }

    @Test func saveKeepsTheLastKAndMovesTheLatestPointer() throws {
        let f = try QueueFixture()
        let c = try makeContext(f, token: "a.1")
        let ckpt = try c.checkpoints(keepLast: 2)
        #expect(ckpt.latest() == nil)
        for step in [10, 20, 30, 40] { try ckpt.save(step: step, write("s\(step)")) }
        #expect(ckpt.steps() == [30, 40])
        let latest = try #require(ckpt.latest())
        #expect(latest.step == 40 && latest.path == c.out + "/checkpoint/step-40")
        #expect(content(latest.path) == "s40")
        #expect(f.read(c.out + "/checkpoint/latest") == "step-40\n", "a plain file Python reads with open().read().strip()")
        #expect(entries(c.out + "/checkpoint") == ["latest", "step-30", "step-40"], "no temporary or trash names left")
        #expect(entries(latest.path) == [Checkpoints.marker, "state.txt"])
        let marker = try #require(f.json(latest.path + "/" + Checkpoints.marker))
        #expect(marker["token"] as? String == "a.1" && marker["name"] as? String == "step-40")
        // A handler error leaves nothing behind and keeps the previous checkpoint.
        struct Boom: Error {}
        #expect(throws: Boom.self) { try ckpt.save(step: 50) { _ in throw Boom() } }
        #expect(ckpt.latest()?.step == 40 && entries(c.out + "/checkpoint") == ["latest", "step-30", "step-40"])
        #expect(throws: JobError.self) { try c.checkpoints(keepLast: 0) }
    }

    /// `model_path: …/checkpoint/latest` (FiD's symlink) reads the folder the pointer names, as
    /// resolved by the context and by submit's input checks; anything else is left alone.
    @Test func anInputNamingLatestIsTheStepItNames() throws {
        let f = try QueueFixture()
        let c = try makeContext(f, token: "a.1")
        let ckpt = try c.checkpoints(keepLast: 2)
        try ckpt.save(step: 7, write("s7"))
        let fs = PosixFileSystem(), root = c.out + "/checkpoint"
        #expect(Checkpoints.followingLatest(root + "/latest", fs: fs) == root + "/step-7")
        #expect(c.resolve(root + "/latest") == root + "/step-7")
        #expect(c.resolve(root + "/step-7") == root + "/step-7")
        // Not a pointer: another file named latest, a pointer to a missing folder, a folder.
        let other = f.workspace + "/data"
        try FileManager.default.createDirectory(atPath: other + "/latest", withIntermediateDirectories: true)
        #expect(Checkpoints.followingLatest(other + "/latest", fs: fs) == other + "/latest")
        try FileManager.default.createDirectory(atPath: f.workspace + "/notes", withIntermediateDirectories: true)
        try Data("hello\n".utf8).write(to: URL(fileURLWithPath: f.workspace + "/notes/latest"))
        #expect(Checkpoints.followingLatest(f.workspace + "/notes/latest", fs: fs) == f.workspace + "/notes/latest")
        try Data("step-9\n".utf8).write(to: URL(fileURLWithPath: f.workspace + "/notes/latest"))
        #expect(Checkpoints.followingLatest(f.workspace + "/notes/latest", fs: fs) == f.workspace + "/notes/latest",
                "step-9 does not exist")
    }

    /// A handler starting over drops its step checkpoints: `latest` and every step-N go, named ones
    /// stay, and a step saved again holds the new state (without the discard, the old one is kept).
    @Test func discardedStepsAreGoneAndSavedAnew() throws {
        let f = try QueueFixture()
        let c = try makeContext(f, token: "a.1")
        let ckpt = try c.checkpoints(keepLast: 3)
        for step in [4, 8] { try ckpt.save(step: step, write("old\(step)")) }
        try ckpt.save(name: "best_dev", write("best"))
        try ckpt.save(step: 8, write("new8"))
        #expect(content(c.out + "/checkpoint/step-8") == "old8", "an existing step is kept")
        try ckpt.discardSteps()
        #expect(ckpt.latest() == nil && ckpt.steps().isEmpty)
        #expect(entries(c.out + "/checkpoint") == ["best_dev"], "\(entries(c.out + "/checkpoint"))")
        #expect(content(c.out + "/checkpoint/best_dev") == "best")
        try ckpt.save(step: 8, write("new8"))
        #expect(ckpt.latest()?.step == 8 && content(c.out + "/checkpoint/step-8") == "new8")
        try ckpt.discardSteps()  // twice: nothing left to remove is fine
        try ckpt.discardSteps()
        #expect(ckpt.latest() == nil)
    }

    @Test func crashLeftoversAreIgnoredThenCleaned() throws {
        let f = try QueueFixture()
        let a = try makeContext(f, token: "a.1")
        let ckptA = try a.checkpoints(keepLast: 3)
        try ckptA.save(step: 5, write("s5"))
        let root = a.out + "/checkpoint"
        // Killed while staging step 10 (no marker yet) and while moving the pointer, and a
        // staged step 15 that was complete (marker) but never renamed: none of them count.
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/.step-10.a.1.tmp", withIntermediateDirectories: false)
        try Data("half".utf8).write(to: URL(fileURLWithPath: root + "/.step-10.a.1.tmp/state.txt"))
        try fm.copyItem(atPath: root + "/step-5", toPath: root + "/.step-15.a.1.tmp")
        try Data("step-15\n".utf8).write(to: URL(fileURLWithPath: root + "/.latest.a.1.tmp"))
        try fm.createDirectory(atPath: root + "/.trash-step-1.a.1", withIntermediateDirectories: false)
        #expect(ckptA.latest()?.step == 5 && ckptA.steps() == [5])
        // The next attempt (a take-over renames the folder) opens the folder: leftovers go.
        let dir = f.queueDir + "/running/train@b.2"
        try fm.moveItem(atPath: a.folder, toPath: dir)
        let b = jobContext(folder: dir)
        let ckptB = try b.checkpoints(keepLast: 3)
        #expect(entries(ckptB.root) == ["latest", "step-5"])
        #expect(ckptB.latest()?.step == 5 && content(ckptB.latest()!.path) == "s5")
    }

    @Test func pointerMissingOrDanglingFallsBackToTheNewestCompleteStep() throws {
        let f = try QueueFixture()
        let c = try makeContext(f, token: "a.1")
        let ckpt = try c.checkpoints(keepLast: 5)
        try ckpt.save(step: 1, write("s1"))
        try ckpt.save(step: 2, write("s2"))
        // Killed between the rename of step-3 and the pointer: the pointer still says 2.
        try FileManager.default.copyItem(atPath: ckpt.root + "/step-2", toPath: ckpt.root + "/step-3")
        #expect(ckpt.latest()?.step == 2, "the pointer decides while it names a complete folder")
        // A step folder without its marker was never renamed in by us: it does not count.
        try FileManager.default.createDirectory(atPath: ckpt.root + "/step-9", withIntermediateDirectories: false)
        // No pointer at all (killed after the first rename): the newest complete step.
        try FileManager.default.removeItem(atPath: ckpt.root + "/latest")
        #expect(ckpt.latest()?.step == 3 && ckpt.steps() == [1, 2, 3])
        // A pointer naming a removed folder: the same fallback.
        try Data("step-7\n".utf8).write(to: URL(fileURLWithPath: ckpt.root + "/latest"))
        #expect(ckpt.latest()?.step == 3)
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: ckpt.root + "/latest"))
        #expect(ckpt.latest()?.step == 3)
    }

    /// A `step-N` without its marker (a crash inside `discardSteps`, a marker removed by hand) is
    /// not resumed from, and the save of that step replaces it (every save failed with ENOTEMPTY).
    @Test func aStepFolderWithoutItsMarkerGivesWayToTheSave() throws {
        let f = try QueueFixture()
        let c = try makeContext(f, token: "a.1")
        let ckpt = try c.checkpoints(keepLast: 3)
        try ckpt.save(step: 4, write("s4"))
        try ckpt.save(step: 8, write("old8"))
        try FileManager.default.removeItem(atPath: ckpt.root + "/step-8/" + Checkpoints.marker)
        #expect(ckpt.latest()?.step == 4)
        let path = try ckpt.save(step: 8, write("new8"))
        #expect(content(path) == "new8" && ckpt.latest()?.step == 8)
        #expect(entries(ckpt.root) == ["latest", "step-4", "step-8"], "the old folder went through the trash")
    }

    @Test func anExistingStepIsNeverReplaced() throws {
        let f = try QueueFixture()
        let a = try makeContext(f, token: "a.1")
        let ckptA = try a.checkpoints(keepLast: 3)
        try ckptA.save(step: 10, write("first"))
        try ckptA.save(step: 20, write("from A"))
        // A died after renaming step-20 but before moving the pointer.
        try Data("step-10\n".utf8).write(to: URL(fileURLWithPath: ckptA.root + "/latest"))
        let dir = f.queueDir + "/running/train@b.2"
        try FileManager.default.moveItem(atPath: a.folder, toPath: dir)
        let ckptB = try jobContext(folder: dir).checkpoints(keepLast: 3)
        #expect(ckptB.latest()?.step == 10)
        // B redoes steps 11…20 and saves step 20 again: the first writer's folder stays.
        let path = try ckptB.save(step: 20, write("from B"))
        #expect(content(path) == "from A")
        #expect((f.json(path + "/" + Checkpoints.marker)?["token"] as? String) == "a.1")
        #expect(ckptB.latest()?.step == 20, "the pointer moves to the kept folder")
        #expect(entries(ckptB.root) == ["latest", "step-10", "step-20"], "B's staged folder was removed")
        // The pointer never moves back.
        try ckptB.save(step: 30, write("30"))
        try FileManager.default.removeItem(atPath: ckptB.root + "/step-20")
        try ckptB.save(step: 20, write("again"))
        #expect(ckptB.latest()?.step == 30)
    }

    @Test func aZombieCannotWriteAfterATakeOver() throws {
        let f = try QueueFixture()
        let a = try makeContext(f, token: "a.1")
        let ckptA = try a.checkpoints(keepLast: 3)
        try ckptA.save(step: 1, write("s1"))
        // B takes the job over: the folder is renamed to B's name while A still runs.
        let dir = f.queueDir + "/running/train@b.2"
        try FileManager.default.moveItem(atPath: a.folder, toPath: dir)
        let b = jobContext(folder: dir)
        func expectLeaseLost(_ what: String, _ body: () throws -> Void) {
            do {
                try body()
                Issue.record("\(what): the zombie's write succeeded")
            } catch let e as CancellationError {
                #expect(e.reason == .leaseLost, "\(what)")
            } catch {
                Issue.record("\(what): \(error)")
            }
            #expect(!FileManager.default.fileExists(atPath: a.folder), "\(what) re-created the old folder")
        }
        expectLeaseLost("save(step:)") { try ckptA.save(step: 2, write("zombie")) }
        expectLeaseLost("save(name:)") { try ckptA.save(name: "best_dev", write("zombie")) }
        expectLeaseLost("checkpoints()") { _ = try a.checkpoints() }
        expectLeaseLost("publish") { try a.publish("result.bin", Data("zombie".utf8)) }
        expectLeaseLost("openOutput") { _ = try a.openOutput("emb/shard.npy") }
        #expect(ckptA.latest() == nil, "the zombie's paths name nothing")
        // Taken over while staging: the handler's writes fail and the staged folder moves to the
        // taker, who ignores it and removes it on open.
        let a2Dir = f.queueDir + "/running/train@c.3"
        let ckptB2 = try b.checkpoints(keepLast: 3)
        do {
            try ckptB2.save(step: 2) { staged in
                try Data("part".utf8).write(to: URL(fileURLWithPath: staged + "/a.txt"))
                try FileManager.default.moveItem(atPath: dir, toPath: a2Dir)  // C takes over mid-save
                try Data("more".utf8).write(to: URL(fileURLWithPath: staged + "/b.txt"))
            }
            Issue.record("a save across a take-over succeeded")
        } catch let e as CancellationError {
            #expect(e.reason == .leaseLost)
        } catch {
            Issue.record("the handler's failed write should surface as leaseLost: \(error)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir))
        let c = jobContext(folder: a2Dir)
        let ckptC = try c.checkpoints(keepLast: 3)
        #expect(ckptC.latest()?.step == 1 && content(ckptC.latest()!.path) == "s1")
        #expect(entries(ckptC.root) == ["latest", "step-1"], "B's half-staged folder was cleaned")
        try ckptC.save(step: 2, write("s2"))
        #expect(ckptC.latest()?.step == 2)
    }

    @Test func namedCheckpointsAreReplacedWholeAndRestoredAfterACrash() throws {
        let f = try QueueFixture()
        let c = try makeContext(f, token: "a.1")
        let ckpt = try c.checkpoints(keepLast: 1)
        #expect(ckpt.named("best_dev") == nil)
        try ckpt.save(name: "best_dev", write("dev 0.41"))
        try ckpt.save(name: "best_dev", write("dev 0.45"))
        let best = try #require(ckpt.named("best_dev"))
        #expect(content(best) == "dev 0.45" && best == ckpt.root + "/best_dev")
        try ckpt.save(step: 3, write("s3"))
        try ckpt.save(step: 4, write("s4"))
        #expect(ckpt.steps() == [4] && ckpt.named("best_dev") != nil, "keep-last-K never prunes named checkpoints")
        #expect(entries(ckpt.root) == ["best_dev", "latest", "step-4"])
        // Killed between moving the old best_dev aside and renaming the new one in.
        try FileManager.default.moveItem(atPath: best, toPath: ckpt.root + "/.trash-best_dev.a.1")
        try FileManager.default.createDirectory(atPath: ckpt.root + "/.best_dev.a.1.tmp", withIntermediateDirectories: false)
        #expect(ckpt.named("best_dev") == nil)
        let again = try c.checkpoints(keepLast: 1)
        #expect(again.named("best_dev").map(content) == "dev 0.45", "the old best is restored")
        #expect(entries(ckpt.root) == ["best_dev", "latest", "step-4"])
        for bad in ["", "latest", "step-5", "a/b", "..", "best dev"] {
            #expect(throws: JobError.self, "\(bad)") { try again.save(name: bad, write("x")) }
        }
    }
}
