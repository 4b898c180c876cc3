// Generation: the DecodingStepper protocol, greedy decoding, and the checks shared with beam search
// (BeamSearch.swift), generic over any incremental decoder.
import Tensor

/// Incremental decoding over `rows` sequences (rows = questions × beams), with a cache.
public protocol DecodingStepper {
    /// V, the width of a logits row.
    var vocabSize: Int { get }
    /// Number of rows this stepper currently holds.
    var rows: Int { get }
    /// Feeds one token per row (tokens.count == rows) at the next position and writes the
    /// next-token logits, (rows, V) row-major, into `logits` (capacity ≥ rows·V).
    mutating func step(_ tokens: UnsafeBufferPointer<Int32>, logits: UnsafeMutablePointer<Float>) throws
    /// Reorders the cache: new row r takes old row source[r] (beam search; source.count == rows;
    /// every source row belongs to the same question as r).
    mutating func reorder(_ source: UnsafeBufferPointer<Int32>)
}

/// A decoding request that cannot run: names the argument, what was expected and what was found.
public struct GenerationError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Greedy and beam-search decoding, numerically as transformers' `generate` (transformers < 5).
///
/// Both count `maxLength` with the start token, as transformers' `max_length` does for
/// encoder-decoders: at most `maxLength − 1` tokens are generated.
public enum Generation {
    /// Greedy decoding of `questions` sequences (stepper.rows == questions): the first fed token is
    /// `start`; stops a row at `eos`; returns per question the generated ids (with the start token
    /// first, as transformers' `generate` returns them; no padding).
    ///
    /// As FiD's `generate`: each step takes the first maximum of the logits (`VocabKernels.argmax`);
    /// decoding ends when every row has produced `eos` or the rows reach `maxLength`. A finished
    /// row is fed its `eos` again (transformers feeds pad) and its logits are ignored.
    public static func greedy<S: DecodingStepper>(
        _ stepper: inout S, questions: Int, start: Int32, eos: Int32, maxLength: Int
    ) throws -> [[Int32]] {
        let v = stepper.vocabSize
        try check(stepper, rows: questions, "questions", vocab: v, maxLength: maxLength)
        try checkToken(start, "start", vocab: v)
        try checkToken(eos, "eos", vocab: v)
        if questions == 0 { return [] }
        var out = [[Int32]](repeating: [start], count: questions)
        var done = [Bool](repeating: false, count: questions)
        var tokens = [Int32](repeating: start, count: questions)
        var next = [Int32](repeating: 0, count: questions)
        let logits = UnsafeMutablePointer<Float>.allocate(capacity: questions * v)
        defer { logits.deallocate() }
        var length = 1  // tokens per row so far, the start token included
        var open = questions
        while length < maxLength && open > 0 {
            try tokens.withUnsafeBufferPointer { try stepper.step($0, logits: logits) }
            next.withUnsafeMutableBufferPointer {
                VocabKernels.argmax(logits, rows: questions, cols: v, ld: v, into: $0.baseAddress!)
            }
            for q in 0..<questions where !done[q] {
                out[q].append(next[q])
                tokens[q] = next[q]
                if next[q] == eos {
                    done[q] = true
                    open -= 1
                }
            }
            length += 1
        }
        return out
    }

    /// Throws unless the stepper holds `rows` rows of a usable vocabulary and `maxLength` allows a step.
    static func check<S: DecodingStepper>(
        _ stepper: S, rows: Int, _ what: String, vocab: Int, maxLength: Int
    ) throws {
        guard rows >= 0, stepper.rows == rows else {
            throw GenerationError(
                "decoding: the stepper holds \(stepper.rows) rows, expected \(rows) (\(what)); build the stepper for the same batch")
        }
        guard vocab >= 2 else {
            throw GenerationError("decoding: vocabulary size \(vocab), expected at least 2; check the model's vocab_size")
        }
        guard maxLength >= 2 else {
            throw GenerationError(
                "decoding: max length \(maxLength), expected at least 2 (it counts the start token); raise the max length param")
        }
    }

    static func checkToken(_ id: Int32, _ name: String, vocab: Int) throws {
        guard id >= 0 && Int(id) < vocab else {
            throw GenerationError(
                "decoding: \(name) token id \(id) is outside the vocabulary 0..<\(vocab); check the model config's \(name) id")
        }
    }
}
