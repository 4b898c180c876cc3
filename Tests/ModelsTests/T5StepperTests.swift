// T5StepperTests: cached decoding equals the full forward position by position, greedy ids equal
// transformers' generate, and reordering the cache moves whole beams, under both cross-attention plans.
import Foundation
import Testing
import TestSupport
@testable import Models
@testable import Tensor

func stepper(_ f: T5Fixture, beams: Int = 1, maxLength: Int, plan: T5CrossAttentionPlan? = nil) -> T5Stepper {
    T5Stepper(model: f.model, questions: f.batch.questions, passages: f.batch.passages, passageLength: f.batch.passageLength,
              inputIds: f.batch.inputIds, attentionMask: f.batch.attentionMask, beams: beams, maxLength: maxLength, crossPlan: plan)
}

/// Both ways a step's cross-attention reads the memory.
let crossPlans: [T5CrossAttentionPlan] = [.cachedKeys, .absorbed]

/// Checks generated rows against a fixture's (B, W) ids, which pad finished rows with 0.
func expectIds(_ ids: [[Int32]], _ expected: Tensor, _ what: String) {
    let width = expected.shape[1]
    #expect(ids.count == expected.shape[0], "\(what): \(ids.count) rows")
    for (b, row) in ids.enumerated() {
        let want = expected.data[(b * width)..<((b + 1) * width)].map { Int32($0) }
        let padded = row + [Int32](repeating: 0, count: max(0, width - row.count))
        #expect(padded == want, "\(what) question \(b): \(row) expected \(want)")
    }
}

struct T5StepperTests {
    @Test(arguments: ["v10", "v11", "tf3bias"], crossPlans)
    func cachedStepsEqualTheFullForward(_ variant: String, _ plan: T5CrossAttentionPlan) throws {
        let f = try T5Fixture(variant)
        let full = f.model.forward(f.batch).logits  // (B, T, V)
        let B = f.batch.questions, T = f.batch.targetLength, V = f.model.config.vocabSize
        let s = stepper(f, maxLength: T, plan: plan)
        #expect(s.crossPlan == plan)
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

    @Test(arguments: ["v10", "v11", "tf3bias"], crossPlans)
    func greedyIdsMatchGenerate(_ variant: String, _ plan: T5CrossAttentionPlan) throws {
        let f = try T5Fixture(variant)
        let expected = try f.tensor("greedy_ids")
        var s = stepper(f, maxLength: 6, plan: plan)
        let ids = try Generation.greedy(&s, questions: f.batch.questions, start: 0, eos: 1, maxLength: 6)
        expectIds(ids, expected, "greedy")
    }

    @Test(arguments: ["v10", "v11", "tf3bias"], crossPlans)
    func beamIdsMatchGenerate(_ variant: String, _ plan: T5CrossAttentionPlan) throws {
        let f = try T5Fixture(variant)
        var s = stepper(f, beams: 3, maxLength: 6, plan: plan)
        let ids = try Generation.beamSearch(&s, questions: f.batch.questions, numBeams: 3, start: 0, eos: 1, pad: 0, maxLength: 6,
                                            lengthPenalty: 1)
        expectIds(ids, try f.tensor("beam_ids"), "beam")
    }

    @Test(arguments: crossPlans)
    func reorderMovesWholeBeams(_ plan: T5CrossAttentionPlan) throws {
        let f = try T5Fixture("v11")
        let V = f.model.config.vocabSize, B = f.batch.questions
        // Beam rows q·2 + b feed sequences a, b; after two steps the beams swap.
        let seqA: [Int32] = [0, 5, 9], seqB: [Int32] = [0, 7, 3]
        let s = stepper(f, beams: 2, maxLength: 4, plan: plan)
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
        let fresh = stepper(f, beams: 2, maxLength: 4, plan: plan)
        var want = [Float](repeating: 0, count: 2 * B * V)
        for t in 0..<3 {
            let tokens = (0..<B).flatMap { _ in [seqB[t], seqA[t]] }
            try tokens.withUnsafeBufferPointer { try fresh.step($0, logits: &want) }
        }
        #expect(logits == want)
    }
}

struct T5StepperScoreTests {
    /// The stepper's first step gives FiD's passage scores (fid-spec §3.5: the first decoding
    /// step's cross-attention logits), as the fixtures' transformers/FiD values, for any beam count.
    @Test(arguments: ["v10", "v11", "tf3bias"], crossPlans)
    func firstStepScoresMatchFiD(_ variant: String, _ plan: T5CrossAttentionPlan) throws {
        let f = try T5Fixture(variant)
        for beams in [1, 3] {
            let s = stepper(f, beams: beams, maxLength: 4, plan: plan)
            s.recordScores = true
            let B = f.batch.questions, V = f.model.config.vocabSize
            var logits = [Float](repeating: 0, count: B * beams * V)
            try [Int32](repeating: 0, count: B * beams).withUnsafeBufferPointer { try s.step($0, logits: &logits) }
            let r = compare("stepper scores, \(beams) beams", try #require(s.scores), try f.tensor("scores"), rtol: 1e-4, atol: 1e-5)
            #expect(r.ok, "\(r)")
        }
        // Without recordScores there are none.
        let plain = stepper(f, maxLength: 2, plan: plan)
        var logits = [Float](repeating: 0, count: f.batch.questions * f.model.config.vocabSize)
        try [Int32](repeating: 0, count: f.batch.questions).withUnsafeBufferPointer { try plain.step($0, logits: &logits) }
        #expect(plain.scores == nil)
    }
}

struct T5CrossAttentionPlanTests {
    /// Greedy decoding (FiD's 50-token bound included) absorbs the key and value weights; beams
    /// whose steps add up past 2·Dh compute the keys and values once; a stepper without a plan
    /// takes the chosen one.
    @Test func choice() throws {
        #expect(T5CrossAttentionPlan.choose(beams: 1, maxLength: 50, headDim: 64) == .absorbed)
        #expect(T5CrossAttentionPlan.choose(beams: 2, maxLength: 64, headDim: 64) == .absorbed)
        #expect(T5CrossAttentionPlan.choose(beams: 3, maxLength: 50, headDim: 64) == .cachedKeys)
        #expect(T5CrossAttentionPlan.choose(beams: 1, maxLength: 129, headDim: 64) == .cachedKeys)
        let f = try T5Fixture("v11")
        let Dh = f.model.config.dKV
        #expect(stepper(f, maxLength: 2 * Dh).crossPlan == .absorbed)
        #expect(stepper(f, beams: 2, maxLength: Dh + 1).crossPlan == .cachedKeys)
    }
}
