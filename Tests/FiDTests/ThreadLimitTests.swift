// ThreadLimitTests: a job at the process limit (`ulimit -u`) runs on the threads it can start, to
// the same bits, and says so; libdispatch's threads hung it, silently, for ever.
import Foundation
import Testing
@testable import FiD

@Suite(.serialized) struct ThreadLimitTests {
    /// `fidq run` of a small `train_reader` twice: without a limit, then as an unused uid allowed
    /// one thread (its own), so neither the signal watcher nor a compute thread starts. The
    /// limited run finishes with the same checkpoint bytes and names the limit. Runs as another
    /// user since the limit binds no root.
    @Test(.enabled(if: getuid() == 0, "SKIPPED: needs root, to run fidq as another user under a process limit (RLIMIT_NPROC binds no root)"))
    func aRunAtTheProcessLimitComputesOnTheThreadsItHas() throws {
        try #require(FileManager.default.isExecutableFile(atPath: FidqBinary.path), "build first: swift build --build-tests (\(FidqBinary.path))")
        // Right under /tmp, with a copy of fidq: the other uid must reach both (the scratch root
        // or the build folder may sit in a folder only root may enter).
        let ws = "/tmp/fidq-nproc-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: ws, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: ws) }
        chmod(ws, 0o777)
        try FileManager.default.copyItem(atPath: FidqBinary.path, toPath: ws + "/fidq")
        let world = try ExampleWorld(config: ExampleWorldConfig(seed: 3, train: 60, dev: 20, nContext: 2))
        try world.write(to: ws + "/w")
        try TestData.write(#"""
            {"kind": "train_reader", "params": {"train_data": "w/train_gold.json", "eval_data": "w/dev_gold.json",
             "model_config": "w/reader/config.json", "tokenizer": "w/reader/tokenizer.json", "n_context": 2,
             "text_maxlength": 32, "answer_maxlength": 6, "per_gpu_batch_size": 4, "total_steps": 12,
             "eval_freq": 12, "save_freq": 12, "optim": "adamw", "lr": 0.001}}
            """#, to: ws + "/tr.json")
        let log = ws + "/run.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "umask 000; export OPENBLAS_NUM_THREADS=1 FIDQ_THREADS=2; cd \"$1\" && \"$0\" run tr.json --out free >/dev/null 2>&1 && "
                       + "exec setpriv --reuid=48271 --regid=48271 --clear-groups prlimit --nproc=1:1 -- \"$0\" run tr.json --out limited",
                       ws + "/fidq", ws]
        let handle = try #require(FileHandle(forWritingAtPath: log))
        p.standardError = handle
        p.standardOutput = handle
        try p.run()
        let finished = FidqBinary.wait(p, 180)
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(finished && p.terminationStatus == 0, "status \(p.terminationStatus): \(text)")
        #expect(text.contains("cannot start a compute thread") && text.contains("computing on 1 of 2 threads"), "\(text)")
        #expect(text.contains("cannot start the thread that watches for SIGTERM and Ctrl-C") && text.contains("ulimit -u"), "\(text)")
        let free = FileManager.default.contents(atPath: ws + "/free/out/checkpoint/step-12/model.safetensors")
        let limited = FileManager.default.contents(atPath: ws + "/limited/out/checkpoint/step-12/model.safetensors")
        #expect(free != nil && free == limited, "the checkpoints differ (or one is missing)")
    }
}
