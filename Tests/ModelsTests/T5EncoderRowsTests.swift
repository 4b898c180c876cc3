// T5EncoderRowsTests: which encoder rows FiD's passages keep, and that computing only those gives
// transformers' loss, logits, passage scores and gradients (the padded rows computed too).
import Testing
import TestSupport
@testable import Models
@testable import Tensor

struct T5EncoderRowsTests {
    @Test func keepsEachPassageUpToItsLastAttendedToken() {
        // Rows of L 4: full, trailing padding, none, a hole then a token, full.
        let mask: [Float] = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 1, 1, 1]
        let rows = mask.withUnsafeBufferPointer { T5EncoderRows(mask: $0.baseAddress!, passages: 5, length: 4) }
        #expect(rows.lengths == [4, 2, 0, 3, 4] && rows.rows == 13 && !rows.keepsAll)
        #expect(rows.runs.map { [$0.padded, $0.packed, $0.count] } == [[0, 0, 6], [12, 6, 3], [16, 9, 4]])
        let ids = (0..<20).map { Int32($0) }
        #expect(rows.pack(ids) == [0, 1, 2, 3, 4, 5, 12, 13, 14, 16, 17, 18, 19])
        #expect(rows.ragged(heads: 2)?.lengths == [4, 2, 0, 3, 4])
        // Rounded up to multiples of 3, at most L: 4, 3, 0, 3 (already), 4.
        let aligned = mask.withUnsafeBufferPointer { T5EncoderRows(mask: $0.baseAddress!, passages: 5, length: 4, alignment: 3) }
        #expect(aligned.lengths == [4, 3, 0, 3, 4] && aligned.ragged(heads: 1)!.rowOffsets == [0, 4, 7, 7, 10] && aligned.rows == 14)
        #expect(aligned.pack(ids) == [0, 1, 2, 3, 4, 5, 6, 12, 13, 14, 16, 17, 18, 19])
        let full = [Float](repeating: 1, count: 8).withUnsafeBufferPointer { T5EncoderRows(mask: $0.baseAddress!, passages: 2, length: 4) }
        #expect(full.keepsAll && full.ragged(heads: 2) == nil && full.runs.count == 1 && full == T5EncoderRows(keepingAll: 2, length: 4))
    }

    /// B 2 × P 3 passages of L 6 with trailing padding, an empty passage and a hole.
    static func batch() -> T5Batch {
        let lengths = [6, 2, 4, 0, 5, 1]
        var ids: [Int32] = [], mask: [Float] = []
        for (r, n) in lengths.enumerated() {
            for t in 0..<6 {
                let real = t < n && !(r == 4 && t == 1)
                ids.append(real ? Int32(2 + (r * 7 + t * 3) % 11) : 0)
                mask.append(real ? 1 : 0)
            }
        }
        let labels: [Int32] = [4, 9, 1, 7, 1, -100]
        return T5Batch(questions: 2, passages: 3, passageLength: 6, inputIds: ids, attentionMask: mask,
                       decoderInputIds: T5Batch.shiftRight(labels, rows: 2, start: 0, pad: 0), labels: labels)
    }

    /// Kept rows against every row computed, as transformers does, with and without the 3.0.2
    /// cross-attention bias, the kept counts as they are and rounded up to multiples of 4.
    @Test(arguments: [(T5Config.FeedForward.relu, false, 1), (.gatedGELU, false, 1), (.gatedGELU, true, 1), (.gatedGELU, false, 4)])
    func keptRowsGiveWhatThePaddedRowsGive(_ variant: (T5Config.FeedForward, Bool, Int)) {
        let (ff, crossBias, alignment) = variant
        let (model, _) = tinyModel(ff, tied: ff == .relu, crossBias: crossBias)
        model.encoderRowAlignment = alignment
        let batch = Self.batch(), D = model.config.dModel
        var results: [(out: T5Output, grads: ParameterSlab, memory: [Float])] = []
        for keepAll in [true, false] {
            model.keepsPaddedRows = keepAll
            let out = model.forward(batch, scores: true)
            let grads = ParameterSlab(layout: model.layout)
            model.backward(into: grads)
            let memory = model.encode(inputIds: batch.inputIds, attentionMask: batch.attentionMask, rows: 6, L: 6)
            results.append((out, grads, Array(UnsafeBufferPointer(start: memory, count: 36 * D))))
            // Kept 6, 2, 4, 0, 5, 1; by fours (at most 6): 6, 4, 4, 0, 6, 4.
            #expect(model.lastEncoderRows!.rows.rows == (keepAll ? 36 : alignment == 1 ? 18 : 24))
        }
        let (full, kept) = (results[0], results[1])
        func close(_ what: String, _ a: [Float], _ b: [Float], _ tolerance: Float) {
            let scale = max(b.map(abs).max() ?? 0, 1e-6)
            let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
            #expect(a.count == b.count && worst <= tolerance * scale, "\(variant) \(what): worst difference \(worst), largest value \(scale)")
        }
        close("loss", [kept.out.loss!], [full.out.loss!], 1e-5)
        close("logits", kept.out.logits.data, full.out.logits.data, 1e-5)
        close("scores", kept.out.scores!.data, full.out.scores!.data, 1e-5)
        for e in model.layout.entries {
            close(e.name, Array(kept.grads.buffer(e.name)), Array(full.grads.buffer(e.name)), 1e-4)
        }
        // The memory's kept rows agree (the hole, row 25, included); its dropped rows are zero.
        let dropped = alignment == 1 ? [8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23, 29, 31, 32, 33, 34, 35]
            : [10, 11, 16, 17, 18, 19, 20, 21, 22, 23, 34, 35]
        for r in 0..<36 {
            let row = Array(kept.memory[(r * D)..<((r + 1) * D)])
            if dropped.contains(r) {
                #expect(row.allSatisfy { $0 == 0 }, "memory row \(r) is not zero")
            } else {
                close("memory row \(r)", row, Array(full.memory[(r * D)..<((r + 1) * D)]), 1e-5)
            }
        }
    }

    /// Decoding steps (one row per question, or three) over the kept rows' memory: each step's
    /// logits and the passage scores are those over every row's, fed the same tokens.
    @Test(arguments: [1, 3])
    func decodingReadsTheKeptRows(beams: Int) throws {
        let (model, _) = tinyModel(.gatedGELU, tied: false)
        model.encoderRowAlignment = 1
        let batch = Self.batch(), V = model.config.vocabSize
        var fed: [[Int32]] = []
        var runs: [(logits: [[Float]], scores: [Float])] = []
        for keepAll in [true, false] {
            model.keepsPaddedRows = keepAll
            let s = T5Stepper(model: model, questions: 2, passages: 3, passageLength: 6, inputIds: batch.inputIds,
                              attentionMask: batch.attentionMask, beams: beams, maxLength: 5)
            s.recordScores = true
            var logits = [Float](repeating: 0, count: s.rows * V), seen: [[Float]] = []
            var tokens = [Int32](repeating: 0, count: s.rows)
            for step in 0..<5 {
                if !keepAll { tokens = fed[step] }
                if keepAll { fed.append(tokens) }
                try tokens.withUnsafeBufferPointer { try s.step($0, logits: &logits) }
                seen.append(logits)
                VocabKernels.argmax(logits, rows: s.rows, cols: V, ld: V, into: &tokens)
            }
            runs.append((seen, s.scores!.data))
        }
        for (step, (a, b)) in zip(runs[1].logits, runs[0].logits).enumerated() {
            let worst = zip(a, b).map { abs($0 - $1) }.max()!
            #expect(worst <= 1e-5 * max(b.map(abs).max()!, 1e-6), "step \(step): worst logit difference \(worst)")
        }
        let worst = zip(runs[1].scores, runs[0].scores).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-5 * max(runs[0].scores.map(abs).max()!, 1e-6), "scores \(runs[1].scores) vs \(runs[0].scores)")
    }
}

extension T5EncoderRowsTests {
    /// A question without any passage (fidq pads it with fully masked ones, where FiD crashes):
    /// no encoder row at all; the decoder still runs over its masked memory, in training too.
    @Test func aBatchWithoutAnyTokenRuns() throws {
        let (model, _) = tinyModel(.gatedGELU, tied: false)
        let labels: [Int32] = [4, 9, 1]
        let batch = T5Batch(questions: 1, passages: 2, passageLength: 4, inputIds: [Int32](repeating: 0, count: 8),
                            attentionMask: [Float](repeating: 0, count: 8),
                            decoderInputIds: T5Batch.shiftRight(labels, rows: 1, start: 0, pad: 0), labels: labels)
        for checkpoint in [false, true] {
            model.useCheckpoint = checkpoint
            var rng = RNG(seed: 5)
            let out = model.forward(batch, training: true, rng: &rng, scores: true)
            #expect(model.lastEncoderRows!.rows.rows == 0)
            let grads = ParameterSlab(layout: model.layout)
            model.backward(into: grads)
            #expect(out.loss!.isFinite && out.scores!.data == [0, 0])
            #expect(!grads.buffer.contains { !$0.isFinite })
        }
        let s = T5Stepper(model: model, questions: 1, passages: 2, passageLength: 4, inputIds: batch.inputIds,
                          attentionMask: batch.attentionMask, maxLength: 3)
        var logits = [Float](repeating: 0, count: model.config.vocabSize)
        try [Int32(0)].withUnsafeBufferPointer { try s.step($0, logits: &logits) }
        #expect(logits.allSatisfy { $0.isFinite })
    }
}

extension T5EncoderRowsTests {
    /// Training passes (dropout 0.1, every mask drawn over the kept rows) against finite
    /// differences of the loss under the same draws: the masks forward wrote are the ones backward
    /// reads, in the packed layout. Gated-GELU only (ReLU's kinks defeat finite differences).
    @Test(arguments: [false, true])
    func trainingGradientsMatchFiniteDifferences(checkpoint: Bool) {
        let (model, _) = tinyModel(.gatedGELU, tied: false)
        model.encoderRowAlignment = 1
        model.useCheckpoint = checkpoint
        let batch = Self.batch()
        func loss() -> Double {
            var rng = RNG(seed: 31)
            return Double(model.forward(batch, training: true, rng: &rng).loss!)
        }
        _ = loss()
        #expect(model.lastEncoderRows!.rows.rows == 18)
        let grads = ParameterSlab(layout: model.layout)
        model.backward(into: grads)
        var rng = RNG(seed: 37)
        for e in model.layout.entries where e.name.hasPrefix("encoder.") || e.name == "shared.weight" {
            let picks = Array(Set([0, e.count - 1, Int(rng.next() % UInt64(e.count)), Int(rng.next() % UInt64(e.count))])).sorted()
            let p = model.params[e.name]
            let input = picks.map { p[$0] }
            let report = gradCheck("\(e.name)", input: input, analytic: picks.map { grads[e.name][$0] }, eps: 1e-2, tolerance: 2e-2,
                                   floor: 5e-3) { x in
                for (i, k) in picks.enumerated() { p[k] = x[i] }
                defer { for (i, k) in picks.enumerated() { p[k] = input[i] } }
                return loss()
            }
            #expect(report.ok, "checkpoint \(checkpoint): \(report)")
        }
    }
}
