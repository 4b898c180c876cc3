// DescriptorTests: strict decoding, defaults, ids and job: references of the job descriptor.
import Foundation
import Testing
@testable import Jobs

@Suite struct DescriptorTests {
    func parse(_ json: String, file: String? = "job.json") throws -> JobDescriptor {
        try JobDescriptor.parse(Data(json.utf8), fileName: file)
    }

    func error(_ json: String, file: String? = "job.json") -> JobError? {
        do { _ = try parse(json, file: file); return nil } catch { return error as? JobError }
    }

    @Test func defaultsFillEverythingButKind() throws {
        let d = try parse(#"{"kind": "test.record"}"#, file: "nq-data.json")
        #expect(d.id == "nq-data")
        #expect(d.after == [] && d.priority == 0 && d.maxAttempts == 3 && d.timeoutS == nil)
        #expect(d.params == .object([:]))
    }

    @Test func fullDescriptorRoundTrips() throws {
        let d = try parse(#"""
        {"kind": "train_reader", "id": "r1", "after": ["a", "b"], "priority": 7, "max_attempts": 5,
         "timeout_s": 3600, "params": {"model_path": "job:nq-reader/best", "lr": 5e-5, "x": ["job:c/y"]}}
        """#, file: "r1.json")
        #expect(d.id == "r1" && d.priority == 7 && d.maxAttempts == 5 && d.timeoutS == 3600)
        #expect(d.dependencies == ["a", "b", "c", "nq-reader"])
        #expect(d.references().map(\.field).sorted() == ["params.model_path", "params.x[0]"])
    }

    @Test(arguments: [
        (#"{"kind": "k", "colour": 1}"#, "colour", "unknown key 'colour'"),
        (#"{"kind": "k", "prority": 1}"#, "prority", "did you mean 'priority'"),
        // The value found, not Foundation's "Expected to decode String but found number instead".
        (#"{"kind": 3}"#, "kind", "kind: expected a string, found 3"),
        (#"{"kind": "k", "after": "a"}"#, "after", "after: expected a list, found \"a\""),
        (#"{"kind": "k", "priority": "high"}"#, "priority", "expected a number, found \"high\""),
        (#"{"kind": "k", "priority": 1.5}"#, "priority", "an integer in -1000000…1000000, found 1.5"),
        (#"{"kind": "k", "max_attempts": 0}"#, "max_attempts", "1…100, found 0"),
        (#"{"kind": "k", "timeout_s": -1}"#, "timeout_s", "> 0"),
        (#"{"kind": "k", "params": [1]}"#, "params", "expected"),
        (#"{"kind": "k", "id": "a/b"}"#, "id", "[A-Za-z0-9._-]"),
        (#"{"kind": "k", "id": ".."}"#, "id", "[A-Za-z0-9._-]"),
        (#"{"kind": "k", "after": ["../x"]}"#, "after[0]", "job id"),
        (#"{"kind": "k", "params": {"p": "job:../etc/x"}}"#, "params.p", "bad id"),
        (#"{"kind": "k", "id": "other"}"#, "id", "differs from the file name"),
        (#"{"kind": "k", "after": ["job"]}"#, "after", "depends on itself"),
        (#"{"id": "job"}"#, "kind", "missing required field"),
        (#"{"kind": "k", "params": {"a": {"n": -1e400}}}"#, "params.a.n", "beyond a 64-bit float's range"),
        (#"{"kind": "k", "params": {"a": [1, -1e400]}}"#, "params.a[1]", "beyond a 64-bit float's range"),
        (#"{"kind": "k", "params": {"seed": 9007199254740993}}"#, "params.seed", "found 9007199254740993, which would run as 9007199254740992"),
        (#"{"kind": "k", "params": {"a": [{"seed": 18446744073709551615}]}}"#, "params.a[0].seed", "which would run as 18446744073709551616"),
    ])
    func rejectsNamingTheField(json: String, field: String, message: String) throws {
        let e = try #require(error(json))
        #expect(e.permanence == .permanent)
        #expect(e.field == field, "field \(e.field ?? "nil") for \(json)")
        #expect(e.description.contains(message), "\(e.description)")
    }

    /// Integers a double holds exactly stay as written, however large; only those it would round
    /// are refused (rejectsNamingTheField).
    @Test func largeIntegersADoubleHoldsExactlyPass() throws {
        for (text, value) in [("9007199254740992", 0x1p53), ("-9007199254740992", -0x1p53),
                              ("1152921504606846976", 0x1p60), ("1e22", 1e22), ("4503599627370497", 4503599627370497)] {
            let d = try parse(#"{"kind": "k", "params": {"seed": \#(text), "a": [\#(text)]}}"#)
            #expect(d.params == .object(["seed": .number(value), "a": .array([.number(value)])]), "\(text)")
        }
    }

    /// An integer param given 2.5 or 1e22: Foundation says only "not valid JSON", without the
    /// field; `decode(_:default:)` and `decodeInteger` name both.
    @Test func integerParamsNameTheFieldAndTheNumber() throws {
        struct Params: Decodable {
            var n: Int
            var m: Int?
            enum CodingKeys: String, CodingKey, CaseIterable { case n, m }
            init(from decoder: Decoder) throws {
                let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
                n = try c.decode(.n, default: 1)
                m = try c.decodeInteger(.m)
            }
        }
        func error(_ json: String) -> JobError? {
            let result = Result { try JSONDecoder().decode(Params.self, from: Data(json.utf8)) }
            guard case .failure(let e as DecodingError) = result else { return nil }
            return JobError.describe(e, root: "params", document: try? JSONDecoder().decode(JSONValue.self, from: Data(json.utf8)))
        }
        // Text where a number belongs names the text (Foundation's "found a string" did not).
        #expect(error(#"{"n": "abc"}"#)?.message == #"expected an integer, found "abc""#, "\(String(describing: error(#"{"n": "abc"}"#)))")
        let ok = try JSONDecoder().decode(Params.self, from: Data(#"{"n": 4.0, "m": 4611686018427387905}"#.utf8))
        #expect(ok.n == 4 && ok.m == 4_611_686_018_427_387_905)
        #expect(try JSONDecoder().decode(Params.self, from: Data(#"{"m": null}"#.utf8)).n == 1)
        for (json, field, message) in [(#"{"n": 2.5}"#, "params.n", "expected an integer, found 2.5"),
                                        (#"{"m": 1e22}"#, "params.m", "found 1e+22 (beyond"),
                                        (#"{"m": "3"}"#, "params.m", "expected an integer")] {
            let e = error(json)
            #expect(e?.field == field && e?.message.contains(message) == true, "\(json): \(String(describing: e))")
        }
    }

    /// A seed (UInt64) given -1 or 1.5, a Float given 1e39 or 1e-300: Foundation says only "not
    /// valid JSON"; `decode(_:default:)` names the field and the number.
    @Test func unsignedAndFloatParamsNameTheFieldAndTheNumber() throws {
        struct Params: Decodable {
            var seed: UInt64
            var k1: Float
            enum CodingKeys: String, CodingKey, CaseIterable { case seed, k1 }
            init(from decoder: Decoder) throws {
                let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
                seed = try c.decode(.seed, default: 0)
                k1 = try c.decode(.k1, default: 0.9)
            }
        }
        let ok = try JSONDecoder().decode(Params.self, from: Data(#"{"seed": 9007199254740992, "k1": 3e38}"#.utf8))
        #expect(ok.seed == 1 << 53 && ok.k1 == 3e38)
        let tiny = try JSONDecoder().decode(Params.self, from: Data(#"{"k1": 1e-44}"#.utf8))
        #expect(tiny.k1 > 0 && tiny.seed == 0)  // a float32 subnormal is still a number it holds
        for (json, field, message) in [(#"{"seed": -1}"#, "params.seed", "expected an integer >= 0, found -1"),
                                        (#"{"seed": 1.5}"#, "params.seed", "expected an integer, found 1.5"),
                                        (#"{"k1": 1e39}"#, "params.k1", "found 1e+39"),
                                        (#"{"k1": -1e-300}"#, "params.k1", "found -1e-300"),
                                        (#"{"k1": "0.9"}"#, "params.k1", "expected a number")] {
            let result = Result { try JSONDecoder().decode(Params.self, from: Data(json.utf8)) }
            guard case .failure(let d as DecodingError) = result else {
                Issue.record("\(json) decoded")
                continue
            }
            let e = JobError.describe(d, root: "params")
            #expect(e.field == field && e.message.contains(message), "\(json): \(e)")
        }
    }

    @Test func rejectsEmptyGarbageAndHugeFiles() throws {
        #expect(error("")?.message == "empty file")
        #expect(error("{not json")?.message == "not valid JSON at line 1, column 2: expected a string key")
        #expect(error("\u{0}\u{1}\u{2}")?.message == "not valid JSON at line 1, column 1: unexpected byte 0x0")
        let huge = #"{"kind": "k", "params": {"x": ""# + String(repeating: "a", count: JobDescriptor.maxBytes) + "\"}}"
        #expect(error(huge)?.message.contains("larger than") == true)
    }

    /// Foundation refuses bad JSON without saying where; the error names the line, the column
    /// and what was expected there, and a number beyond a float's range (which Python's json reads
    /// as inf) is named with its field.
    @Test func badJSONIsLocated() throws {
        let missingComma = "{\"kind\": \"k\",\n  \"params\": {\"a\": 1 \"b\": 2}\n}"
        #expect(error(missingComma)?.message == "not valid JSON at line 2, column 21: expected ',' or '}' in an object, found '\"'")
        #expect(error("{\"kind\": \"k\",\n\n  \"after\": [\"a\" 2]}")?.message
                == "not valid JSON at line 3, column 17: expected ',' or ']' in an array, found '2'")
        for (json, field) in [(#"{"kind": "k", "priority": 1e400}"#, "priority"),
                              (#"{"kind": "k", "timeout_s": -2E+999}"#, "timeout_s")] {
            let e = error(json)
            #expect(e?.field == field && e?.message.contains("beyond a 64-bit float's range") == true, "\(json): \(String(describing: e))")
        }
    }

    /// Foundation keeps the first of two equal keys (Python's json the last) and accepts a trailing
    /// comma (Python's refuses it): both are refused, so a descriptor means one thing to every tool.
    @Test func repeatedKeysAndTrailingCommasAreRefused() throws {
        for (json, field) in [(#"{"kind": "a", "kind": "b"}"#, "kind"),
                              (#"{"kind": "k", "params": {"n_docs": 1, "n_docs": 3}}"#, "params.n_docs"),
                              (#"{"kind": "k", "params": {"a": [{"x": 1}, {"y": 1, "y": 2}]}}"#, "params.a[1].y")] {
            let e = error(json)
            #expect(e?.field == field && e?.message.contains("appears twice") == true, "\(json): \(String(describing: e))")
        }
        #expect(error("{\"kind\": \"k\",\n \"params\": {\"a\": 1,}}")?.message.hasPrefix("not valid JSON at line 2, column 20: expected a string key") == true,
                "\(String(describing: error("{\"kind\": \"k\",\n \"params\": {\"a\": 1,}}")))")
        // Equal keys in sibling objects are no repeat; a leading byte order mark is skipped.
        let d = try parse("\u{FEFF}" + #"{"kind": "k", "params": {"a": {"x": 1}, "b": {"x": 2}}}"#)
        #expect(d.params == .object(["a": .object(["x": .number(1)]), "b": .object(["x": .number(2)])]))
    }

    @Test func badFileNameNeedsAnID() throws {
        #expect(error(#"{"kind": "k"}"#, file: "a b.json")?.field == "id")
        #expect(try parse(#"{"kind": "k", "id": "ok"}"#, file: nil).id == "ok")
    }

    @Test func validIDs() {
        #expect(JobDescriptor.isValidID("nq-reader_base.v2"))
        // A leading dot is the queue's temporary-file convention: scans and status skip such names.
        for bad in ["", ".", "..", ".nightly", "a/b", "a b", "é", String(repeating: "x", count: 129), "a@b"] {
            #expect(!JobDescriptor.isValidID(bad), "\(bad)")
        }
    }
}
