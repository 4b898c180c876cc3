// GemmBench: `bench gemm`, our Gemm.gemm wrapper against raw OpenBLAS sgemm from C and torch.matmul.
import Foundation
import Tensor

/// One product C(M, N) = A(M, K) · B(K, N), with B stored (N, K) and transposed when `transB`.
struct GemmShape {
    var m: Int, k: Int, n: Int
    var transB = false
    /// Where the shape comes from in the models.
    var role: String

    var flops: Double { 2 * Double(m) * Double(k) * Double(n) }
    var label: String { "\(m)×\(k)×\(n)" + (transB ? " NT" : "") }
}

enum GemmBench {
    /// Transformer shapes of the FiD reader (T5-small, 2000 encoder tokens) plus square ones.
    static let shapes: [GemmShape] = [
        GemmShape(m: 2000, k: 512, n: 2048, role: "FFN in"),
        GemmShape(m: 2000, k: 512, n: 512, role: "QKV/O proj"),
        GemmShape(m: 2000, k: 2048, n: 512, role: "FFN out"),
        GemmShape(m: 32, k: 512, n: 32128, transB: true, role: "lm-head"),
        GemmShape(m: 1024, k: 1024, n: 1024, role: "square"),
        GemmShape(m: 2048, k: 2048, n: 2048, role: "square"),
    ]

    /// The wrapper may cost at most this fraction against raw sgemm.
    static let goal = 0.03

    /// `shapes`, or those named in `BENCH_GEMM_SHAPES` (comma-separated `MxKxN`) to rerun a few.
    static func selectedShapes() throws -> [GemmShape] {
        guard let text = ProcessInfo.processInfo.environment["BENCH_GEMM_SHAPES"] else { return shapes }
        let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let chosen = shapes.filter { names.contains("\($0.m)x\($0.k)x\($0.n)") }
        guard chosen.count == names.count else {
            let known = shapes.map { "\($0.m)x\($0.k)x\($0.n)" }.joined(separator: ", ")
            throw BenchError("BENCH_GEMM_SHAPES=\(text): expected some of \(known)")
        }
        return chosen
    }

    /// The peers' commands, from the environment `ops/bench` sets; a missing one is skipped.
    static func peerCommands() -> [(name: String, command: [String])] {
        let env = ProcessInfo.processInfo.environment
        var peers: [(String, [String])] = []
        if let c = env["BENCH_SGEMM_PEER"] { peers.append(("C sgemm", [c])) }
        if let python = env["BENCH_PYTHON"], let dir = env["BENCH_PEERS_DIR"] {
            peers.append(("torch", [python, dir + "/torch_gemm.py"]))
        }
        return peers
    }

    static func run(_ settings: TimingSettings) throws {
        print("## gemm: Gemm.gemm (Swift → cblas_sgemm) vs raw cblas_sgemm from C vs torch.matmul")
        print("GFLOP/s = 2·M·K·N / median seconds per call. Ratios: ours/peer speed (> 1: ours faster),")
        print("the median over rounds of the two samples taken in the same round; 'best' compares the")
        print("fastest samples, the least disturbed ones when the machine is loaded.")
        print("Goal: ours/C ≥ \(ratio(1 - goal)) on every row (wrapper within \(percent(goal)) of raw sgemm).")
        print("spread: slowest/fastest sample − 1, worst contender; \(LoadMeter.legend)")
        let commands = peerCommands()
        let shapes = try selectedShapes()
        if commands.count < 2 {
            print("note: peers not configured (run through `ops/bench gemm`); missing columns show '-'.")
        }
        var ratiosC: [(shape: GemmShape, threads: Int, paired: Double, best: Double)] = []
        for threads in settings.threads {
            Threads.set(threads)
            // Raw sgemm runs the kernels ours runs: where fidq replaced OpenBLAS's fallback
            // (COpenBLASCore), the C peer would otherwise time Prescott's.
            let sameKernels = Gemm.replacedCore == nil ? [:] : ["OPENBLAS_CORETYPE": Gemm.coreName]
            let peers = try commands.map {
                try Peer(name: $0.name, command: $0.command, threads: threads, environment: $0.name == "C sgemm" ? sameKernels : [:])
            }
            defer { peers.forEach { $0.close() } }
            if threads == settings.threads.first {
                for peer in peers { print("\(peer.name): \(try peer.request("info"))") }
                print()
            }
            let cPeer = peers.first { $0.name == "C sgemm" }
            let torchPeer = peers.first { $0.name == "torch" }
            print("### \(threads) thread\(threads == 1 ? "" : "s")")
            let table = Table([
                "shape M×K×N", "role", "ours", "C sgemm", "torch", "ours/C", "best ours/C", "ours/torch", "spread",
                "other+steal",
            ], widths: [15, 10])
            for shape in shapes {
                try Machine.waitForQuiet(settings)
                let meter = LoadMeter(peers: peers.map(\.pid))
                let stats = try measure(shape, threads: threads, c: cPeer, torch: torchPeer, settings)
                let gflops = stats.map { $0.map { fixed(shape.flops / $0.median / 1e9) } ?? "-" }
                let ours = stats[0]!
                let vsC = stats[1].map { ours.speedup(over: $0) }
                let vsTorch = stats[2].map { ours.speedup(over: $0) }
                let spread = stats.compactMap { $0?.spread }.max() ?? 0
                table.add([
                    shape.label, shape.role, gflops[0], gflops[1], gflops[2], vsC.map(ratio) ?? "-",
                    stats[1].map { ratio($0.fastest / ours.fastest) } ?? "-",
                    vsTorch.map(ratio) ?? "-", percent(spread), meter.summary(),
                ])
                if let vsC, let c = stats[1] { ratiosC.append((shape, threads, vsC, c.fastest / ours.fastest)) }
            }
            print()
        }
        printVerdict(ratiosC)
        print()
    }

    /// The samples of ours, C and torch (nil where that peer is absent), taken interleaved.
    static func measure(
        _ shape: GemmShape, threads: Int, c cPeer: Peer?, torch torchPeer: Peer?, _ settings: TimingSettings
    ) throws -> [Stats?] {
        let (m, k, n) = (shape.m, shape.k, shape.n)
        var rng = RNG(seed: 42)
        let a = UnsafeMutableBufferPointer<Float>.allocate(capacity: m * k)  // (M, K)
        let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: k * n)  // (K, N), or (N, K) when transB
        let c = UnsafeMutableBufferPointer<Float>.allocate(capacity: m * n)  // (M, N)
        defer { [a, b, c].forEach { $0.deallocate() } }
        for i in a.indices { a[i] = rng.uniform(-1, 1) }
        for i in b.indices { b[i] = rng.uniform(-1, 1) }
        c.initialize(repeating: 0)
        var contenders = [
            Contender(name: "ours") {
                Timing.sample(minTime: settings.minTime) {
                    Gemm.gemm(
                        transB: shape.transB, m: m, n: n, k: k, a: a.baseAddress!, lda: k,
                        b: b.baseAddress!, ldb: shape.transB ? k : n, c: c.baseAddress!, ldc: n)
                }
            }
        ]
        for peer in [cPeer, torchPeer].compactMap({ $0 }) {
            contenders.append(
                Contender(name: peer.name) {
                    try peer.gemmSample(
                        m: m, k: k, n: n, transB: shape.transB, threads: threads, minTime: settings.minTime)
                })
        }
        let stats = try Timing.interleaved(contenders, settings)
        func find(_ peer: Peer?) -> Stats? {
            peer.flatMap { p in contenders.firstIndex { $0.name == p.name }.map { stats[$0] } }
        }
        return [stats[0], find(cPeer), find(torchPeer)]
    }

    /// The goal line: which rows keep the wrapper within `goal` of raw sgemm.
    static func printVerdict(_ rows: [(shape: GemmShape, threads: Int, paired: Double, best: Double)]) {
        guard !rows.isEmpty else {
            print("goal: not checked (no C peer)")
            return
        }
        let misses = rows.filter { $0.paired < 1 - goal }
        func geomean(_ xs: [Double]) -> String { ratio(exp(xs.map(log).reduce(0, +) / Double(xs.count))) }
        print(
            "ours/C geometric mean over \(rows.count) rows: \(geomean(rows.map(\.paired))) "
                + "(best: \(geomean(rows.map(\.best))))")
        if misses.isEmpty {
            print("goal met: wrapper within \(percent(goal)) of raw sgemm on all \(rows.count) rows")
        } else {
            let list = misses.map { "\($0.shape.label) at \($0.threads)t: \(ratio($0.paired))" }
                .joined(separator: "; ")
            print("goal missed on \(misses.count) of \(rows.count) rows: \(list)")
            print("(the wrapper is one call into the same library; rerun on a quiet machine before suspecting it)")
        }
    }
}
