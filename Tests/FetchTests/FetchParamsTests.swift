// FetchParamsTests: strict decoding of a fetch job's params, with the field and a hint in each error.
import Foundation
import Testing

@testable import Fetch

@Suite struct FetchParamsTests {
    static func decode(_ json: String) throws -> FetchParams { try FetchParams.decode(Data(json.utf8)) }

    static func field(_ json: String) -> String? {
        do {
            _ = try decode(json)
            return nil
        } catch FetchError.badParams(let field, _, _, _) {
            return field
        } catch {
            return "other: \(error)"
        }
    }

    @Test func decodesEveryKeyAndRoundTrips() throws {
        let p = try Self.decode("""
            {"url": "https://example.org/a.tar.gz", "dest": "data/a", "sha256": "\(String(repeating: "0f", count: 32))",
             "unpack": "off", "strip_components": 2, "max_bytes": 1000, "max_files": 7, "filename": "a.bin",
             "connect_timeout_s": 3, "idle_timeout_s": 4.5, "retries": 9, "retry_backoff_s": 0.5, "replace": true}
            """)
        #expect(p.url == "https://example.org/a.tar.gz" && p.dest == "data/a" && p.unpack == .off)
        #expect(p.stripComponents == 2 && p.maxBytes == 1000 && p.maxFiles == 7 && p.filename == "a.bin")
        #expect(p.connectTimeoutS == 3 && p.idleTimeoutS == 4.5 && p.retries == 9 && p.retryBackoffS == 0.5 && p.replace)
        #expect(try FetchParams.decode(JSONEncoder().encode(p)) == p)
        let d = try Self.decode(#"{"source": "nq_reader_base", "dest": "m"}"#)
        #expect(d.unpack == .auto && d.maxBytes == 256 << 30 && d.retries == 5 && d.stripComponents == 0)
    }

    @Test func unknownKeyIsRejectedWithASuggestion() {
        #expect(throws: FetchError.badParams(field: "max_byte", expected: "one of " + FetchParams.CodingKeys.allCases.map(\.stringValue).sorted().joined(separator: ", "),
                                             found: "an unknown key", hint: "did you mean 'max_bytes'?")) {
            try Self.decode(#"{"url": "http://x/a", "dest": "d", "max_byte": 5}"#)
        }
    }

    @Test func badValuesNameTheirField() {
        #expect(Self.field(#"{"url": "http://x/a"}"#) == "dest")
        #expect(Self.field(#"{"dest": "d"}"#) == "url")
        #expect(Self.field(#"{"url": "http://x/a", "source": "psgs_w100", "dest": "d"}"#) == "source")
        #expect(Self.field(#"{"url": "ftp://x/a", "dest": "d"}"#) == "url")
        #expect(Self.field(#"{"source": "nq_reader_huge", "dest": "d"}"#) == "source")
        #expect(Self.field(#"{"url": "http://x/a", "dest": "d", "sha256": "abc"}"#) == "sha256")
        #expect(Self.field(#"{"url": "http://x/a", "dest": "d", "strip_components": "1"}"#) == "strip_components")
        #expect(Self.field(#"{"url": "http://x/a", "dest": "d", "strip_components": -1}"#) == "strip_components")
        #expect(Self.field(#"{"url": "http://x/a", "dest": "d", "unpack": "yes"}"#) == "unpack")
        #expect(Self.field(#"{"url": "http://x/a", "dest": "d", "max_bytes": 0}"#) == "max_bytes")
        #expect(Self.field(#"{"url": "http://x/a", "dest": "d", "passages": "p.tsv"}"#) == "passages")
        #expect(Self.field(#"{"url": "http://x/a", "dest": "d", "mirror": "http://m"}"#) == "mirror")
        #expect(Self.field(#"{"url": "http://x/a", "dest": "d", "filename": "../x"}"#) == "filename")
        #expect(Self.field(#"{"url": "http://x/a", "dest": ".."}"#) == "dest")
        // Its work folder `.<name>.fetch` must fit in 255 bytes too (it failed at run time, retried).
        #expect(Self.field(#"{"url": "http://x/a", "dest": "d/\#(String(repeating: "n", count: 249))"}"#) == "dest")
        #expect(Self.field(#"{"url": "http://x/a", "dest": "d/\#(String(repeating: "n", count: 248))"}"#) == nil)
        // fidq's marker and its temporary name (the download replaced the marker's temp file, and was deleted).
        #expect(Self.field(#"{"url": "http://x/a", "dest": "d", "filename": ".fidq-fetch.json"}"#) == "filename")
        #expect(Self.field(#"{"url": "http://x/a", "dest": "d", "filename": "..fidq-fetch.json.tmp"}"#) == "filename")
        #expect(Fetcher.safeName("..fidq-fetch.json.tmp") == "download")
        #expect(Self.field(#"{"source": "psgs_w100", "dest": "d", "sha256": "\#(String(repeating: "a", count: 64))"}"#) == "sha256")
        #expect(Self.field(#"[1, 2]"#) == "params")
        #expect(Self.field(#"{"source": "nq_retriever", "dest": "d", "unpack": "off"}"#) == "unpack")
        #expect(Self.field(#"{"source": "fid_data", "dest": "d", "strip_components": 1}"#) == "strip_components")
        #expect(Self.field(#"{"source": "psgs_w100", "dest": "d", "filename": "p.tsv"}"#) == "filename")
        #expect(Self.field(#"{"source": "psgs_w100", "dest": "d", "unpack": "off"}"#) == nil)
        #expect(Self.field(#"{"source": "nq_data", "dest": "d", "passages": "p.tsv", "mirror": "http://m:1"}"#) == nil)
    }
}
