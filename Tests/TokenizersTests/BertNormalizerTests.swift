// BertNormalizerTests: BERT's basic tokenizer on characters whose classes differ between Unicode versions.
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
}
