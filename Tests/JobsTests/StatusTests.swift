// StatusTests: what `fidq status` reports for claims: the holder's lease, age since the claim, end states.
import Foundation
import Testing
@testable import Jobs

@Suite struct StatusTests {
    @Test func aClaimIsStaleByItsHoldersLease() throws {
        let f = try QueueFixture()
        try f.plantClaim("long", token: "h1", leaseS: 60, age: 10)
        try f.plantClaim("short", token: "h2", leaseS: 3, age: 10)
        try f.plantClaim("legacy", token: "h3", leaseS: nil, age: 10)
        let states = Dictionary(uniqueKeysWithValues: f.queue.status(lease: 5).map { ($0.id, $0.state) })
        #expect(states == ["long": "running", "short": "stale", "legacy": "stale"])
        try f.plantClaim("ahead", token: "h4", leaseS: 3, age: -3600)
        let ahead = try #require(f.queue.status(lease: 5).first { $0.id == "ahead" })
        #expect(ahead.state == "running" && ahead.detail?.contains("ahead of the filesystem's clock") == true, "\(ahead)")
    }

    @Test func aRunningJobsAgeCountsFromItsClaim() throws {
        let f = try QueueFixture()
        let dir = try f.plantClaim("j", token: "h1", leaseS: 60, age: 0)
        try f.setAge(dir + "/job.json", 3600)  // dropped an hour ago, claimed just now
        let row = try #require(f.queue.status().first { $0.id == "j" })
        #expect(row.state == "running")
        #expect((row.ageS ?? 1e9) < 600, "age since the claim, not the drop: \(row.ageS ?? -1)")
    }

    /// A claimer whose clock runs two hours slow: the age comes from the filesystem's clock the
    /// claim recorded, not from `claimed_at` against this host's clock (which read 2 h).
    @Test func aRunningJobsAgeIsByTheFilesystemsClock() throws {
        let f = try QueueFixture()
        let dir = try f.plantClaim("j", token: "h1", leaseS: 60, age: 0)
        var record = try #require(f.queue.readClaim(dir))
        record.claimedAt = isoTimestamp(wallNow() - 7200)
        record.claimedAtFS = f.queue.fsNow(probe: "test") - 60
        try f.queue.writeClaim(dir, record)
        let row = try #require(f.queue.status().first { $0.id == "j" })
        #expect(abs((row.ageS ?? 0) - 60) < 30, "\(row.ageS ?? -1)")
        // A worker's claim records it (another queue: drain would wait for the claim above).
        let g = try QueueFixture()
        try g.dropRecord("k")
        drainInProcess(g)
        let claim = try #require(g.queue.readClaim(g.queueDir + "/done/k"))
        let at = try #require(claim.claimedAtFS, "no claimed_at_fs in \(claim)")
        #expect(abs(g.queue.fsNow(probe: "test") - at) < 120)
    }

    /// A job that finishes while status lists the folders is shown where it went, never dropped:
    /// a worker commits it to done/ right after pending/ was listed (the folders used to be read
    /// done/ first, so it was in neither listing).
    @Test func aJobThatMovesWhileListedIsStillShown() throws {
        let f = try QueueFixture()
        try f.dropRecord("moving")
        try f.dropRecord("staying")
        let fs = ListHookFileSystem { path in
            guard path.hasSuffix("/pending"), FileManager.default.fileExists(atPath: path + "/moving.json") else { return }
            try? FileManager.default.createDirectory(atPath: f.queueDir + "/done/moving", withIntermediateDirectories: true)
            try? FileManager.default.removeItem(atPath: path + "/moving.json")
        }
        let rows = Queue(root: f.queueDir, fs: fs).status()
        #expect(rows.map(\.id).sorted() == ["moving", "staying"], "\(rows.map { ($0.id, $0.state) })")
        #expect(rows.first { $0.id == "moving" }?.state == "done")
    }

    /// A retried job whose older failure is still kept in failed/ (and a job claimed while its
    /// earlier failure is there) is shown pending or running beside that failure, not hidden; a
    /// job committed to done/ after done/ was listed (its claim gone before it was read) is shown.
    @Test func aJobInTwoFoldersForRealIsShownInBoth() throws {
        let f = try QueueFixture()
        try FileManager.default.createDirectory(atPath: f.queueDir + "/failed/again", withIntermediateDirectories: true)
        try f.dropRecord("again")
        try FileManager.default.createDirectory(atPath: f.queueDir + "/failed/claimed", withIntermediateDirectories: true)
        try f.plantClaim("claimed", token: "t1", leaseS: 600, age: 0)
        let rows = f.queue.status()
        #expect(rows.filter { $0.id == "again" }.map(\.state).sorted() == ["failed", "pending"], "\(rows.map { ($0.id, $0.state) })")
        #expect(rows.filter { $0.id == "claimed" }.map(\.state).sorted() == ["failed", "running"], "\(rows.map { ($0.id, $0.state) })")

        let g = try QueueFixture()
        let claim = try g.plantClaim("late", token: "t2", leaseS: 600, age: 0)
        try FileManager.default.createDirectory(atPath: g.queueDir + "/done/a", withIntermediateDirectories: true)
        let fs = ListHookFileSystem { path in
            // After done/ was listed, the job commits: its claim folder becomes done/late.
            guard path.hasSuffix("/done"), FileManager.default.fileExists(atPath: claim) else { return }
            try? FileManager.default.moveItem(atPath: claim, toPath: g.queueDir + "/done/late")
        }
        let late = Queue(root: g.queueDir, fs: fs).status()
        #expect(late.map(\.id).sorted() == ["a", "late"] && late.first { $0.id == "late" }?.state == "done",
                "\(late.map { ($0.id, $0.state) })")
    }

    @Test func parsesTheTimestampsItWrites() {
        let now = wallNow()
        let t = parseISOTimestamp(isoTimestamp(now))
        #expect(t != nil && abs(t! - now.rounded(.down)) < 1.001)
        #expect(parseISOTimestamp("2026-11-28T18:40:01Z") == 1_795_891_201)
        #expect(parseISOTimestamp("yesterday") == nil)
    }
}

/// The real file system, calling `afterList` with each folder listed just after listing it.
final class ListHookFileSystem: FileSystem, @unchecked Sendable {
    let base = PosixFileSystem()
    let afterList: (String) -> Void
    init(afterList: @escaping (String) -> Void) { self.afterList = afterList }
    func mkdir(_ path: String) throws { try base.mkdir(path) }
    func rename(_ from: String, _ to: String) throws { try base.rename(from, to) }
    func link(_ from: String, _ to: String) throws { try base.link(from, to) }
    func unlink(_ path: String) throws { try base.unlink(path) }
    func rmdir(_ path: String) throws { try base.rmdir(path) }
    func list(_ path: String) throws -> [String] {
        defer { afterList(path) }
        return try base.list(path)
    }
    func info(_ path: String) throws -> FileInfo { try base.info(path) }
    func read(_ path: String, limit: Int) throws -> Data { try base.read(path, limit: limit) }
    func write(_ path: String, _ data: Data, sync: Bool) throws { try base.write(path, data, sync: sync) }
    func append(_ path: String, _ data: Data) throws { try base.append(path, data) }
    func touch(_ path: String) throws { try base.touch(path) }
    func realpath(_ path: String) throws -> String { try base.realpath(path) }
}
