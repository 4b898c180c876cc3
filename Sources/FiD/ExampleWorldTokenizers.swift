// ExampleWorldTokenizers: the demo models' own word-level vocabularies (a T5 tokenizer.json and a BERT vocab.txt).
//
// Why: with t5-small's 32,128 ids, a d 128 reader spends most of a step on the output layer and
// its optimizer moments, and learns to copy an answer word slowly (55 % dev exact match on gold
// passages after 3,600 steps); over the world's ~450 words the same model reaches 78 % in the same
// steps at about 2.5× the steps per second. The files are Hugging Face's formats, so
// `transformers` loads them (`PreTrainedTokenizerFast(tokenizer_file=…)`, `BertTokenizer(vocab)`)
// and fidq's own loader reads them like any other.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Formats

extension ExampleWorld {
    /// Every word the example world can write: names, objects, values and every template's words,
    /// plus FiD's `question:`, `title:` and `context:` prefixes. Independent of seed and size, so
    /// one vocabulary serves every world. Sorted.
    public static let vocabularyWords: [String] = {
        var words = Set(["question:", "title:", "context:"])
        words.formUnion(ExampleVocabulary.names)
        for r in ExampleVocabulary.relations {
            words.formUnion(r.objects.filter { !$0.isEmpty })
            words.formUnion(r.values)
            for t in r.questions + r.gold + r.decoys {
                for w in t.split(separator: " ") where !w.hasPrefix("{") { words.insert(String(w)) }
            }
        }
        return words.sorted()
    }()

    /// Characters every tokenizer covers piece by piece when a word is not in the vocabulary (a
    /// user's own question): ASCII letters, digits and punctuation, and the world's characters.
    static let fallbackCharacters: [String] = {
        var chars = Set<Character>()
        for w in vocabularyWords { chars.formUnion(w) }
        for u in UInt8(33)...UInt8(126) { chars.insert(Character(UnicodeScalar(u))) }
        return chars.map(String.init).sorted()
    }()

    /// The reader's `tokenizer.json`: a SentencePiece-style Unigram model as t5-small's file has it
    /// (Metaspace pre-tokenizer, `</s>` appended, `<pad>` 0, `</s>` 1, `<unk>` 2), whose pieces
    /// are `▁word` for every vocabulary word (score −1) and single characters with and without
    /// `▁` (score −10), so a known word is always one piece.
    public static func readerTokenizerJSON() -> Data {
        let vocab: [JSONNode] = readerPieces.map { .array([.string($0.piece), .double($0.score)]) }
        func special(_ id: Int, _ content: String) -> JSONNode {
            .object([("id", .integer(id)), ("content", .string(content)), ("single_word", .bool(false)),
                     ("lstrip", .bool(false)), ("rstrip", .bool(false)), ("normalized", .bool(false)), ("special", .bool(true))])
        }
        let metaspace: [(String, JSONNode)] = [("replacement", .string("▁")), ("prepend_scheme", .string("always")), ("split", .bool(true))]
        let eos: JSONNode = .object([("SpecialToken", .object([("id", .string("</s>")), ("type_id", .integer(0))]))])
        func sequence(_ id: String) -> JSONNode { .object([("Sequence", .object([("id", .string(id)), ("type_id", .integer(0))]))]) }
        let root: JSONNode = .object([
            ("version", .string("1.0")),
            ("truncation", .null),
            ("padding", .null),
            ("added_tokens", .array([special(0, "<pad>"), special(1, "</s>"), special(2, "<unk>")])),
            ("normalizer", .null),
            ("pre_tokenizer", .object([
                ("type", .string("Sequence")),
                ("pretokenizers", .array([.object([("type", .string("WhitespaceSplit"))]),
                                          .object([("type", .string("Metaspace"))] + metaspace)])),
            ])),
            ("post_processor", .object([
                ("type", .string("TemplateProcessing")),
                ("single", .array([sequence("A"), eos])),
                ("pair", .array([sequence("A"), eos, sequence("B"), eos])),
                ("special_tokens", .object([("</s>", .object([("id", .string("</s>")), ("ids", .array([.integer(1)])),
                                                             ("tokens", .array([.string("</s>")]))]))])),
            ])),
            ("decoder", .object([("type", .string("Metaspace"))] + metaspace)),
            ("model", .object([("type", .string("Unigram")), ("unk_id", .integer(2)), ("vocab", .array(vocab)),
                               ("byte_fallback", .bool(false))])),
        ])
        var bytes: [UInt8] = []
        PyJSON.appendIndented(root, to: &bytes)
        bytes.append(10)
        return Data(bytes)
    }

    /// Pieces in `readerTokenizerJSON` (the reader config's `vocab_size`).
    public static var readerVocabularySize: Int { readerPieces.count }

    /// The reader's pieces and scores, in id order.
    static let readerPieces: [(piece: String, score: Double)] = {
        var pieces: [(piece: String, score: Double)] = [("<pad>", 0), ("</s>", 0), ("<unk>", 0)]
        var seen = Set(pieces.map(\.piece))
        func add(_ piece: String, _ score: Double) {
            if seen.insert(piece).inserted { pieces.append((piece, score)) }
        }
        for w in vocabularyWords { add("▁" + w, -1) }
        add("▁", -10)
        for c in fallbackCharacters {
            add(c, -10)
            add("▁" + c, -10)
        }
        return pieces
    }()

    /// The retriever's `vocab.txt` (BERT uncased WordPiece): `[PAD]` 0, `[UNK]` 1, `[CLS]` 2,
    /// `[SEP]` 3, `[MASK]` 4, then every lowercased vocabulary word cut at punctuation as BERT's
    /// pre-tokenizer cuts it, then each character alone and as a `##` continuation.
    public static func retrieverVocabText() -> Data {
        Data(retrieverVocabulary.map { $0 + "\n" }.joined().utf8)
    }

    static let retrieverVocabulary: [String] = {
        var lines = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        var seen = Set(lines)
        func add(_ s: String) { if seen.insert(s).inserted { lines.append(s) } }
        for w in vocabularyWords {
            var run = ""
            for ch in w.lowercased() {
                if ch.isLetter || ch.isNumber {
                    run.append(ch)
                } else {
                    if !run.isEmpty { add(run); run = "" }
                    add(String(ch))
                }
            }
            if !run.isEmpty { add(run) }
        }
        for c in Set(fallbackCharacters.map { $0.lowercased() }).sorted() {
            add(c)
            add("##" + c)
        }
        return lines
    }()
}
