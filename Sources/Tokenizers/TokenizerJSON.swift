// TokenizerJSON: builds a tokenizer from Hugging Face's tokenizer.json (Unigram or WordPiece models).
import Foundation

extension TokenizerLoader {
    /// A typed view of one JSON object, whose errors name the file and the dotted field.
    struct Object {
        let dict: [String: Any]
        let path: String
        let at: String

        func field(_ k: String) -> String { at.isEmpty ? k : "\(at).\(k)" }
        func has(_ k: String) -> Bool { dict[k] != nil && !(dict[k] is NSNull) }

        func object(_ k: String) throws -> Object {
            guard let d = dict[k] as? [String: Any] else { throw wrong(k, "an object") }
            return Object(dict: d, path: path, at: field(k))
        }
        func optionalObject(_ k: String) throws -> Object? { has(k) ? try object(k) : nil }
        func string(_ k: String) throws -> String {
            guard let s = dict[k] as? String else { throw wrong(k, "a string") }
            return s
        }
        func int(_ k: String) throws -> Int {
            guard let n = dict[k] as? NSNumber, let v = Int(exactly: n.doubleValue) else { throw wrong(k, "an integer") }
            return v
        }
        /// A token id in `0..<limit`: the ids a tokenizer's table can hold (its vocabulary and
        /// added tokens), so a wild id is refused before any table is padded up to it.
        func id(_ k: String, below limit: Int) throws -> Int {
            guard let n = dict[k] as? NSNumber else { throw wrong(k, "an integer") }
            return try Self.checkedID(n, field: field(k), limit: limit, path: path)
        }
        static func checkedID(_ n: NSNumber, field: String, limit: Int, path: String) throws -> Int {
            let d = n.doubleValue
            guard d >= 0, d < Double(limit), d == d.rounded() else {
                throw TokenizerError.malformed(path: path, field: field, expected: "an id in 0..<\(limit) (the vocabulary and the added tokens)",
                                               found: "\(n)")
            }
            return Int(d)
        }
        func bool(_ k: String, default d: Bool) throws -> Bool {
            if !has(k) { return d }
            guard let b = dict[k] as? Bool else { throw wrong(k, "true or false") }
            return b
        }
        func array(_ k: String) throws -> [Any] {
            guard let a = dict[k] as? [Any] else { throw wrong(k, "an array") }
            return a
        }
        func wrong(_ k: String, _ expected: String) -> TokenizerError {
            let v = dict[k]
            let found = v == nil || v is NSNull ? "nothing" : "\(type(of: v!)) \(String(describing: v!).prefix(60))"
            return .malformed(path: path, field: field(k), expected: expected, found: found)
        }
    }

    static func fromJSON(_ bytes: [UInt8], path: String) throws -> any Tokenizer {
        let any: Any
        do {
            any = try JSONSerialization.jsonObject(with: Data(bytes))
        } catch {
            // Foundation's own description is a dump of its error domain and user info.
            let why = (error as NSError).userInfo["NSDebugDescription"] as? String ?? "\(error)"
            throw TokenizerError.malformed(path: path, field: "(root)", expected: "valid JSON", found: "invalid JSON (\(why))")
        }
        guard let dict = any as? [String: Any] else {
            throw TokenizerError.malformed(path: path, field: "(root)", expected: "a JSON object", found: "\(type(of: any))")
        }
        if dict["model"] == nil, ["model_type", "architectures", "d_model", "hidden_size"].contains(where: { dict[$0] != nil }) {
            throw TokenizerError.malformed(path: path, field: "(root)", expected: "a tokenizer.json (with a `model`)",
                                           found: "a model's config.json; the tokenizer is the tokenizer.json (or spiece.model, vocab.txt) beside it, or pass the folder")
        }
        let root = Object(dict: dict, path: path, at: "")
        let model = try root.object("model")
        let type = try model.string("type")
        // Added tokens are matched whole in the raw text and dropped by decode when special.
        var added: [SpecialTokens.Token] = []
        var special = Set<Int32>()
        var addedPieces: [(Int, String)] = []
        let addedList = root.has("added_tokens") ? try root.array("added_tokens") : []
        // Ids run over the model's vocabulary and then the added tokens; holes are filled with
        // empty pieces, so the table is never longer than the file's own entries.
        let vocabCount = (model.dict["vocab"] as? [Any])?.count ?? (model.dict["vocab"] as? [String: Any])?.count ?? 0
        let idLimit = vocabCount + addedList.count
        for (i, item) in addedList.enumerated() {
            guard let d = item as? [String: Any] else { throw root.wrong("added_tokens", "objects") }
            let o = Object(dict: d, path: path, at: "added_tokens[\(i)]")
            let content = try o.string("content"), id = try o.id("id", below: idLimit)
            if try o.bool("single_word", default: false) {
                throw TokenizerError.unsupported(path: path, field: o.field("single_word"), found: "true")
            }
            if try o.bool("normalized", default: false) && !(try o.bool("special", default: false)) {
                throw TokenizerError.unsupported(path: path, field: o.field("normalized"), found: "true")
            }
            added.append(.init(bytes: Array(content.utf8), id: Int32(id), lstrip: try o.bool("lstrip", default: false),
                               rstrip: try o.bool("rstrip", default: false)))
            if try o.bool("special", default: false) { special.insert(Int32(id)) }
            addedPieces.append((id, content))
        }
        switch type {
        case "Unigram": return try unigram(root, model, added: added, addedPieces: addedPieces, special: special)
        case "WordPiece": return try wordPiece(root, model, added: added, addedPieces: addedPieces, special: special)
        default: throw TokenizerError.unsupported(path: path, field: "model.type", found: type)
        }
    }

    /// Prefix and suffix ids of the post-processor's single-sequence template.
    static func template(_ root: Object, count: Int, lookup: (String) -> Int32?) throws -> ([Int32], [Int32]) {
        guard let post = try root.optionalObject("post_processor") else { return ([], []) }
        let type = try post.string("type")
        switch type {
        case "TemplateProcessing":
            var pre: [Int32] = [], suf: [Int32] = []
            var seenA = false
            for item in try post.array("single") {
                guard let d = item as? [String: Any] else { throw post.wrong("single", "template pieces") }
                if d["Sequence"] != nil { seenA = true; continue }
                guard let s = d["SpecialToken"] as? [String: Any], let name = s["id"] as? String else {
                    throw post.wrong("single", "Sequence or SpecialToken entries")
                }
                var ids: [Int32] = []
                if let table = post.dict["special_tokens"] as? [String: Any], let e = table[name] as? [String: Any],
                   let list = e["ids"] as? [NSNumber] {
                    ids = try list.map {
                        Int32(try Object.checkedID($0, field: "post_processor.special_tokens.\(name).ids", limit: count, path: root.path))
                    }
                } else if let i = lookup(name) {
                    ids = [i]
                } else {
                    throw post.wrong("special_tokens", "an entry for \(name)")
                }
                if seenA { suf += ids } else { pre += ids }
            }
            return (pre, suf)
        case "BertProcessing":
            guard let cls = post.dict["cls"] as? [Any], cls.count == 2, let c = cls[1] as? NSNumber,
                  let sep = post.dict["sep"] as? [Any], sep.count == 2, let s = sep[1] as? NSNumber else {
                throw post.wrong("cls", "[token, id] pairs for cls and sep")
            }
            let ids = try [("cls", c), ("sep", s)].map { field, n in
                Int32(try Object.checkedID(n, field: "post_processor.\(field)", limit: count, path: root.path))
            }
            return ([ids[0]], [ids[1]])
        default:
            throw TokenizerError.unsupported(path: root.path, field: "post_processor.type", found: type)
        }
    }

    static func unigram(_ root: Object, _ model: Object, added: [SpecialTokens.Token], addedPieces: [(Int, String)],
                        special: Set<Int32>) throws -> UnigramTokenizer {
        let path = root.path
        if try model.bool("byte_fallback", default: false) {
            throw TokenizerError.unsupported(path: path, field: "model.byte_fallback", found: "true")
        }
        var pieces: [String] = [], scores: [Double] = []
        for (i, item) in try model.array("vocab").enumerated() {
            guard let pair = item as? [Any], pair.count == 2, let p = pair[0] as? String, let s = pair[1] as? NSNumber else {
                throw TokenizerError.malformed(path: path, field: "model.vocab[\(i)]", expected: "[piece, score]",
                                               found: "\(String(describing: item).prefix(60))")
            }
            pieces.append(p); scores.append(s.doubleValue)
        }
        guard model.has("unk_id") else {
            throw TokenizerError.unsupported(path: path, field: "model.unk_id", found: "null (a model without <unk>)")
        }
        let unk = try model.int("unk_id")
        guard unk >= 0 && unk < pieces.count else {
            throw TokenizerError.malformed(path: path, field: "model.unk_id", expected: "an id below \(pieces.count)", found: "\(unk)")
        }
        var kinds = [UnigramTokenizer.Kind](repeating: .normal, count: pieces.count)
        for (id, content) in addedPieces {
            if id >= pieces.count {
                // An added token beyond the model's vocabulary: give it an id of its own.
                while pieces.count <= id { pieces.append(""); scores.append(0); kinds.append(.normal) }
                pieces[id] = content
            }
            kinds[id] = .added
        }
        // Normaliser: nothing, or the precompiled map, optionally followed by collapsing runs of spaces.
        var charsMap: CharsMap? = nil
        var pre = UnigramTokenizer.HFPreTokenizer()
        if let norm = try root.optionalObject("normalizer") {
            let list: [Object]
            if try norm.string("type") == "Sequence" {
                list = try norm.array("normalizers").enumerated().map { i, n in
                    guard let d = n as? [String: Any] else { throw norm.wrong("normalizers", "objects") }
                    return Object(dict: d, path: path, at: "normalizer.normalizers[\(i)]")
                }
            } else {
                list = [norm]
            }
            for n in list {
                switch try n.string("type") {
                case "Precompiled":
                    let b64 = try n.string("precompiled_charsmap")
                    guard let data = Data(base64Encoded: b64) else { throw n.wrong("precompiled_charsmap", "base64") }
                    charsMap = try CharsMap(blob: [UInt8](data), path: path)
                    pre.steps.append(.precompiled)
                case "Strip":
                    pre.steps.append(.strip(left: try n.bool("strip_left", default: true),
                                            right: try n.bool("strip_right", default: true)))
                case "Replace":
                    let pattern = (n.dict["pattern"] as? [String: Any])?["Regex"] as? String
                    guard pattern == " {2,}", let content = n.dict["content"] as? String else {
                        throw TokenizerError.unsupported(path: path, field: n.field("pattern"),
                                                         found: "\(pattern ?? "a string pattern") (only the regex \" {2,}\")")
                    }
                    pre.steps.append(.replaceSpaceRuns(content: Array(content.utf8)))
                default:
                    throw TokenizerError.unsupported(path: path, field: n.field("type"), found: try n.string("type"))
                }
            }
        }
        if let p = try root.optionalObject("pre_tokenizer") {
            let list: [Object]
            if try p.string("type") == "Sequence" {
                list = try p.array("pretokenizers").enumerated().map { i, n in
                    guard let d = n as? [String: Any] else { throw p.wrong("pretokenizers", "objects") }
                    return Object(dict: d, path: path, at: "pre_tokenizer.pretokenizers[\(i)]")
                }
            } else {
                list = [p]
            }
            for (i, n) in list.enumerated() {
                switch try n.string("type") {
                case "WhitespaceSplit" where i == 0:
                    pre.whitespaceSplit = true
                case "Metaspace" where i == list.count - 1:
                    pre.metaspace = true
                    pre.replacement = Array(try n.string("replacement").utf8)
                    guard pre.replacement == [0xE2, 0x96, 0x81] else {
                        throw TokenizerError.unsupported(path: path, field: n.field("replacement"), found: try n.string("replacement"))
                    }
                    pre.split = try n.bool("split", default: true)
                    if n.has("prepend_scheme") {
                        switch try n.string("prepend_scheme") {
                        case "always": pre.prepend = .always
                        case "first": pre.prepend = .first
                        case "never": pre.prepend = .never
                        case let s: throw n.wrong("prepend_scheme", "always, first or never (found \(s))")
                        }
                    } else {
                        pre.prepend = try n.bool("add_prefix_space", default: true) ? .always : .never
                    }
                default:
                    throw TokenizerError.unsupported(path: path, field: n.field("type"),
                                                     found: "\(try n.string("type")) (at position \(i))")
                }
            }
        }
        let index = Dictionary(pieces.enumerated().map { ($1, Int32($0)) }, uniquingKeysWith: { _, b in b })
        let (prefix, suffix) = try template(root, count: pieces.count) { index[$0] }
        guard prefix.isEmpty else {
            throw TokenizerError.unsupported(path: path, field: "post_processor.single", found: "tokens before the text")
        }
        return try UnigramTokenizer(
            pieces: pieces, scores: scores, kinds: kinds, unkId: Int32(unk), pipeline: .huggingFace(pre),
            charsMap: charsMap, specials: SpecialTokens(added), skipIds: special, suffixIds: suffix,
            padId: index["<pad>"] ?? 0)
    }

    static func wordPiece(_ root: Object, _ model: Object, added: [SpecialTokens.Token], addedPieces: [(Int, String)],
                          special: Set<Int32>) throws -> WordPieceTokenizer {
        let path = root.path
        guard let vocab = model.dict["vocab"] as? [String: Any] else { throw model.wrong("vocab", "an object piece → id") }
        var pieces = [String](repeating: "", count: vocab.count)
        for (p, v) in vocab {
            guard let n = v as? NSNumber else { throw model.wrong("vocab", "non-negative integer ids") }
            let i = try Object.checkedID(n, field: "model.vocab.\(p)", limit: vocab.count + addedPieces.count, path: path)
            if i >= pieces.count { pieces += [String](repeating: "", count: i - pieces.count + 1) }
            pieces[i] = p
        }
        for (id, content) in addedPieces {
            if id >= pieces.count { pieces += [String](repeating: "", count: id - pieces.count + 1) }
            pieces[id] = content
        }
        let unkName = try model.string("unk_token")
        guard let unk = vocab[unkName] as? NSNumber else {
            throw TokenizerError.malformed(path: path, field: "model.unk_token", expected: "a piece of model.vocab", found: unkName)
        }
        let prefix = model.has("continuing_subword_prefix") ? try model.string("continuing_subword_prefix") : "##"
        let maxChars = model.has("max_input_chars_per_word") ? try model.int("max_input_chars_per_word") : 100
        guard maxChars >= 1 else { throw model.wrong("max_input_chars_per_word", "a positive integer") }
        var normalizer = BertNormalizer(cleanText: false, handleChineseChars: false, stripAccents: false, lowercase: false)
        if let n = try root.optionalObject("normalizer") {
            guard try n.string("type") == "BertNormalizer" else {
                throw TokenizerError.unsupported(path: path, field: "normalizer.type", found: try n.string("type"))
            }
            normalizer.cleanText = try n.bool("clean_text", default: true)
            normalizer.handleChineseChars = try n.bool("handle_chinese_chars", default: true)
            normalizer.lowercase = try n.bool("lowercase", default: true)
            normalizer.stripAccents = try n.bool("strip_accents", default: normalizer.lowercase)
        }
        let preType = try root.optionalObject("pre_tokenizer").map { try $0.string("type") }
        guard preType == "BertPreTokenizer" else {
            throw TokenizerError.unsupported(path: path, field: "pre_tokenizer.type", found: preType ?? "null")
        }
        let index = Dictionary(pieces.enumerated().map { ($1, Int32($0)) }, uniquingKeysWith: { _, b in b })
        let (pre, suf) = try template(root, count: pieces.count) { index[$0] }
        var cleanup = true
        if let d = try root.optionalObject("decoder"), d.has("cleanup") { cleanup = try d.bool("cleanup", default: true) }
        return try WordPieceTokenizer(
            pieces: pieces, unkId: Int32(unk.intValue), continuingPrefix: prefix, maxInputCharsPerWord: maxChars,
            normalizer: normalizer, specials: SpecialTokens(added), skipIds: special, prefixIds: pre, suffixIds: suf,
            padId: index["[PAD]"] ?? 0, cleanup: cleanup)
    }
}
