// BertRetrieverTests: FiD's retriever against transformers + FiD's Retriever code (ops/fixtures/bert.py):
// embeddings, scores, the KL loss (mean, batchmean, temperature), every gradient, 5 AdamW steps,
// for projection + masked mean, no projection + [CLS] (pickle weights without prefix), and no masks.
import Foundation
import Testing
import TestSupport
@testable import Models
@testable import Tensor

let bertFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/bert")

/// One fixture folder: the model, its batch and the expected tensors.
struct BertFixture {
    let folder: String
    let model: BertRetriever
    let batch: RetrieverBatch
    let expected: SafeTensorsFile

    init(_ variant: String) throws {
        folder = bertFixtures.appendingPathComponent(variant).path
        model = try BertRetriever.load(folder: folder)
        let b = try SafeTensorsFile(path: folder + "/batch.safetensors")
        let qIds = try b.tensor("question_ids"), qMask = try b.tensor("question_mask")
        let pIds = try b.tensor("passage_ids"), pMask = try b.tensor("passage_mask"), scores = try b.tensor("reader_scores")
        batch = RetrieverBatch(questions: scores.shape[0], passages: scores.shape[1], questionLength: qIds.shape[1],
                               passageLength: pIds.shape[1], questionIds: qIds.data.map { Int32($0) }, questionMask: qMask.data,
                               passageIds: pIds.data.map { Int32($0) }, passageMask: pMask.data, readerScores: scores.data)
        expected = try SafeTensorsFile(path: folder + "/expected.safetensors")
    }

    func tensor(_ name: String) throws -> Tensor { try expected.tensor(name) }
}

let bertVariants = ["proj_mean", "noproj_cls", "proj_nomask"]

struct BertRetrieverTests {
    @Test(arguments: bertVariants)
    func embeddingsScoresAndLossMatchFiD(_ variant: String) throws {
        let f = try BertFixture(variant)
        let out = f.model.forward(f.batch)
        for (name, actual) in [("question_embeddings", out.questionEmbeddings), ("passage_embeddings", out.passageEmbeddings),
                               ("scores", out.scores)] {
            let r = compare(name, actual, try f.tensor(name), rtol: 1e-4, atol: 1e-5)
            #expect(r.ok, "\(r)")
        }
        let loss = try f.tensor("loss").data[0]
        #expect(abs(out.loss! - loss) <= 1e-4 * abs(loss), "loss \(out.loss!) expected \(loss)")
        f.model.reduction = .batchmean
        let bm = try f.tensor("loss_batchmean").data[0]
        let outBM = f.model.forward(f.batch)
        #expect(abs(outBM.loss! - bm) <= 1e-4 * abs(bm), "batchmean \(outBM.loss!) expected \(bm)")
        f.model.reduction = .mean
        f.model.temperature = 2
        let t2 = try f.tensor("loss_t2").data[0]
        let outT = f.model.forward(f.batch)
        #expect(abs(outT.loss! - t2) <= 1e-4 * abs(t2), "temperature 2: \(outT.loss!) expected \(t2)")
    }

    @Test(arguments: bertVariants)
    func everyGradientMatchesTorch(_ variant: String) throws {
        let f = try BertFixture(variant)
        let grads = ParameterSlab(layout: f.model.layout)
        _ = f.model.forward(f.batch)
        f.model.backward(into: grads)
        var checked = 0
        for e in f.model.layout.entries {
            checked += 1
            if e.name.hasSuffix("attention.self.key.bias") {
                // Exactly 0 in exact arithmetic (softmax ignores a shift shared by a query's keys):
                // both sides hold rounding noise, small against the key weights' gradient.
                let scale = grads.tensor(e.name.replacingOccurrences(of: ".bias", with: ".weight")).data.map { abs($0) }.max()!
                let ours = grads.tensor(e.name).data.map { abs($0) }.max()!, theirs = try f.tensor("grad." + e.name).data.map { abs($0) }.max()!
                #expect(ours <= 1e-5 * scale && theirs <= 1e-5 * scale, "\(e.name): ours \(ours), torch \(theirs), key weight scale \(scale)")
                continue
            }
            let r = gradientReport("grad.\(e.name)", grads.tensor(e.name), try f.tensor("grad." + e.name), tolerance: 5e-4)
            #expect(r.ok, "\(r)")
        }
        #expect(checked == f.expected.names.filter { $0.hasPrefix("grad.") }.count)
    }

    @Test(arguments: bertVariants)
    func fiveAdamWStepsMatchTorch(_ variant: String) throws {
        let f = try BertFixture(variant)
        let grads = ParameterSlab(layout: f.model.layout)
        var opt = AdamW(count: f.model.layout.count, weightDecay: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8)
        var losses: [Float] = []
        for _ in 0..<5 {
            let out = f.model.forward(f.batch)
            losses.append(out.loss!)
            grads.zero()
            f.model.backward(into: grads)
            opt.update(params: f.model.params.buffer, grads: UnsafeBufferPointer(grads.buffer), lr: 1e-3)
        }
        let r = compare("adamw_loss", losses, try f.tensor("adamw_loss").data, rtol: 1e-4, atol: 1e-6)
        #expect(r.ok, "\(r)")
        for e in f.model.layout.entries {
            let p = compare("adamw.\(e.name)", f.model.params.tensor(e.name), try f.tensor("adamw." + e.name), rtol: 1e-4, atol: 1e-5)
            #expect(p.ok, "\(p)")
        }
    }

    /// The config's retriever fields arrive: the fixtures differ in exactly those.
    @Test func configsReadTheRetrieverFields() throws {
        let a = try BertConfig.load(path: bertFixtures.appendingPathComponent("proj_mean/config.json").path)
        #expect(a.projection && a.indexingDimension == 8 && a.applyPassageMask && a.applyQuestionMask && !a.extractCLS)
        let b = try BertConfig.load(path: bertFixtures.appendingPathComponent("noproj_cls/config.json").path)
        #expect(!b.projection && b.extractCLS && b.embeddingWidth == 16)
        let c = try BertConfig.load(path: bertFixtures.appendingPathComponent("proj_nomask/config.json").path)
        #expect(!c.applyPassageMask && !c.applyQuestionMask)
    }

    /// Training mode draws dropout: two seeds give two losses, the same seed the same loss, and
    /// the gradient of a dropout step still matches finite differences of that same step.
    @Test func dropoutIsSeededAndItsGradientIsExact() throws {
        let f = try BertFixture("proj_mean")
        var r1 = RNG(seed: 1), r1b = RNG(seed: 1), r2 = RNG(seed: 2)
        let a = f.model.forward(f.batch, training: true, rng: &r1).loss!
        let b = f.model.forward(f.batch, training: true, rng: &r1b).loss!
        let c = f.model.forward(f.batch, training: true, rng: &r2).loss!
        let eval = f.model.forward(f.batch).loss!
        #expect(a == b)
        #expect(a != c && a != eval)
        // Finite differences on a few entries of the first query weight and the projection.
        let grads = ParameterSlab(layout: f.model.layout)
        var rng = RNG(seed: 7)
        _ = f.model.forward(f.batch, training: true, rng: &rng)
        f.model.backward(into: grads)
        for name in ["encoder.layer.0.attention.self.query.weight", "proj.weight", "embeddings.LayerNorm.weight"] {
            let w = f.model.params[name], g = grads[name]
            for i in [0, 5, 11] {
                let keep = w[i], h: Float = 1e-2
                w[i] = keep + h
                var ra = RNG(seed: 7)
                let up = Double(f.model.forward(f.batch, training: true, rng: &ra).loss!)
                w[i] = keep - h
                var rb = RNG(seed: 7)
                let down = Double(f.model.forward(f.batch, training: true, rng: &rb).loss!)
                w[i] = keep
                let numeric = (up - down) / Double(2 * h)
                #expect(abs(numeric - Double(g[i])) <= 2e-2 * max(abs(numeric), 1e-3), "\(name)[\(i)]: numeric \(numeric), analytic \(g[i])")
            }
        }
    }
}

/// Every gradient and embedding is the same to the bit on any thread count: `Gemm`'s tiles follow
/// the shape, and the products that run side by side (q, k, v; a layer's dx, dW and db) are each
/// unchanged. The thread count then cannot decide an outcome, and a resumed run may use another.
@Suite(.serialized) struct BertRetrieverThreadsTests {
    @Test func gradientsAreThreadCountIndependent() throws {
        let f = try BertFixture("proj_mean")
        var results: [[Float]] = [], embeddings: [[Float]] = []
        for threads in [1, 2, 3] {
            // Held, so a concurrent suite's count change cannot make every pass run alike.
            Threads.exclusively(threads) {
                let grads = ParameterSlab(layout: f.model.layout)
                var rng = RNG(seed: 9)
                let out = f.model.forward(f.batch, training: true, rng: &rng)
                f.model.backward(into: grads)
                #expect(Threads.count == threads)
                results.append(Array(grads.buffer))
                embeddings.append(out.questionEmbeddings.data + out.passageEmbeddings.data)
            }
        }
        for k in 1..<3 {
            let differing = f.model.layout.entries.filter { e in results[k][e.range] != results[0][e.range] }.map(\.name)
            #expect(differing.isEmpty, "threads \([1, 2, 3][k]) vs 1 differ in \(differing)")
            #expect(embeddings[k] == embeddings[0], "threads \([1, 2, 3][k]) vs 1: embeddings differ")
        }
    }
}

/// `inBatchNegatives`: each question's KL also covers the other questions' passages as target
/// probability 0 (fidq's addition to FiD-KD, used by the demo).
struct BertRetrieverInBatchNegativesTests {
    /// The loss by the textbook formula in Double from the model's own embeddings: scores
    /// ⟨q_b, p_j⟩/√E over all B·P passages, target softmax(reader/T) on b's own P and 0 elsewhere,
    /// Σ_b Σ_j t·(log t − log softmax(s)) / (B·P) (FiD's `mean` counts only the real pairs).
    static func naiveLoss(_ model: BertRetriever, _ batch: RetrieverBatch) -> Double {
        let out = model.forward(batch)
        let B = batch.questions, P = batch.passages, E = model.embeddingWidth
        let q = out.questionEmbeddings.data, p = out.passageEmbeddings.data
        var total = 0.0
        for b in 0..<B {
            let s = (0..<(B * P)).map { j in
                (0..<E).reduce(0.0) { $0 + Double(q[b * E + $1]) * Double(p[j * E + $1]) } / Double(E).squareRoot()
            }
            let r = (0..<P).map { Double(batch.readerScores![b * P + $0]) / Double(model.temperature) }
            let zs = s.reduce(0) { $0 + exp($1) }, zr = r.reduce(0) { $0 + exp($1) }
            for i in 0..<P {
                let t = exp(r[i]) / zr
                total += t * (log(t) - log(exp(s[b * P + i]) / zs))
            }
        }
        return total / Double(B * P)
    }

    @Test func lossIsTheKLOverTheWholeBatchsPassages() throws {
        let f = try BertFixture("proj_mean")
        try #require(f.batch.questions >= 2, "the fixture batch needs two questions to have in-batch negatives")
        let plain = f.model.forward(f.batch).loss!
        f.model.inBatchNegatives = true
        defer { f.model.inBatchNegatives = false }
        let withNegatives = f.model.forward(f.batch).loss!
        let naive = Self.naiveLoss(f.model, f.batch)
        // float32 scores and log-sum-exps: a relative error of a few hundred ulps at most.
        #expect(abs(Double(withNegatives) - naive) <= 1e-4 * max(naive, 1e-3), "in-batch loss \(withNegatives), naive \(naive)")
        // Other questions' passages can only take probability away from the reader's choice.
        #expect(withNegatives > plain, "in-batch loss \(withNegatives) should exceed the plain loss \(plain)")
        // batchmean divides by B instead of B·P.
        f.model.reduction = .batchmean
        defer { f.model.reduction = .mean }
        let batchmean = f.model.forward(f.batch).loss!
        #expect(abs(Double(batchmean) - naive * Double(f.batch.passages)) <= 1e-4 * naive * Double(f.batch.passages))
    }

    @Test func gradientMatchesFiniteDifferences() throws {
        let f = try BertFixture("proj_mean")
        f.model.inBatchNegatives = true
        defer { f.model.inBatchNegatives = false }
        let grads = ParameterSlab(layout: f.model.layout)
        _ = f.model.forward(f.batch)
        f.model.backward(into: grads)
        for name in ["encoder.layer.0.attention.self.query.weight", "proj.weight", "embeddings.word_embeddings.weight"] {
            let w = f.model.params[name], g = grads[name]
            // The word embeddings' rows of tokens in the batch (row 0 is padding).
            let rows = name.hasPrefix("embeddings.word") ? f.batch.passageIds.prefix(3).map { Int($0) * f.model.config.D } : [0, 5, 11]
            for i in rows {
                let keep = w[i], h: Float = 1e-2
                w[i] = keep + h
                let up = Double(f.model.forward(f.batch).loss!)
                w[i] = keep - h
                let down = Double(f.model.forward(f.batch).loss!)
                w[i] = keep
                let numeric = (up - down) / Double(2 * h)
                #expect(abs(numeric - Double(g[i])) <= 2e-2 * max(abs(numeric), 1e-3), "\(name)[\(i)]: numeric \(numeric), analytic \(g[i])")
            }
        }
    }
}
