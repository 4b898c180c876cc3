import Foundation
import Testing
@testable import Jobs

/// A params type with each shape the catalog must read: required keys of several types, defaults,
/// an optional, an option accepted and ignored, a key the defaults need, a key decoded as a list.
private struct Probe: JobParams {
    var data: String
    var steps: Int
    var shards: [String]
    var rate: Float = 0.5
    var verbose = false
    var note: String?
    var method = "dense"
    var model: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case data, steps, shards, rate, verbose, note, method, model, legacy
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        data = try c.decode(String.self, forKey: .data)
        steps = try c.require(try c.decode(Int.self, forKey: .steps), .steps, "an integer >= 1") { $0 >= 1 }
        shards = try c.decode([String].self, forKey: .shards)
        rate = try c.decodeFloat(.rate) ?? 0.5
        verbose = try c.decode(.verbose, default: false)
        note = try c.decodeIfPresent(String.self, forKey: .note)
        method = try c.decode(.method, default: "dense")
        model = try c.decodeIfPresent(String.self, forKey: .model)
        _ = c.contains(.legacy)  // accepted, never read
        if method == "dense" && model == nil { throw JobError.permanent("method dense needs model", field: "params.model") }
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(data, forKey: .data)
        try c.encode(steps, forKey: .steps)
        try c.encode(shards, forKey: .shards)
        try c.encode(rate, forKey: .rate)
        try c.encode(verbose, forKey: .verbose)
        try c.encodeIfPresent(note, forKey: .note)
        try c.encode(method, forKey: .method)
        try c.encodeIfPresent(model, forKey: .model)
    }
}

/// A type whose range check refuses the placeholder: names and required keys, no defaults (the
/// keys decoded after the refused one show no type either).
private struct Picky: JobParams {
    var path: String
    var size = 3
    enum CodingKeys: String, CodingKey, CaseIterable { case path, size }
    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        path = try c.require(try c.decode(String.self, forKey: .path), .path, "a path ending in .json") { $0.hasSuffix(".json") }
        size = try c.decode(.size, default: 3)
    }
}

struct ParamsCatalogTests {
    @Test func readsNamesTypesDefaultsAndRequiredKeysFromTheDecoder() {
        let d = Dictionary(uniqueKeysWithValues: ParamsCatalog.describe(Probe.self).map { ($0.name, $0) })
        #expect(d.keys.sorted() == ["data", "legacy", "method", "model", "note", "rate", "shards", "steps", "verbose"])
        #expect(d["data"] == ParamDescription(name: "data", type: "string", required: true))
        #expect(d["steps"] == ParamDescription(name: "steps", type: "integer", required: true))
        #expect(d["shards"] == ParamDescription(name: "shards", type: "list", required: true))
        #expect(d["rate"]?.type == "number" && d["rate"]?.defaultValue == .number(0.5))
        #expect(d["verbose"] == ParamDescription(name: "verbose", type: "bool", defaultValue: .bool(false)))
        #expect(d["note"] == ParamDescription(name: "note", type: "string"))
        #expect(d["method"]?.defaultValue == .string("dense"))
        #expect(d["model"] == ParamDescription(name: "model", type: "string", neededBy: "method dense needs model"))
        #expect(d["legacy"] == ParamDescription(name: "legacy"))
        // Required first, then those the defaults need, then the rest; by name within each.
        #expect(ParamsCatalog.describe(Probe.self).map(\.name) == ["data", "shards", "steps", "model", "legacy", "method", "note", "rate", "verbose"])
    }

    @Test func aPlaceholderTheDecoderRefusesLeavesNamesAndTypes() {
        #expect(ParamsCatalog.describe(Picky.self) == [ParamDescription(name: "path", type: "string", required: true),
                                                       ParamDescription(name: "size")])
    }

    @Test func helpLinesAlignAndWrapUnderTheirColumn() {
        let lines = ParamsCatalog.helpLines(ParamsCatalog.describe(Probe.self))
        #expect(lines[0] == "  --data <string>     required")
        #expect(lines[1] == "  --shards <value> …  required")
        #expect(lines[3] == "  --model <string>    required: method dense needs model")
        #expect(lines[4] == "  --legacy <value>    accepted; no effect here (FiD's option)")
        #expect(lines[8] == "  --verbose           default false")
        #expect(lines.contains("  --rate <number>     default 0.5") && lines.contains("  --note <string>     optional"))
        let long = ParamsCatalog.wrapped("  --x  ", String(repeating: "word ", count: 30), columns: 40)
        #expect(long.split(separator: "\n").allSatisfy { $0.count <= 40 && $0.hasPrefix("  ") })
        #expect(long.split(separator: "\n").dropFirst().allSatisfy { $0.hasPrefix("       word") })
    }
}
