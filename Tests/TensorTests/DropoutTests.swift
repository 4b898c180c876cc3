// DropoutTests: inverted scaling, seeded determinism independent of threads, eval identity, gradients.
import Foundation
import Testing
import TestSupport
@testable import Tensor

@Suite struct DropoutTests {
    @Test func dropsAboutPAndScalesSurvivors() {
        let n = 100_003, p: Float = 0.1
        var rng = RNG(seed: 42)
        let x = Tensor(shape: [n], data: rng.uniformArray(n, 0.5, 1.5))
        let (y, mask) = Dropout.forward(x, p: p, training: true, rng: &rng)
        let dropped = mask.data.filter { $0 == 0 }.count
        // Binomial(n, 0.1): sd ≈ 95, so ±600 is over 6 sd.
        #expect(abs(dropped - n / 10) < 600, "dropped \(dropped) of \(n)")
        for i in 0..<n {
            let m = mask.data[i]
            #expect(m == 0 || m == 1 / (1 - p))
            if y.data[i] != x.data[i] * m { Issue.record("y[\(i)] = \(y.data[i]), expected \(x.data[i] * m)"); break }
        }
        // The mean is preserved in expectation: inverted scaling.
        let ratio = y.data.reduce(0.0) { $0 + Double($1) } / x.data.reduce(0.0) { $0 + Double($1) }
        #expect(abs(ratio - 1) < 0.01, "mean ratio \(ratio)")
    }

    @Test func sameSeedSameMaskWhateverTheThreadCount() {
        let x = Tensor(shape: [50_000], repeating: 1)
        var a = RNG(seed: 7), b = RNG(seed: 7), c = RNG(seed: 8)
        // Per-call thread counts: the global setting stays untouched while other suites run.
        let (_, m1) = Dropout.forward(x, p: 0.3, training: true, rng: &a, threads: 1)
        let (_, m2) = Dropout.forward(x, p: 0.3, training: true, rng: &b, threads: 4)
        let (_, m3) = Dropout.forward(x, p: 0.3, training: true, rng: &c)
        #expect(m1 == m2)
        #expect(m1 != m3)
        // The generator advanced: a second draw differs from the first.
        let (_, m4) = Dropout.forward(x, p: 0.3, training: true, rng: &a)
        #expect(m4 != m1)
    }

    /// The mask is the documented draw: chunk c's generator, seeded by the c-th draw of `rng`,
    /// drops element i when its nextFloat() < p (the kernel compares the integer bits instead).
    @Test(arguments: [Float(0), 0.1, 0.25, 1 / 3, 0.5, 0.9, 1])
    func maskIsNextFloatBelowP(p: Float) {
        let n = 3 * Dropout.chunk + 17
        var rng = RNG(seed: 77), ref = RNG(seed: 77)
        var mask = [Float](repeating: .nan, count: n)
        Dropout.fillMask(&mask, count: n, p: p, rng: &rng)
        let keep: Float = p < 1 ? 1 / (1 - p) : 0
        var expected: [Float] = []
        for _ in 0..<((n + Dropout.chunk - 1) / Dropout.chunk) {
            var g = RNG(seed: ref.next())
            for _ in 0..<min(Dropout.chunk, n - expected.count) { expected.append(g.nextFloat() < p ? 0 : keep) }
        }
        #expect(mask == expected, "p \(p)")
    }

    @Test func evalAndZeroPAreIdentity() {
        var rng = RNG(seed: 1)
        let x = Tensor(shape: [3, 7], data: rng.normalArray(21))
        let before = rng
        let (y, mask) = Dropout.forward(x, p: 0.5, training: false, rng: &rng)
        #expect(y == x)
        #expect(mask.data.allSatisfy { $0 == 1 })
        let (y0, _) = Dropout.forward(x, p: 0, training: true, rng: &rng)
        #expect(y0 == x)
        #expect(rng.next() == { var r = before; return r.next() }(), "eval must not consume randomness")
        let (y1, _) = Dropout.forward(x, p: 1, training: true, rng: &rng)
        #expect(y1.data.allSatisfy { $0 == 0 })
    }

    @Test func gradientMatchesFiniteDifferences() {
        var rng = RNG(seed: 4)
        let x = rng.normalArray(200), dy = rng.normalArray(200)
        let (_, mask) = Dropout.forward(Tensor(shape: [200], data: x), p: 0.25, training: true, rng: &rng)
        var dx = [Float](repeating: 0, count: 200)
        dy.withUnsafeBufferPointer { pg in
            mask.withUnsafeBufferPointer { pm in
                dx.withUnsafeMutableBufferPointer { Dropout.backward(dx: $0.baseAddress!, dy: pg.baseAddress!, mask: pm.baseAddress!, count: 200) }
            }
        }
        // With the mask fixed, forward is x·mask.
        let r = gradCheck("dropout", input: x, analytic: dx) { x in dotDouble(zip(x, mask.data).map { $0 * $1 }, dy) }
        print(r)
        #expect(r.ok, "\(r)")
        #expect(dx == zip(dy, mask.data).map { $0 * $1 })
    }
}
