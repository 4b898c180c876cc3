// SpecialTokensTests: leftmost-longest matching of added tokens and HF's lstrip/rstrip.
import Testing

@testable import Tokenizers

@Suite struct SpecialTokensTests {
    func parts(_ s: SpecialTokens, _ text: String) -> [String] {
        var out: [String] = []
        var t = text
        t.withUTF8 { b in
            s.split(b, text: { r in out.append(String(decoding: UnsafeBufferPointer(rebasing: b[r]), as: UTF8.self)) },
                    special: { out.append("#\($0)") })
        }
        return out
    }

    @Test func leftmostLongestWins() {
        let s = SpecialTokens([.init(bytes: Array("<a>".utf8), id: 1), .init(bytes: Array("<a><b>".utf8), id: 2),
                               .init(bytes: Array("b>".utf8), id: 3)])
        #expect(parts(s, "x<a><b>y<a>") == ["x", "#2", "y", "#1"])
        #expect(parts(s, "<a") == ["<a"])
        #expect(parts(s, "") == [])
    }

    @Test func stripFlagsAbsorbWhitespace() {
        let s = SpecialTokens([.init(bytes: Array("[M]".utf8), id: 7, lstrip: true, rstrip: false)])
        #expect(parts(s, "a  [M] b") == ["a", "#7", " b"])
        let r = SpecialTokens([.init(bytes: Array("[M]".utf8), id: 7, lstrip: false, rstrip: true)])
        #expect(parts(r, "a [M]  b") == ["a ", "#7", "b"])
    }
}
