// JobContextTests: cancellation tokens, progress snapshots and the number formatting they use.
import Foundation
import Testing
@testable import Jobs

@Suite struct JobContextTests {
    @Test func tokenKeepsTheFirstReasonAndInterruptsSleep() throws {
        let t = CancellationToken()
        #expect(!t.isCancelled)
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.05) { t.cancel(.shutdown); t.cancel(.timeout) }
        let t0 = Date()
        #expect(throws: CancellationError.self) { try t.sleep(5) }
        #expect(Date().timeIntervalSince(t0) < 1)
        #expect(t.reason == .shutdown)
    }

    @Test func progressWritesASnapshotWithRateAndETA() throws {
        let f = try QueueFixture()
        let p = ProgressReporter(path: f.workspace + "/progress.json", fs: PosixFileSystem(), bar: false, label: "x", line: nil)
        p.update(step: 0, total: 10)
        usleep(50_000)
        p.update(step: 10, total: 10, loss: 0.5)
        let snap = try #require(f.json(f.workspace + "/progress.json"))
        #expect(snap["step"] as? Int == 10 && snap["total"] as? Int == 10 && snap["loss"] as? Double == 0.5)
        #expect((snap["rate"] as? Double ?? 0) > 10 && snap["eta_s"] as? Double == 0)
        let line = ProgressReporter.render(try #require(p.last))
        #expect(line.hasPrefix("[########################] 100% 10/10 loss 0.5000"), "\(line)")
    }

    @Test func formatting() {
        #expect(format3(3.14159, 2) == "3.14" && format3(-0.5, 1) == "-0.5" && format3(7, 0) == "7")
        #expect(duration(42) == "42s" && duration(185) == "3m05s" && duration(3720) == "1h02m")
        #expect(isoTimestamp(0) == "1970-01-01T00:00:00Z")
    }
}
