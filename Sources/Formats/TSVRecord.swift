// TSVRecord: one record of DPR's passages TSV, found and parsed as Python's csv.reader(delimiter='\t') does.
#if canImport(Glibc)
import Glibc
#endif

/// The one record scanner of DPR's passages TSV (`id<TAB>text<TAB>title`, header line;
/// ref/fid-spec.md §6.1), shared by Fetch's random-access `PassageStore` and Retrieval's
/// streaming `PassageReader`.
///
/// Python's csv module (excel dialect, tab delimiter, universal newlines): `"…"` fields with doubled
/// `""` inside, newlines kept inside quotes, `\r\n` one newline. Both functions work on raw bytes
/// so a multi-GB file is scanned without building a string per row.
public enum TSVRecord {
    static let tab: UInt8 = 9, lf: UInt8 = 10, cr: UInt8 = 13, quote: UInt8 = 34

    /// Finds the end of the record at `start` without copying it: returns where the first field
    /// ends (-1 when it is quoted, left to `parse`), the number of fields (0 for an empty line),
    /// and where the next record starts (`n` when the record runs to the end of the bytes, so a
    /// streaming reader knows it may continue in the next block). Same boundaries as `parse`.
    public static func scan(_ p: UnsafePointer<UInt8>, _ n: Int, _ start: Int) -> (idEnd: Int, fields: Int, next: Int) {
        func afterNewline(_ i: Int) -> Int { p[i] == cr && i + 1 < n && p[i + 1] == lf ? i + 2 : i + 1 }
        var i = start
        if i < n, p[i] == quote { return (-1, 0, start) }
        while i < n, p[i] != tab, p[i] != lf, p[i] != cr { i += 1 }
        let idEnd = i
        if i >= n { return (idEnd, 1, n) }
        if p[i] != tab { return (idEnd, i == start ? 0 : 1, afterNewline(i)) }
        var fields = 1
        while true {
            // p[i] is a tab: a new field starts after it.
            i += 1
            fields += 1
            if i < n, p[i] == quote {
                i += 1
                while i < n {
                    if p[i] == quote {
                        if i + 1 < n, p[i + 1] == quote {
                            i += 2
                            continue
                        }
                        i += 1
                        break
                    }
                    i += 1
                }
            }
            // Unquoted text, or text after a closing quote (kept literally, quotes included).
            while i < n, p[i] != tab, p[i] != lf, p[i] != cr { i += 1 }
            if i >= n { return (idEnd, fields, n) }
            if p[i] != tab { return (idEnd, fields, afterNewline(i)) }
        }
    }

    /// A parsed record.
    public struct Parsed {
        /// The fields, as Python's csv returns them.
        public var fields: [String]
        /// Where the next record starts.
        public var next: Int
        /// Text after a closing quote (Python keeps it, `strict=True` refuses it), or a quote
        /// still open at the end of the bytes: what the jobs' strict mode calls unparsable.
        public var irregular: Bool
        /// Whether the record ended at a newline (false when it runs to the end of the bytes).
        public var terminated: Bool
        /// The index of the first field whose bytes are not UTF-8 (decoding replaced them with
        /// U+FFFD; Python stops with a UnicodeDecodeError), or nil.
        public var notUTF8: Int? = nil
    }

    /// Parses the record at `start`; returns its fields and where the next record starts. With
    /// `firstOnly`, fields after the first are returned empty (only their count matters).
    public static func parse(_ p: UnsafePointer<UInt8>, _ n: Int, _ start: Int, firstOnly: Bool) -> Parsed {
        enum State { case startField, inField, inQuoted, quoteInQuoted }
        var fields: [String] = []
        var field: [UInt8] = []
        var state = State.startField
        var irregular = false
        var notUTF8: Int?
        var i = start
        func emit() {
            if firstOnly && !fields.isEmpty {
                fields.append("")
            } else {
                let text = String(decoding: field, as: UTF8.self)
                if notUTF8 == nil, !field.withUnsafeBytes({ decodedUnchanged(text, $0) }) { notUTF8 = fields.count }
                fields.append(text)
            }
            field.removeAll(keepingCapacity: true)
        }
        // Returns the index after a newline at i (\r\n is one newline).
        func afterNewline(_ i: Int) -> Int { p[i] == cr && i + 1 < n && p[i + 1] == lf ? i + 2 : i + 1 }
        func done(_ next: Int) -> Parsed { Parsed(fields: fields, next: next, irregular: irregular, terminated: true, notUTF8: notUTF8) }
        while i < n {
            let c = p[i]
            let keep = !firstOnly || fields.isEmpty
            switch state {
            case .startField:
                if c == lf || c == cr {
                    // An empty line is an empty row; otherwise the row ends with an empty field.
                    if i > start { emit() }
                    return done(afterNewline(i))
                } else if c == quote {
                    state = .inQuoted
                } else if c == tab {
                    emit()
                } else {
                    if keep { field.append(c) }
                    state = .inField
                }
            case .inField:
                if c == tab {
                    emit()
                    state = .startField
                } else if c == lf || c == cr {
                    emit()
                    return done(afterNewline(i))
                } else if keep {
                    field.append(c)
                }
            case .inQuoted:
                if c == quote {
                    state = .quoteInQuoted
                } else if c == cr {
                    if keep { field.append(lf) }
                    i = afterNewline(i)
                    continue
                } else if keep {
                    field.append(c)
                }
            case .quoteInQuoted:
                if c == quote {
                    if keep { field.append(quote) }
                    state = .inQuoted
                } else if c == tab {
                    emit()
                    state = .startField
                } else if c == lf || c == cr {
                    emit()
                    return done(afterNewline(i))
                } else {
                    // Not strict: text after a closing quote is kept literally.
                    irregular = true
                    if keep { field.append(c) }
                    state = .inField
                }
            }
            i += 1
        }
        if state == .inQuoted { irregular = true }
        if i > start { emit() }
        return Parsed(fields: fields, next: n, irregular: irregular, terminated: false, notUTF8: notUTF8)
    }

    /// 1-based line of byte offset `at` (counted on the error path only).
    /// 3 when the bytes start with a UTF-8 byte order mark (a TSV saved by a spreadsheet or a
    /// Windows editor), else 0: the first record starts after it, so the header is still `id`.
    public static func byteOrderMarkLength(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF ? 3 : 0
    }

    public static func lineNumber(_ p: UnsafePointer<UInt8>, _ at: Int) -> Int {
        1 + newlines(p, 0, at, end: at)
    }

    /// The line breaks in `from..<to` as universal newlines count them: `\n`, `\r\n` (once) and a
    /// lone `\r` (a file with old Mac line ends), looking at most to `end` for the `\n` after `\r`.
    public static func newlines(_ p: UnsafePointer<UInt8>, _ from: Int, _ to: Int, end: Int) -> Int {
        var count = 0
        for k in from..<to where p[k] == lf || (p[k] == cr && (k + 1 >= end || p[k + 1] != lf)) { count += 1 }
        return count
    }
}

/// Whether decoding `raw` as UTF-8 gave `text` unchanged, i.e. `raw` was valid UTF-8 (decoding
/// replaces invalid bytes with U+FFFD). One length check and a memcmp: comparing the views
/// element by element cost a fifth of the read speed.
@inline(__always)
func decodedUnchanged(_ text: String, _ raw: UnsafeRawBufferPointer) -> Bool {
    var text = text
    return text.withUTF8 { u in u.count == raw.count && (u.isEmpty || memcmp(u.baseAddress!, raw.baseAddress!, u.count) == 0) }
}
