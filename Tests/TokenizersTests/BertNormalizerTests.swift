// BertNormalizerTests: BERT's basic tokenizer on characters whose classes differ between Unicode versions.
import Foundation
import Testing

@testable import Tokenizers

@Suite struct BertNormalizerTests {
    func words(_ text: String, _ n: BertNormalizer = BertNormalizer()) -> [String] {
        var out: [String] = []
        var buffer: [UInt8] = []
        var t = text
        t.withUTF8 { n.words($0, buffer: &buffer) { out.append(String(decoding: $0, as: UTF8.self)) } }
        return out
    }

    @Test func cleansSplitsLowersAndStrips() {
        #expect(words("Héllo, WORLD!") == ["hello", ",", "world", "!"])
        #expect(words("a\u{0}b\u{7}c\u{200B}d") == ["abcd"])
        #expect(words("中文ab") == ["中", "文", "ab"])
        #expect(words("한") == ["\u{1112}\u{1161}\u{11AB}"])
        // strip_accents runs before lowercase: NFD drops the dot of İ, so no combining dot is left.
        #expect(words("İ") == ["i"])
        #expect(words("İ", BertNormalizer(cleanText: true, handleChineseChars: true, stripAccents: false, lowercase: true)) == ["i\u{307}"])
        #expect(words("x\u{3000}y\u{A0}z") == ["x", "y", "z"])
        // U+1F970 is newer than HF's category table, so it is neither removed nor punctuation.
        #expect(words("a🥰b") == ["a🥰b"])
        #expect(words("Héllo", BertNormalizer(cleanText: true, handleChineseChars: true, stripAccents: false, lowercase: false)) == ["Héllo"])
    }

    @Test func tablesAreSortedRanges() {
        for table in [BertTables.removed, BertTables.whitespace, BertTables.punctuation, BertTables.cjk, BertTables.nonspacingMarks] {
            #expect(table.count % 2 == 0)
            #expect(zip(table, table.dropFirst()).allSatisfy { $0 <= $1 })
        }
        #expect(BertTables.lower.count == 1488 && BertTables.strip.count == 2042)
    }

    /// clean_text false keeps control characters, but VT and FF are still White_Space to BertPreTokenizer:
    /// "a\u{0B}b" is two words, as Hugging Face gives it (MiniLM's tokenizer.json with clean_text false).
    @Test func withoutCleanTextMatchesHuggingFace() throws {
        let raw = BertNormalizer(cleanText: false, handleChineseChars: true, stripAccents: true, lowercase: true)
        #expect(words("a\u{0B}b", raw) == ["a", "b"])
        #expect(words("a\u{0C}b", raw) == ["a", "b"])
        #expect(words("a\u{1C}b", raw) == ["a\u{1C}b"])
        #expect(words("a\u{0B}b") == ["ab"])
        var json = try #require(try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: try Assets.path("minilm/tokenizer.json")))) as? [String: Any])
        var norm = try #require(json["normalizer"] as? [String: Any])
        norm["clean_text"] = false
        json["normalizer"] = norm
        let tok = try Edges.loadJSON(json, name: "bert-raw")
        let cases = try Edges.file.get().bert_raw
        #expect(cases.texts.first == "a\u{0B}b" && cases.texts.count > 70)
        for (text, ids) in zip(cases.texts, cases.ids) {
            #expect(tok.encode(text) == ids, "\(text.debugDescription)")
        }
    }
}
