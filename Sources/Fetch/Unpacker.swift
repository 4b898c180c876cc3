// Unpacker: reads archives with libarchive and writes their entries itself, refusing anything unsafe.
import CArchive
import Foundation

/// What a downloaded file turned out to be.
enum Content: Equatable {
    /// tar (any compression), cpio, 7z, or zip when allowed.
    case archive
    /// One compressed file (.gz, .bz2, .xz, .zst, …) that is not an archive.
    case compressedFile
    /// Anything else: kept as it is.
    case plain
}

/// Unpacks one archive into a fresh folder under these rules:
/// - entry names may not be absolute, contain `..`, or pass through a symlink from the archive;
/// - symlinks must be relative and, once every entry exists, resolve inside the folder (checked
///   by walking the tree's own links); they are created last, so no file is ever written through one;
/// - hard links may only name a regular file this archive already wrote;
/// - device, fifo and socket entries are refused;
/// - bytes and entries are counted as they are written, not taken from headers;
/// - owners, permissions (beyond the executable bit), times and extended attributes are ignored.
final class Unpacker {
    let archiveName: String
    let maxBytes: Int64
    let maxFiles: Int
    let stripComponents: Int
    let progress: (FetchProgress) -> Void
    let isCancelled: () -> Bool

    private var root = ""
    private var dirs = Set<String>()
    private var files = Set<String>()
    private var symlinks: [String: String] = [:]
    private var symlinkOrder: [(path: String, entry: String)] = []
    private(set) var entries = 0
    /// Folders made for entries' paths that no folder entry named; they count toward `maxFiles`
    /// (10 entries of 1,900-deep paths made 19,000 folders under a limit of 10).
    private var madeDirs = 0
    /// Those folders, so a folder entry that comes after them is not counted twice.
    private var implicitDirs = Set<String>()
    private(set) var bytes: Int64 = 0
    private var lastReport = Date.distantPast

    init(archiveName: String, maxBytes: Int64, maxFiles: Int, stripComponents: Int,
         progress: @escaping (FetchProgress) -> Void = { _ in }, isCancelled: @escaping () -> Bool = { false })
    {
        self.archiveName = archiveName
        self.maxBytes = maxBytes
        self.maxFiles = maxFiles
        self.stripComponents = stripComponents
        self.progress = progress
        self.isCancelled = isCancelled
    }

    /// Tells an archive from a single compressed file from anything else, by content.
    /// - Throws: `FetchError.archive` when a compression format matched but its data cannot be
    ///   read (a truncated or damaged download, which must not be published as it is).
    static func detect(_ file: URL, allowZip: Bool, name: String) throws -> Content {
        let locale = UTF8Locale()
        defer { locale.restore() }
        if let a = try? openReader(file, raw: false, zip: allowZip, name: name) {
            defer { archive_read_free(a) }
            // tar takes a first block of zeros for its end: a file that merely starts with 512
            // zero bytes (weights, say) would be "unpacked" into nothing. No entry, no archive.
            var entry: OpaquePointer?
            // Binary cpio's magic is 2 bytes (1 float32 file in 32,768 starts with it): a first
            // header that cannot be read, or reads as nonsense (a name that is not UTF-8, an entry
            // larger than the file), means no archive. Any other format's first header that
            // cannot be read (a cut 7z, zip, odc cpio or tar.gz) is damaged: `extract` refuses it.
            let r = archive_read_next_header(a, &entry)
            let format = archive_format(a)
            if format == ARCHIVE_FORMAT_CPIO_BIN_LE || format == ARCHIVE_FORMAT_CPIO_BIN_BE {
                if r == ARCHIVE_OK || r == ARCHIVE_WARN, let entry, let name = archive_entry_pathname(entry),
                   String(validatingCString: name) != nil, archive_entry_size(entry) <= fileSize(file) ?? 0 {
                    return .archive
                }
            } else if r == ARCHIVE_OK || r == ARCHIVE_WARN {
                return .archive
            } else if r != ARCHIVE_EOF, format & ARCHIVE_FORMAT_BASE_MASK != ARCHIVE_FORMAT_CPIO || asciiCPIOHeader(file) {
                return .archive
            }
        }
        // No archive format matched; the raw reader reports which decompression filters it applied.
        // It reads anything, so failing to open means a filter matched and its data is bad.
        let a = try openReader(file, raw: true, zip: false, name: name)
        defer { archive_read_free(a) }
        if archive_filter_count(a) > 1 { return .compressedFile }
        // Too short for libarchive to bid on, yet it starts as a compressed stream does.
        if let format = compressionMagic(file) {
            throw FetchError.archive(archive: name, message: "it starts as \(format) data but is truncated or damaged")
        }
        return .plain
    }

    /// This thread in a UTF-8 locale while libarchive reads: it converts names to the locale's
    /// charset, and in the C locale (fidq's) a zip's UTF-8 names (`café.txt`) could not be read.
    struct UTF8Locale {
        let previous: locale_t?, utf8: locale_t?
        init() {
            utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", nil)
            previous = utf8.map { uselocale($0) }
        }
        func restore() {
            if let previous { uselocale(previous) }
            if let utf8 { freelocale(utf8) }
        }
    }

    /// Whether `file` starts with an ASCII cpio header's characters (odc: `070707` and 70 octal
    /// digits; newc: `070701`/`070702` and 104 hex digits), as far as it goes: a cut archive,
    /// where a TSV whose first id is 070707 is text.
    static func asciiCPIOHeader(_ file: URL) -> Bool {
        guard let h = FileHandle(forReadingAtPath: file.path) else { return false }
        defer { try? h.close() }
        let b = [UInt8]((try? h.read(upToCount: 110)) ?? Data())
        guard b.count > 6 else { return true }
        let magic = String(decoding: b.prefix(6), as: UTF8.self)
        let digits: Set<UInt8> = magic == "070707" ? Set("01234567".utf8) : Set("0123456789abcdefABCDEF".utf8)
        let length = magic == "070707" ? 76 : 110
        return b[6..<min(length, b.count)].allSatisfy(digits.contains)
    }

    /// The compression whose magic bytes `file` starts with (gzip, bzip2, xz, zstd, lz4, compress).
    static func compressionMagic(_ file: URL) -> String? {
        guard let h = FileHandle(forReadingAtPath: file.path) else { return nil }
        defer { try? h.close() }
        let b = [UInt8]((try? h.read(upToCount: 6)) ?? Data())
        func starts(_ m: [UInt8]) -> Bool { b.count >= m.count && Array(b.prefix(m.count)) == m }
        if starts([0x1F, 0x8B, 0x08]) { return "gzip" }
        if starts(Array("BZh".utf8)), b.count >= 4, (0x31...0x39).contains(b[3]) { return "bzip2" }
        if starts([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) { return "xz" }
        if starts([0x28, 0xB5, 0x2F, 0xFD]) { return "zstd" }
        if starts([0x04, 0x22, 0x4D, 0x18]) { return "lz4" }
        if starts([0x1F, 0x9D]) { return "compress (.Z)" }
        return nil
    }

    /// Opens `file` for reading with decompression filters and either the archive formats or `raw`.
    static func openReader(_ file: URL, raw: Bool, zip: Bool, name: String) throws -> OpaquePointer {
        guard let a = archive_read_new() else { throw FetchError.archive(archive: name, message: "out of memory") }
        // Explicit lists: no mtree (it can name files on this machine) and no external programs.
        archive_read_support_filter_gzip(a)
        archive_read_support_filter_bzip2(a)
        archive_read_support_filter_xz(a)
        archive_read_support_filter_lzma(a)
        archive_read_support_filter_zstd(a)
        archive_read_support_filter_lz4(a)
        archive_read_support_filter_compress(a)
        if raw {
            archive_read_support_format_raw(a)
        } else {
            archive_read_support_format_tar(a)
            archive_read_support_format_cpio(a)
            archive_read_support_format_7zip(a)
            if zip { archive_read_support_format_zip(a) }
        }
        guard archive_read_open_filename(a, file.path, 1 << 16) == ARCHIVE_OK else {
            let message = errorText(a)
            archive_read_free(a)
            throw FetchError.archive(archive: name, message: message)
        }
        return a
    }

    static func errorText(_ a: OpaquePointer) -> String {
        archive_error_string(a).map { String(cString: $0) } ?? "unknown libarchive error"
    }

    /// Decompresses a single compressed file to `out`, counting bytes against `maxBytes`.
    func decompress(_ file: URL, to out: URL) throws {
        let a = try Unpacker.openReader(file, raw: true, zip: false, name: archiveName)
        defer { archive_read_free(a) }
        var entry: OpaquePointer?
        guard archive_read_next_header(a, &entry) >= ARCHIVE_WARN else {
            throw FetchError.archive(archive: archiveName, message: Unpacker.errorText(a))
        }
        root = out.deletingLastPathComponent().path
        try writeData(a, to: out.path, mode: 0o666, entry: out.lastPathComponent, declared: nil)
        entries = 1
    }

    /// Extracts every entry of `file` into the folder `into` (created; must not exist).
    func extract(_ file: URL, into folder: URL, zip: Bool) throws {
        root = folder.path
        let locale = UTF8Locale()
        defer { locale.restore() }
        guard mkdir(root, 0o777) == 0 else { throw FetchError.posix(root, "cannot create unpack folder") }
        let a = try Unpacker.openReader(file, raw: false, zip: zip, name: archiveName)
        defer { archive_read_free(a) }
        var entry: OpaquePointer?
        while true {
            if isCancelled() { throw FetchError.cancelled }
            let r = archive_read_next_header(a, &entry)
            if r == ARCHIVE_EOF { break }
            guard r >= ARCHIVE_WARN, let entry else {
                throw FetchError.archive(archive: archiveName, message: Unpacker.errorText(a))
            }
            entries += 1
            guard let raw = archive_entry_pathname(entry) ?? archive_entry_pathname_utf8(entry) else {
                throw refuse("#\(entries)", "its name cannot be read")
            }
            let name = try Self.utf8(raw, entry: "#\(entries)", what: "its name", refuse)
            try place(a, entry, name: name)
            // After placing: a folder entry met after a path made its folder counts that folder once.
            if entries + madeDirs > maxFiles {
                throw FetchError.limit(archive: archiveName, entry: name, what: "file and folder count", limit: Int64(maxFiles))
            }
        }
        try linkSymlinks()
        progress(FetchProgress(phase: "unpack", item: archiveName, done: bytes, total: nil))
    }

    private func refuse(_ entry: String, _ reason: String) -> FetchError {
        .refused(archive: archiveName, entry: entry, reason: reason)
    }

    /// A name or link target as UTF-8, refused otherwise: repaired with U+FFFD, two names
    /// differing in one byte became one file and the first was lost.
    static func utf8(_ raw: UnsafePointer<CChar>, entry: String, what: String, _ refuse: (String, String) -> FetchError) throws -> String {
        if let s = String(validatingCString: raw) { return s }
        throw refuse(entry, "\(what) is not UTF-8 ('\(String(cString: raw))', with � for each bad byte)")
    }

    /// The entry's path as safe components after `strip_components`; nil when stripped away.
    private func components(_ raw: String, entry: String) throws -> [String]? {
        if raw.hasPrefix("/") { throw refuse(entry, "absolute path") }
        let parts = raw.split(separator: "/").map(String.init).filter { $0 != "." }
        if parts.contains("..") { throw refuse(entry, "'..' in the path") }
        if parts.contains(where: { $0.utf8.count > 255 }) { throw refuse(entry, "a name longer than 255 bytes") }
        if raw.utf8.count > 4000 { throw refuse(entry, "a path longer than 4000 bytes") }
        guard parts.count > stripComponents else { return nil }
        return Array(parts.dropFirst(stripComponents))
    }

    private func full(_ rel: String) -> String { root + "/" + rel }

    /// Top-level names an archive may not use: the marker `Fetcher` writes and its temporary name.
    static let reservedNames: Set<String> = [Fetcher.markerName, "." + Fetcher.markerName + ".tmp"]

    /// Creates the folders `parts` names, one level at a time, refusing to pass through a symlink or
    /// file; each one made counts toward `maxFiles` unless it is the folder entry's own (`named`).
    private func ensureDir(_ parts: ArraySlice<String>, entry: String, named: Bool = false) throws {
        var rel = ""
        for (i, p) in zip(parts.indices, parts) {
            rel = rel.isEmpty ? p : rel + "/" + p
            let isNamed = named && i == parts.index(before: parts.endIndex)
            if dirs.contains(rel) {
                if isNamed, implicitDirs.remove(rel) != nil { madeDirs -= 1 }  // its entry counts it now
                continue
            }
            if symlinks[rel] != nil { throw refuse(entry, "its path goes through the archive's symlink '\(rel)'") }
            if files.contains(rel) { throw refuse(entry, "its path goes through the file '\(rel)'") }
            if mkdir(full(rel), 0o777) != 0 {
                var st = stat()
                guard errno == EEXIST, lstat(full(rel), &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
                    throw FetchError.posix(full(rel), "cannot create folder for entry '\(entry)'")
                }
            }
            dirs.insert(rel)
            if !isNamed {
                madeDirs += 1
                implicitDirs.insert(rel)
                if entries + madeDirs > maxFiles {
                    throw FetchError.limit(archive: archiveName, entry: entry, what: "file and folder count", limit: Int64(maxFiles))
                }
            }
        }
    }

    /// Writes one entry: a folder, a regular file, a hard link, or a (deferred) symlink.
    private func place(_ a: OpaquePointer, _ entry: OpaquePointer, name: String) throws {
        guard let parts = try components(name, entry: name) else { return }
        let rel = parts.joined(separator: "/")
        // fidq writes its marker into the unpacked folder's top under these names.
        if Unpacker.reservedNames.contains(parts[0]) { throw refuse(name, "'\(parts[0])' is the name of fidq's fetch marker") }
        // A path the kernel cannot create here is the archive's doing, not a passing failure.
        if full(rel).utf8.count >= Int(PATH_MAX) {
            throw refuse(name, "its path under the destination would be longer than \(PATH_MAX - 1) bytes")
        }
        for i in 1..<max(parts.count, 1) where symlinks[parts[0..<i].joined(separator: "/")] != nil {
            throw refuse(name, "its path goes through the archive's symlink '\(parts[0..<i].joined(separator: "/"))'")
        }
        if symlinks[rel] != nil { throw refuse(name, "it replaces the archive's symlink '\(rel)'") }
        if let target = try archive_entry_hardlink(entry).map({ try Self.utf8($0, entry: name, what: "its hard link's target", refuse) }) {
            let stripped: [String]?
            do { stripped = try components(target, entry: name) } catch FetchError.refused(_, _, let reason) {
                throw refuse(name, "hard link to '\(target)': \(reason)")
            }
            guard let tparts = stripped else {
                throw refuse(name, "hard link to '\(target)', which strip_components removed")
            }
            let trel = tparts.joined(separator: "/")
            if trel == rel, files.contains(rel) {
                // GNU tar stores a file given twice as a link to itself: the file is already there.
                if archive_entry_size_is_set(entry) != 0, archive_entry_size(entry) > 0 {
                    try writeData(a, to: full(rel), mode: nil, entry: name, declared: archive_entry_size(entry))
                }
                return
            }
            guard files.contains(trel) else {
                throw refuse(name, "hard link to '\(target)', which is not a file this archive wrote earlier")
            }
            try ensureDir(parts.dropLast(), entry: name)
            try clearFile(rel, entry: name)
            guard link(full(trel), full(rel)) == 0 else {
                // The file system's limit of links per file: the archive's doing, a retry gives the same.
                if errno == EMLINK { throw refuse(name, "too many hard links to '\(target)' for this file system") }
                throw FetchError.posix(full(rel), "cannot link entry '\(name)'")
            }
            files.insert(rel)
            // cpio (newc) stores a multiply-linked file's data with its *last* name, after empty
            // earlier ones; pax may give a link data too. Write it through the link, as bsdtar does,
            // so every name shares it.
            if archive_entry_size_is_set(entry) != 0, archive_entry_size(entry) > 0 {
                try writeData(a, to: full(rel), mode: nil, entry: name, declared: archive_entry_size(entry))
            }
            return
        }
        let type = archive_entry_filetype(entry) & 0o170000
        switch type {
        case 0o040000:
            if files.contains(rel) { throw refuse(name, "a folder replaces the file '\(rel)'") }
            try ensureDir(parts[...], entry: name, named: true)
        case 0o100000:
            try ensureDir(parts.dropLast(), entry: name)
            try clearFile(rel, entry: name)
            let mode: mode_t = archive_entry_perm(entry) & 0o111 != 0 ? 0o777 : 0o666
            let declared = archive_entry_size_is_set(entry) != 0 ? archive_entry_size(entry) : nil
            try writeData(a, to: full(rel), mode: mode, entry: name, declared: declared)
            files.insert(rel)
        case 0o120000:
            guard let target = try archive_entry_symlink(entry).map({ try Self.utf8($0, entry: name, what: "its symlink's target", refuse) }),
                  !target.isEmpty else {
                throw refuse(name, "a symlink without a target")
            }
            if target.hasPrefix("/") { throw refuse(name, "symlink to the absolute path '\(target)'") }
            // The same limits as entry names: a target the kernel would refuse, or a huge one kept
            // in memory until the links are made, fails here with the entry named.
            if target.utf8.count > 4000 { throw refuse(name, "a symlink target longer than 4000 bytes") }
            if target.split(separator: "/").contains(where: { $0.utf8.count > 255 }) {
                throw refuse(name, "a symlink target with a name longer than 255 bytes")
            }
            // Lexical check first (cheap, names the problem); linkSymlinks() checks the real tree.
            var resolved = Array(parts.dropLast())
            for c in target.split(separator: "/") where c != "." {
                if c == ".." {
                    if resolved.isEmpty { throw refuse(name, "symlink to '\(target)', outside the destination") }
                    resolved.removeLast()
                } else {
                    resolved.append(String(c))
                }
            }
            try ensureDir(parts.dropLast(), entry: name)
            var st = stat()
            if lstat(full(rel), &st) == 0 { throw refuse(name, "a symlink replaces the existing path '\(rel)'") }
            symlinks[rel] = target
            symlinkOrder.append((rel, name))
        default:
            let kinds: [mode_t: String] = [0o020000: "character device", 0o060000: "block device",
                                           0o010000: "fifo", 0o140000: "socket"]
            throw refuse(name, "\(kinds[type] ?? "unknown type 0o\(String(type, radix: 8))") entries are not allowed")
        }
    }

    /// Makes room for a file at `rel`: a file an earlier entry wrote is replaced (tar semantics).
    private func clearFile(_ rel: String, entry: String) throws {
        if dirs.contains(rel) { throw refuse(entry, "a file replaces the folder '\(rel)'") }
        if files.contains(rel) {
            unlink(full(rel))
            files.remove(rel)
        }
    }

    /// Streams the current entry's data to a new file (or, with `mode` nil, over the file a hard
    /// link of this archive already made), counting bytes against the limit as they come.
    private func writeData(_ a: OpaquePointer, to path: String, mode: mode_t?, entry: String, declared: Int64?) throws {
        if let declared, declared > maxBytes - bytes {
            throw FetchError.limit(archive: archiveName, entry: entry, what: "unpacked size", limit: maxBytes)
        }
        let fd = mode.map { open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, $0) }
            ?? open(path, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw FetchError.posix(path, "cannot create file for entry '\(entry)'") }
        defer { close(fd) }
        let size = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = archive_read_data(a, buffer, size)
            if n == 0 { break }
            if n < 0 { throw FetchError.archive(archive: archiveName, message: "entry '\(entry)': \(Unpacker.errorText(a))") }
            bytes += Int64(n)
            if bytes > maxBytes {
                throw FetchError.limit(archive: archiveName, entry: entry, what: "unpacked size", limit: maxBytes)
            }
            try writeAll(fd, UnsafeRawBufferPointer(start: buffer, count: n), path: path, what: "cannot write entry '\(entry)'")
            if isCancelled() { throw FetchError.cancelled }
            if Date().timeIntervalSince(lastReport) > 0.5 {
                lastReport = Date()
                progress(FetchProgress(phase: "unpack", item: archiveName, done: bytes, total: nil))
            }
        }
    }

    /// Creates the deferred symlinks, then checks each resolves inside the folder through the real tree.
    private func linkSymlinks() throws {
        for (rel, _) in symlinkOrder {
            guard symlink(symlinks[rel]!, full(rel)) == 0 else { throw FetchError.posix(full(rel), "cannot create symlink") }
        }
        for (rel, entry) in symlinkOrder where !resolvesInside(rel) {
            throw refuse(entry, "symlink to '\(symlinks[rel]!)' resolves outside the destination")
        }
    }

    /// Follows `rel` component by component through the folder's own links (at most 64 hops);
    /// false if it ever steps above the folder. Components that do not exist are taken lexically.
    private func resolvesInside(_ rel: String) -> Bool {
        var pending = Array(rel.split(separator: "/").map(String.init).reversed())
        var current: [String] = []
        var hops = 0
        var buffer = [CChar](repeating: 0, count: 4097)
        while let c = pending.popLast() {
            if c == "." || c.isEmpty { continue }
            if c == ".." {
                if current.isEmpty { return false }
                current.removeLast()
                continue
            }
            let path = full((current + [c]).joined(separator: "/"))
            var st = stat()
            if lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFLNK {
                hops += 1
                let n = readlink(path, &buffer, 4096)
                guard hops <= 64, n > 0 else { return false }
                buffer[n] = 0
                let target = String(cString: buffer)
                if target.hasPrefix("/") { return false }
                pending.append(contentsOf: target.split(separator: "/").map(String.init).reversed())
            } else {
                current.append(c)
            }
        }
        return true
    }
}
