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
import Threading

public enum StopSignals {
    /// The write end of the pipe the handler writes each signal's number to.
    nonisolated(unsafe) private static var pipeWrite: Int32 = -1

    /// Routes SIGTERM and SIGINT to `first` (ask the work to stop at its next safe point, where it
    /// keeps what it did), unless `stopping()` says a stop is already under way: then `second`
    /// runs (by default: exit now, status 130). Call once per process.
    ///
    /// A handler of our own writes the signal to a pipe that a thread of ours reads: a signal
    /// source ignored the signal until libdispatch had registered it, and a stop sent in those
    /// first milliseconds was lost (the run went on). From `sigaction` on, none is lost. (A
    /// dispatch source reading the pipe hung at the process limit: libdispatch waits for ever
    /// on a thread it cannot start.) Without a thread the signals keep their default action,
    /// said on stderr.
    public static func install(stopping: @escaping @Sendable () -> Bool, first: @escaping @Sendable (Int32) -> Void,
                               second: @escaping @Sendable (Int32) -> Void = { _ in _exit(130) }) {
        // A parent may hand the process these signals blocked (a thread of a thread pool spawning
        // it): pending, they would never reach the handler, nor the default action when no handler
        // could be set up (no pipe, no watcher thread). Unblocked on the way out, they are delivered.
        defer {
            var both = sigset_t()
            sigemptyset(&both)
            for sig in [SIGTERM, SIGINT] { sigaddset(&both, sig) }
            pthread_sigmask(SIG_UNBLOCK, &both, nil)
        }
        var made: [Int32] = [-1, -1]
        guard pipe(&made) == 0 else { return }  // no pipe, no descriptors: the default action (exit) stays
        // Above 0…2: with stdout and stderr closed the pipe took them, every message read as a
        // signal, and the second one exited the run (a library may still write to 1 or 2).
        let fds = made.map { fd -> Int32 in
            let high = fcntl(fd, F_DUPFD_CLOEXEC, 3)
            guard high >= 0 else { _ = fcntl(fd, F_SETFD, FD_CLOEXEC); return fd }
            close(fd)
            return high
        }
        _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)  // a handler must never block (a full pipe drops a repeat)
        do {
            try startThread("the thread that watches for SIGTERM and Ctrl-C") {
                var buffer = [UInt8](repeating: 0, count: 16)
                while true {
                    let n = Glibc.read(fds[0], &buffer, buffer.count)
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { return }
                    for sig in buffer.prefix(n).map(Int32.init) {
                        if stopping() { second(sig) } else { first(sig) }
                    }
                }
            }
        } catch {
            fputs("fidq: \(error); SIGTERM and Ctrl-C stop at once, not at a safe point\n", stderr)
            for fd in fds { close(fd) }
            return
        }
        pipeWrite = fds[1]
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { sig in
            let saved = errno  // the interrupted code may be about to read it
            var byte = UInt8(truncatingIfNeeded: sig)
            _ = write(StopSignals.pipeWrite, &byte, 1)  // async-signal-safe
            errno = saved
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = SA_RESTART
        for sig in [SIGTERM, SIGINT] { sigaction(sig, &action, nil) }
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
