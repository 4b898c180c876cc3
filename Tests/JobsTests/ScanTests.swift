// ScanTests: what a scan offers, in which order, and that it never lists done/ or failed/.
import Foundation
import Testing
@testable import Jobs
import JobsTesting

@Suite struct ScanTests {
    func scanner(_ f: QueueFixture, fs: FileSystem? = nil, kinds: Set<String>? = nil) -> QueueScanner {
        QueueScanner(queue: Queue(root: f.queueDir, fs: fs ?? PosixFileSystem()), registry: testRegistry(), kinds: kinds,
                lease: 5, probe: "test")
    }

    func pendingOrder(_ plan: Plan) -> [String] {
        plan.candidates.compactMap {
            if case .pending(_, let folder, _, nil) = $0 { return folder }
            return nil
        }
    }

    func failing(_ plan: Plan) -> [String: String] {
        var out: [String: String] = [:]
        for c in plan.candidates {
            if case .pending(_, let folder, _, let e?) = c { out[folder] = e.description }
        }
        return out
    }

    @Test func higherPriorityFirstThenOlder() throws {
        let f = try QueueFixture()
        try f.dropRecord("old-low", extra: #""priority": -1"#)
        usleep(20_000)
        try f.dropRecord("b-mid")
        usleep(20_000)
        try f.dropRecord("a-mid")
        try f.dropRecord("high", extra: #""priority": 9"#)
        #expect(pendingOrder(scanner(f).plan()) == ["high", "b-mid", "a-mid", "old-low"])
    }

    /// A dead holder's claim and an unreadable drop whose mtimes are far ahead of the filesystem's
    /// clock (a clock stepped back, `cp -p`, `touch -d`): judged by how long they stay unchanged
    /// as this scanner watches, not left waiting until the clock catches up.
    @Test func filesDatedInTheFutureAreJudgedByHowLongTheyStayUnchanged() throws {
        let f = try QueueFixture()
        let dir = try f.plantClaim("dead", token: "h1", leaseS: 0.3, age: -3600)
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: f.pending + "/garbled.json"))
        try f.setAge(f.pending + "/garbled.json", -3600)
        let s = scanner(f)
        s.settleS = 0.3
        func takeovers(_ plan: Plan) -> [String] {
            plan.candidates.compactMap { if case .takeOver(_, let id, true) = $0 { return id } else { return nil } }
        }
        let first = s.plan()
        #expect(takeovers(first).isEmpty && failing(first).isEmpty && first.waiting == 2, "\(first.candidates)")
        usleep(500_000)
        let later = s.plan()
        #expect(takeovers(later) == ["dead"], "\(later.candidates)")
        #expect(failing(later).keys.sorted() == ["garbled"], "\(later.candidates)")
        // A renewal (a current mtime) makes it live again, judged by the clock.
        try f.setAge(dir + "/claim", 0)
        #expect(takeovers(s.plan()).isEmpty)
    }

    @Test func dependenciesHoldFailOrWait() throws {
        let f = try QueueFixture()
        try f.dropRecord("root")
        try f.dropRecord("child", extra: #""after": ["root"]"#)
        try f.dropRecord("ghost-child", extra: #""after": ["ghost"]"#)
        try f.dropRecord("ref-child", params: #""payload": "job:root/x""#)
        var plan = scanner(f).plan()
        #expect(pendingOrder(plan) == ["root"])
        #expect(plan.waiting == 2, "child and ref-child wait on a pending job; ghost-child does not count")
        try FileManager.default.createDirectory(atPath: f.queueDir + "/failed/ghost", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: f.queueDir + "/done/root", withIntermediateDirectories: true)
        try FileManager.default.removeItem(atPath: f.pending + "/root.json")
        plan = scanner(f).plan()
        #expect(Set(pendingOrder(plan)) == ["child", "ref-child"])
        #expect(failing(plan)["ghost-child"]?.contains("dependency 'ghost' failed") == true)
    }

    @Test func cyclesFailEveryMember() throws {
        let f = try QueueFixture()
        try f.dropRecord("a", extra: #""after": ["b"]"#)
        try f.dropRecord("b", extra: #""after": ["c"]"#)
        try f.dropRecord("c", extra: #""after": ["a"]"#)
        try f.dropRecord("d", extra: #""after": ["a"]"#)
        try f.dropRecord("free")
        let fails = failing(scanner(f).plan())
        #expect(Set(fails.keys) == ["a", "b", "c", "d"])
        #expect(fails["a"]?.contains("a → b → c → a") == true, "\(fails["a"] ?? "")")
        #expect(fails["d"]?.contains("cycle") == true)
    }

    @Test func kindsFilterSkipsOtherKinds() throws {
        let f = try QueueFixture()
        try f.dropRecord("rec")
        try f.drop("cnt", #"{"kind": "count", "params": {"inputs": ["x"]}}"#)
        try f.drop("unknown", #"{"kind": "nope"}"#)
        #expect(pendingOrder(scanner(f, kinds: ["count"]).plan()) == ["cnt"])
        #expect(failing(scanner(f, kinds: ["count"]).plan()).isEmpty, "a filtered worker leaves unknown kinds alone")
        #expect(failing(scanner(f).plan())["unknown"]?.contains("unknown kind") == true)
    }

    @Test func neverListsDoneOrFailed() throws {
        let f = try QueueFixture()
        for i in 0..<2000 {
            try FileManager.default.createDirectory(atPath: f.queueDir + "/done/old\(i)", withIntermediateDirectories: true)
        }
        try f.dropRecord("new", extra: #""after": ["old7"]"#)
        let counting = FaultyFileSystem()
        let plan = scanner(f, fs: counting).plan()
        #expect(pendingOrder(plan) == ["new"])
        #expect(counting.listings.keys.allSatisfy { !$0.hasSuffix("/done") && !$0.hasSuffix("/failed") }, "\(counting.listings)")
        #expect(counting.counts[.info, default: 0] < 20, "a scan stats only what it needs: \(counting.counts)")
    }

    @Test func rescanParsesOnlyNewFiles() throws {
        let f = try QueueFixture()
        for i in 0..<50 { try f.dropRecord("j\(i)") }
        let counting = FaultyFileSystem()
        let s = scanner(f, fs: counting)
        _ = s.plan()
        let reads = counting.counts[.read, default: 0]
        _ = s.plan()
        #expect(counting.counts[.read, default: 0] == reads, "descriptors are cached by (name, inode, size, mtime)")
    }

    func takeOvers(_ plan: Plan) -> [String] {
        plan.candidates.compactMap {
            switch $0 {
            case .takeOver(let name, _, _): return name
            case .cleanUp(let name): return "cleanUp " + name
            default: return nil
            }
        }
    }

    @Test func theHoldersLeaseDecidesStaleness() throws {
        let f = try QueueFixture()
        // Both claims went 10 s without a heartbeat; this scanner's own lease is 5 s.
        try f.plantClaim("long", token: "h1", leaseS: 60, age: 10)
        try f.plantClaim("short", token: "h2", leaseS: 3, age: 10)
        try f.plantClaim("legacy", token: "h3", leaseS: nil, age: 10)
        let plan = scanner(f).plan()
        #expect(Set(takeOvers(plan)) == ["short@h2", "legacy@h3"],
                "a 60 s holder is healthy 10 s after its heartbeat, whatever the taker's --lease")
        #expect(plan.waiting == 1)
    }

    @Test func aLookupThatFailsIsNotReadAsAnEmptyClaim() throws {
        let f = try QueueFixture()
        try f.plantClaim("x", token: "dead", leaseS: 1, age: 10)
        // EIO on every stat of job.json: the scan cannot tell whether the claim holds its job.
        let eio = FaultyFileSystem(faults: [.init(.info, EIO, pathContains: "job.json")])
        let plan = scanner(f, fs: eio).plan()
        #expect(takeOvers(plan).isEmpty, "no clean-up on 'could not tell': \(takeOvers(plan))")
        #expect(plan.waiting == 1)
        #expect(takeOvers(scanner(f).plan()) == ["x@dead"], "once readable, a stale claim with its job is taken over")
        // A claim that really holds no job (its claimer died before moving the job in).
        try f.plantClaim("y", token: "dead", leaseS: 1, age: 10, withJob: false)
        #expect(takeOvers(scanner(f).plan()).contains("cleanUp y@dead"))
    }

    @Test func aCopyInProgressIsReadAgainOnceComplete() throws {
        let f = try QueueFixture()
        // `cp job.json queue/pending/` writes in place: a scan may see the first half.
        let path = f.pending + "/copied.json"
        let full = #"{"kind": "test.record", "params": {"payload": "complete"}}"#
        try Data(full.utf8.prefix(20)).write(to: URL(fileURLWithPath: path))
        let s = scanner(f)
        var plan = s.plan()
        #expect(failing(plan).isEmpty, "a half-written file is not failed while it may still be growing")
        #expect(plan.waiting == 1 && pendingOrder(plan).isEmpty)
        let h = try #require(FileHandle(forWritingAtPath: path))
        h.seekToEndOfFile()
        h.write(Data(full.utf8.dropFirst(20)))
        try h.close()
        plan = s.plan()
        #expect(pendingOrder(plan) == ["copied"], "the same scanner parses it again once it changed: \(failing(plan))")
        // Rewritten in place under the same name: the cache notices the new size and mtime.
        try Data(#"{"kind": "test.record", "params": {"payload": "second version"}}"#.utf8).write(to: URL(fileURLWithPath: path))
        plan = s.plan()
        let payload = plan.candidates.compactMap { c -> String? in
            if case .pending(_, _, let d?, nil) = c, case .object(let p) = d.params, case .string(let v)? = p["payload"] { return v }
            return nil
        }
        #expect(payload == ["second version"])
        // A file that stays broken is failed once it has stopped changing.
        try Data("{ broken".utf8).write(to: URL(fileURLWithPath: f.pending + "/broken.json"))
        try f.setAge(f.pending + "/broken.json", 10)
        #expect(failing(s.plan())["broken"]?.contains("JSON") == true)
    }

    /// A dependency whose done/ folder was archived after a scan cached it: the dependent waits
    /// (it ran before the resubmitted dependency).
    @Test func anArchivedDependencyIsCheckedAgainBeforeRunning() throws {
        let f = try QueueFixture()
        let s = scanner(f)
        try FileManager.default.createDirectory(atPath: f.queueDir + "/done/x", withIntermediateDirectories: true)
        try f.dropRecord("z", extra: #""after": ["x"]"#)
        #expect(pendingOrder(s.plan()) == ["z"])
        try FileManager.default.removeItem(atPath: f.pending + "/z.json")
        try FileManager.default.moveItem(atPath: f.queueDir + "/done/x", toPath: f.workspace + "/archived-x")
        try f.dropRecord("x")
        try f.dropRecord("y", extra: #""after": ["x"]"#)
        let plan = s.plan()
        #expect(pendingOrder(plan) == ["x"] && plan.waiting == 1, "\(pendingOrder(plan)), waiting \(plan.waiting)")
    }

    /// An id dropped again while its job runs waits for it, rather than running beside it.
    @Test func anIDThatIsRunningWaits() throws {
        let f = try QueueFixture()
        try f.plantClaim("x", token: "t1", leaseS: 60, age: 0)
        try f.dropRecord("x")
        let plan = scanner(f).plan()
        #expect(pendingOrder(plan).isEmpty && plan.waiting == 2, "\(pendingOrder(plan)), waiting \(plan.waiting)")
    }

    @Test func theDoneSetIsRecheckedOnRequest() throws {
        let f = try QueueFixture()
        let s = scanner(f)
        try FileManager.default.createDirectory(atPath: f.queueDir + "/done/a", withIntermediateDirectories: true)
        #expect(s.isDone("a"))
        try FileManager.default.moveItem(atPath: f.queueDir + "/done/a", toPath: f.workspace + "/archived-a")
        #expect(s.isDone("a"), "dependency checks may use the cache")
        #expect(!s.isDone("a", fresh: true), "a fresh check sees it was archived")
        #expect(!s.isDone("a"), "and forgets it")
    }
}
