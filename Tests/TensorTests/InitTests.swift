// InitTests: seeded fills, and the T5/BERT rules against Hugging Face's own initialisation statistics.
import Foundation
import Testing
import TestSupport
@testable import Tensor

fileprivate let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

@Suite struct InitTests {
    /// Checks a rule against HF's measured [mean, std, count] triples: constants exactly, normals
    /// within four standard errors of the sample std (std/√(2n)) plus 1%.
    static func check(_ label: String, _ rule: InitRule, _ measured: [[Double]]) {
        for m in measured {
            let (mean, std, n) = (m[0], m[1], m[2])
            switch rule {
            case .constant(let c):
                #expect(abs(mean - Double(c)) <= 1e-6 * abs(Double(c)) && std <= 1e-6 * abs(Double(c)), "\(label): HF mean \(mean) std \(std), rule constant \(c)")
            case .normal(_, let s):
                let tol = 4 / (2 * n).squareRoot() + 0.01
                #expect(abs(std / Double(s) - 1) < tol, "\(label): HF std \(std) over \(Int(n)), rule std \(s)")
                #expect(abs(mean) < 4 * Double(s) / n.squareRoot(), "\(label): HF mean \(mean)")
            }
        }
    }

    @Test func t5RulesMatchTransformers() throws {
        let f = try Fixture("init.json", in: fixtures)
        let cfg = try #require(f.meta["t5_config"] as? [String: Any])
        let rules = T5Init(
            dModel: cfg["d_model"] as! Int, dKV: cfg["d_kv"] as! Int, numHeads: cfg["num_heads"] as! Int,
            dFF: cfg["d_ff"] as! Int, factor: cfg["initializer_factor"] as! Double)
        let measured = try #require(f.meta["t5"] as? [String: [[Double]]])
        #expect(Set(measured.keys) == Set(T5Init.Kind.allCases.map(\.rawValue)))
        for kind in T5Init.Kind.allCases {
            Self.check("t5 \(kind)", rules.rule(kind), try #require(measured[kind.rawValue]))
        }
    }

    @Test func bertRulesMatchTransformers() throws {
        let f = try Fixture("init.json", in: fixtures)
        let cfg = try #require(f.meta["bert_config"] as? [String: Any])
        let rules = BertInit(initializerRange: cfg["initializer_range"] as! Double)
        let measured = try #require(f.meta["bert"] as? [String: [[Double]]])
        #expect(Set(measured.keys) == Set(BertInit.Kind.allCases.map(\.rawValue)))
        for kind in BertInit.Kind.allCases {
            Self.check("bert \(kind)", rules.rule(kind), try #require(measured[kind.rawValue]))
        }
    }

    @Test func t5BaseStds() {
        // t5-base: D 768, Dh 64, H 12, F 3072.
        let r = T5Init(dModel: 768, dKV: 64, numHeads: 12, dFF: 3072)
        #expect(abs(r.std(.query)! - 1 / (768 * 64 as Float).squareRoot()) < 1e-9)
        #expect(r.std(.key) == r.std(.value) && r.std(.key) == r.std(.wi))
        #expect(abs(r.std(.wo)! - 1 / (3072 as Float).squareRoot()) < 1e-9)
        #expect(r.std(.sharedEmbedding) == 1 && r.std(.layerNorm) == nil)
        #expect(r.rule(.layerNorm) == .constant(1))
    }

    @Test func normalFillIsSeededAndHasTheRequestedMoments() {
        var a = Tensor.zeros([200, 100]), b = Tensor.zeros([200, 100])
        var r1 = RNG(seed: 71), r2 = RNG(seed: 71)
        Init.normal(&a, mean: 0.5, std: 0.02, rng: &r1)
        Init.normal(&b, mean: 0.5, std: 0.02, rng: &r2)
        #expect(a == b)
        let n = Double(a.count)
        let mean = a.data.reduce(0.0) { $0 + Double($1) } / n
        let std = (a.data.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n).squareRoot()
        #expect(abs(mean - 0.5) < 4 * 0.02 / n.squareRoot(), "mean \(mean)")
        #expect(abs(std / 0.02 - 1) < 0.02, "std \(std)")
    }

    @Test func constantsAndPaddingRow() {
        var rng = RNG(seed: 72)
        var t = Tensor(shape: [3, 4], repeating: 7)
        Init.zeros(&t)
        #expect(t.data.allSatisfy { $0 == 0 })
        Init.ones(&t)
        #expect(t.data.allSatisfy { $0 == 1 })
        Init.apply(BertInit().rule(.embedding), to: &t, rng: &rng)
        Init.zeroRow(&t, row: 0)
        #expect(t.data[0..<4].allSatisfy { $0 == 0 } && t.data[4...].allSatisfy { $0 != 0 && abs($0) < 0.2 })
        var copy = rng
        var u = Tensor.zeros([5])
        Init.apply(.constant(3), to: &u, rng: &rng)
        #expect(u.data == [3, 3, 3, 3, 3])
        #expect(rng.next() == copy.next())  // constants draw nothing
    }
}
