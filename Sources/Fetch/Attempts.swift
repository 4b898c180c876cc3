// Attempts: one private work folder per attempt, so a take-over never waits on or shares files with a frozen holder.
import Foundation
import Threading

/// The attempt folders under a shared work folder (`.<dest>.fetch/`): each run works only in its
/// own `a-<token>/`, holding an exclusive `flock` on its `lock` file for as long as it runs.
///
/// The rule, general to any job that keeps state between attempts: an attempt never waits on, or
/// writes into, another attempt's folder while that attempt may still be alive. One whose lock is
/// held (a worker that is frozen, or a zombie that lost its lease) is left alone; one whose lock is
/// free is abandoned and may be adopted (its state taken over, then its folder removed). `flock` is
/// only a local guard: on a network file system, where it may not exclude another host, a free
/// lock must also be stale — untouched for `staleAfterS`, while live holders touch it every
/// `heartbeatS` — and adopted files should be copied, not moved, so that a holder that was only
/// paused can never write into them.
struct Attempts {
    /// A network file system's free lock counts as abandoned once untouched this long.
    static let staleAfterS: Double = 30
    /// How often a holder on a network file system touches its lock.
    static let heartbeatS: Double = 5

    let work: URL
    /// Whether the stricter network-file-system rules apply.
    let network: Bool

    /// `attempt` when it is a safe file-name part (the queue's claim token), else a fresh `<pid>-<random>`.
    static func name(_ attempt: String?) -> String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if let a = attempt, !a.isEmpty, a.count <= 100, a.allSatisfy(allowed.contains), a.first != "." { return a }
        return "\(getpid())-" + UUID().uuidString.prefix(8).lowercased()
    }

    /// Creates `work/a-<token>` with its lock already held: built as `.tmp-a-<token>` and renamed,
    /// so every `a-*` folder another run sees has a lock file to test.
    func claim(token: String) throws -> (URL, WorkLock) {
        let mine = work.appendingPathComponent("a-" + token)
        let heartbeat = network ? Attempts.heartbeatS : nil
        if Fetcher.exists(mine) {
            // The same attempt run again (its token reused): its own files are its to resume.
            return (mine, try WorkLock(mine.appendingPathComponent("lock"), heartbeat: heartbeat))
        }
        let tmp = work.appendingPathComponent(".tmp-a-" + token)
        try removeTree(tmp)
        guard mkdir(tmp.path, 0o777) == 0 else { throw FetchError.posix(tmp.path, "cannot create attempt folder") }
        let lock = try WorkLock(tmp.appendingPathComponent("lock"), heartbeat: heartbeat)
        do { try rename(tmp, to: mine) } catch {
            lock.release()
            try? removeTree(tmp)
            throw error
        }
        return (mine, lock)
    }

    /// The other attempts' folders that are abandoned, each returned with its lock now held by the
    /// caller (release it when done). Live ones are logged and skipped; a `.tmp-a-*` left by a run
    /// that died before naming its folder is removed.
    func abandoned(except mine: URL, log: (String) -> Void) -> [(URL, WorkLock)] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: work.path)) ?? []).sorted()
        for name in names where name.hasPrefix(".tmp-a-") {
            let tmp = work.appendingPathComponent(name)
            if let held = try? WorkLock(tmp.appendingPathComponent("lock"), create: false) {
                try? removeTree(tmp)
                held.release()
            } else if !Fetcher.exists(tmp.appendingPathComponent("lock")), let age = modificationTime(tmp),
                Date().timeIntervalSince1970 - age > Attempts.staleAfterS
            {
                try? removeTree(tmp)
            }
        }
        var found: [(URL, WorkLock)] = []
        for name in names where name.hasPrefix("a-") && name != mine.lastPathComponent {
            let other = work.appendingPathComponent(name)
            guard let held = try? WorkLock(other.appendingPathComponent("lock"), create: false) else {
                log("fetch: attempt \(name) is still alive (its lock is held); not touching its files")
                continue
            }
            if network {
                // Judge age by the file server's clock: our own lock was touched just now.
                let now = modificationTime(mine.appendingPathComponent("lock")) ?? Date().timeIntervalSince1970
                let touched = modificationTime(other.appendingPathComponent("lock")) ?? 0
                if now - touched < Attempts.staleAfterS {
                    log("fetch: attempt \(name) was alive \(Int(now - touched)) s ago; not touching its files")
                    held.release()
                    continue
                }
            }
            found.append((other, held))
        }
        return found
    }

    /// Whether `url` is on NFS, SMB/CIFS, 9p, Lustre, Ceph, AFS or FUSE, where `flock` may not
    /// exclude another host: the file system type of its longest mount point in /proc/mounts
    /// (unknown counts as network, the cautious side).
    static func isNetworkFileSystem(_ url: URL) -> Bool {
        guard let mounts = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return true }
        let path = Fetcher.realpathOrSelf(url.path)
        var best: (length: Int, type: String)?
        for line in mounts.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count >= 3 else { continue }
            // Mount points escape spaces and tabs as octal (\040).
            let point = String(f[1]).replacingOccurrences(of: "\\040", with: " ").replacingOccurrences(of: "\\011", with: "\t")
            if Fetcher.isInside(path, point), point.count >= (best?.length ?? -1) {
                best = (point.count, String(f[2]))
            }
        }
        guard let type = best?.type else { return true }
        return ["nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "lustre", "ceph", "afs", "gfs2", "ocfs2", "glusterfs", "fuse"]
            .contains(type) || type.hasPrefix("fuse.")
    }
}

/// An exclusive `flock` on an attempt's lock file, held for one run (a local guard; the queue's
/// lease is the cross-machine one). With `heartbeat`, a thread touches the file every so many
/// seconds while it is held, so another host can tell a live holder from an abandoned one.
final class WorkLock: @unchecked Sendable {
    private var fd: Int32
    private let stop = DispatchSemaphore(value: 0)
    /// Signalled by the touching thread as it ends; nil when none runs.
    private var exited: DispatchSemaphore?

    /// Takes the lock; throws when another process holds it (or, with `create` false, when the
    /// file is missing).
    init(_ url: URL, create: Bool = true, heartbeat: Double? = nil) throws {
        fd = open(url.path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0o666)
        guard fd >= 0 else { throw FetchError.posix(url.path, "cannot open lock file") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            Glibc.close(fd)
            fd = -1
            throw FetchError.io(path: url.path, message: "another run holds this attempt's lock")
        }
        if let heartbeat {
            futimens(fd, nil)
            let fd = self.fd, stop = self.stop, exited = DispatchSemaphore(value: 0)
            // A thread of ours: Foundation's `Thread` dropped a refused start silently (the
            // process limit), leaving the lock untouched and `release` waiting for ever.
            do {
                try startThread("the thread that keeps this attempt's lock fresh") {
                    while stop.wait(timeout: .now() + heartbeat) == .timedOut { futimens(fd, nil) }
                    exited.signal()
                }
            } catch {
                Glibc.close(fd)
                self.fd = -1
                throw FetchError.io(path: url.path, message: "\(error)")
            }
            self.exited = exited
        }
    }

    func release() {
        if let exited {
            stop.signal()
            // The thread touches `fd` at most once more; wait so it never touches a reused number.
            exited.wait()
            self.exited = nil
        }
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    deinit { release() }
}
