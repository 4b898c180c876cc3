// AdamTests: 10 steps of Adam, Adam+L2 and AdamW with clipping and the linear schedule against PyTorch.
import Foundation
import Testing
import TestSupport
@testable import Tensor

fileprivate let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// The fixture's tiny model: logits = X·W + b, token cross-entropy. Parameters are one flat
/// buffer, W (K, V) row-major then b (V).
struct TinyLinearModel {
    let N: Int, K: Int, V: Int

    /// Loss and gradient (fresh buffer, same layout as the parameters) on one batch.
    func lossAndGrad(params: [Float], x: [Float], targets: [Int32]) -> (Float, [Float]) {
        precondition(params.count == K * V + V && x.count == N * K && targets.count == N)
        var logits = Tensor.zeros([N, V])  // (N, V)
        for i in 0..<N { for j in 0..<V { logits.data[i * V + j] = params[K * V + j] } }
        x.withUnsafeBufferPointer { px in
            params.withUnsafeBufferPointer { pw in
                logits.withUnsafeMutableBufferPointer { pl in
                    Gemm.gemm(m: N, n: V, k: K, a: px.baseAddress!, lda: K, b: pw.baseAddress!, ldb: V,
                              beta: 1, c: pl.baseAddress!, ldc: V)
                }
            }
        }
        let (loss, cache) = CrossEntropy.forward(logits: logits, targets: targets)
        var dLogits = Tensor.zeros([N, V])
        CrossEntropy.backward(dLoss: 1, logits: logits, targets: targets, cache: cache, dLogits: &dLogits)
        var grads = [Float](repeating: 0, count: K * V + V)
        x.withUnsafeBufferPointer { px in
            dLogits.withUnsafeBufferPointer { pd in
                grads.withUnsafeMutableBufferPointer { pg in
                    // dW = Xᵀ · dLogits  (K, V)
                    Gemm.gemm(transA: true, m: K, n: V, k: N, a: px.baseAddress!, lda: K, b: pd.baseAddress!, ldb: V,
                              c: pg.baseAddress!, ldc: V)
                }
            }
        }
        for i in 0..<N { for j in 0..<V { grads[K * V + j] += dLogits.data[i * V + j] } }
        return (loss, grads)
    }
}

@Suite struct AdamTests {
    struct Run {
        let fixture: Fixture
        let model: TinyLinearModel
        let steps: Int
        let config: OptimConfig

        init() throws {
            fixture = try Fixture("optim.json", in: fixtures)
            let f = fixture
            steps = Int(try f.number("steps"))
            model = TinyLinearModel(N: Int(try f.number("n")), K: Int(try f.number("k")), V: Int(try f.number("v")))
            config = OptimConfig(
                optim: .adam, scheduler: .linear, lr: try f.number("lr"), warmupSteps: Int(try f.number("warmup_steps")),
                totalSteps: Int(try f.number("total_steps")), schedulerSteps: Int(try f.number("scheduler_steps")),
                clip: try f.number("clip"))
        }

        /// Trains from the fixture's start and compares loss, norm, LR and all parameters per step.
        func check<O: Optimizer>(_ name: String, _ optimizer: inout O, config: OptimConfig) throws {
            let f = fixture
            var params = try f.tensor("w0").data + f.tensor("b0").data
            let xs = try f.tensor("x").data, ts = try f.tensor("targets").data.map { Int32($0) }
            let (N, K) = (model.N, model.K)
            let want = try f.tensor("\(name).params")
            var losses: [Float] = [], norms: [Float] = [], lrs: [Float] = []
            for s in 0..<steps {
                var (loss, grads) = model.lossAndGrad(
                    params: params, x: Array(xs[(s * N * K)..<((s + 1) * N * K)]), targets: Array(ts[(s * N)..<((s + 1) * N)]))
                let (norm, lr) = config.step(&optimizer, params: &params, grads: &grads)
                losses.append(loss)
                norms.append(norm)
                lrs.append(Float(lr))
                let P = params.count
                let r = compare("\(name) params after step \(s + 1)", params, Array(want.data[(s * P)..<((s + 1) * P)]), rtol: 1e-5, atol: 1e-7)
                #expect(r.ok, "\(r)")
            }
            #expect(optimizer.state.step == steps)
            for (what, got) in [("loss", losses), ("norm", norms), ("lr", lrs)] {
                let r = compare("\(name) \(what)", got, try f.tensor("\(name).\(what)").data, rtol: 1e-5, atol: 1e-7)
                #expect(r.ok, "\(r)")
            }
            // The run must exercise clipping and the all-ignored batch (loss 0) to mean anything.
            #expect(norms.filter { Double($0) > config.clip }.count >= 5)
            #expect(losses.contains(0) && lrs.first == 0)
        }
    }

    @Test func adamMatchesPyTorch() throws {
        let run = try Run()
        var opt = run.config.makeOptimizer(count: run.model.K * run.model.V + run.model.V)
        #expect(opt is Adam)
        try run.check("adam", &opt, config: run.config)
    }

    @Test func adamWithL2MatchesPyTorch() throws {
        let run = try Run()
        var opt = Adam(count: run.model.K * run.model.V + run.model.V, weightDecay: 0.05)
        try run.check("adam_l2", &opt, config: run.config)
    }

    @Test func adamWMatchesPyTorch() throws {
        let run = try Run()
        var config = run.config
        config.optim = .adamw
        config.weightDecay = 0.1
        var opt = config.makeOptimizer(count: run.model.K * run.model.V + run.model.V)
        #expect((opt as? AdamW)?.weightDecay == 0.1)
        try run.check("adamw", &opt, config: config)
    }

    /// The SIMD, parallel kernel against the Double twin, over a size with a scalar tail and
    /// several parallel chunks, from a state with nonzero moments.
    @Test(arguments: [(0.0, 0.0), (0.03, 0.0), (0.0, 0.2)])
    func kernelMatchesNaive(decay: (l2: Double, decoupled: Double)) {
        var rng = RNG(seed: 41)
        let P = 40_000 + 7
        var p = rng.normalArray(P)
        let g = rng.normalArray(P, std: 0.1)
        var state = AdamState(count: P)
        state.m = rng.normalArray(P, std: 0.01)
        state.v = (0..<P).map { _ in rng.uniform(0, 1e-3) }
        state.step = 4
        let before = state
        let want = AdamKernel.naive(
            p: p, g: g, m: state.m, v: state.v, step: 5, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8,
            l2: decay.l2, decoupled: decay.decoupled)
        var opt: any Optimizer = decay.decoupled != 0 ? AdamW(count: P, weightDecay: decay.decoupled) : Adam(count: P, weightDecay: decay.l2)
        opt.state = before
        opt.update(params: &p, grads: g, lr: 1e-3)
        #expect(opt.state.step == 5)
        for (name, got, exp) in [("p", p, want.p), ("m", opt.state.m, want.m), ("v", opt.state.v, want.v)] {
            let r = compare("adam kernel \(name)", got, exp.map { Float($0) }, rtol: 1e-5, atol: 1e-9)
            #expect(r.ok, "\(r)")
        }
    }

    /// Checkpointing the state and resuming gives the same parameters as never stopping.
    @Test func stateRoundTripsAndResumes() throws {
        var rng = RNG(seed: 43)
        let P = 33
        var p = rng.normalArray(P)
        let gs = (0..<4).map { _ in rng.normalArray(P) }
        var a = AdamW(count: P, weightDecay: 0.1)
        for s in 0..<2 { a.update(params: &p, grads: gs[s], lr: 1e-2) }
        let saved = try JSONEncoder().encode(a.state)
        var pStraight = p
        for s in 2..<4 { a.update(params: &pStraight, grads: gs[s], lr: 1e-2) }
        var b = AdamW(count: P, weightDecay: 0.1)
        b.state = try JSONDecoder().decode(AdamState.self, from: saved)
        #expect(b.state.step == 2)
        for s in 2..<4 { b.update(params: &p, grads: gs[s], lr: 1e-2) }
        #expect(p == pStraight)
        #expect(b.state == a.state)
    }

    /// LR 0 moves nothing under Adam, but the moments and step still advance (FiD's first update).
    @Test func zeroLearningRateOnlyAdvancesState() {
        var rng = RNG(seed: 44)
        var p = rng.normalArray(20)
        let p0 = p
        var opt = AdamW(count: 20, weightDecay: 0.1)
        opt.update(params: &p, grads: rng.normalArray(20), lr: 0)
        #expect(p == p0)
        #expect(opt.state.step == 1 && opt.state.m.contains { $0 != 0 })
    }
}
