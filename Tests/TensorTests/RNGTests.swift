// RNGTests: the saved state resumes the exact sequence (uniforms and a cached normal deviate).
import Testing
@testable import Tensor

struct RNGTests {
    @Test func stateResumesTheSequence() throws {
        var a = RNG(seed: 42)
        _ = a.normal()  // leaves a cached second deviate
        let saved = a.state
        #expect(saved.spareNormal != nil)
        var b = try #require(RNG(state: saved))
        #expect(a == b)
        for _ in 0..<5 { #expect(a.normal() == b.normal()) }
        for _ in 0..<5 { #expect(a.next() == b.next()) }
        #expect(RNG(seed: 42) != RNG(seed: 43))
    }

    @Test func malformedStatesAreRefused() {
        #expect(RNG(state: .init(words: ["0", "0", "0", "0"], spareNormal: nil)) == nil)
        #expect(RNG(state: .init(words: ["1", "2", "3"], spareNormal: nil)) == nil)
        #expect(RNG(state: .init(words: ["x", "2", "3", "4"], spareNormal: nil)) == nil)
        #expect(RNG(state: .init(words: ["1", "2", "3", "4"], spareNormal: "zz")) == nil)
    }
}
