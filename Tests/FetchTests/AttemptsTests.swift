// AttemptsTests: one folder per attempt; live holders are never touched, abandoned ones are found.
import Foundation
import Testing

@testable import Fetch

@Suite struct AttemptsTests {
    @Test func attemptNamesAreSafeFileNameParts() {
        #expect(Attempts.name("3f9a-01") == "3f9a-01")
        for bad in [nil, "", "a/b", "..", ".hidden", "x y", String(repeating: "a", count: 101)] {
            let made = Attempts.name(bad)
            #expect(made != bad && made.hasPrefix("\(getpid())-"), "\(String(describing: bad)) -> \(made)")
        }
    }

    @Test func claimHoldsTheLockAndAbandonedSkipsLiveHolders() throws {
        let box = try Sandbox()
        let attempts = Attempts(work: box.ws, network: false)
        let (mine, lock) = try attempts.claim(token: "mine")
        defer { lock.release() }
        #expect(mine.lastPathComponent == "a-mine")
        #expect(throws: FetchError.self) { try WorkLock(mine.appendingPathComponent("lock")) }
        let (live, liveLock) = try attempts.claim(token: "live")
        defer { liveLock.release() }
        let (dead, deadLock) = try attempts.claim(token: "dead")
        deadLock.release()
        // A run that died between mkdir and rename leaves a `.tmp-a-*` with a free lock.
        let tmp = box.ws.appendingPathComponent(".tmp-a-gone")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: false)
        try Data().write(to: tmp.appendingPathComponent("lock"))
        var lines: [String] = []
        let found = attempts.abandoned(except: mine, log: { lines.append($0) })
        #expect(found.map(\.0.lastPathComponent) == [dead.lastPathComponent])
        for (_, held) in found { held.release() }
        #expect(lines.contains { $0.contains("a-live") && $0.contains("still alive") }, "\(lines)")
        #expect(!FileManager.default.fileExists(atPath: tmp.path))
        #expect(FileManager.default.fileExists(atPath: live.path))
    }

    @Test func onANetworkFileSystemTheHolderKeepsItsLockFresh() throws {
        let box = try Sandbox()
        let attempts = Attempts(work: box.ws, network: true)
        let (mine, lock) = try attempts.claim(token: "mine")
        defer { lock.release() }
        let (other, otherLock) = try attempts.claim(token: "other")
        otherLock.release()
        // Free but touched just now: it may belong to a live holder on another host.
        #expect(attempts.abandoned(except: mine, log: { _ in }).isEmpty)
        var old = [timespec(tv_sec: 1_000_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, other.appendingPathComponent("lock").path, &old, 0) == 0)
        let found = attempts.abandoned(except: mine, log: { _ in })
        #expect(found.map(\.0.lastPathComponent) == [other.lastPathComponent])
        for (_, held) in found { held.release() }
        // The heartbeat: a held lock's time moves forward while its holder runs.
        let heartbeat = try WorkLock(box.ws.appendingPathComponent("beat"), heartbeat: 0.05)
        defer { heartbeat.release() }
        var beat = [timespec(tv_sec: 1_000_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, box.ws.appendingPathComponent("beat").path, &beat, 0) == 0)
        let deadline = Date().addingTimeInterval(30)
        while (modificationTime(box.ws.appendingPathComponent("beat")) ?? 0) < 1_500_000_000, Date() < deadline { usleep(10_000) }
        #expect((modificationTime(box.ws.appendingPathComponent("beat")) ?? 0) > 1_500_000_000, "touched again (now)")
    }

    @Test func localTemporaryFolderIsNotANetworkFileSystem() throws {
        let box = try Sandbox()
        // Whatever /tmp is here (ext4, tmpfs, overlay), the tests' adoption relies on it being local.
        let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
        let nfsTmp = mounts.split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first == "/tmp" && $0.contains(" nfs") }
        #expect(Attempts.isNetworkFileSystem(box.ws) == nfsTmp)
    }
}
