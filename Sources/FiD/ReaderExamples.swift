// ReaderExamples: FiD examples read for training (JSON list or JSONL), FiD's formatting into a
// T5Batch, and FiD's exact match — the reader trainer's data path (fid-spec §2, §4.1).
//
// Interim: the branch `fidscore` owns the streaming FiD data reader, the collator and EM for the
// `score` job; once it lands, ReaderTrainable should take its types and this file goes away.
import Foundation
import Models
import Tensor
import Tokenizers

/// One FiD example as the trainer needs it.
public struct ReaderExample: Sendable {
    public var id: String
    public var question: String
    public var target: String?
    public var answers: [String]
    /// (title, text, score) in file order.
    public var passages: [(title: String, text: String, score: Double?)]
}

/// A data file that is not usable FiD data: the file, the example index, the field and a hint.
public struct ReaderDataError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String
    public let hint: String?

    public var description: String { "\(path): \(message)" + (hint.map { " (hint: \($0))" } ?? "") }
}

public enum ReaderExamples {
    /// Reads a FiD `.json` list or `.jsonl` file (fid-spec §2.1); `id` defaults to the index.
    ///
    /// - Parameters:
    ///   - needTargets: every example needs `target` or a non-empty `answers` (training);
    ///     otherwise `answers` must be non-empty (exact match needs them).
    /// - Throws: `ReaderDataError` naming the file, the index (or line) and the field.
    public static func load(_ path: String, needTargets: Bool) throws -> [ReaderExample] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ReaderDataError(path: path, message: "cannot read (\(error.localizedDescription))", hint: nil)
        }
        var objects: [(where: String, value: Any)] = []
        let text = data.prefix(64).drop { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
        if text.first == UInt8(ascii: "[") {
            guard let list = try? JSONSerialization.jsonObject(with: data) as? [Any] else {
                throw ReaderDataError(path: path, message: "is not a JSON list of examples", hint: "FiD data: [{\"question\": …, \"answers\": […], \"ctxs\": […]}, …]")
            }
            objects = list.enumerated().map { ("index \($0.offset)", $0.element) }
        } else {
            var line = 0
            for raw in data.split(separator: 0x0A, omittingEmptySubsequences: false) {
                line += 1
                if raw.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { continue }
                guard let v = try? JSONSerialization.jsonObject(with: Data(raw)) else {
                    throw ReaderDataError(path: path, message: "line \(line) is not a JSON object",
                                          hint: "FiD data is a JSON list (.json) or one object per line (.jsonl)")
                }
                objects.append(("line \(line)", v))
            }
        }
        if objects.isEmpty { throw ReaderDataError(path: path, message: "holds no examples", hint: nil) }
        return try objects.enumerated().map { k, item in
            func bad(_ m: String, _ hint: String? = nil) -> ReaderDataError {
                ReaderDataError(path: path, message: "example at \(item.where): \(m)", hint: hint)
            }
            guard let o = item.value as? [String: Any] else { throw bad("is not an object") }
            guard let q = o["question"] as? String else { throw bad("has no string 'question'") }
            let answers = o["answers"] as? [String] ?? []
            let target = o["target"] as? String
            if needTargets && target == nil && answers.isEmpty {
                throw bad("has neither 'target' nor non-empty 'answers'", "training needs a target to learn")
            }
            if !needTargets && answers.isEmpty {
                throw bad("has no 'answers' (a non-empty list of strings)", "exact match compares predictions with answers")
            }
            guard let ctxs = o["ctxs"] as? [[String: Any]] else { throw bad("has no 'ctxs' list of passages") }
            let passages = try ctxs.enumerated().map { j, c -> (String, String, Double?) in
                guard let t = c["text"] as? String else { throw bad("ctxs[\(j)] has no string 'text'") }
                let score: Double? = (c["score"] as? NSNumber)?.doubleValue ?? (c["score"] as? String).flatMap(Double.init)
                return (c["title"] as? String ?? "", t, score)
            }
            let id = (o["id"] as? String) ?? (o["id"] as? NSNumber).map { "\($0)" } ?? "\(k)"
            return ReaderExample(id: id, question: q, target: target, answers: answers, passages: passages)
        }
    }

    /// The first `nContext` passages of FiD's input, `question: Q title: T context: P`, sorted by
    /// score (stable, descending) when every passage has one (fid-spec §2.3).
    public static func encoderStrings(_ e: ReaderExample, nContext: Int) -> [String] {
        var ps = e.passages
        if !ps.isEmpty, ps.allSatisfy({ $0.score != nil }) {
            ps = ps.enumerated().sorted { a, b in
                a.element.score! != b.element.score! ? a.element.score! > b.element.score! : a.offset < b.offset
            }.map(\.element)
        }
        return ps.prefix(nContext).map { "question: \(e.question) title: \($0.title) context: \($0.text)" }
    }

    /// FiD's exact match (fid-spec §4.1): normalised prediction equals some normalised answer.
    public static func exactMatch(_ prediction: String, _ answers: [String]) -> Bool {
        let p = normalize(prediction)
        return answers.contains { normalize($0) == p }
    }

    /// Lower-case, drop ASCII punctuation, drop the words a/an/the, collapse whitespace.
    public static func normalize(_ s: String) -> String {
        let punctuation = Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
        let kept = String(s.lowercased().filter { !punctuation.contains($0) })
        return kept.split(whereSeparator: { $0.isWhitespace }).filter { $0 != "a" && $0 != "an" && $0 != "the" }.joined(separator: " ")
    }
}

/// Examples tokenised once: each example's P·L encoder ids and mask, as FiD's collator pads them.
struct EncodedExamples {
    let examples: [ReaderExample]
    /// Per example (P·L).
    let ids: [[Int32]]
    let mask: [[Float]]
    let P: Int, L: Int

    /// - Throws: `ReaderDataError` for an example with fewer than `nContext` passages.
    init(_ examples: [ReaderExample], path: String, tokenizer: any Tokenizer, nContext: Int, textMaxlength: Int, threads: Int) throws {
        P = nContext
        L = textMaxlength
        var strings: [String] = []
        for (k, e) in examples.enumerated() {
            let s = ReaderExamples.encoderStrings(e, nContext: nContext)
            guard s.count == nContext else {
                throw ReaderDataError(path: path, message: "example \(k) (id \(e.id)) has \(s.count) passages, n_context is \(nContext)",
                                      hint: "lower n_context, or give every example at least n_context passages")
            }
            strings += s
        }
        // FiD (transformers 3.0.2) adds no </s> to passages, truncates and pads to text_maxlength.
        let enc = tokenizer.encodeBatch(strings, maxLength: L, addSpecialTokens: false, padToMaxLength: true, threads: threads)
        let row = P * L
        ids = (0..<examples.count).map { Array(enc.ids[($0 * row)..<(($0 + 1) * row)]) }
        mask = (0..<examples.count).map { k in enc.mask[(k * row)..<((k + 1) * row)].map { Float($0) } }
        self.examples = examples
    }
}
