// CharsMapTests: sentencepiece's nmt_nfkc normalisation, byte for byte, from the fixture model's charsmap.
import Testing

@testable import Tokenizers

@Suite struct CharsMapTests {
    @Test func normalizationMatchesSentencePiece() throws {
        let model = try SentencePieceModel(bytes: try TokenizerLoader.read(Assets.fixture("spiece.model")), path: "spiece.model")
        #expect(model.normalizerName == "nmt_nfkc")
        let map = try CharsMap(blob: model.charsmap, path: "spiece.model")
        var checked = 0
        for c in Assets.cases {
            guard let want = c.spm_normalized else { continue }
            var out: [UInt8] = []
            var s = c.text
            s.withUTF8 { map.normalize($0, spec: model.normalizer, into: &out) }
            #expect(String(decoding: out, as: UTF8.self) == want, "\(c.text.debugDescription)")
            checked += 1
        }
        #expect(checked > 400)
    }

    @Test func invalidUTF8BecomesReplacementOneByteAtATime() throws {
        let model = try SentencePieceModel(bytes: try TokenizerLoader.read(Assets.fixture("spiece.model")), path: "spiece.model")
        let map = try CharsMap(blob: model.charsmap, path: "spiece.model")
        var out: [UInt8] = []
        [0x61, 0xFF, 0xC3, 0x62].withUnsafeBufferPointer { map.normalize($0, spec: .mapOnly, into: &out) }
        #expect(out == [0x61, 0xEF, 0xBF, 0xBD, 0xEF, 0xBF, 0xBD, 0x62])
    }

    @Test func truncatedBlobIsAThrownError() {
        #expect(throws: TokenizerError.self) { try CharsMap(blob: [1, 2], path: "x.model") }
        #expect(throws: TokenizerError.self) { try CharsMap(blob: [0xFF, 0, 0, 0, 1, 2, 3, 4], path: "x.model") }
    }
}
