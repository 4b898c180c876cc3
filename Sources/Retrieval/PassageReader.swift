// PassageReader: DPR's passages TSV read block by block (never the whole file), records parsed by Formats.TSVRecord.
import Formats

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One passage of a DPR TSV row.
public struct Passage: Equatable, Sendable {
    public var id: String
    public var text: String
    public var title: String
    public init(id: String, text: String, title: String) { (self.id, self.text, self.title) = (id, text, title) }
}

/// Streams `id<TAB>text<TAB>title` rows of a passages TSV in file order, a few MiB at a time, so
/// the 13 GB `psgs_w100.tsv` never sits in memory.
///
/// Rows are what FiD's `csv.reader(delimiter='\t')` yields: rows whose first field is `id` (the
/// header) and empty lines are skipped. `strict` (what the jobs use) refuses a row with fewer
/// than three fields or an unparsable one (text after a closing quote, a quote never closed),
/// naming its line; lenient mode skips short rows as FiD does and counts them in `skipped`.
public final class PassageReader {
    public let path: String
    public let strict: Bool
    private let fd: Int32
    private var buffer: [UInt8]
    /// Bytes of `buffer` in use, and where the unconsumed part starts.
    private var filled = 0, cursor = 0
    private var eof = false
    /// 1-based line number of `buffer[cursor]`.
    private var line = 1
    /// Rows returned so far.
    public private(set) var rowsRead = 0
    /// Rows skipped in lenient mode for having fewer than three fields.
    public private(set) var skipped = 0
    /// Bytes consumed from the file so far (for progress).
    public private(set) var bytesRead = 0
    public let fileSize: Int

    /// The longest record read: past it a record is refused. Python's csv (FiD's and DPR's
    /// reader) refuses a field over 131,072 characters, at most 4 bytes each.
    public static let maxRecordBytes = 2 << 20

    /// Opens `path`; `blockBytes` is the read size (a record longer than it grows the buffer).
    public init(path: String, strict: Bool = true, blockBytes: Int = 8 << 20) throws {
        self.path = path
        self.strict = strict
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw RetrievalError(file: path, field: "passages", expected: "a readable DPR passages TSV",
                                 found: String(cString: strerror(errno)))
        }
        var st = stat()
        fstat(fd, &st)
        fileSize = Int(st.st_size)
        buffer = [UInt8](repeating: 0, count: max(blockBytes, 64))
    }

    deinit { close(fd) }

    /// Moves the unconsumed tail to the front and reads more; grows the buffer when a record fills it.
    private func refill() throws {
        if cursor > 0 {
            let tail = filled - cursor
            buffer.withUnsafeMutableBytes { b in
                _ = memmove(b.baseAddress!, b.baseAddress! + cursor, tail)
            }
            filled = tail
            cursor = 0
        }
        if filled == buffer.count { buffer += [UInt8](repeating: 0, count: buffer.count) }
        while filled < buffer.count {
            let n = buffer.withUnsafeMutableBytes { b in read(fd, b.baseAddress! + filled, b.count - filled) }
            if n < 0, errno == EINTR { continue }
            guard n >= 0 else {
                throw RetrievalError(file: path, field: "line \(line)", expected: "readable bytes", found: String(cString: strerror(errno)))
            }
            if n == 0 {
                eof = true
                return
            }
            filled += n
        }
    }

    /// The next passage, or nil at the end of the file.
    public func next() throws -> Passage? {
        while true {
            if cursor >= filled {
                if eof { return nil }
                try refill()
                continue
            }
            if bytesRead == 0, cursor == 0 {
                // A byte order mark would glue itself to the header's `id`, making the header a passage.
                if filled < 3 && !eof {
                    try refill()
                    continue
                }
                let bom = buffer.withUnsafeBufferPointer { TSVRecord.byteOrderMarkLength($0.baseAddress!, filled) }
                cursor += bom
                bytesRead += bom
                if cursor >= filled { continue }
            }
            let parsed: TSVRecord.Parsed = buffer.withUnsafeBufferPointer { b in
                TSVRecord.parse(b.baseAddress!, filled, cursor, firstOnly: false)
            }
            // A record that runs to the end of the buffer may continue in the next block, unless it
            // is already longer than any row FiD reads (a quote never closed would take in the
            // rest of a 13 GB file).
            if !parsed.terminated && !eof {
                guard filled - cursor <= Self.maxRecordBytes else {
                    throw RetrievalError(
                        file: path, field: "line \(line)", expected: "a row of at most \(Self.maxRecordBytes >> 20) MiB (Python's csv refuses a field over 131,072 characters)",
                        found: "a row still open after \(filled - cursor) bytes", hint: "a quote never closed? DPR quotes a field as \"…\" with inner quotes doubled")
                }
                try refill()
                continue
            }
            // A CR that ends the buffer may be the first half of a CRLF: read on before counting it.
            if !eof, parsed.next == filled, buffer[filled - 1] == 13 {
                try refill()
                continue
            }
            let recordLine = line
            buffer.withUnsafeBufferPointer { b in
                line += TSVRecord.newlines(b.baseAddress!, cursor, parsed.next, end: filled)
            }
            if let bad = parsed.notUTF8 {
                throw RetrievalError(
                    file: path, field: "line \(recordLine)", expected: "UTF-8 text",
                    found: "bytes that are not UTF-8 in the \(["id", "text", "title"].indices.contains(bad) ? ["id", "text", "title"][bad] : "column \(bad + 1)") column",
                    hint: "convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8); FiD's reader stops on it too")
            }
            bytesRead += parsed.next - cursor
            cursor = parsed.next
            let f = parsed.fields
            if f.isEmpty || f[0] == "id" { continue }
            if strict {
                if parsed.irregular {
                    throw RetrievalError(
                        file: path, field: "line \(recordLine)", expected: "a row Python's csv parses strictly (id, text, title)",
                        found: "a quote never closed or text after a closing quote",
                        hint: "DPR quotes a field as \"…\" with inner quotes doubled")
                }
                if f.count < 3 {
                    throw RetrievalError(
                        file: path, field: "line \(recordLine)", expected: "3 tab-separated columns (id, text, title)",
                        found: "\(f.count) column\(f.count == 1 ? "" : "s")", hint: "DPR passages have the header id<TAB>text<TAB>title")
                }
            } else if f.count < 3 {
                skipped += 1
                continue
            }
            rowsRead += 1
            return Passage(id: f[0], text: f[1], title: f[2])
        }
    }

    /// Up to `max` next passages (fewer only at the end of the file).
    public func nextBlock(max: Int) throws -> [Passage] {
        var out: [Passage] = []
        out.reserveCapacity(max)
        while out.count < max, let p = try next() { out.append(p) }
        return out
    }

    /// Skips `count` passages (a shard's start); returns how many were there.
    @discardableResult
    public func skip(_ count: Int) throws -> Int {
        var n = 0
        while n < count, try next() != nil { n += 1 }
        return n
    }

    /// Counts the passages of `path` (FiD loads them all to size the shards; this scans once).
    /// The error for a passages file without a passage (nothing to embed or index: the file
    /// was probably cut short or is the wrong one).
    public static func noPassages(path: String) -> RetrievalError {
        var st = stat()
        let size = stat(path, &st) == 0 ? Int(st.st_size) : 0
        return RetrievalError(file: path, field: "rows", expected: "at least one passage (id<TAB>text<TAB>title)",
                              found: size == 0 ? "an empty file" : "none (a header or blank lines only)",
                              hint: "an unfinished download or export? DPR's psgs_w100.tsv has 21M rows after its header")
    }

    /// Counts the passages of `path` as `count` does, and finds the first id that a later row
    /// repeats (rows 0-based, counted after the header). retrieve looks each hit's text up by id,
    /// so a repeated id would return one row's vector with the other row's text; an `embed` job
    /// refuses it before hours of work, as `retrieve` would after them. Only rows whose id hashes
    /// alike are read twice; the file is read a second time only when some do.
    public static func countFindingRepeatedID(path: String, strict: Bool = true) throws -> (count: Int, repeated: RepeatedID?) {
        var n = 0, pass = 0
        let repeated = try firstRepeatedID { visit in
            pass += 1
            let r = try PassageReader(path: path, strict: strict)
            while let p = try r.next() {
                if pass == 1 { n += 1 }
                if !visit(p.id) { return }
            }
        }
        return (n, repeated)
    }

    public static func count(path: String, strict: Bool = true) throws -> Int {
        let r = try PassageReader(path: path, strict: strict)
        var n = 0
        while try r.next() != nil { n += 1 }
        return n
    }
}
