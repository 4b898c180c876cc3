// PassageStore: DPR's psgs_w100.tsv, memory-mapped and indexed by passage id, parsed as Python's csv does.
import Foundation
import Formats

/// Random access to a passages TSV (`id<TAB>text<TAB>title`, header line; ref/fid-spec.md §6.1).
///
/// The file is memory-mapped and scanned once; the index keeps 12 bytes per row with a numeric id
/// (DPR's ids are 1…21,015,324), sorted by id, so the 13 GB file costs ~250 MB of index, not a
/// dictionary of 21M strings, and a sparse id like 2000000000 costs no more than a dense one.
/// Records are parsed by `Formats.TSVRecord` like FiD's `csv.reader(fin, delimiter='\t')`: `"…"` fields with doubled
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
        var i = TSVRecord.byteOrderMarkLength(bytes, size)
        var rows = 0
        var sorted = true
        while i < size {
            var (idEnd, fieldCount, next) = TSVRecord.scan(bytes, size, i)
            defer { i = next }
            rows += 1
            if rows & 0xFFFFF == 0, isCancelled() { throw FetchError.cancelled }
            let id: String
            if idEnd >= 0 {
                id = String(decoding: UnsafeBufferPointer(start: bytes + i, count: idEnd - i), as: UTF8.self)
            } else {
                // A quoted id (rare): take the slow, exact parser.
                let r = TSVRecord.parse(bytes, size, i, firstOnly: true)
                let (fields, n) = (r.fields, r.next)
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
                        file: path, field: "line \(TSVRecord.lineNumber(bytes, i))", expected: "a passage id up to \(UInt32.max)",
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
        let fields = TSVRecord.parse(bytes, size, Int(start), firstOnly: false).fields
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
}
