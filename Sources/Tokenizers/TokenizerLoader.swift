// TokenizerLoader: opens tokenizer.json, a SentencePiece .model, or vocab.txt (+ tokenizer_config.json).
import Foundation

/// Loads a tokenizer from a file or a folder holding one.
public enum TokenizerLoader {
    /// Loads `path`: a Hugging Face `tokenizer.json` (Unigram or WordPiece), a SentencePiece `.model`
    /// (unigram; T5's `<extra_id_N>` added as ids `size + extraIds − 1 − N`), or a WordPiece `vocab.txt`
    /// (settings from a `tokenizer_config.json` beside it). A folder is searched in that order.
    /// - Throws: `TokenizerError` naming the file and what is wrong with it.
    public static func load(_ path: String, extraIds: Int = 100) throws -> any Tokenizer {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw TokenizerError.unreadable(path: path, reason: "no such file or folder")
        }
        if isDir.boolValue {
            for name in ["tokenizer.json", "spiece.model", "tokenizer.model", "vocab.txt"] {
                let p = (path as NSString).appendingPathComponent(name)
                if FileManager.default.fileExists(atPath: p) { return try load(p, extraIds: extraIds) }
            }
            throw TokenizerError.unknownFormat(
                path: path, found: "a folder without tokenizer.json, spiece.model or vocab.txt")
        }
        do {
            return try loadFile(path, extraIds: extraIds)
        } catch let e as DoubleArrayTrie.CapacityError {
            throw TokenizerError.unsupported(path: path, field: "vocabulary",
                                             found: "\(e.keys) pieces whose trie needs \(e.slots) slots, past the 4,194,304 fidq's trie addresses")
        }
    }

    static func loadFile(_ path: String, extraIds: Int) throws -> any Tokenizer {
        let bytes = try read(path)
        let firstByte = bytes.first(where: { !($0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09) })
        if path.hasSuffix(".json") || firstByte == UInt8(ascii: "{") {
            return try fromJSON(bytes, path: path)
        }
        if path.hasSuffix(".model") || firstByte == 0x0A {
            return try fromSentencePiece(SentencePieceModel(bytes: bytes, path: path), path: path, extraIds: extraIds)
        }
        if path.hasSuffix(".txt") {
            return try fromVocab(bytes, path: path)
        }
        throw TokenizerError.unknownFormat(path: path, found: "\(bytes.count) bytes starting with \(bytes.prefix(8))")
    }

    static func read(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenizerError.unreadable(path: path, reason: "not readable")
        }
        return [UInt8](data)
    }

    // MARK: SentencePiece .model

    static func fromSentencePiece(_ m: SentencePieceModel, path: String, extraIds: Int) throws -> UnigramTokenizer {
        guard m.modelType == 1 else {
            throw TokenizerError.unsupported(path: path, field: "trainer_spec.model_type", found: "\(m.modelType) (not UNIGRAM)")
        }
        if m.byteFallback {
            throw TokenizerError.unsupported(path: path, field: "trainer_spec.byte_fallback", found: "true")
        }
        if m.treatWhitespaceAsSuffix {
            throw TokenizerError.unsupported(path: path, field: "trainer_spec.treat_whitespace_as_suffix", found: "true")
        }
        guard let unk = m.types.firstIndex(of: .unknown) else {
            throw TokenizerError.malformed(path: path, field: "pieces", expected: "one piece of type UNKNOWN", found: "none")
        }
        var pieces = m.pieces
        var scores = m.scores.map(Double.init)
        var kinds: [UnigramTokenizer.Kind] = m.types.map {
            switch $0 {
            case .normal: return .normal
            case .unknown: return .unknown
            case .control: return .control
            case .userDefined: return .userDefined
            case .unused: return .unused
            case .byte: return .byte
            }
        }
        for k in stride(from: extraIds - 1, through: 0, by: -1) {
            pieces.append("<extra_id_\(k)>"); scores.append(0); kinds.append(.added)
        }
        // Like T5Tokenizer: control pieces, `<unk>` and the extra ids are matched whole in raw text.
        var specials: [SpecialTokens.Token] = []
        for i in 0..<pieces.count where kinds[i] == .control || kinds[i] == .unknown || kinds[i] == .added {
            specials.append(.init(bytes: Array(pieces[i].utf8), id: Int32(i)))
        }
        var charsMap = m.charsmap.isEmpty ? nil : try CharsMap(blob: m.charsmap, path: path)
        // sentencepiece copies USER_DEFINED pieces through normalisation unchanged (its prefix matcher);
        // the lattice then always picks them (score `length × max score − 0.1`).
        let userDefined = m.types.indices.filter { m.types[$0] == .userDefined }.map { Array(m.pieces[$0].utf8) }
        if !userDefined.isEmpty { charsMap = try (charsMap ?? CharsMap.identity).matching(userDefined: userDefined) }
        let eos = pieces.firstIndex(of: "</s>").map { [Int32($0)] } ?? []
        let pad = pieces.firstIndex(of: "<pad>").map { Int32($0) } ?? 0
        return try UnigramTokenizer(
            pieces: pieces, scores: scores, kinds: kinds, unkId: Int32(unk), pipeline: .sentencePiece(m.normalizer),
            charsMap: charsMap, specials: SpecialTokens(specials), skipIds: Set(specials.map(\.id)), suffixIds: eos,
            padId: pad, unkSurface: m.unkSurface)
    }

    // MARK: vocab.txt

    static func fromVocab(_ bytes: [UInt8], path: String) throws -> WordPieceTokenizer {
        var lines = String(decoding: bytes, as: UTF8.self).components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        lines = lines.map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
        guard !lines.isEmpty else {
            throw TokenizerError.malformed(path: path, field: "vocab", expected: "one piece per line", found: "an empty file")
        }
        var config: [String: Any] = [:]
        let configPath = ((path as NSString).deletingLastPathComponent as NSString)
            .appendingPathComponent("tokenizer_config.json")
        if FileManager.default.fileExists(atPath: configPath) {
            guard let c = try JSONSerialization.jsonObject(with: Data(try read(configPath))) as? [String: Any] else {
                throw TokenizerError.malformed(path: configPath, field: "(root)", expected: "a JSON object", found: "another value")
            }
            config = c
        }
        func name(_ key: String, _ fallback: String) -> String { config[key] as? String ?? fallback }
        let lower = config["do_lower_case"] as? Bool ?? true
        let strip = config["strip_accents"] as? Bool ?? lower
        let chinese = config["tokenize_chinese_chars"] as? Bool ?? true
        let index = Dictionary(lines.enumerated().map { ($1, Int32($0)) }, uniquingKeysWith: { _, b in b })
        func id(_ key: String, _ fallback: String) throws -> Int32 {
            let tok = name(key, fallback)
            guard let i = index[tok] else {
                throw TokenizerError.malformed(path: path, field: key, expected: "\(tok) in the vocabulary", found: "no such line")
            }
            return i
        }
        let unk = try id("unk_token", "[UNK]"), cls = try id("cls_token", "[CLS]"), sep = try id("sep_token", "[SEP]")
        let pad = try id("pad_token", "[PAD]")
        let mask = try? id("mask_token", "[MASK]")
        let special = [pad, unk, cls, sep] + (mask.map { [$0] } ?? [])
        return try WordPieceTokenizer(
            pieces: lines, unkId: unk,
            normalizer: BertNormalizer(cleanText: true, handleChineseChars: chinese, stripAccents: strip, lowercase: lower),
            specials: SpecialTokens(special.map { .init(bytes: Array(lines[Int($0)].utf8), id: $0) }),
            skipIds: Set(special), prefixIds: [cls], suffixIds: [sep], padId: pad)
    }
}
