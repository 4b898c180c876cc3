// PeerTests: the one-line request/reply plumbing to peer processes, with shell stand-ins for peers.
import Testing

@testable import bench

@Suite struct PeerTests {
    @Test func replyIsOneLinePerRequest() throws {
        let peer = try Peer(name: "cat", command: ["/bin/cat"], threads: 1)
        defer { peer.close() }
        #expect(try peer.request("info") == "info")
        #expect(try peer.request("gemm 1 2 3 0 1 0.1") == "gemm 1 2 3 0 1 0.1")
    }

    @Test func peerGetsTheThreadEnvironment() throws {
        let peer = try Peer(
            name: "env", command: ["/bin/sh", "-c", "read x; echo $OMP_NUM_THREADS $MKL_NUM_THREADS"], threads: 3)
        defer { peer.close() }
        #expect(try peer.request("info") == "3 3")
    }

    @Test func gemmSampleParsesSecondsAndRejectsGarbage() throws {
        let good = try Peer(name: "good", command: ["/bin/sh", "-c", "read x; echo 2.5e-3 40"], threads: 1)
        defer { good.close() }
        #expect(try good.gemmSample(m: 1, k: 1, n: 1, transB: false, threads: 1, minTime: 0.1) == 2.5e-3)
        let bad = try Peer(name: "bad", command: ["/bin/cat"], threads: 1)
        defer { bad.close() }
        #expect {
            try bad.gemmSample(m: 1, k: 1, n: 1, transB: false, threads: 1, minTime: 0.1)
        } throws: { "\($0)".contains("peer bad: expected 'SECONDS CALLS'") }
    }

    @Test func deadPeerIsAThrownErrorNamingIt() throws {
        let peer = try Peer(name: "quitter", command: ["/bin/sh", "-c", "exit 3"], threads: 1)
        defer { peer.close() }
        #expect {
            _ = try peer.request("info")
        } throws: { "\($0)".contains("peer quitter") }
    }

    @Test func missingProgramIsAThrownError() {
        #expect {
            _ = try Peer(name: "ghost", command: ["/nonexistent/peer"], threads: 1)
        } throws: { "\($0)".contains("peer ghost: cannot start /nonexistent/peer") }
    }
}
