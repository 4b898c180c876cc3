// PassageStore: DPR's psgs_w100.tsv, memory-mapped and indexed by passage id, parsed as Python's csv does.
import Foundation

/// Random access to a passages TSV (`id<TAB>text<TAB>title`, header line; ref/fid-spec.md §6.1).
///
/// The file is memory-mapped and scanned once; the index keeps 12 bytes per row with a numeric id
/// (DPR's ids are 1…21,015,324), sorted by id, so the 13 GB file costs ~250 MB of index, not a
/// dictionary of 21M strings, and a sparse id like 2000000000 costs no more than a dense one.
/// Records are parsed like FiD's `csv.reader(fin, delimiter='\t')`: `"…"` fields with doubled
/// `""` inside, newlines kept inside quotes, rows whose first field is `id` skipped, rows with
/// fewer than three fields skipped, a later duplicate id replacing an earlier one.
final class PassageStore {
    let path: String
    private let base: UnsafeMutableRawPointer?
    private let size: Int
    /// Numeric ids and their record offsets, sorted by id (one entry per id: the last row wins).
    private var ids: [UInt32] = []
    private var starts: [Int64] = []
    private var other: [String: Int64] = [:]
    /// Rows indexed.
    private(set) var count = 0
    /// Rows skipped for having fewer than three fields.
    private(set) var malformed = 0

    init(_ url: URL, isCancelled: () -> Bool = { false }) throws {
        path = url.path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FetchError.posix(path, "cannot open passages") }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        size = Int(st.st_size)
        if size > 0 {
            let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
            guard let p, p != MAP_FAILED else { throw FetchError.posix(path, "cannot map passages") }
            madvise(p, size, MADV_SEQUENTIAL)
            base = p
        } else {
            base = nil
        }
        guard let base else { return }
        let bytes = UnsafePointer<UInt8>(base.assumingMemoryBound(to: UInt8.self))
        var i = 0
        var rows = 0
        var sorted = true
        while i < size {
            var (idEnd, fieldCount, next) = PassageStore.scanRecord(bytes, size, i)
            defer { i = next }
            rows += 1
            if rows & 0xFFFFF == 0, isCancelled() { throw FetchError.cancelled }
            let id: String
            if idEnd >= 0 {
                id = String(decoding: UnsafeBufferPointer(start: bytes + i, count: idEnd - i), as: UTF8.self)
            } else {
                // A quoted id (rare): take the slow, exact parser.
                let (fields, n) = PassageStore.parseRecord(bytes, size, i, firstOnly: true)
                (fieldCount, next) = (fields.count, n)
                id = fields.first ?? ""
            }
            guard fieldCount > 0, id != "id" else { continue }
            guard fieldCount >= 3 else {
                malformed += 1
                continue
            }
            if let n = PassageStore.numericID(id) {
                guard n <= UInt32.max else {
                    throw FetchError.format(
                        file: path, field: "line \(PassageStore.lineNumber(bytes, i))", expected: "a passage id up to \(UInt32.max)",
                        found: "\(id)")
                }
                if let last = ids.last, UInt32(n) <= last { sorted = false }
                ids.append(UInt32(n))
                starts.append(Int64(i))
            } else {
                other[id] = Int64(i)
            }
        }
        if !sorted { sortIndex() }
        count = ids.count + other.count
        madvise(base, size, MADV_RANDOM)
    }

    /// Sorts the numeric index by id, keeping the last row of a duplicated id (as a dict would).
    private func sortIndex() {
        let order = ids.indices.sorted { ids[$0] != ids[$1] ? ids[$0] < ids[$1] : $0 < $1 }
        var newIDs: [UInt32] = []
        var newStarts: [Int64] = []
        newIDs.reserveCapacity(ids.count)
        newStarts.reserveCapacity(ids.count)
        for k in order {
            if newIDs.last == ids[k] {
                newStarts[newStarts.count - 1] = starts[k]
            } else {
                newIDs.append(ids[k])
                newStarts.append(starts[k])
            }
        }
        ids = newIDs
        starts = newStarts
    }

    /// 1-based line of byte offset `at` (counted on the error path only).
    static func lineNumber(_ p: UnsafePointer<UInt8>, _ at: Int) -> Int {
        var line = 1
        for k in 0..<at where p[k] == 10 { line += 1 }
        return line
    }

    deinit {
        if let base { munmap(base, size) }
    }

    /// `(text, title)` of passage `id`, or nil when the file has no such row.
    func passage(_ id: String) -> (text: String, title: String)? {
        let loc: Int64?
        if let n = PassageStore.numericID(id) {
            loc = n <= UInt32.max ? find(UInt32(n)) : nil
        } else {
            loc = other[id]
        }
        guard let start = loc, let base else { return nil }
        let bytes = UnsafePointer<UInt8>(base.assumingMemoryBound(to: UInt8.self))
        let fields = PassageStore.parseRecord(bytes, size, Int(start), firstOnly: false).fields
        return (fields[1], fields[2])
    }

    /// The offset of numeric id `n`'s record, by binary search.
    private func find(_ n: UInt32) -> Int64? {
        var lo = 0, hi = ids.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ids[mid] < n { lo = mid + 1 } else { hi = mid }
        }
        return lo < ids.count && ids[lo] == n ? starts[lo] : nil
    }

    /// A canonical decimal id (no sign, no leading zero) as a number; others stay strings. Ids
    /// too long for `Int` come back as `Int.max`, so they are refused as out of range, not kept.
    static func numericID(_ s: String) -> Int? {
        let u = s.utf8
        guard !u.isEmpty, u.allSatisfy({ $0 >= 48 && $0 <= 57 }), u.first != 48 || u.count == 1 else { return nil }
        return Int(s) ?? Int.max
    }

    /// Finds the end of the record at `start` without copying it: returns where the first field
    /// ends (-1 when it is quoted, left to `parseRecord`), the number of fields (0 for an empty
    /// line), and where the next record starts. Same boundaries as `parseRecord`.
    static func scanRecord(_ p: UnsafePointer<UInt8>, _ n: Int, _ start: Int) -> (idEnd: Int, fields: Int, next: Int) {
        let tab: UInt8 = 9, lf: UInt8 = 10, cr: UInt8 = 13, quote: UInt8 = 34
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

    /// Parses the record at `start` the way Python's csv module (excel dialect, tab delimiter,
    /// universal newlines) does; returns its fields and where the next record starts. With
    /// `firstOnly`, fields after the first are returned empty (only their count matters).
    static func parseRecord(_ p: UnsafePointer<UInt8>, _ n: Int, _ start: Int, firstOnly: Bool) -> (fields: [String], next: Int) {
        let tab: UInt8 = 9, lf: UInt8 = 10, cr: UInt8 = 13, quote: UInt8 = 34
        enum State { case startField, inField, inQuoted, quoteInQuoted }
        var fields: [String] = []
        var field: [UInt8] = []
        var state = State.startField
        var i = start
        func emit() {
            fields.append(firstOnly && !fields.isEmpty ? "" : String(decoding: field, as: UTF8.self))
            field.removeAll(keepingCapacity: true)
        }
        // Returns the index after a newline at i (\r\n is one newline).
        func afterNewline(_ i: Int) -> Int { p[i] == cr && i + 1 < n && p[i + 1] == lf ? i + 2 : i + 1 }
        while i < n {
            let c = p[i]
            let keep = !firstOnly || fields.isEmpty
            switch state {
            case .startField:
                if c == lf || c == cr {
                    // An empty line is an empty row; otherwise the row ends with an empty field.
                    if i > start { emit() }
                    return (fields, afterNewline(i))
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
                    return (fields, afterNewline(i))
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
                    return (fields, afterNewline(i))
                } else {
                    // Not strict: text after a closing quote is kept literally.
                    if keep { field.append(c) }
                    state = .inField
                }
            }
            i += 1
        }
        if i > start { emit() }
        return (fields, n)
    }
}
