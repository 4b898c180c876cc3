// CrashPoints: test-only SIGKILLs at protocol steps, armed by FIDQ_TEST_CRASH (never set by users).
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// `FIDQ_TEST_CRASH=claim:0.05,commit:0.05` makes the worker kill itself with SIGKILL with that
/// probability at the named step, so crash tests hit the narrow windows (between claim and lease,
/// inside a commit) that random external kills rarely land in. Points: `claim` (folder made, job
/// not yet moved in), `claimed` (job moved in, no heartbeat yet), `takeover` (folder renamed,
/// claim not yet rewritten), `commit` (result written, folder not yet renamed into done/).
enum CrashPoints {
    static let armed: [String: Double] = {
        let env = ProcessInfo.processInfo.environment
        // Armed only together with the test kinds, so a stray variable cannot kill real workers.
        guard env["FIDQ_TEST_KINDS"] == "1", let spec = env["FIDQ_TEST_CRASH"] else { return [:] }
        var out: [String: Double] = [:]
        for part in spec.split(separator: ",") {
            let kv = part.split(separator: ":")
            if kv.count == 2, let p = Double(kv[1]) { out[String(kv[0])] = p }
        }
        return out
    }()

    static func hit(_ point: String) {
        guard let p = armed[point], Double.random(in: 0..<1) < p else { return }
        kill(getpid(), SIGKILL)
    }
}
