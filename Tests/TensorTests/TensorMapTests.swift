// TensorMapTests: insertion order, replacement and removal, and the missing-name error's suggestions.
import Testing
@testable import Tensor

@Suite struct TensorMapTests {
    static func t(_ v: Float, _ shape: [Int] = [1]) -> Tensor { Tensor(shape: shape, repeating: v) }

    @Test func keepsInsertionOrder() {
        var m = TensorMap(source: "model.safetensors")
        for name in ["z", "a", "m", "b"] { m.append(name, Self.t(1)) }
        #expect(m.names == ["z", "a", "m", "b"])
        #expect(m.map(\.name) == ["z", "a", "m", "b"])
        let literal: TensorMap = ["q": Self.t(1), "k": Self.t(2), "v": Self.t(3)]
        #expect(literal.names == ["q", "k", "v"])
        #expect(literal["k"] == Self.t(2))
    }

    @Test func replaceKeepsPositionAndRemoveReindexes() throws {
        var m: TensorMap = ["a": Self.t(1), "b": Self.t(2), "c": Self.t(3)]
        m["b"] = Self.t(20, [2])
        #expect(m.names == ["a", "b", "c"])
        #expect(try m.tensor("b").shape == [2])
        m["a"] = nil
        #expect(m.names == ["b", "c"])
        #expect(try m.tensor("c") == Self.t(3))  // index rebuilt after removal
        m["d"] = Self.t(4)
        #expect(m.names == ["b", "c", "d"])
        #expect(m.count == 3 && m.elementCount == 4 && m.contains("d") && !m.contains("a"))
    }

    @Test func equalityIsNamesOrderAndValues() {
        let a: TensorMap = ["x": Self.t(1), "y": Self.t(2)]
        let b = TensorMap([("x", Self.t(1)), ("y", Self.t(2))], source: "elsewhere")
        let c: TensorMap = ["y": Self.t(2), "x": Self.t(1)]
        #expect(a == b)
        #expect(a != c)
    }

    @Test func missingNameListsCloseNames() {
        let names = [
            "encoder.block.0.layer.0.SelfAttention.q.weight", "encoder.block.0.layer.0.SelfAttention.k.weight",
            "encoder.block.1.layer.0.SelfAttention.q.weight", "shared.weight", "lm_head.weight",
        ]
        let m = TensorMap(names.map { ($0, Self.t(0)) }, source: "/models/t5/model.safetensors")
        do {
            _ = try m.tensor("encoder.block.0.layer.0.SelfAttention.v.weight")
            Issue.record("expected a missing-name error")
        } catch let e as TensorMapError {
            guard case let .missing(name, source, close) = e else { Issue.record("\(e)"); return }
            #expect(name == "encoder.block.0.layer.0.SelfAttention.v.weight")
            #expect(source == "/models/t5/model.safetensors")
            #expect(close.prefix(2).sorted() == [names[0], names[1]].sorted())  // one letter away
            #expect(!close.contains("shared.weight"))
            #expect(e.description.contains("/models/t5/model.safetensors"))
            #expect(e.description.contains("'encoder.block.0.layer.0.SelfAttention.q.weight'"))
        } catch { Issue.record("unexpected \(error)") }
        // A name missing its prefix finds the prefixed one.
        #expect(m.closeNames(to: "block.1.layer.0.SelfAttention.q.weight").first == names[2])
        #expect(m.closeNames(to: "completely.different.thing.entirely") == [])
    }

    @Test func shapeCheckedLookup() throws {
        let m: TensorMap = ["w": Self.t(0, [2, 3])]
        #expect(try m.tensor("w", shape: [2, 3]).shape == [2, 3])
        #expect(throws: TensorMapError.shape(name: "w", source: "tensor map", expected: [3, 2], found: [2, 3])) {
            try m.tensor("w", shape: [3, 2])
        }
    }
}
