// TorchPickleTests: every kind of value TorchPickle writes reads back through PickleReader as
// Python would unpickle it (the tensor and Namespace paths: TorchCheckpointWriterTests and
// FiDOptimizerFileTests).
import Testing
@testable import Tensor

@Suite struct TorchPickleTests {
    @Test func plainValuesRoundTrip() throws {
        let ints = [0, 1, 255, 256, 65535, 65536, -1, -300, Int(Int32.max), Int(Int32.min), 1 << 40, -(1 << 40), Int.max, Int.min]
        let floats = [0.0, -0.0, 1e-8, 0.999, -2.5e300, Double.infinity, -Double.infinity]
        let value = TorchPickle.dict([
            ("ints", .list(ints.map(TorchPickle.int))), ("floats", .tuple(floats.map(TorchPickle.float))),
            ("nan", .float(.nan)), ("text", .string("héllo, 世界")), ("flags", .list([.bool(true), .bool(false), .none])),
            ("empty", .tuple([])), ("nothing", .list([])), ("inner", .dict([(.int(3), .dict([("k", .string(""))]))], ordered: false)),
            ("ordered", .dict([("a", .int(1))], ordered: true)),
        ])
        var w = PickleWhitelist()
        w.allowOrderedDict()
        guard case let .dict(d) = try PickleReader.read(value.pickled(), whitelist: w) else {
            Issue.record("not a dict")
            return
        }
        func get(_ k: String) -> PickleValue? { d.keys.firstIndex { $0.stringValue == k }.map { d.values[$0] } }
        #expect(d.keys.compactMap(\.stringValue) == ["ints", "floats", "nan", "text", "flags", "empty", "nothing", "inner", "ordered"])
        #expect(get("ints")?.sequence?.compactMap(\.intValue) == ints)
        let back = get("floats")?.sequence?.compactMap { v -> Double? in if case let .float(f) = v { return f }; return nil }
        #expect(back?.map(\.bitPattern) == floats.map(\.bitPattern))
        if case let .float(n)? = get("nan") { #expect(n.isNaN) } else { Issue.record("nan: \(String(describing: get("nan")))") }
        #expect(get("text")?.stringValue == "héllo, 世界")
        let flags = get("flags")?.sequence ?? []
        #expect(flags.count == 3 && flags[0].boolValue == true && flags[1].boolValue == false)
        if case .none? = flags.last {} else { Issue.record("None: \(flags)") }
        if case let .tuple(t)? = get("empty") { #expect(t.isEmpty) } else { Issue.record("empty tuple") }
        if case let .list(l)? = get("nothing") { #expect(l.items.isEmpty) } else { Issue.record("empty list") }
        guard case let .dict(inner)? = get("inner"), case let .dict(kd)? = inner.values.first else {
            Issue.record("inner")
            return
        }
        #expect(inner.keys.first?.intValue == 3 && inner.className == nil && kd.values.first?.stringValue == "")
        if case let .dict(o)? = get("ordered") { #expect(o.className == "collections.OrderedDict" && o.values.first?.intValue == 1) }
    }
}
