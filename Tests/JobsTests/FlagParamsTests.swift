// FlagParamsTests: FiD-style flags typed by a params type's own decoder, as `fidq <kind>` builds them.
import Foundation
import Testing
@testable import Jobs

private struct Params: Decodable {
    var name = "x", n = 1, lr = 1e-4, flag = false, inputs: [String] = [], ids: [Int] = []
    enum CodingKeys: String, CodingKey, CaseIterable { case name, n, lr, flag, inputs, ids }
    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(.name, default: "x")
        n = try c.decode(.n, default: 1)
        lr = try c.decode(.lr, default: 1e-4)
        flag = try c.decode(.flag, default: false)
        inputs = try c.decode(.inputs, default: [])
        ids = try c.decode(.ids, default: [])
    }
}

@Suite struct FlagParamsTests {
    static func build(_ args: [String]) throws -> JSONValue {
        try FlagParams.build(args) { _ = try KindRegistry.decode(Params.self, $0) }
    }

    @Test func typesFollowTheParams() throws {
        let v = try Self.build(["--name", "2024", "--n", "10", "--lr=5e-05", "--flag", "--inputs", "a", "--ids", "3", "4"])
        #expect(v == .object(["name": .string("2024"), "n": .number(10), "lr": .number(5e-5), "flag": .bool(true),
                              "inputs": .array([.string("a")]), "ids": .array([.number(3), .number(4)])]))
        // The result decodes as the params (the same JSON a descriptor carries).
        let p = try KindRegistry.decode(Params.self, v)
        #expect(p.name == "2024" && p.n == 10 && p.flag && p.inputs == ["a"] && p.ids == [3, 4])
    }

    @Test func listsFromRepeatsAndNumbersAsStringsInLists() throws {
        let v = try Self.build(["--inputs", "1", "--inputs", "007", "--flag", "false"])
        #expect(v == .object(["inputs": .array([.string("1"), .string("007")]), "flag": .bool(false)]))
        #expect(try Self.build(["--name", "007"]) == .object(["name": .string("007")]))
        #expect(try Self.build(["--flag", "1"]) == .object(["flag": .bool(true)]))
    }

    /// argparse takes an unambiguous prefix of an option (FiD's README: `--total_step 15000`):
    /// so does the command line; an ambiguous one, or one beside its full name, is refused naming them.
    @Test func unambiguousPrefixesStandForTheirParam() throws {
        #expect(try Self.build(["--fl", "--inp", "a", "--na=b"]) == .object(["flag": .bool(true), "inputs": .array([.string("a")]), "name": .string("b")]))
        #expect(try Self.build(["--lr", "0.1"]) == .object(["lr": .number(0.1)]))  // a full name is never a prefix
        for (args, message) in [(["--i", "3"], "--i is ambiguous: it could be --inputs, --ids"),
                                (["--fla", "--flag"], "--fla abbreviates --flag, which is given too")] {
            do {
                _ = try Self.build(args)
                Issue.record("accepted \(args)")
            } catch let e as FlagParams.Failure {
                #expect(e.description == message, "\(e)")
            }
        }
        // No param begins so: left for the registry, which names it.
        #expect(try Self.build(["--zz", "1"]) == .object(["zz": .number(1)]))
    }

    @Test func badValuesAreLeftForTheRegistryToName() throws {
        // A string where an Int is expected stays a string: decoding then names params.n.
        let v = try Self.build(["--n", "ten", "--bogus", "3"])
        #expect(v == .object(["n": .string("ten"), "bogus": .number(3)]))
        #expect(throws: DecodingError.self) { _ = try KindRegistry.decode(Params.self, v) }
        #expect(throws: FlagParams.Failure.self) { _ = try Self.build(["stray", "--n", "1"]) }
        // Two values for a one-value param: the flag is named, not "expected a string, found an array".
        for args in [["--name", "a", "--name", "b"], ["--name", "my", "run"], ["--n", "1", "2"]] {
            do {
                _ = try Self.build(args)
                Issue.record("accepted \(args)")
            } catch let e as FlagParams.Failure {
                #expect(e.description.hasPrefix("--\(args[0].dropFirst(2)) takes one value, given 2"), "\(e)")
            }
        }
        // An integer a double would round: refused naming the flag, not run as another number;
        // as text where a string belongs, and as a number when a double holds it exactly.
        do {
            _ = try Self.build(["--n", "9007199254740993"])
            Issue.record("accepted --n 9007199254740993")
        } catch let e as FlagParams.Failure {
            #expect(e.description.hasPrefix("--n 9007199254740993: ") && e.description.contains("would run as 9007199254740992"), "\(e)")
        }
        #expect(try Self.build(["--name", "9007199254740993"]) == .object(["name": .string("9007199254740993")]))
        #expect(try Self.build(["--lr", "9007199254740992"]) == .object(["lr": .number(0x1p53)]))
        #expect(FlagParams.isJSONNumber("-1.5e+3") && !FlagParams.isJSONNumber("01") && !FlagParams.isJSONNumber("1.") && !FlagParams.isJSONNumber("nan"))
    }
}
