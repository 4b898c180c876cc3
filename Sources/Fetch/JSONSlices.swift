// JSONSlices: finds the elements of one top-level array in a large JSON document without parsing the rest.
import Foundation

/// A bracket-matching scan (string- and escape-aware) over a JSON document's bytes. It checks
/// structure only as far as needed to find boundaries; each element is then decoded on its own.
enum JSONSlices {
    /// Calls `body` with the bytes of each element of the array under `key` in the top-level object.
    static func forEachElement(ofArray key: String, in data: Data, file: String, _ body: (Data) throws -> Void) throws {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let p = raw.bindMemory(to: UInt8.self)
            let n = p.count
            var i = 0
            func bad(_ expected: String) -> FetchError {
                .format(file: file, field: "byte \(i)", expected: expected, found: i < n ? "'\(Character(Unicode.Scalar(p[i])))'" : "the end")
            }
            func ws() { while i < n, p[i] == 32 || p[i] == 9 || p[i] == 10 || p[i] == 13 { i += 1 } }
            func expect(_ c: UInt8) throws {
                ws()
                guard i < n, p[i] == c else { throw bad("'\(Character(Unicode.Scalar(c)))'") }
                i += 1
            }
            // i at an opening quote; leaves i after the closing one.
            func skipString() throws {
                i += 1
                while i < n, p[i] != 34 { i += p[i] == 92 ? 2 : 1 }
                guard i < n else { throw bad("a closing quote") }
                i += 1
            }
            func skipValue() throws {
                ws()
                guard i < n else { throw bad("a value") }
                switch p[i] {
                case 34: try skipString()
                case 123, 91:
                    var depth = 0
                    repeat {
                        guard i < n else { throw bad("a closing bracket") }
                        switch p[i] {
                        case 34: try skipString(); continue
                        case 123, 91: depth += 1
                        case 125, 93: depth -= 1
                        default: break
                        }
                        i += 1
                    } while depth > 0
                default:
                    while i < n, ![44, 125, 93, 32, 9, 10, 13].contains(p[i]) { i += 1 }
                }
            }
            let target = Array(key.utf8)
            try expect(123)
            while true {
                ws()
                guard i < n, p[i] == 34 else { throw bad("a key \"\(key)\"") }
                let start = i + 1
                try skipString()
                let isTarget = Array(p[start..<(i - 1)]) == target
                try expect(58)
                if isTarget {
                    try expect(91)
                    ws()
                    if i < n, p[i] == 93 { return }
                    while true {
                        ws()
                        let from = i
                        try skipValue()
                        try body(Data(p[from..<i]))
                        ws()
                        guard i < n else { throw bad("',' or ']'") }
                        if p[i] == 93 { return }
                        try expect(44)
                    }
                }
                try skipValue()
                ws()
                guard i < n else { throw bad("',' or '}'") }
                if p[i] == 125 { throw FetchError.format(file: file, field: key, expected: "a top-level array", found: "no such key") }
                try expect(44)
            }
        }
    }
}
