// FiDPreprocess: FiD's src/preprocess.py in Swift — NQ-open and TriviaQA plus FiD's lists into FiD JSON.
import Formats
import Foundation

/// Builds `NQ/{train,dev,test}.json` and `TQA/{train,dev,test}.json` exactly as FiD's
/// `src/preprocess.py` does (ref/fid-spec.md §1.8):
/// - `*.idx.json` are positions in the original question files; NQ train and dev both come from
///   `NQ-open.train.jsonl`, NQ test from `NQ-open.dev.jsonl`; TQA train and dev from
///   `unfiltered-web-train.json`, TQA test from `unfiltered-web-dev.json`.
/// - `*_passages/<split>.json` map a key to passage ids: NQ keys are the position in the idx list
///   (`"0"`, `"1"`, …), TQA keys the TriviaQA `QuestionId`.
/// - NQ entry `{question, answers, ctxs}`; TQA entry `{question, answers: Aliases, target: Value,
///   ctxs}` with an all-upper-case target title-cased; ctx `{id, title, text}`.
/// - Output is written as `json.dump(…, indent=4)` writes it.
public enum FiDPreprocess {
    /// Where each upstream file is.
    public struct Inputs {
        public var passages: URL
        public var nqTrain: URL?, nqDev: URL?
        public var tqaTrain: URL?, tqaDev: URL?
        /// Keyed `NQ.train`, `TQA.test`, …
        public var idx: [String: URL] = [:]
        /// Keyed `nq_passages/train`, `tqa_passages/dev`, …
        public var lists: [String: URL] = [:]
    }

    static let splits = ["train", "dev", "test"]

    /// Finds the upstream files by name anywhere under `folder` (the layout inside FiD's tarballs
    /// is not documented, so no fixed depth is assumed).
    public static func locate(in folder: URL, passages: URL, nq: Bool, tqa: Bool) throws -> Inputs {
        var found: [String: URL] = [:]
        if let e = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil) {
            for case let url as URL in e {
                var st = stat()
                guard lstat(url.path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
                let name = url.lastPathComponent
                let parent = url.deletingLastPathComponent().lastPathComponent
                for key in [name, parent + "/" + name] where found[key] == nil { found[key] = url }
            }
        }
        func need(_ key: String) throws -> URL {
            guard let url = found[key] else {
                throw FetchError.format(file: folder.path, field: key, expected: "a file in the downloads", found: "none")
            }
            return url
        }
        var inputs = Inputs(passages: passages)
        if nq {
            inputs.nqTrain = try need("NQ-open.train.jsonl")
            inputs.nqDev = try need("NQ-open.dev.jsonl")
        }
        if tqa {
            inputs.tqaTrain = try need("unfiltered-web-train.json")
            inputs.tqaDev = try need("unfiltered-web-dev.json")
        }
        for (on, set, lists) in [(nq, "NQ", "nq_passages"), (tqa, "TQA", "tqa_passages")] where on {
            for split in splits {
                inputs.idx["\(set).\(split)"] = try need("\(set).\(split).idx.json")
                inputs.lists["\(lists)/\(split)"] = try need("\(lists)/\(split).json")
            }
        }
        return inputs
    }

    /// Writes the FiD JSON files under `out`; returns the example count per file (`NQ/train`, …).
    @discardableResult
    public static func run(
        _ inputs: Inputs, out: URL, progress: (FetchProgress) -> Void = { _ in },
        isCancelled: () -> Bool = { false }, log: (String) -> Void = { _ in }
    ) throws -> [String: Int] {
        log("preprocess: indexing \(inputs.passages.path)")
        let store = try PassageStore(inputs.passages, isCancelled: isCancelled)
        log("preprocess: \(store.count) passages (\(store.malformed) malformed rows skipped)")
        var counts: [String: Int] = [:]
        if let trainURL = inputs.nqTrain, let devURL = inputs.nqDev {
            let train = try loadNQ(trainURL), dev = try loadNQ(devURL)
            for (split, data, file) in [("train", train, trainURL), ("dev", train, trainURL), ("test", dev, devURL)] {
                counts["NQ/\(split)"] = try writeSplit(
                    "NQ", split, inputs: inputs, listsName: "nq_passages", count: data.count, source: file, store: store,
                    out: out, progress: progress, isCancelled: isCancelled
                ) { i, k in
                    (String(i), [("question", .string(data[k].question)), ("answers", .array(data[k].answer.map(JSONNode.string)))])
                }
            }
        }
        if let trainURL = inputs.tqaTrain, let devURL = inputs.tqaDev {
            let train = try loadTQA(trainURL), dev = try loadTQA(devURL)
            for (split, data, file) in [("train", train, trainURL), ("dev", train, trainURL), ("test", dev, devURL)] {
                counts["TQA/\(split)"] = try writeSplit(
                    "TQA", split, inputs: inputs, listsName: "tqa_passages", count: data.count, source: file, store: store,
                    out: out, progress: progress, isCancelled: isCancelled
                ) { _, k in
                    let ex = data[k]
                    let target = pyIsUpper(ex.Answer.Value) ? pyTitle(ex.Answer.Value) : ex.Answer.Value
                    return (ex.QuestionId, [("question", .string(ex.Question)), ("answers", .array(ex.Answer.Aliases.map(JSONNode.string))),
                                            ("target", .string(target))])
                }
            }
        }
        log("preprocess: " + counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        return counts
    }

    /// Writes `<set>/<split>.json`: for each position `i` in the idx list, the example at index
    /// `k = idx[i]` with the passages its list key names. `entry(i, k)` gives the key and fields.
    private static func writeSplit(
        _ set: String, _ split: String, inputs: Inputs, listsName: String, count: Int, source: URL, store: PassageStore,
        out: URL, progress: (FetchProgress) -> Void, isCancelled: () -> Bool,
        entry: (Int, Int) -> (key: String, fields: [(String, JSONNode)])
    ) throws -> Int {
        let idxURL = inputs.idx["\(set).\(split)"]!, listURL = inputs.lists["\(listsName)/\(split)"]!
        let idx = try decode([Int].self, idxURL, what: "a JSON list of question indices")
        let lists = try decode([String: [PassageRef]].self, listURL, what: "a JSON object of passage id lists")
        let folder = out.appendingPathComponent(set)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let writer: PyJSONWriter
        do { writer = try PyJSONWriter(path: folder.appendingPathComponent("\(split).json").path) } catch let e as FormatError {
            throw FetchError.io(path: e.file, message: e.message)
        }
        for (i, k) in idx.enumerated() {
            guard k >= 0, k < count else {
                throw FetchError.format(file: idxURL.path, field: "[\(i)]", expected: "an index below \(count) (\(source.lastPathComponent))", found: "\(k)")
            }
            let (key, fields) = entry(i, k)
            guard let ids = lists[key] else {
                throw FetchError.format(file: listURL.path, field: key, expected: "a passage list for this question", found: "none")
            }
            var ctxs: [JSONNode] = []
            ctxs.reserveCapacity(ids.count)
            for id in ids {
                guard let p = store.passage(id.string) else {
                    throw FetchError.format(file: inputs.passages.path, field: "id \(id.string)", expected: "a passage row", found: "none")
                }
                ctxs.append(.object([("id", id.json), ("title", .string(p.title)), ("text", .string(p.text))]))
            }
            do { try writer.append(.object(fields + [("ctxs", .array(ctxs))])) } catch let e as FormatError {
                throw FetchError.io(path: e.file, message: e.message)
            }
            if i & 1023 == 0 {
                if isCancelled() { throw FetchError.cancelled }
                progress(FetchProgress(phase: "preprocess", item: "\(set)/\(split).json", done: Int64(i), total: Int64(idx.count)))
            }
        }
        do { try writer.finish() } catch let e as FormatError { throw FetchError.io(path: e.file, message: e.message) }
        return idx.count
    }

    /// A passage id as a list gives it (FiD's lists hold strings; numbers are accepted too).
    struct PassageRef: Decodable {
        var string: String
        var isInt: Bool
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) {
                string = s
                isInt = false
            } else {
                string = String(try c.decode(Int.self))
                isInt = true
            }
        }
        var json: JSONNode { isInt ? .integer(Int(string)!) : .string(string) }
    }

    /// One line of NQ-open jsonl.
    struct NQExample: Decodable {
        var question: String
        var answer: [String]
    }

    /// One TriviaQA example (only the fields FiD reads).
    struct TQAExample: Decodable {
        struct Answer: Decodable {
            var Aliases: [String]
            var Value: String
        }
        var Question: String
        var QuestionId: String
        var Answer: Answer
    }

    struct TQAFile: Decodable { var Data: [TQAExample] }

    static func loadNQ(_ url: URL) throws -> [NQExample] {
        let text = try read(url)
        var out: [NQExample] = []
        var line = 0
        for raw in text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            line += 1
            if raw.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 13 }) { continue }
            do { out.append(try JSONDecoder().decode(NQExample.self, from: Data(raw))) } catch {
                throw FetchError.format(file: url.path, field: "line \(line)", expected: "{\"question\": str, \"answer\": [str]}", found: "\(error)")
            }
        }
        return out
    }

    /// Reads TriviaQA's `Data` list one example at a time: the files are GBs of search results FiD
    /// never reads, so only each example's slice is decoded, never the whole document at once.
    static func loadTQA(_ url: URL) throws -> [TQAExample] {
        var out: [TQAExample] = []
        let what = "TriviaQA JSON {\"Data\": [{Question, QuestionId, Answer: {Aliases, Value}}]}"
        do {
            let stream = try JSONStream(path: url.path)
            try stream.forEachElement(ofArray: "Data", parse: false) { element in
                do { out.append(try JSONDecoder().decode(TQAExample.self, from: Data(element.bytes))) } catch {
                    throw FetchError.format(file: url.path, field: "Data[\(element.index)]", expected: what, found: "\(error)")
                }
            }
        } catch let e as FormatError {
            throw FetchError.format(file: url.path, field: e.location, expected: what, found: e.message)
        }
        return out
    }

    static func read(_ url: URL) throws -> Data {
        do { return try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw FetchError.io(path: url.path, message: "cannot read: \(error)")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ url: URL, what: String) throws -> T {
        let data = try read(url)
        do { return try JSONDecoder().decode(T.self, from: data) } catch {
            throw FetchError.format(file: url.path, field: "(file)", expected: what, found: "\(error)")
        }
    }

    /// Python's `str.isupper()`: at least one cased character and no lower- or title-case one.
    static func pyIsUpper(_ s: String) -> Bool {
        var cased = false
        for u in s.unicodeScalars {
            let p = u.properties
            if p.isLowercase || p.generalCategory == .titlecaseLetter { return false }
            if p.isUppercase { cased = true }
        }
        return cased
    }

    /// Python's `str.title()`: title-case a cased character after an uncased one, lower-case it after a cased one.
    static func pyTitle(_ s: String) -> String {
        let scalars = Array(s.unicodeScalars)
        var out = ""
        var previousCased = false
        for (i, u) in scalars.enumerated() {
            if previousCased, u == "\u{03A3}" {
                // CPython's lower() gives capital sigma its final form at the end of a word.
                out.unicodeScalars.append(isFinalSigma(scalars, i) ? "\u{03C2}" : "\u{03C3}")
            } else {
                out += previousCased ? u.properties.lowercaseMapping : u.properties.titlecaseMapping
            }
            previousCased = u.properties.isCased
        }
        return out
    }

    /// CPython's `handle_capital_sigma`: Final_Sigma is `\p{cased}\p{case-ignorable}* Σ` not
    /// followed by `\p{case-ignorable}* \p{cased}`.
    static func isFinalSigma(_ s: [Unicode.Scalar], _ i: Int) -> Bool {
        var j = i - 1
        while j >= 0, s[j].properties.isCaseIgnorable { j -= 1 }
        guard j >= 0, s[j].properties.isCased else { return false }
        j = i + 1
        while j < s.count, s[j].properties.isCaseIgnorable { j += 1 }
        return j == s.count || !s[j].properties.isCased
    }
}
