// FiDExample: one question of FiD's data format (fid-spec §2.1), its passages, and its JSON round trip.
import Formats

/// One passage of an example's `ctxs`.
public struct FiDPassage: Sendable {
    public var title: String
    public var text: String
    /// `score` as a number (FiD's retrieval writes it as a string, `float(score)` reads both); nil when absent.
    public var score: Double?
    /// The passage object as read, unknown fields included, for writing it back.
    public var raw: JSONNode
    /// `text` was null (DPR's "no doc in db"), read as "" under `FiDExample.Passages.textOrNull`:
    /// such a passage never holds an answer.
    public var textMissing = false

    public init(title: String, text: String, score: Double? = nil, raw: JSONNode? = nil) {
        self.title = title
        self.text = text
        self.score = score
        if let raw {
            self.raw = raw
        } else {
            // Built only when no object was read: a score's Python repr costs as much as parsing it.
            var pairs: [(String, JSONNode)] = [("title", .string(title)), ("text", .string(text))]
            if let score { pairs.append(("score", .double(score))) }
            self.raw = .object(pairs)
        }
    }

    /// Whether `score` is written as a JSON number, as `score` writes the reader's; a retrieval
    /// writes its own as a string (FiD's `str(score)`). In one example, passages past the reader's
    /// `n_context` keep the retrieval's strings (or no score): two scales that must not be ranked together.
    public var hasReaderScore: Bool {
        switch raw["score"] {
        case .integer?, .number?: return true
        default: return false
        }
    }
}

extension FiDPassage {
    /// The passage's stored answer flag: `hasanswer` (fidq's and FiD's retrieval) or DPR's
    /// `has_answer`; nil when it has none.
    public var storedAnswerFlag: Bool? {
        for key in ["hasanswer", "has_answer"] { if case .bool(let b)? = raw[key] { return b } }
        return nil
    }

    /// The positions of the passages a reader scored, when `ctxs` mixes them with passages it did
    /// not read (a retrieval's string score, or none); nil when it does not.
    public static func readerScoredWhenMixed(_ ctxs: [FiDPassage]) -> [Int]? {
        let read = ctxs.indices.filter { ctxs[$0].hasReaderScore }
        return read.isEmpty || read.count == ctxs.count ? nil : read
    }
}

/// One example of FiD's JSON / JSON Lines data: `{id?, question, target?, answers?, ctxs: [{title, text, score?, id?, hasanswer?}]}`.
///
/// `id` is the example's index in its file when the file gives none (FiD's `load_data`). `ctxs`
/// are in file order; `FiDFormat` sorts them. Fields fidq does not read are kept in `raw` and
/// written back unchanged (`json(passages:)`).
public struct FiDExample: Sendable {
    /// Position in the file (0-based), whatever shard it belongs to.
    public var index: Int
    /// `id` as written (string or number), or the index when absent.
    public var id: JSONNode
    public var question: String
    public var target: String?
    public var answers: [String]
    public var ctxs: [FiDPassage]
    /// The example object as read.
    public var raw: JSONNode

    /// `id` as text: a string as is, a number as written (`final_output.txt`'s first column).
    public var idText: String {
        switch id {
        case .string(let s): return s
        case .integer(let n): return String(n)
        case .number(let t): return t
        default: return PyJSON.compact(id)
        }
    }

    public init(index: Int, id: JSONNode? = nil, question: String, target: String? = nil, answers: [String] = [],
                ctxs: [FiDPassage] = []) {
        self.index = index
        self.id = id ?? .integer(index)
        self.question = question
        self.target = target
        self.answers = answers
        self.ctxs = ctxs
        var pairs: [(String, JSONNode)] = []
        if let id { pairs.append(("id", id)) }
        pairs.append(("question", .string(question)))
        if let target { pairs.append(("target", .string(target))) }
        pairs.append(("answers", .array(answers.map(JSONNode.string))))
        pairs.append(("ctxs", .array(ctxs.map(\.raw))))
        raw = .object(pairs)
    }

    /// Reads example `index` of `file` from its parsed JSON.
    /// - Throws: `FormatError` naming the file, `[index]` (or the line) and the field: not an object,
    ///   no `question`, a field of the wrong type, a passage without `title`/`text`, a `score`
    ///   that is not a number.
    /// What a passage must hold.
    public enum Passages: Sendable {
        /// A string `title` and `text`: every reader builds "title: T context: P" from both.
        case titleAndText
        /// What FiD's `evaluate_retrieved_passages.py` reads: `text` alone, null counting as a
        /// passage without an answer; `title` is not read (missing, null or any value).
        case textOrNull
    }

    public init(_ node: JSONNode, index: Int, file: String, where place: String? = nil, passages rule: Passages = .titleAndText) throws {
        let at = place ?? "[\(index)]"
        func bad(_ field: String, _ message: String, hint: String? = nil) -> FormatError {
            FormatError(file: file, location: at + (field.isEmpty ? "" : "." + field), message, hint: hint)
        }
        guard case .object(let pairs) = node else {
            throw bad("", "expected an example object {question, answers, ctxs, …}, found \(node.kindName)",
                      hint: "FiD data is a JSON list (or JSON Lines) of such objects")
        }
        var seen = Set<[UInt8]>()  // bytes, as Python compares keys: Swift's `==` joins "é" and "e\u{301}"
        for (key, _) in pairs where !seen.insert(Array(key.utf8)).inserted { throw bad(key, "appears twice") }
        self.index = index
        raw = node
        id = node["id"] ?? .integer(index)
        switch id {
        case .string, .integer, .number: break
        default: throw bad("id", "expected a string or a number, found \(id.kindName)")
        }
        guard let q = node["question"] else {
            throw bad("question", "missing", hint: "every FiD example needs a question")
        }
        guard case .string(let qs) = q else { throw bad("question", "expected a string, found \(q.kindName)") }
        question = qs
        switch node["target"] {
        case nil, .null?: target = nil
        case .string(let t)?: target = t
        case let other?: throw bad("target", "expected a string, found \(other.kindName)")
        }
        answers = []
        switch node["answers"] {
        case nil, .null?: break
        case .array(let items)?:
            for (i, a) in items.enumerated() {
                guard case .string(let s) = a else { throw bad("answers[\(i)]", "expected a string, found \(a.kindName)") }
                answers.append(s)
            }
        case let other?: throw bad("answers", "expected a list of strings, found \(other.kindName)")
        }
        ctxs = []
        switch node["ctxs"] {
        case nil, .null?: break
        case .array(let items)?:
            ctxs.reserveCapacity(items.count)
            for (j, c) in items.enumerated() {
                let field = "ctxs[\(j)]"
                guard case .object(let fields) = c else { throw bad(field, "expected a passage object {title, text, score?}, found \(c.kindName)") }
                // A key twice: Python's json (FiD) takes the last value, a first-match lookup the
                // first; a few keys each, so pairwise without a set per passage.
                for i in fields.indices where fields[..<i].contains(where: { $0.0.utf8.elementsEqual(fields[i].0.utf8) }) {
                    throw bad(field + "." + fields[i].0, "appears twice", hint: "Python's json keeps the last value; write the key once")
                }
                // FiD reads every passage as "title: T context: P", so both are required, as in FiD.
                let passageHint = "every passage has a title and a text, as DPR's do; use \"\" for a passage without a title"
                let title: String, text: String
                var textMissing = false
                switch (c["title"], rule) {
                case (.string(let t)?, _): title = t
                case (_, .textOrNull): title = ""  // never read there, whatever it holds
                default:
                    throw bad(field + ".title", c["title"] == nil ? "missing" : "expected a string, found \(c["title"]!.kindName)", hint: passageHint)
                }
                switch (c["text"], rule) {
                case (.string(let t)?, _): text = t
                case (.null?, .textOrNull): (text, textMissing) = ("", true)
                default:
                    throw bad(field + ".text", c["text"] == nil ? "missing" : "expected a string, found \(c["text"]!.kindName)",
                              hint: rule == .textOrNull ? "every passage has a text (null counts as a passage without the answer, as in FiD's evaluation)" : passageHint)
                }
                var score: Double? = nil
                switch c["score"] {
                case nil, .null?: break
                case .integer(let n)?: score = Double(n)
                case .number(let t)?: score = Double(t)
                case .string(let s)?:
                    // FiD's passage_retrieval.py writes scores as strings; FiD reads them with float().
                    guard let d = Double(s.trimmingCharacters(in: " \t\n")) else {
                        throw bad(field + ".score", "expected a number, found the string \"\(s.prefix(40))\"")
                    }
                    score = d
                case let other?: throw bad(field + ".score", "expected a number, found \(other.kindName)")
                }
                var passage = FiDPassage(title: title, text: text, score: score, raw: c)
                passage.textMissing = textMissing
                ctxs.append(passage)
            }
        case let other?: throw bad("ctxs", "expected a list of passages, found \(other.kindName)")
        }
    }

    /// The example as FiD writes it back (`dataset_wscores.json`): every field as read, `id`
    /// added when the file had none (FiD's `load_data` adds it), and `ctxs` replaced by
    /// `passages` as read (`raw`), in the given order, the first `scores.count` with their
    /// `score` set (added when absent) to `scores` (Python floats, as FiD writes them).
    public func json(passages: [FiDPassage], scores: [Double] = []) -> JSONNode {
        guard case .object(var pairs) = raw else { return raw }
        let ctxs: [JSONNode] = passages.enumerated().map { j, p in
            guard case .object(var fields) = p.raw, j < scores.count else { return p.raw }
            let value = JSONNode.double(scores[j])
            if let i = fields.firstIndex(where: { $0.0 == "score" }) { fields[i].1 = value } else { fields.append(("score", value)) }
            return .object(fields)
        }
        if let i = pairs.firstIndex(where: { $0.0 == "ctxs" }) { pairs[i].1 = .array(ctxs) } else { pairs.append(("ctxs", .array(ctxs))) }
        if !pairs.contains(where: { $0.0 == "id" }) { pairs.append(("id", id)) }
        return .object(pairs)
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        let s = Set(set)
        var sub = Substring(self)
        while let f = sub.first, s.contains(f) { sub.removeFirst() }
        while let l = sub.last, s.contains(l) { sub.removeLast() }
        return String(sub)
    }
}
