// Heartbeat: the thread that renews a claim's lease and turns cancel, timeout and loss into a token.
import Dispatch
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Threading

/// Renews the lease every `lease/3` (`lease` is the one written into the claim), and cancels the job's token when a `cancel` file appears,
/// `timeout` passes, or the claim folder is gone (another worker took it over). If the job
/// ignores a cancel for `grace` seconds, calls `abandon` (the worker then records the outcome
/// and exits, since a thread cannot be killed).
final class Heartbeat: @unchecked Sendable {
    let queue: Queue
    let dir: String
    let lease: Double
    let token: CancellationToken
    let timeout: Double?
    let grace: Double
    let abandon: @Sendable (CancelReason) -> Void
    private let lock = NSLockLite()
    private var stopped = false
    private let finished = DispatchSemaphore(value: 0)
    private let wake = DispatchSemaphore(value: 0)

    init(queue: Queue, dir: String, lease: Double, token: CancellationToken, timeout: Double?, grace: Double,
         abandon: @escaping @Sendable (CancelReason) -> Void) {
        self.queue = queue
        self.dir = dir
        self.lease = lease
        self.token = token
        self.timeout = timeout
        self.grace = grace
        self.abandon = abandon
    }

    /// Starts the heartbeat on a thread of its own (libdispatch would wait for ever on a thread
    /// the process limit refuses), or throws `ThreadStartError`.
    func start() throws {
        let start = monotonicNow()
        try startThread("the job's heartbeat thread") { [self] in
            defer { finished.signal() }
            // The claim was written (or renewed) just before the job started.
            var lastRenew = start
            let tick = min(0.25, lease / 12)
            while !lock.withLock({ stopped }) {
                _ = wake.wait(timeout: .now() + tick)
                let now = monotonicNow()
                if now - lastRenew >= lease / 3 {
                    do {
                        try queue.renewLease(dir)
                        lastRenew = now
                    } catch let e as FSError where e.code == ENOENT || e.code == ENOTDIR {
                        token.cancel(.leaseLost)
                    } catch {
                        // Declare the lease lost before a peer may take it: peers may once the
                        // last successful renewal is `lease` old, so give up at 2/3 of that,
                        // counted from that renewal (not from the first failure).
                        if Heartbeat.mustGiveUp(sinceRenewal: now - lastRenew, lease: lease) { token.cancel(.leaseLost) }
                    }
                }
                if queue.fs.exists(dir + "/cancel") { token.cancel(.cancelled) }
                if let timeout, now - start > timeout { token.cancel(.timeout) }
                if let reason = token.reason, now - token.cancelledAt > grace {
                    abandon(reason)
                    return
                }
            }
        }
    }

    /// Whether a holder whose renewals fail must declare its lease lost now.
    static func mustGiveUp(sinceRenewal: Double, lease: Double) -> Bool { sinceRenewal > lease * 2 / 3 }

    func stop() {
        lock.withLock { stopped = true }
        wake.signal()
        finished.wait()
    }
}
