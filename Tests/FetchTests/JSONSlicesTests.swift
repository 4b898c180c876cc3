// JSONSlicesTests: element boundaries of one array in a JSON document, strings and escapes respected.
import Foundation
import Testing

@testable import Fetch

@Suite struct JSONSlicesTests {
    static func slices(_ json: String, _ key: String = "Data") throws -> [String] {
        var out: [String] = []
        try JSONSlices.forEachElement(ofArray: key, in: Data(json.utf8), file: "t.json") { out.append(String(decoding: $0, as: UTF8.self)) }
        return out
    }

    @Test func findsEachElementWhateverComesFirst() throws {
        let json = #" { "Domain": "Web", "x": [1, {"Data": "]"}], "Data" : [ {"a": "},\"]"}, [2, 3], "s\\", 4 , null ], "Split": "train"}"#
        #expect(try Self.slices(json) == [#"{"a": "},\"]"}"#, "[2, 3]", #""s\\""#, "4", "null"])
        #expect(try Self.slices(#"{"Data": []}"#) == [])
        #expect(throws: FetchError.self) { try Self.slices(#"{"Other": [1]}"#) }
        #expect(throws: FetchError.self) { try Self.slices(#"{"Data": [{"a": 1}"#) }
        #expect(throws: FetchError.self) { try Self.slices(#"[1, 2]"#) }
    }
}
