// Adam and AdamW over one flat parameter buffer, with torch.optim's exact update order.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What Adam and AdamW remember between updates; checkpoint it to resume exactly.
///
/// `m` and `v` run parallel to the flat parameter buffer (llm.c style): element i of each belongs
/// to parameter i. Large for real models, so a checkpoint writer will want to store them as
/// tensors and only `step` in its metadata.
public struct AdamState: Codable, Equatable, Sendable {
    /// Updates applied so far (torch's `state["step"]`); the schedule reads it too.
    public var step: Int
    /// First moment, the running mean of gradients.  // (P)
    public var m: [Float]
    /// Second moment, the running mean of squared gradients.  // (P)
    public var v: [Float]

    /// Fresh state for `count` parameters: step 0, zero moments.
    public init(count: Int) {
        step = 0
        m = [Float](repeating: 0, count: count)
        v = [Float](repeating: 0, count: count)
    }
}

/// An optimizer over a flat buffer of parameters and a parallel buffer of their gradients.
public protocol Optimizer: Sendable {
    /// Step count and moments.
    var state: AdamState { get set }
    /// Applies one update at learning rate `lr` and increments `state.step`.
    mutating func update(params: UnsafeMutableBufferPointer<Float>, grads: UnsafeBufferPointer<Float>, lr: Double)
}

extension Optimizer {
    /// `update` over arrays.
    public mutating func update(params: inout [Float], grads: [Float], lr: Double) {
        grads.withUnsafeBufferPointer { g in
            params.withUnsafeMutableBufferPointer { p in update(params: p, grads: g, lr: lr) }
        }
    }
}

/// `torch.optim.Adam`: the optional `weightDecay` is an L2 penalty added to the gradient
/// (`g + wd·p`) before the moments. FiD's `--optim adam` uses no decay.
public struct Adam: Optimizer {
    public var beta1: Double
    public var beta2: Double
    public var eps: Double
    /// L2 coefficient added to the gradient; 0 turns it off.
    public var weightDecay: Double
    public var state: AdamState

    /// Adam for `count` parameters with PyTorch's defaults.
    public init(count: Int, weightDecay: Double = 0, beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        state = AdamState(count: count)
    }

    public mutating func update(params: UnsafeMutableBufferPointer<Float>, grads: UnsafeBufferPointer<Float>, lr: Double) {
        state.step += 1
        AdamKernel.update(
            params: params, grads: grads, state: &state, lr: lr, beta1: beta1, beta2: beta2, eps: eps,
            l2: weightDecay, decoupled: 0)
    }
}

/// `torch.optim.AdamW`: decoupled weight decay `p ← p·(1 − lr·wd)` before the moment update,
/// applied to every parameter (FiD excludes none).
public struct AdamW: Optimizer {
    public var beta1: Double
    public var beta2: Double
    public var eps: Double
    /// Decoupled decay coefficient (PyTorch's default 0.01; FiD's option default 0.1).
    public var weightDecay: Double
    public var state: AdamState

    /// AdamW for `count` parameters with PyTorch's defaults.
    public init(count: Int, weightDecay: Double = 0.01, beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        state = AdamState(count: count)
    }

    public mutating func update(params: UnsafeMutableBufferPointer<Float>, grads: UnsafeBufferPointer<Float>, lr: Double) {
        state.step += 1
        AdamKernel.update(
            params: params, grads: grads, state: &state, lr: lr, beta1: beta1, beta2: beta2, eps: eps,
            l2: 0, decoupled: weightDecay)
    }
}

/// The shared Adam update, vectorised by LLVM and parallel over chunks.
///
/// Mirrors `torch.optim.adam._single_tensor_adam` (the CPU path) operation by operation:
/// scalars in Double as Python computes them, then rounded to Float as ATen does:
/// `p *= 1 − lr·wd` (AdamW); `g += wd·p` (Adam L2); `m = lerp(m, g, 1 − β1)`;
/// `v = v·β2 + (1 − β2)·g·g`; `p += (−lr/bc1)·m / (√v / √bc2 + eps)` with
/// `bc_i = 1 − β_i^step`.
enum AdamKernel {
    static func update(
        params: UnsafeMutableBufferPointer<Float>, grads: UnsafeBufferPointer<Float>, state: inout AdamState,
        lr: Double, beta1: Double, beta2: Double, eps: Double, l2: Double, decoupled: Double
    ) {
        let P = params.count
        precondition(grads.count == P, "Adam: \(P) parameters but \(grads.count) gradients")
        precondition(state.m.count == P && state.v.count == P, "Adam: state for \(state.m.count) parameters, buffer has \(P)")
        precondition(state.step >= 1, "Adam: update with step \(state.step); increment before updating")
        let step = Double(state.step)
        let stepSize = lr / (1 - pow(beta1, step))
        let bc2Sqrt = (1 - pow(beta2, step)).squareRoot()
        let decay = Float(1 - lr * decoupled)
        let wd = Float(l2)
        let w1 = Float(1 - beta1), b2 = Float(beta2), w2 = Float(1 - beta2)
        let negStep = Float(-stepSize), bc2 = Float(bc2Sqrt), epsF = Float(eps)
        let useDecay = decoupled != 0, useL2 = l2 != 0
        guard let p = params.baseAddress, let g = grads.baseAddress else { return }
        state.m.withUnsafeMutableBufferPointer { mb in
            state.v.withUnsafeMutableBufferPointer { vb in
                let m = mb.baseAddress!, v = vb.baseAddress!
                // A plain loop, one copy per decay kind (a branch in the loop keeps it scalar), that
                // LLVM vectorises (vsqrtps, vdivps) now that errno is off (Package.swift): the SIMD16
                // form ran its square roots lane by lane, each a sqrtf call guard, a third of the
                // update's time. Same operations in the same order per element, so the same bits.
                @inline(__always)
                func loop(_ range: Range<Int>, _ useDecay: Bool, _ useL2: Bool) {
                    for i in range {
                        var pi = p[i], gi = g[i]
                        if useDecay { pi = pi * decay }
                        if useL2 { gi = gi + pi * wd }
                        let mi = m[i].addingProduct(w1, gi - m[i])  // ATen's lerp: fma(w, end − start, start)
                        let vi = v[i] * b2 + w2 * gi * gi
                        let denom = vi.squareRoot() / bc2 + epsF
                        p[i] = pi + negStep * mi / denom
                        m[i] = mi
                        v[i] = vi
                    }
                }
                parallelFor(P, grain: 16_384) { range in
                    switch (useDecay, useL2) {
                    case (true, true): loop(range, true, true)
                    case (true, false): loop(range, true, false)
                    case (false, true): loop(range, false, true)
                    case (false, false): loop(range, false, false)
                    }
                }
            }
        }
    }

    /// The same update element by element in Double, for tests: returns new (p, m, v).
    static func naive(
        p: [Float], g: [Float], m: [Float], v: [Float], step: Int, lr: Double, beta1: Double,
        beta2: Double, eps: Double, l2: Double, decoupled: Double
    ) -> (p: [Double], m: [Double], v: [Double]) {
        let bc1 = 1 - pow(beta1, Double(step)), bc2 = 1 - pow(beta2, Double(step))
        var np = [Double](), nm = [Double](), nv = [Double]()
        for i in 0..<p.count {
            let p0 = Double(p[i])
            let pi = p0 * (1 - lr * decoupled)
            let gi = Double(g[i]) + l2 * p0
            let mi = beta1 * Double(m[i]) + (1 - beta1) * gi
            let vi = beta2 * Double(v[i]) + (1 - beta2) * gi * gi
            np.append(pi - lr * (mi / bc1) / ((vi / bc2).squareRoot() + eps))
            nm.append(mi)
            nv.append(vi)
        }
        return (np, nm, nv)
    }
}
