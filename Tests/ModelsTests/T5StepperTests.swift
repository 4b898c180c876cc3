// T5StepperTests: cached decoding equals the full forward position by position, greedy ids equal
// transformers' generate, and reordering the cache moves whole beams.
import Foundation
import Testing
import TestSupport
@testable import Models
@testable import Tensor

func stepper(_ f: T5Fixture, beams: Int = 1, maxLength: Int) -> T5Stepper {
    T5Stepper(model: f.model, questions: f.batch.questions, passages: f.batch.passages, passageLength: f.batch.passageLength,
              inputIds: f.batch.inputIds, attentionMask: f.batch.attentionMask, beams: beams, maxLength: maxLength)
}

/// Greedy decoding as transformers does it: feed start, take the argmax, stop a row at eos;
/// finished rows are padded with `pad`. A private twin until `Generation.greedy` is merged.
func greedyLoop(_ s: T5Stepper, start: Int32, eos: Int32, pad: Int32, maxLength: Int) throws -> [[Int32]] {
    var out = (0..<s.rows).map { _ in [start] }
    var done = [Bool](repeating: false, count: s.rows)
    var logits = [Float](repeating: 0, count: s.rows * s.vocabSize)
    while out[0].count < maxLength && done.contains(false) {
        let tokens = out.map { $0.last! }
        try tokens.withUnsafeBufferPointer { try s.step($0, logits: &logits) }
        for r in 0..<s.rows {
            if done[r] { out[r].append(pad); continue }
            let row = logits[(r * s.vocabSize)..<((r + 1) * s.vocabSize)]
            let next = Int32(row.indices.max(by: { row[$0] < row[$1] })! - r * s.vocabSize)
            out[r].append(next)
            if next == eos { done[r] = true }
        }
    }
    return out
}

struct T5StepperTests {
    @Test(arguments: ["v10", "v11", "tf3bias"])
    func cachedStepsEqualTheFullForward(_ variant: String) throws {
        let f = try T5Fixture(variant)
        let full = f.model.forward(f.batch).logits  // (B, T, V)
        let B = f.batch.questions, T = f.batch.targetLength, V = f.model.config.vocabSize
        let s = stepper(f, maxLength: T)
        var logits = [Float](repeating: 0, count: B * V)
        for t in 0..<T {
            let tokens = (0..<B).map { f.batch.decoderInputIds[$0 * T + t] }
            try tokens.withUnsafeBufferPointer { try s.step($0, logits: &logits) }
            var expected: [Float] = []
            for b in 0..<B {
                let lo = (b * T + t) * V
                expected += full.data[lo..<(lo + V)]
            }
            let r = compare("step \(t)", logits, expected, rtol: 1e-4, atol: 1e-5)
            #expect(r.ok, "\(r)")
        }
        #expect(throws: T5DecodingError.self) {
            try [Int32](repeating: 0, count: B).withUnsafeBufferPointer { try s.step($0, logits: &logits) }
        }
    }

    @Test(arguments: ["v10", "v11", "tf3bias"])
    func greedyIdsMatchGenerate(_ variant: String) throws {
        let f = try T5Fixture(variant)
        let expected = try f.tensor("greedy_ids")
        let maxLength = 6
        let ids = try greedyLoop(stepper(f, maxLength: maxLength), start: 0, eos: 1, pad: 0, maxLength: maxLength)
        let width = expected.shape[1]
        for b in 0..<expected.shape[0] {
            let want = expected.data[(b * width)..<((b + 1) * width)].map { Int32($0) }
            #expect(Array(ids[b].prefix(width)) == want, "question \(b)")
        }
    }

    @Test func reorderMovesWholeBeams() throws {
        let f = try T5Fixture("v11")
        let V = f.model.config.vocabSize, B = f.batch.questions
        // Beam rows q·2 + b feed sequences a, b; after two steps the beams swap.
        let seqA: [Int32] = [0, 5, 9], seqB: [Int32] = [0, 7, 3]
        let s = stepper(f, beams: 2, maxLength: 4)
        var logits = [Float](repeating: 0, count: 2 * B * V)
        for t in 0..<2 {
            let tokens = (0..<B).flatMap { _ in [seqA[t], seqB[t]] }
            try tokens.withUnsafeBufferPointer { try s.step($0, logits: &logits) }
        }
        let swap = (0..<B).flatMap { q in [Int32(2 * q + 1), Int32(2 * q)] }
        swap.withUnsafeBufferPointer { s.reorder($0) }
        let third = (0..<B).flatMap { _ in [seqB[2], seqA[2]] }
        try third.withUnsafeBufferPointer { try s.step($0, logits: &logits) }
        // A fresh stepper fed the swapped sequences from the start.
        let fresh = stepper(f, beams: 2, maxLength: 4)
        var want = [Float](repeating: 0, count: 2 * B * V)
        for t in 0..<3 {
            let tokens = (0..<B).flatMap { _ in [seqB[t], seqA[t]] }
            try tokens.withUnsafeBufferPointer { try fresh.step($0, logits: &want) }
        }
        #expect(logits == want)
    }
}
