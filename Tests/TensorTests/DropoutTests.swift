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

    /// The mask is the documented draw, written element by element with scalar generators:
    /// chunk c's seed is the c-th draw of `rng`; its lane l is `RNG(seed: seed + l)`, whose k-th
    /// draw r drops element 16k + l when the float of r's top 24 bits is below p, and element
    /// 16k + 8 + l when the float of bits 8…31 is (the kernel compares the integer bits instead).
    /// Counts end inside a step's first half, in its second half, on a step, and inside the
    /// first chunk.
    @Test(arguments: [Float(0), 0.1, 0.25, 1 / 3, 0.5, 0.9, 1])
    func maskIsTheDocumentedDraw(p: Float) {
        for n in [3 * Dropout.chunk + 17, 2 * Dropout.chunk + 29, 2 * Dropout.chunk + 32, 7] {
            var rng = RNG(seed: 77), ref = RNG(seed: 77)
            var mask = [Float](repeating: .nan, count: n)
            Dropout.fillMask(&mask, count: n, p: p, rng: &rng)
            let keep: Float = p < 1 ? 1 / (1 - p) : 0
            var expected = [Float](repeating: .nan, count: n)
            for c in 0..<((n + Dropout.chunk - 1) / Dropout.chunk) {
                let seed = ref.next()
                var lanes = (0..<8).map { RNG(seed: seed &+ UInt64($0)) }
                let start = c * Dropout.chunk, end = min(n, start + Dropout.chunk)
                for k in 0..<((end - start + 15) / 16) {
                    for l in 0..<8 {
                        let r = lanes[l].next()
                        let high = Float(r >> 40) * 0x1p-24, low = Float((r >> 8) & 0xFF_FFFF) * 0x1p-24
                        for (j, u) in [(start + 16 * k + l, high), (start + 16 * k + 8 + l, low)] where j < end {
                            expected[j] = u < p ? 0 : keep
                        }
                    }
                }
            }
            let wrong = (0..<n).filter { !(mask[$0] == expected[$0]) }
            #expect(wrong.isEmpty, "p \(p), n \(n): \(wrong.count) elements differ, the first at \(wrong.first ?? -1)")
            #expect(rng.next() == ref.next(), "one draw of rng per chunk")
        }
    }

    /// Forward writes the mask and x · mask in one pass, also in place and in a tail.
    @Test func forwardInPlaceIsXTimesTheMask() {
        let n = Dropout.chunk + 21
        var g = RNG(seed: 3)
        let x = g.normalArray(n)
        var y = x, mask = [Float](repeating: 0, count: n), again = [Float](repeating: 0, count: n)
        var a = RNG(seed: 9), b = RNG(seed: 9)
        y.withUnsafeMutableBufferPointer { py in
            Dropout.forward(out: py.baseAddress!, mask: &mask, x: py.baseAddress!, count: n, p: 0.2, training: true, rng: &a)
        }
        Dropout.fillMask(&again, count: n, p: 0.2, rng: &b)
        #expect((0..<n).allSatisfy { mask[$0] == again[$0] }, "forward's mask is fillMask's")
        #expect((0..<n).allSatisfy { y[$0] == x[$0] * mask[$0] }, "y is x · mask")
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
