// PassageReaderTests: the streaming TSV reader yields Python csv's rows across block boundaries; strict mode names the bad line.
import Foundation
import Testing

@testable import Retrieval

@Suite struct PassageReaderTests {
    static func file(_ text: String) -> String {
        let path = NSTemporaryDirectory() + "fidq-psgs-\(UUID().uuidString).tsv"
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    static let sample = "id\ttext\ttitle\n1\tplain text\tTitle One\n2\t\"quoted \"\"inner\"\" text\"\t\"T, two\"\n3\t\"multi\nline\"\tThree\r\n\n4\tlast\tFour"

    @Test func readsDPRQuotingAcrossBlocks() throws {
        let path = Self.file(Self.sample)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let expected = [
            Passage(id: "1", text: "plain text", title: "Title One"),
            Passage(id: "2", text: "quoted \"inner\" text", title: "T, two"),
            Passage(id: "3", text: "multi\nline", title: "Three"),
            Passage(id: "4", text: "last", title: "Four"),
        ]
        // Every block size from tiny (records straddle many blocks) to the whole file.
        for block in [1, 3, 7, 16, 64, 4096] {
            let r = try PassageReader(path: path, blockBytes: block)
            var got: [Passage] = []
            while let p = try r.next() { got.append(p) }
            #expect(got == expected, "block \(block)")
        }
        #expect(try PassageReader.count(path: path) == 4)
        let r = try PassageReader(path: path)
        #expect(try r.skip(2) == 2)
        #expect(try r.nextBlock(max: 5).map(\.id) == ["3", "4"])
    }

    /// A UTF-8 byte order mark (a TSV saved from a spreadsheet) is skipped: the header stays a
    /// header, not a passage with id "\u{FEFF}id", whatever the block size.
    @Test func aByteOrderMarkIsSkipped() throws {
        let path = Self.file("\u{FEFF}" + Self.sample)
        defer { try? FileManager.default.removeItem(atPath: path) }
        for block in [1, 2, 3, 4, 4096] {
            let r = try PassageReader(path: path, blockBytes: block)
            var got: [String] = []
            while let p = try r.next() { got.append(p.id) }
            #expect(got == ["1", "2", "3", "4"], "block \(block)")
        }
        #expect(try PassageReader.count(path: path) == 4)
        let bomOnly = Self.file("\u{FEFF}")
        defer { try? FileManager.default.removeItem(atPath: bomOnly) }
        #expect(try PassageReader.count(path: bomOnly) == 0)
    }

    @Test func missingColumnNamesTheLine() throws {
        let path = Self.file("id\ttext\ttitle\n1\ta\tA\n2\t\"two\nlines\"\tB\n3\tonly two\n4\td\tD\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let r = try PassageReader(path: path, blockBytes: 8)
        #expect(try r.next()?.id == "1")
        #expect(try r.next()?.id == "2")
        let e = #expect(throws: RetrievalError.self) { try r.next() }
        #expect(e?.field == "line 5" && e?.found == "2 columns", "\(String(describing: e))")
        // Lenient mode skips it, as FiD does.
        let lenient = try PassageReader(path: path, strict: false)
        #expect(try lenient.nextBlock(max: 10).map(\.id) == ["1", "2", "4"])
        #expect(lenient.skipped == 1)
    }

    @Test func unparsableLineNamesTheLine() throws {
        for text in ["id\ttext\ttitle\n1\t\"closed\" then text\tA\n", "id\ttext\ttitle\n1\tok\tA\n2\t\"never closed\tB\n"] {
            let path = Self.file(text)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let r = try PassageReader(path: path)
            let line = text.contains("never") ? "line 3" : "line 2"
            var error: RetrievalError?
            do { while try r.next() != nil {} } catch let e as RetrievalError { error = e }
            #expect(error?.field == line, "\(String(describing: error))")
        }
    }

    /// Bytes that are not UTF-8 (a latin-1 file) are refused naming the line and column, in any
    /// block size: FiD's reader stops on them, and decoding them as U+FFFD gave passages no answer
    /// matches (and two different bad ids one id).
    @Test func bytesThatAreNotUTF8AreRefused() throws {
        let path = NSTemporaryDirectory() + "fidq-psgs-\(UUID().uuidString).tsv"
        FileManager.default.createFile(atPath: path, contents: Data("id\ttext\ttitle\n1\tok\tA\n2\tcaf".utf8) + Data([0xE9]) + Data("\tB\n".utf8))
        defer { try? FileManager.default.removeItem(atPath: path) }
        for block in [4, 4096] {
            let r = try PassageReader(path: path, strict: false, blockBytes: block)
            #expect(try r.next()?.id == "1")
            let e = #expect(throws: RetrievalError.self) { try r.next() }
            #expect(e?.field == "line 3" && e?.found.contains("text column") == true, "\(String(describing: e))")
        }
    }

    /// Old Mac line ends (a lone CR) are line breaks, as Python's universal newlines read them,
    /// so an error names the right line (it said line 1 for every row).
    @Test func aLoneCarriageReturnEndsALine() throws {
        let path = Self.file("id\ttext\ttitle\r1\tok\tT\r2\tok\tT\r3\tshort\r4\tok\tT\r")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let r = try PassageReader(path: path)
        var ids: [String] = []
        var error: RetrievalError?
        do { while let p = try r.next() { ids.append(p.id) } } catch let e as RetrievalError { error = e }
        #expect(ids == ["1", "2"] && error?.field == "line 4", "\(ids) \(String(describing: error))")
    }

    /// CRLF line ends split across a block boundary count once: an error names the same line
    /// for every block size (the CR at a block's end was counted, then its LF again).
    @Test func aCRLFSplitAcrossBlocksIsOneLineEnd() throws {
        // Blocks are at least 64 bytes: rows long enough that block ends fall on every byte.
        let rows = (1...12).map { "\($0)\tpassage text \($0)\tTitle \($0)\r\n" }.joined()
        let path = Self.file("id\ttext\ttitle\r\n" + rows + "13\t\"two\r\nlines\"\tC\r\n14\tonly\r\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        for block in 64...130 {
            let r = try PassageReader(path: path, blockBytes: block)
            var error: RetrievalError?
            do { while try r.next() != nil {} } catch let e as RetrievalError { error = e }
            #expect(error?.field == "line 16", "block \(block): \(String(describing: error))")
        }
    }

    /// A quote never closed near the top of a large file is refused once the open row passes the
    /// record limit, not after reading the rest of the file into memory.
    @Test func aQuoteNeverClosedIsRefusedAtTheRecordLimit() throws {
        var text = "id\ttext\ttitle\n1\tok\tA\n2\t\"never closed\tB\n"
        let row = "9\tfiller text of an ordinary passage\tT\n"
        text += String(repeating: row, count: (3 * PassageReader.maxRecordBytes) / row.utf8.count)
        let path = Self.file(text)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let r = try PassageReader(path: path, blockBytes: 64 << 10)
        #expect(try r.next()?.id == "1")
        let e = #expect(throws: RetrievalError.self) { try r.next() }
        #expect(e?.field == "line 3" && e?.found.contains("still open") == true, "\(String(describing: e))")
        #expect(r.bytesRead < PassageReader.maxRecordBytes, "refused before the rest was consumed")
    }

    /// The count of `count`, and the first id a later row repeats: the earliest repeat in file
    /// order, with the row of the id's first use, whatever other ids repeat after it.
    @Test func countFindingRepeatedIDNamesTheFirstRepeat() throws {
        let unique = Self.file(Self.sample)
        defer { try? FileManager.default.removeItem(atPath: unique) }
        let u = try PassageReader.countFindingRepeatedID(path: unique)
        #expect(u.count == 4 && u.repeated == nil)
        var rows = ["id\ttext\ttitle"]
        for i in 0..<5000 { rows.append("\(i)\tpassage \(i)\tT") }
        rows.insert("4000\tagain\tT", at: 3001)  // row 3000 (0-based, after the header): repeats row 4000's id, before it
        rows.append("17\tlater\tT")  // row 5001: repeats row 17, but after the repeat above
        rows.append("2999\tlast\tT")
        let twice = Self.file(rows.joined(separator: "\n"))
        defer { try? FileManager.default.removeItem(atPath: twice) }
        let t = try PassageReader.countFindingRepeatedID(path: twice)
        let counted = try PassageReader.count(path: twice)
        #expect(t.count == 5003 && t.count == counted)
        #expect(t.repeated == RepeatedID(id: "4000", first: 3000, second: 4001), "\(String(describing: t.repeated))")
        // Ids equal only when their bytes are alike in one reading: "1" and " 1" are two.
        let spaced = Self.file("id\ttext\ttitle\n1\ta\tT\n 1\tb\tT\n1 \tc\tT\n")
        defer { try? FileManager.default.removeItem(atPath: spaced) }
        #expect(try PassageReader.countFindingRepeatedID(path: spaced).repeated == nil)
    }

    @Test func missingFileIsNamed() {
        let e = #expect(throws: RetrievalError.self) { try PassageReader(path: "/nonexistent/psgs.tsv") }
        #expect(e?.file == "/nonexistent/psgs.tsv")
    }
}
