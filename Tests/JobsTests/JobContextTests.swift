// JobContextTests: cancellation tokens, progress snapshots and the number formatting they use.
import Foundation
import Testing
@testable import Jobs

@Suite struct JobContextTests {
    @Test func tokenKeepsTheFirstReasonAndInterruptsSleep() throws {
        let t = CancellationToken()
        #expect(!t.isCancelled)
        // Its own thread (GCD's pool may be busy with other tests) and a sleep far longer than any
        // delay a loaded machine adds: woken early means interrupted.
        Thread.detachNewThread { usleep(50_000); t.cancel(.shutdown); t.cancel(.timeout) }
        let t0 = Date()
        #expect(throws: CancellationError.self) { try t.sleep(120) }
        #expect(Date().timeIntervalSince(t0) < 60)
        #expect(t.reason == .shutdown)
    }

    @Test func progressWritesASnapshotWithRateAndETA() throws {
        let f = try QueueFixture()
        let p = ProgressReporter(path: f.workspace + "/progress.json", fs: PosixFileSystem(), bar: false, label: "x", line: nil)
        let t0 = Date()
        p.update(step: 0, total: 10)
        usleep(50_000)
        p.update(step: 10, total: 10, loss: 0.5)
        let elapsed = Date().timeIntervalSince(t0)
        let snap = try #require(f.json(f.workspace + "/progress.json"))
        #expect(snap["step"] as? Int == 10 && snap["total"] as? Int == 10 && snap["loss"] as? Double == 0.5)
        // 10 steps over at least the 50 ms slept and at most what the clock saw, however loaded the machine.
        let rate = snap["rate"] as? Double ?? 0
        #expect(rate >= 10 / elapsed * 0.99 && rate <= 10 / 0.05 * 1.01 && snap["eta_s"] as? Double == 0, "rate \(rate), elapsed \(elapsed)")
        let line = ProgressReporter.render(try #require(p.last))
        #expect(line.hasPrefix("[########################] 100% 10/10 loss 0.5000"), "\(line)")
    }

    /// A phase between steps (an evaluation, a pass over a file) is written at once, beside the
    /// last step, and the next step clears it: status showed a step and ETA standing still.
    @Test func aPhaseIsWrittenAtOnceAndClearedByTheNextStep() throws {
        let f = try QueueFixture()
        let path = f.workspace + "/progress.json"
        let p = ProgressReporter(path: path, fs: PosixFileSystem(), bar: false, label: "x", line: nil)
        p.update(step: 3, total: 10)
        p.update(step: 4, total: 10)  // within the second: not written
        p.phase("evaluating 96 / 900")
        let snap = try #require(f.json(path))
        #expect(snap["step"] as? Int == 4 && snap["phase"] as? String == "evaluating 96 / 900", "\(snap)")
        let line = ProgressReporter.render(try #require(p.last))
        #expect(line.contains(" 4/10 ") && line.hasSuffix(" | evaluating 96 / 900"), "\(line)")
        p.update(step: 10, total: 10)
        #expect(f.json(path)?["phase"] == nil && p.last?.phase == nil)
        // A unit where a step is not one (index_bm25 and fetch count MiB): `53/601 26.7/s` read as steps.
        p.update(step: 53, total: 601, unit: "MiB")
        let bytes = ProgressReporter.render(try #require(p.last))
        #expect(bytes.contains("% 53/601 MiB ") && bytes.contains(" MiB/s"), "\(bytes)")
    }

    @Test func formatting() {
        #expect(format3(3.14159, 2) == "3.14" && format3(-0.5, 1) == "-0.5" && format3(7, 0) == "7")
        #expect(duration(42) == "42s" && duration(185) == "3m05s" && duration(3720) == "1h02m")
        #expect(isoTimestamp(0) == "1970-01-01T00:00:00Z")
    }
}
