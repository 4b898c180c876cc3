// CrashPoints: test-only SIGKILLs at protocol steps, armed by FIDQ_TEST_CRASH (never set by users).
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Jobs

/// `FIDQ_TEST_CRASH=claim:0.05,commit:0.05` makes the worker kill itself with SIGKILL with that
/// probability at the named step (see `StepHook`), so crash tests hit the narrow windows (between
/// claim and lease, inside a commit) that random external kills rarely land in.
public enum CrashPoints {
    /// Parses `FIDQ_TEST_CRASH` and installs the step hook. Armed only together with
    /// `FIDQ_TEST_KINDS=1`, so a stray variable cannot kill real workers.
    public static func armFromEnvironment() {
        let env = ProcessInfo.processInfo.environment
        guard env["FIDQ_TEST_KINDS"] == "1", let spec = env["FIDQ_TEST_CRASH"] else { return }
        var parsed: [String: Double] = [:]
        for part in spec.split(separator: ",") {
            let kv = part.split(separator: ":")
            if kv.count == 2, let p = Double(kv[1]) { parsed[String(kv[0])] = p }
        }
        let armed = parsed
        StepHook.install { step in
            guard let p = armed[step], Double.random(in: 0..<1) < p else { return }
            kill(getpid(), SIGKILL)
        }
    }
}
