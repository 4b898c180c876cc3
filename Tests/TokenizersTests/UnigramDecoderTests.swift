// UnigramDecoderTests: decoding ids with control and special pieces anywhere, against sentencepiece and HF.
import Foundation
import Testing

@testable import Tokenizers

@Suite struct UnigramDecoderTests {
    /// The input: a generated T5 answer starts with `<pad>` (id 0); sentencepiece prints no space
    /// for it, so the next piece still loses its leading `▁`.
    @Test func padBeforeFirstWordLeavesNoLeadingSpace() throws {
        let tok = try Assets.spiece.get()
        let hello = tok.encode("Hello world", addSpecialTokens: false)
        #expect(tok.piece(for: hello[0])?.hasPrefix("\u{2581}") == true)
        #expect(tok.decode([0] + hello, skipSpecialTokens: false) == "Hello world")
        #expect(tok.decode([0] + hello, skipSpecialTokens: true) == "Hello world")
        #expect(tok.decode([0, 0, 1] + hello + [1, 0], skipSpecialTokens: false) == "Hello world")
        // Hugging Face keeps special tokens as text unless asked to skip them.
        let t5 = try Assets.t5.get()
        #expect(t5.decode([0, 8774, 296, 1], skipSpecialTokens: false) == "<pad> Hello world</s>")
        #expect(t5.decode([0, 8774, 296, 1], skipSpecialTokens: true) == "Hello world")
    }

    /// With add_dummy_prefix but not remove_extra_whitespaces, sentencepiece consumes only the
    /// first leading `▁` (the one encoding added): `[▁, ▁, ▁Hello]` is "  Hello" (sentencepiece
    /// 0.2.3 on such a model; fidq dropped every leading `▁` while nothing was printed). The
    /// fixture with a second normalizer_spec (protobuf merges it) turning removal off; a control
    /// piece does not start the count again.
    @Test func onlyTheDummyPrefixIsConsumedWhenSpacesAreKept() throws {
        let spm = try Assets.spiece.get()
        let space = try #require(spm.id(for: "\u{2581}")), he = spm.encode("Hello world", addSpecialTokens: false)[0]
        #expect(spm.piece(for: he) == "\u{2581}He")
        #expect(spm.decode([space, space, he], skipSpecialTokens: false) == "He")
        let bytes = try TokenizerLoader.read(Assets.fixture("spiece.model")) + [0x1A, 0x02, 0x20, 0x00]
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("fidq-keep-ws-\(UUID().uuidString).model")
        try Data(bytes).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let keep = try TokenizerLoader.load(url.path)
        // sentencepiece 0.2.3's decode of these ids with this file.
        for (ids, text) in [([space, space, he], "  He"), ([space, he], " He"), ([he, space, he], "He  He"), ([space, 0, space, he], "  He")] {
            #expect(keep.decode(ids, skipSpecialTokens: false) == text, "\(ids)")
        }
    }

    /// Every fixture id list (specials at the start, middle, end, consecutive, alone, next to a lone `▁`),
    /// both with and without skipping special tokens.
    @Test func specialPiecesAnywhereMatchTheReferences() throws {
        let edges = try Edges.file.get()
        var added = try UnigramTests.convertedSpieceJSON()
        var list = try #require(added["added_tokens"] as? [[String: Any]])
        list.append(["id": 4100, "content": "<sep>", "single_word": false, "lstrip": false, "rstrip": false,
                     "normalized": false, "special": false])
        added["added_tokens"] = list
        let tokenizers: [String: any Tokenizer] = [
            "spm": try Assets.spiece.get(), "t5": try Assets.t5.get(), "bert": try Assets.miniLM.get(),
            "hf_spm": try UnigramTests.convertedSpiece(), "hf_spm_added": try Edges.loadJSON(added, name: "added"),
        ]
        var checked: [String: Int] = [:]
        for c in edges.decode {
            let tok = try #require(tokenizers[c.tokenizer], "unknown tokenizer \(c.tokenizer)")
            #expect(tok.decode(c.ids, skipSpecialTokens: false) == c.keep, "\(c.tokenizer) \(c.ids) keep")
            #expect(tok.decode(c.ids, skipSpecialTokens: true) == c.skip, "\(c.tokenizer) \(c.ids) skip")
            checked[c.tokenizer, default: 0] += 1
        }
        #expect(Set(checked.keys) == Set(tokenizers.keys) && checked.values.allSatisfy { $0 >= 50 }, "\(checked)")
        // The non-special added token is matched whole when encoding too.
        let withAdded = try #require(tokenizers["hf_spm_added"])
        for (text, ids) in zip(edges.added.texts, edges.added.ids) {
            #expect(withAdded.encode(text) == ids, "\(text.debugDescription)")
        }
    }
}
