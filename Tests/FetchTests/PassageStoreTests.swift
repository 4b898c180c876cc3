// PassageStoreTests: the passages TSV parsed as Python's csv.reader(delimiter='\t') parses it.
import Foundation
import Testing

@testable import Fetch
import Formats

@Suite struct PassageStoreTests {
    @Test func parsesDPRQuotingAndSkipsBadRows() throws {
        let store = try PassageStore(FiDFixtures.passages)
        #expect(store.count == 12)
        #expect(store.malformed == 1)  // "99<TAB>only two fields"
        #expect(store.passage("1")?.text == "Aaron Aaron ( or ; \"Ahärôn\") is a prophet, high priest, and the brother of Moses.")
        #expect(store.passage("3")?.text == "A passage with a\ttab and a\nnewline inside its quotes.")
        // Text after a closing quote is kept (csv's non-strict mode).
        #expect(store.passage("4")?.title == "Weird Al")
        // A CRLF line end is one newline.
        #expect(store.passage("5")?.title == "Paris")
        #expect(store.passage("6")?.title == "Eiffel Tower")
        #expect(store.passage("99") == nil)
        #expect(store.passage("id") == nil)
        #expect(store.passage("13") == nil)
    }

    @Test func aByteOrderMarkIsSkipped() throws {
        let box = try Sandbox()
        let url = try box.source("p.tsv", Data("\u{FEFF}id\ttext\ttitle\r\n1\ta\tA\r\n".utf8))
        let store = try PassageStore(url)
        #expect(store.count == 1 && store.passage("1")?.title == "A" && store.malformed == 0)
    }

    @Test func nonNumericAndDuplicateIDs() throws {
        let box = try Sandbox()
        let url = try box.source("p.tsv", Data("id\ttext\ttitle\nwiki:7\t\"a\"\tA\n007\tb\tB\n7\tc\tC\n7\td\tD\n\nx\t\"unterminated\ttext".utf8))
        let store = try PassageStore(url)
        #expect(store.passage("wiki:7")?.text == "a")
        #expect(store.passage("007")?.text == "b")
        #expect(store.passage("7")?.text == "d")  // a later duplicate wins, as in a Python dict
        #expect(store.passage("x") == nil)  // one field: the quote swallowed the tab
        #expect(store.count == 3)
    }

    @Test func sparseAndUnsortedIDsCostOnlyTheirRows() throws {
        // Before: an id of 2000000000 grew an id-indexed array to ~24 GB. Now the index holds one
        // entry per row, whatever the ids are.
        let box = try Sandbox()
        let url = try box.source("p.tsv", Data("id\ttext\ttitle\n2000000000\tfar\tF\n5\tfive\tV\n4294967295\tmax\tM\n5\tagain\tV\n".utf8))
        let store = try PassageStore(url)
        #expect(store.passage("2000000000")?.text == "far")
        #expect(store.passage("4294967295")?.text == "max")
        #expect(store.passage("5")?.text == "again")
        #expect(store.passage("6") == nil && store.passage("4294967296") == nil)
        #expect(store.count == 3)
    }

    @Test func absurdIDIsRefusedNamingTheLine() throws {
        let box = try Sandbox()
        let url = try box.source("p.tsv", Data("id\ttext\ttitle\n1\t\"two\nlines\"\tA\n99999999999999999999999\tx\tX\n".utf8))
        #expect {
            try PassageStore(url)
        } throws: { e in
            guard case .format(let file, let field, _, let found)? = e as? FetchError else { return false }
            return file == url.path && field == "line 4" && found == "99999999999999999999999"
        }
    }

    @Test func fastScanFindsTheSameRecordsAsTheExactParser() {
        // Random text over the characters that matter to csv: both must agree on every boundary.
        let alphabet: [UInt8] = Array("ab\t\n\r\"1".utf8)
        var x: UInt64 = 12345
        for trial in 0..<400 {
            var bytes: [UInt8] = []
            for _ in 0..<(trial % 60 + 1) {
                x = x &* 6364136223846793005 &+ 1442695040888963407
                bytes.append(alphabet[Int(x >> 33) % alphabet.count])
            }
            bytes.withUnsafeBufferPointer { buf in
                let p = buf.baseAddress!, n = buf.count
                var i = 0
                while i < n {
                    let exact = TSVRecord.parse(p, n, i, firstOnly: true)
                    let fast = TSVRecord.scan(p, n, i)
                    if fast.idEnd >= 0 {
                        #expect(fast.next == exact.next && fast.fields == exact.fields.count, "\(bytes) at \(i)")
                        #expect(String(decoding: buf[i..<fast.idEnd], as: UTF8.self) == (exact.fields.first ?? ""), "\(bytes) at \(i)")
                    }
                    i = exact.next
                }
            }
        }
    }
}
