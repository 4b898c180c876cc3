// ThreadLimitTests: jobs at the process limit (`ulimit -u`) run on the threads they can start, to
// the same bits, and say so, or fail fast naming the limit; libdispatch's threads (and Foundation's
// `Thread`, which drops a refused start silently) hung them, silently, for ever.
import Foundation
import Testing
@testable import FiD

@Suite(.serialized) struct ThreadLimitTests {
    /// A folder right under /tmp with a copy of fidq and the example world: the other uid must
    /// reach all of it (the scratch root or the build folder may sit in a folder only root may enter).
    final class Place {
        let ws = "/tmp/fidq-nproc-\(UUID().uuidString)"
        init() throws {
            try #require(FileManager.default.isExecutableFile(atPath: FidqBinary.path), "build first: swift build --build-tests (\(FidqBinary.path))")
            try FileManager.default.createDirectory(atPath: ws, withIntermediateDirectories: false)
            chmod(ws, 0o777)
            try FileManager.default.copyItem(atPath: FidqBinary.path, toPath: ws + "/fidq")
            _ = try ExampleWorld(config: ExampleWorldConfig(seed: 3, train: 60, dev: 20, nContext: 2)).write(to: ws + "/w")
        }
        deinit { try? FileManager.default.removeItem(atPath: ws) }

        /// Runs `job` (JSON text) with `fidq run` into `out`, as an unused uid allowed `nproc`
        /// threads in all, or as root without a limit when nil; returns the status and the output.
        func run(_ job: String, out: String, nproc: Int?, timeout: Double = 180, during: ((Process) -> Void)? = nil) throws -> (status: Int32?, text: String) {
            try TestData.write(job, to: ws + "/\(out).json")
            let log = ws + "/\(out).log"
            FileManager.default.createFile(atPath: log, contents: nil)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            let limit = nproc.map { "setpriv --reuid=48271 --regid=48271 --clear-groups prlimit --nproc=\($0):\($0) -- " } ?? ""
            p.arguments = ["-c", "umask 000; export OPENBLAS_NUM_THREADS=1 FIDQ_THREADS=2; cd \"$1\" && exec \(limit)\"$0\" run \"$2.json\" --out \"$2\"",
                           ws + "/fidq", ws, out]
            let handle = try #require(FileHandle(forWritingAtPath: log))
            p.standardError = handle
            p.standardOutput = handle
            try p.run()
            during?(p)
            let finished = FidqBinary.wait(p, timeout)
            return (finished ? p.terminationStatus : nil, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
        }

        func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: ws + "/" + path) }
    }

    /// A small `train_reader` on the example world: `steps` steps, evaluated and saved at the end.
    static func readerJob(steps: Int) -> String {
        #"{"kind": "train_reader", "params": {"train_data": "w/train_gold.json", "eval_data": "w/dev_gold.json", "#
            + #""model_config": "w/reader/config.json", "tokenizer": "w/reader/tokenizer.json", "n_context": 2, "#
            + #""text_maxlength": 32, "answer_maxlength": 6, "per_gpu_batch_size": 4, "total_steps": \#(steps), "#
            + #""eval_freq": \#(steps), "save_freq": \#(steps), "optim": "adamw", "lr": 0.001}}"#
    }

    static let rootOnly = "SKIPPED: needs root, to run fidq as another user under a process limit (RLIMIT_NPROC binds no root)"

    /// A small `train_reader` allowed one thread (its own): neither the signal watcher nor a
    /// compute thread starts; it finishes with the same checkpoint bytes, naming the limit.
    @Test(.enabled(if: getuid() == 0, Comment(rawValue: rootOnly)))
    func aRunAtTheProcessLimitComputesOnTheThreadsItHas() throws {
        let place = try Place()
        let job = Self.readerJob(steps: 12)
        let free = try place.run(job, out: "free", nproc: nil)
        #expect(free.status == 0, "\(free.text)")
        let limited = try place.run(job, out: "limited", nproc: 1)
        #expect(limited.status == 0, "status \(String(describing: limited.status)): \(limited.text)")
        #expect(limited.text.contains("cannot start a compute thread") && limited.text.contains("computing on 1 of 2 threads"), "\(limited.text)")
        #expect(limited.text.contains("cannot start the thread that watches for SIGTERM and Ctrl-C") && limited.text.contains("ulimit -u"), "\(limited.text)")
        // The job's own log says it had fewer threads than its "threads 2" line.
        let jobLog = String(decoding: place.bytes("limited/log.txt") ?? Data(), as: UTF8.self)
        #expect(jobLog.contains("threads: computed on at most 1 of the 2 asked"), "\(jobLog)")
        #expect(!String(decoding: place.bytes("free/log.txt") ?? Data(), as: UTF8.self).contains("threads: computed on at most"))
        let a = place.bytes("free/out/checkpoint/step-12/model.safetensors")
        #expect(a != nil && a == place.bytes("limited/out/checkpoint/step-12/model.safetensors"), "the checkpoints differ (or one is missing)")
    }

    /// Without a signal watcher (refused) SIGTERM keeps its default action and ends the run at
    /// once, even when the parent started it with SIGTERM blocked (a test's thread does): the
    /// signal stayed pending and the run went on to its end.
    @Test(.enabled(if: getuid() == 0, Comment(rawValue: rootOnly)))
    func aRunWithoutASignalWatcherStillStopsOnSIGTERM() throws {
        let place = try Place()
        let job = Self.readerJob(steps: 100_000)
        var signalled = Date.distantFuture
        let r = try place.run(job, out: "long", nproc: 1, timeout: 60) { p in
            let log = place.ws + "/long.log"
            let end = Date().addingTimeInterval(30)
            while Date() < end, !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("micro-batches") { usleep(20_000) }
            kill(p.processIdentifier, SIGTERM)
            signalled = Date()
        }
        #expect(r.status != nil && Date().timeIntervalSince(signalled) < 20, "still running 20 s after SIGTERM: \(r.text.suffix(400))")
        #expect(r.text.contains("SIGTERM and Ctrl-C stop at once"), "\(r.text.prefix(600))")
    }

    /// `embed` reads ahead on a thread of its own; refused, it reads as it goes, to the same
    /// shard. Foundation's `Thread` dropped the refused start and the job waited for ever.
    @Test(.enabled(if: getuid() == 0, Comment(rawValue: rootOnly)))
    func anEmbedAtTheProcessLimitReadsAsItGoes() throws {
        let place = try Place()
        _ = try SavedIndexTests.retriever(place.ws, world: place.ws + "/w", seed: 1)
        chmod(place.ws + "/retriever-1", 0o755)
        func job(_ out: String) -> String {
            #"{"kind": "embed", "params": {"model_path": "retriever-1", "passages": "w/passages.tsv", "output_path": "\#(out)-emb/p", "no_fp16": true}}"#
        }
        let free = try place.run(job("free"), out: "free", nproc: nil)
        #expect(free.status == 0, "\(free.text)")
        let limited = try place.run(job("limited"), out: "limited", nproc: 1)
        #expect(limited.status == 0, "status \(String(describing: limited.status)): \(limited.text)")
        #expect(limited.text.contains("cannot start a thread that reads ahead") && limited.text.contains("reading as it goes"), "\(limited.text)")
        let a = place.bytes("free-emb/p_00.npy")
        #expect(a != nil && a == place.bytes("limited-emb/p_00.npy"), "the shards differ (or one is missing)")
    }

    /// An HTTP fetch needs URLSession's threads, which libdispatch waits for for ever: at the
    /// limit it fails at once, transiently, naming the limit (no timeout could act before).
    @Test(.enabled(if: getuid() == 0, Comment(rawValue: rootOnly)))
    func anHTTPFetchAtTheProcessLimitFailsFast() throws {
        let place = try Place()
        // Three threads: its own and the signal watcher's, one left where the client needs two.
        let limited = try place.run(#"{"kind": "fetch", "params": {"url": "http://127.0.0.1:9/x.bin", "dest": "got", "retries": 0}}"#,
                                    out: "fetch", nproc: 3, timeout: 60)
        #expect(limited.status != nil && limited.status != 0, "status \(String(describing: limited.status)): \(limited.text)")
        #expect(limited.text.contains("cannot start the HTTP client's threads") && limited.text.contains("ulimit -u"), "\(limited.text)")
    }
}
