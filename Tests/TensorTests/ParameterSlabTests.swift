// ParameterSlabTests: layout offsets and ties, safetensors round trips through the name table,
// load errors, AdamW over slabs, optimizer state files, and the elementwise kernels.
import Foundation
import Testing
import TestSupport
@testable import Tensor

private func tempDir() -> String {
    let d = NSTemporaryDirectory() + "slab-\(UInt32.random(in: 0...UInt32.max))"
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

private func sampleLayout() -> ParameterLayout {
    var l = ParameterLayout()
    l.add("shared.weight", [5, 3])
    l.tie("lm_head.weight", to: "shared.weight")
    l.add("block.0.q.weight", [2, 3])
    l.add("norm.weight", [3])
    return l
}

struct ParameterSlabTests {
    @Test func layoutPacksEntriesAndResolvesTies() {
        let l = sampleLayout()
        #expect(l.count == 15 + 6 + 3)
        #expect(l.entry("block.0.q.weight")?.offset == 15)
        #expect(l.entry("norm.weight")?.range == 21..<24)
        #expect(l.entry("lm_head.weight") == l.entry("shared.weight"))
        #expect(l.aliases(of: "shared.weight") == ["lm_head.weight"])
        #expect(l.entry("nope") == nil)
        let slab = ParameterSlab(layout: l)
        slab["lm_head.weight"][4] = 7
        #expect(slab.tensor("shared.weight").data[4] == 7)
    }

    @Test func saveLoadRoundTripAndTiedNames() throws {
        let dir = tempDir()
        let slab = ParameterSlab(layout: sampleLayout())
        var rng = RNG(seed: 4)
        for i in 0..<slab.count { slab.base[i] = rng.normal() }
        try slab.save(to: dir + "/w.safetensors")
        let file = try SafeTensorsFile(path: dir + "/w.safetensors")
        #expect(file.names.sorted() == ["block.0.q.weight", "norm.weight", "shared.weight"])
        let back = ParameterSlab(layout: sampleLayout())
        try back.load(from: file)
        #expect(Array(back.buffer) == Array(slab.buffer))
        // A file that stores the tied tensor only under its alias still loads.
        var map = TensorMap()
        map.append("lm_head.weight", slab.tensor("shared.weight"))
        map.append("block.0.q.weight", slab.tensor("block.0.q.weight"))
        map.append("norm.weight", slab.tensor("norm.weight"))
        try SafeTensors.write(map, to: dir + "/alias.safetensors")
        let viaAlias = ParameterSlab(layout: sampleLayout())
        try viaAlias.load(from: try SafeTensorsFile(path: dir + "/alias.safetensors"))
        #expect(Array(viaAlias.buffer) == Array(slab.buffer))
        // The same through a TensorMap.
        let viaMap = ParameterSlab(layout: sampleLayout())
        try viaMap.load(from: map)
        #expect(Array(viaMap.buffer) == Array(slab.buffer))
    }

    @Test func missingAndMisshapedTensorsAreNamed() throws {
        let dir = tempDir()
        var map = TensorMap()
        map.append("shared.weight", Tensor.zeros([5, 3]))
        map.append("block.0.q.weight", Tensor.zeros([3, 2]))
        try SafeTensors.write(map, to: dir + "/bad.safetensors")
        let slab = ParameterSlab(layout: sampleLayout())
        let file = try SafeTensorsFile(path: dir + "/bad.safetensors")
        #expect(throws: TensorMapError.shape(name: "block.0.q.weight", source: dir + "/bad.safetensors", expected: [2, 3], found: [3, 2])) {
            try slab.load(from: file)
        }
        map = TensorMap()
        map.append("shared.weight", Tensor.zeros([5, 3]))
        map.append("block.0.q.weight", Tensor.zeros([2, 3]))
        try SafeTensors.write(map, to: dir + "/missing.safetensors")
        do {
            try slab.load(from: try SafeTensorsFile(path: dir + "/missing.safetensors"))
            Issue.record("loaded without norm.weight")
        } catch let e as TensorMapError {
            #expect("\(e)".contains("norm.weight") && "\(e)".contains("missing.safetensors"))
        }
    }

    /// Weights holding NaN or ±inf (a diverged run's checkpoint) are refused naming the tensor and
    /// the element, from a safetensors file and from a map (a PyTorch checkpoint's), half
    /// precision included; they used to load and surface as NaN far away.
    @Test func nonFiniteWeightsAreNamed() throws {
        let dir = tempDir()
        for (bad, storage) in [(Float.nan, "F32"), (-Float.infinity, "F32"), (Float.infinity, "F16")] {
            var q = Tensor.zeros([2, 3])
            q.data[4] = bad
            var map = TensorMap(source: "checkpoint.bin")
            map.append("shared.weight", Tensor.zeros([5, 3]))
            map.append("block.0.q.weight", q)
            map.append("norm.weight", Tensor.zeros([3]))
            let path = dir + "/nan.safetensors"
            try SafeTensors.write(map, to: path, dtype: storage == "F16" ? .f16 : .f32)
            let slab = ParameterSlab(layout: sampleLayout())
            for load in [{ try slab.load(from: try SafeTensorsFile(path: path)) }, { try slab.load(from: map) }] {
                do {
                    try load()
                    Issue.record("loaded \(bad) in \(storage)")
                } catch let e as TensorMapError {
                    guard case let .nonFinite(name, _, index, value) = e else { Issue.record("\(e)"); continue }
                    #expect(name == "block.0.q.weight" && index == 4 && (value.isNaN ? bad.isNaN : value == bad), "\(e)")
                    #expect("\(e)".contains("expected finite weights"))
                }
            }
        }
    }

    @Test func adamWOverSlabsMatchesTheNaiveUpdate() {
        let l = sampleLayout()
        let p = ParameterSlab(layout: l), g = ParameterSlab(layout: l)
        var rng = RNG(seed: 5)
        for i in 0..<l.count { p.base[i] = rng.normal(); g.base[i] = rng.normal() }
        let p0 = Array(p.buffer)
        var opt = AdamW(count: l.count)
        opt.update(params: p.buffer, grads: UnsafeBufferPointer(g.buffer), lr: 1e-2)
        let n = AdamKernel.naive(p: p0, g: Array(g.buffer), m: [Float](repeating: 0, count: l.count), v: [Float](repeating: 0, count: l.count),
                                 step: 1, lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, l2: 0, decoupled: 0.01)
        let r = compare("adamw", Array(p.buffer), n.p.map { Float($0) }, rtol: 1e-5, atol: 1e-6)
        #expect(r.ok, "\(r)")
    }

    @Test func optimizerStateRoundTripsAsSafetensors() throws {
        let dir = tempDir()
        let l = sampleLayout()
        var s = AdamState(count: l.count)
        s.step = 7
        for i in 0..<l.count { s.m[i] = Float(i); s.v[i] = Float(i) * 0.5 }
        try s.save(to: dir + "/adam.safetensors", layout: l)
        let file = try SafeTensorsFile(path: dir + "/adam.safetensors")
        #expect(file.names.contains("m.block.0.q.weight") && file.names.contains("v.norm.weight"))
        let back = try AdamState.load(from: dir + "/adam.safetensors", layout: l)
        #expect(back == s)
        var other = ParameterLayout()
        other.add("shared.weight", [5, 3])
        other.add("block.0.q.weight", [3, 2])
        other.add("norm.weight", [3])
        #expect(throws: TensorMapError.self) { _ = try AdamState.load(from: dir + "/adam.safetensors", layout: other) }
        // A moment that is not finite, or a negative second moment, is refused, naming it: resumed,
        // it poisoned or froze its weights and the run then blamed lr.
        let e = l.entries[1]
        for (isM, value) in [(true, Float.nan), (false, Float.infinity), (false, -1)] {
            var bad = s
            if isM { bad.m[e.offset + 2] = value } else { bad.v[e.offset + 2] = value }
            try bad.save(to: dir + "/bad.safetensors", layout: l)
            let name = (isM ? "m." : "v.") + e.name
            let expected: TensorMapError = value.isFinite
                ? .negative(name: name, source: dir + "/bad.safetensors", index: 2, value: value)
                : .nonFinite(name: name, source: dir + "/bad.safetensors", index: 2, value: value)
            do {
                _ = try AdamState.load(from: dir + "/bad.safetensors", layout: l)
                Issue.record("loaded \(value) in \(name)")
            } catch let error as TensorMapError {
                #expect(error.description == expected.description, "\(error)")
            }
        }
    }

    @Test func elementwiseKernels() {
        let n = 40_000
        var rng = RNG(seed: 6)
        let a = rng.normalArray(n), b = rng.normalArray(n)
        var out = [Float](repeating: 0, count: n)
        Elementwise.add(out: &out, a, b, count: n)
        #expect(out == zip(a, b).map { $0 + $1 })
        var y = a
        Elementwise.accumulate(&y, b, count: n)
        #expect(y == out)
        y = a
        Elementwise.scale(&y, by: 3, count: n)
        #expect(y == a.map { $0 * 3 })
        y = a
        Elementwise.axpy(&y, 2, b, count: n)
        #expect(y == zip(a, b).map { $0.addingProduct(2, $1) })
    }

    /// `allFinite` against its naive twin: NaN, ±∞ and the largest finite values planted at
    /// random places (SIMD body, tail, chunk edges) of buffers of many lengths.
    @Test func allFiniteFindsEveryNonFiniteValue() {
        var rng = RNG(seed: 11)
        for n in [0, 1, 15, 16, 17, 255, 65_535, 65_536, 65_537, 200_003] {
            var x = rng.normalArray(n).map { $0 * 1e30 }
            #expect(Elementwise.allFinite(x, count: n), "n \(n)")
            guard n > 0 else { continue }
            for value in [Float.nan, .infinity, -.infinity, .greatestFiniteMagnitude, -.greatestFiniteMagnitude] {
                for at in Set([0, n - 1, n / 2, min(n - 1, 65_536), Int(rng.next() % UInt64(n))]) {
                    let keep = x[at]
                    x[at] = value
                    #expect(Elementwise.allFinite(x, count: n) == x.allSatisfy(\.isFinite), "n \(n), \(value) at \(at)")
                    x[at] = keep
                }
            }
        }
    }
}
