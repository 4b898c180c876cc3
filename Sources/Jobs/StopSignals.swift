// StopSignals: SIGTERM and SIGINT (Ctrl-C) as a request to stop at the next safe point, for the
// worker and the foreground commands alike; a second signal exits at once.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Dispatch

public enum StopSignals {
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []

    /// Routes SIGTERM and SIGINT to `first` (ask the work to stop at its next safe point, where it
    /// keeps what it did), unless `stopping()` says a stop is already under way: then `second`
    /// runs (by default: exit now, status 130). Call once per process.
    public static func install(stopping: @escaping @Sendable () -> Bool, first: @escaping @Sendable (Int32) -> Void,
                               second: @escaping @Sendable (Int32) -> Void = { _ in _exit(130) }) {
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                if stopping() { second(sig) } else { first(sig) }
            }
            source.resume()
            sources.append(source)
        }
    }

    /// The foreground's handling: the first signal cancels `token` (`.shutdown`) and says so on
    /// stderr, naming what is kept; a second exits at once.
    public static func install(cancelling token: CancellationToken, keeping kept: String = "checkpoints, finished batches") {
        install(stopping: { token.isCancelled }, first: { sig in
            token.cancel(.shutdown)
            // On a terminal a progress bar may hold the current line: start a clean one.
            fputs((isatty(2) == 1 ? "\r\u{1B}[K" : "") + "fidq: \(sig == SIGINT ? "interrupted" : "terminated"): stopping at the next safe point, keeping the work done "
                  + "(\(kept)); signal again to exit now\n", stderr)
        }, second: { _ in
            fputs("fidq: second signal: exiting now\n", stderr)
            _exit(130)
        })
    }
}
