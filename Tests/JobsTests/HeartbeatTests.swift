// HeartbeatTests: a holder whose renewals fail gives its lease up before any peer may take it.
import Foundation
import Testing
@testable import Jobs
import JobsTesting

@Suite struct HeartbeatTests {
    @Test func theGiveUpPointIsInsideTheLease() {
        #expect(!Heartbeat.mustGiveUp(sinceRenewal: 1.9, lease: 3))
        #expect(Heartbeat.mustGiveUp(sinceRenewal: 2.1, lease: 3))
    }

    @Test func failingRenewalsDeclareTheLeaseLostBeforePeersMayTakeIt() throws {
        let f = try QueueFixture()
        let dir = try f.plantClaim("j", token: "me", leaseS: 3, age: 0)
        // Every renewal fails with EIO (the folder is still ours: no ENOENT to say it was taken).
        let fs = FaultyFileSystem(faults: [.init(.touch, EIO, pathContains: "/claim")])
        let token = CancellationToken()
        let t0 = monotonicNow()
        let hb = Heartbeat(queue: Queue(root: f.queueDir, fs: fs), dir: dir, lease: 3, token: token, timeout: nil,
                           grace: 60) { _ in }
        try hb.start()
        #expect(f.wait(20) { token.reason == .leaseLost })
        let declared = token.cancelledAt - t0
        hb.stop()
        // Peers may take the claim `lease` after its last renewal (here: the start).
        #expect(declared < 3, "declared lost \(declared)s after the last renewal; peers may take it at 3 s")
        #expect(fs.injections >= 1)
    }
}
