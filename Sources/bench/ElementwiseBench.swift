// ElementwiseBench: `bench softmax|rmsnorm|layernorm|dropout`, row kernels in GB/s against copy bandwidth and torch.
import Foundation
import Tensor

/// One row-kernel benchmark: Softmax, RMSNorm, LayerNorm or Dropout, forward and backward, on transformer
/// shapes, with the copy yardstick (`CopyBench.contenders`) and the torch peer sampled in the
/// same interleaved rounds, so `ours/copy` compares samples taken under the same machine state.
///
/// GB/s counts the bytes of our kernel's interface, read plus written, 1 GB = 1e9 B: forward
/// reads x and writes y (2·N·C floats); backward reads dy and y (softmax) or x (norms) and
/// accumulates into dx (read + write: 4·N·C floats); dropout's forward also writes its mask
/// (3·N·C), its backward reads dy and the mask into dx (4·N·C). Per-row statistics and the weights are
/// under 1 % and not counted. Torch's rate uses the same byte count, so `ours/torch` is a speed ratio.
enum ElementwiseBench {
    /// Which kernel.
    enum Op: String, CaseIterable {
        case softmax, rmsnorm, layernorm, dropout
    }

    /// Floats of traffic per element of x.
    static func floatsPerElement(_ op: Op, _ pass: Pass) -> Int {
        op == .dropout && pass == .fwd ? 3 : pass.floatsPerElement
    }

    /// Forward or backward.
    enum Pass: String {
        case fwd, bwd
        /// Floats of traffic per element of x.
        var floatsPerElement: Int { self == .fwd ? 2 : 4 }
    }

    struct Shape {
        var rows: Int, cols: Int
        var role: String
        var label: String { "\(rows)×\(cols)" }
    }

    /// The goal: each kernel at least this fraction of the copy bandwidth at the same threads.
    static let goal = 0.5

    /// FiD shapes: 2000 encoder tokens of T5-small (D 512); encoder self-attention of 8 heads ×
    /// 12 passages × 250 query rows over 250 keys; a BERT-base retriever batch (12800 tokens × 768).
    static func shapes(_ op: Op) -> [Shape] {
        switch op {
        case .softmax:
            return [Shape(rows: 2000, cols: 512, role: "T5 2000 tok"), Shape(rows: 8 * 12 * 250, cols: 250, role: "attn 8·12·250")]
        case .rmsnorm, .layernorm:
            return [Shape(rows: 2000, cols: 512, role: "T5 2000 tok"), Shape(rows: 12_800, cols: 768, role: "BERT 12800 tok")]
        case .dropout:
            // T5-small's feed-forward activations and its attention probabilities, p 0.1.
            return [Shape(rows: 2000, cols: 2048, role: "T5 ffn 2000 tok"), Shape(rows: 8 * 12 * 250, cols: 250, role: "probs 8·12·250")]
        }
    }

    static func run(_ op: Op, _ settings: TimingSettings) throws {
        print("## \(op.rawValue): GB/s (read + written, 1 GB = 1e9 B) vs the copy loop under the same load, and torch")
        print("ours/copy: the median over rounds of ours' GB/s over the Swift copy loop's GB/s in the same round;")
        print("best: fastest samples of each. ours/torch: speed ratio (> 1: ours faster), same byte count.")
        print("Goal: ours/copy ≥ \(ratio(goal)) on every row (copy = `bench copy`'s Swift loop, 256 MiB, same threads).")
        print("spread: slowest/fastest sample − 1, worst contender; \(LoadMeter.legend)")
        let buffers = CopyBench.Buffers()
        var verdict: [(String, Double)] = []
        for threads in settings.threads {
            Threads.set(threads)
            let peer = try Peer.torch(script: "torch_norms.py", threads: threads, first: threads == settings.threads.first,
                                      bench: op.rawValue)
            defer { peer?.close() }
            print("### \(threads) thread\(threads == 1 ? "" : "s")")
            let table = Table([
                "shape N×C", "role", "pass", "ours GB/s", "torch GB/s", "copy GB/s", "ours/copy", "best ours/copy",
                "ours/torch", "spread", "other+steal",
            ], widths: [12, 14, 4])
            for shape in shapes(op) {
                for pass in [Pass.fwd, .bwd] {
                    try Machine.waitForQuiet(settings)
                    let meter = LoadMeter(peers: peer.map { [$0.pid] } ?? [])
                    let bytes = Double(floatsPerElement(op, pass) * shape.rows * shape.cols * 4)
                    let s = try measure(op, pass, shape, threads: threads, peer: peer, buffers: buffers, settings)
                    let ours = s.ours, copy = s.copy
                    let gbs = { (t: Double, b: Double) in b / t / 1e9 }
                    // Paired: (bytes/t_ours) / (copyBytes/t_copy) per round.
                    let paired = Stats.median(zip(ours.rounds, copy.rounds).map {
                        gbs($0, bytes) / gbs($1, buffers.bytesMoved)
                    }.sorted())
                    let best = gbs(ours.fastest, bytes) / gbs(copy.fastest, buffers.bytesMoved)
                    let spread = ([ours, copy] + (s.torch.map { [$0] } ?? [])).map(\.spread).max()!
                    table.add([
                        shape.label, shape.role, pass.rawValue, fixed(gbs(ours.median, bytes)),
                        s.torch.map { fixed(gbs($0.median, bytes)) } ?? "-",
                        fixed(gbs(copy.median, buffers.bytesMoved)), ratio(paired), ratio(best),
                        s.torch.map { ratio(ours.speedup(over: $0)) } ?? "-", percent(spread), meter.summary(),
                    ])
                    verdict.append(("\(shape.label) \(pass.rawValue) \(threads)t", paired))
                }
            }
            print()
        }
        let misses = verdict.filter { $0.1 < goal }
        if misses.isEmpty {
            print("goal met: \(op.rawValue) ≥ \(ratio(goal)) × copy on all \(verdict.count) rows")
        } else {
            print("goal missed on \(misses.count) of \(verdict.count) rows: "
                + misses.map { "\($0.0): \(ratio($0.1))" }.joined(separator: "; "))
        }
        print()
    }

    /// Samples ours, torch (when there is a peer) and the Swift copy loop, interleaved.
    static func measure(
        _ op: Op, _ pass: Pass, _ shape: Shape, threads: Int, peer: Peer?, buffers: CopyBench.Buffers,
        _ settings: TimingSettings
    ) throws -> (ours: Stats, torch: Stats?, copy: Stats) {
        let N = shape.rows, C = shape.cols
        var rng = RNG(seed: 42)
        func buffer(_ count: Int, _ lo: Float, _ hi: Float) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
            for i in 0..<count { p[i] = rng.uniform(lo, hi) }
            return p
        }
        let x = buffer(N * C, -3, 3)  // (N, C)
        let y = buffer(N * C, 0, 0)  // (N, C)
        let dy = buffer(N * C, -1, 1)  // (N, C)
        let dx = buffer(N * C, 0, 0)  // (N, C)
        let w = buffer(C, 0.5, 1.5), b = buffer(C, -0.1, 0.1)  // (C)
        let dw = buffer(C, 0, 0), db = buffer(C, 0, 0)  // (C)
        let mean = buffer(N, 0, 0), rstd = buffer(N, 0, 0)  // (N)
        let mask = buffer(op == .dropout ? N * C : 1, 0, 0)  // (N, C) dropout's factors
        defer { [x, y, dy, dx, w, b, dw, db, mean, rstd, mask].forEach { $0.deallocate() } }
        var draws = RNG(seed: 5)  // dropout's masks: a fresh one per call, as in training
        let forward: () -> Void
        switch op {
        case .softmax: forward = { Softmax.forward(p: y, x: x, rows: N, cols: C) }
        case .rmsnorm: forward = { RMSNorm.forward(y: y, rstd: rstd, x: x, weight: w, rows: N, dim: C) }
        case .layernorm:
            forward = { LayerNorm.forward(y: y, mean: mean, rstd: rstd, x: x, weight: w, bias: b, rows: N, dim: C, eps: 1e-12) }
        case .dropout:
            forward = { Dropout.forward(out: y, mask: mask, x: x, count: N * C, p: 0.1, training: true, rng: &draws) }
        }
        forward()  // y, mean and rstd for backward
        let backward: () -> Void
        switch op {
        case .softmax: backward = { Softmax.backward(dx: dx, dy: dy, p: y, rows: N, cols: C) }
        case .rmsnorm:
            backward = { RMSNorm.backward(dx: dx, dWeight: dw, dy: dy, x: x, weight: w, rstd: rstd, rows: N, dim: C) }
        case .layernorm:
            backward = {
                LayerNorm.backward(dx: dx, dWeight: dw, dBias: db, dy: dy, x: x, weight: w, mean: mean, rstd: rstd, rows: N, dim: C)
            }
        case .dropout: backward = { Dropout.backward(dx: dx, dy: dy, mask: mask, count: N * C) }
        }
        let body = pass == .fwd ? forward : backward
        var contenders = [Contender(name: "ours") { Timing.sample(minTime: settings.minTime, body) }]
        if let peer {
            contenders.append(Contender(name: "torch") {
                try peer.sample("op \(op.rawValue) \(pass.rawValue) \(N) \(C) \(threads) \(settings.minTime)")
            })
        }
        contenders += CopyBench.contenders(buffers, minTime: settings.minTime).prefix(1)
        let stats = try Timing.interleaved(contenders, settings)
        return (stats[0], peer == nil ? nil : stats[1], stats[stats.count - 1])
    }
}
