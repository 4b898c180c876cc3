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
}
