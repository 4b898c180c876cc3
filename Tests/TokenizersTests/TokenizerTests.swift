// TokenizerTests: any input text is tokenised, never a crash — NUL, invalid UTF-8, huge lines, whitespace.
import Testing

@testable import Tokenizers

@Suite struct TokenizerTests {
    static func all() throws -> [(String, any Tokenizer)] {
        [("t5", try Assets.t5.get()), ("minilm", try Assets.miniLM.get()), ("spiece", try Assets.spiece.get())]
    }

    @Test func hostileInputsAreTokenised() throws {
        let huge = String(repeating: "a", count: 200_000) + " " + String(repeating: "é🙂 ", count: 20_000)
        for (name, tok) in try TokenizerTests.all() {
            for text in ["", " ", "\t\n\r  \u{3000}", "\u{0}", "\u{0}\u{0}x\u{0}", huge, String(repeating: "\u{301}", count: 5000)] {
                let ids = tok.encode(text, addSpecialTokens: false)
                #expect(ids.allSatisfy { $0 >= 0 && Int($0) < tok.vocabSize }, "\(name)")
            }
            #expect(tok.encode("   \t ", addSpecialTokens: false).isEmpty, "\(name): whitespace only")
        }
    }

    @Test func invalidUTF8BytesAreReplacedNotTrusted() throws {
        let bad: [UInt8] = [0x61, 0xFF, 0xE2, 0x96, 0x20, 0xF0, 0x9F, 0x99, 0x62, 0xC3]
        for (name, tok) in try TokenizerTests.all() {
            var ids: [Int32] = []
            bad.withUnsafeBufferPointer { tok.encodeContent($0, into: &ids, workspace: Workspace()) }
            #expect(!ids.isEmpty && ids.allSatisfy { Int($0) < tok.vocabSize }, "\(name)")
            // The same as the repaired string.
            let repaired = tok.encode(String(decoding: bad, as: UTF8.self), addSpecialTokens: false)
            if name != "spiece" { #expect(ids == repaired, "\(name)") }
        }
    }
}
