// BatchEncodingTests: FiD's collation — passages without </s> padded to text_maxlength, targets with it.
import Testing

@testable import Tokenizers

@Suite struct BatchEncodingTests {
    @Test func passagesArePaddedAndTruncatedToExactlyMaxLengthWithoutEOS() throws {
        let tok = try Assets.t5.get()
        let texts = Assets.cases.filter { $0.kind == "fid" }.prefix(40).map(\.text) + ["", "Hello world"]
        let L = 64
        let batch = tok.encodeBatch(texts, maxLength: L, addSpecialTokens: false)
        #expect(batch.count == texts.count && batch.length == L)
        #expect(batch.ids.count == texts.count * L && batch.mask.count == texts.count * L)
        for (b, text) in texts.enumerated() {
            let full = tok.encode(text, addSpecialTokens: false)
            let n = min(full.count, L)
            #expect(Array(batch.row(b).prefix(n)) == Array(full.prefix(n)))
            #expect(batch.row(b).dropFirst(n).allSatisfy { $0 == tok.padId })
            #expect(batch.mask[(b * L)..<(b * L + L)].reduce(0, +) == Int32(n))
        }
        #expect(batch.row(texts.count - 1).prefix(3) == [8774, 296, 0])
    }

    @Test func targetsKeepEOSAndTruncationKeepsRoomForSpecials() throws {
        let t5 = try Assets.t5.get()
        #expect(t5.encode("Hello world", maxLength: 2) == [8774, 1])
        let bert = try Assets.miniLM.get()
        let ids = bert.encode(String(repeating: "word ", count: 300), maxLength: 200)
        #expect(ids.count == 200 && ids.first == 101 && ids.last == 102)
        let batch = t5.encodeBatch(["Hello world", "Hello"], maxLength: nil, addSpecialTokens: true)
        #expect(batch.length == 3 && batch.ids == [8774, 296, 1, 8774, 1, 0] && batch.mask == [1, 1, 1, 1, 1, 0])
    }

    @Test func parallelEncodingEqualsSerial() throws {
        let tok = try Assets.miniLM.get()
        let texts = Assets.cases.map(\.text)
        let serial = tok.encodeAll(texts, threads: 1)
        #expect(tok.encodeAll(texts, threads: 4) == serial)
        #expect(serial == texts.map { tok.encode($0) })
    }
}
