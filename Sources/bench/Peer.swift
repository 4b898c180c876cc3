// Peer: a benchmark peer in another process (C or Python) that answers one line per request line.
import Foundation

/// A peer program kept running for a whole benchmark, so its start-up (torch's import) is paid
/// once and its samples can be interleaved with ours. Protocol, one line each way:
/// `info` → a description of the peer's library; `gemm M K N TRANSB THREADS MINTIME` or
/// `op NAME PASS ROWS COLS THREADS MINTIME` → `SECONDS_PER_CALL CALLS`; `quit` (or end of input) → it exits.
final class Peer {
    let name: String
    private let process = Process()
    private let toPeer = Pipe()
    private let fromPeer = Pipe()
    private let reader: UnsafeMutablePointer<FILE>

    /// The torch peer `script` (in `ops/benchmarks/`) for one thread count, started from the
    /// environment `ops/bench` sets, or nil when run without it (its columns then show '-'). On
    /// the first thread count it prints the peer's info line, or how to get one.
    static func torch(script: String, threads: Int, first: Bool, bench: String) throws -> Peer? {
        let env = ProcessInfo.processInfo.environment
        guard let python = env["BENCH_PYTHON"], let dir = env["BENCH_PEERS_DIR"] else {
            if first { print("note: torch peer not configured (run through `ops/bench \(bench)`); its columns show '-'.\n") }
            return nil
        }
        let peer = try Peer(name: "torch", command: [python, dir + "/" + script], threads: threads)
        if first { print("torch: \(try peer.request("info"))\n") }
        return peer
    }

    /// Starts `command` (program then arguments) with its thread environment set to `threads`,
    /// and `environment`'s variables.
    init(name: String, command: [String], threads: Int, environment extra: [String: String] = [:]) throws {
        precondition(!command.isEmpty, "Peer \(name): empty command")
        self.name = name
        // A peer that dies must be a thrown error naming it, not a silent SIGPIPE exit of ours.
        signal(SIGPIPE, SIG_IGN)
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        var env = ProcessInfo.processInfo.environment
        // Both peers' BLAS pools read these at start; the requests also set the count explicitly.
        for key in ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"] {
            env[key] = String(threads)
        }
        env.merge(extra) { _, new in new }
        process.environment = env
        process.standardInput = toPeer
        process.standardOutput = fromPeer
        do {
            try process.run()
        } catch {
            throw BenchError("peer \(name): cannot start \(command.joined(separator: " ")): \(error)")
        }
        // A private descriptor for stdio, so closing the FILE does not close the Pipe's own.
        guard let f = fdopen(dup(fromPeer.fileHandleForReading.fileDescriptor), "r") else {
            throw BenchError("peer \(name): fdopen failed, errno \(errno)")
        }
        reader = f
    }

    /// The peer's process id, for the load meter.
    var pid: Int32 { process.processIdentifier }

    /// Sends one request line and returns the reply line without its newline.
    func request(_ line: String) throws -> String {
        guard process.isRunning else {
            throw BenchError("peer \(name) exited with status \(process.terminationStatus) before '\(line)'")
        }
        do {
            try toPeer.fileHandleForWriting.write(contentsOf: Data((line + "\n").utf8))
        } catch {
            throw BenchError("peer \(name): cannot send '\(line)': \(error)")
        }
        var buffer: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(buffer) }
        guard getline(&buffer, &capacity, reader) > 0, let buffer else {
            throw BenchError("peer \(name) closed its output on '\(line)' (see its error output above)")
        }
        return String(cString: buffer).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Seconds per call of a gemm of the given shape, sampled for at least `minTime` seconds.
    func gemmSample(m: Int, k: Int, n: Int, transB: Bool, threads: Int, minTime: Double) throws -> Double {
        try sample("gemm \(m) \(k) \(n) \(transB ? 1 : 0) \(threads) \(minTime)")
    }

    /// Seconds per call from a timing request whose reply is `SECONDS CALLS`.
    func sample(_ line: String) throws -> Double {
        let reply = try request(line)
        guard let seconds = reply.split(separator: " ").first.flatMap({ Double($0) }), seconds > 0 else {
            throw BenchError("peer \(name): expected 'SECONDS CALLS' for '\(line)', got '\(reply)'")
        }
        return seconds
    }

    /// Asks the peer to exit and waits for it.
    func close() {
        if process.isRunning {
            // A peer that already died is not an error here (SIGPIPE is ignored, see init).
            try? toPeer.fileHandleForWriting.write(contentsOf: Data("quit\n".utf8))
            try? toPeer.fileHandleForWriting.close()
            process.waitUntilExit()
        }
        fclose(reader)
    }
}
