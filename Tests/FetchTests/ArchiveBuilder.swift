// ArchiveBuilder: writes test archives (benign and hostile) with libarchive's write API.
import CArchive
import Foundation

/// Builds archives entry by entry; names are written exactly as given (no sanitising).
enum ArchiveBuilder {
    enum Kind {
        case file(Data)
        case dir
        case symlink(String)
        case hardlink(String)
        case charDevice
        case fifo
        /// A sparse file of `size` bytes whose only data is `tail` at its end (pax sparse format).
        case sparse(size: Int64, tail: Data)
        /// A regular file of `count` zero bytes written without a size in the header (zip streams it).
        case zeros(count: Int)
    }

    struct Entry {
        var path: String
        var kind: Kind
        var mode: Int32 = 0o644
        init(_ path: String, _ kind: Kind, mode: Int32 = 0o644) {
            self.path = path
            self.kind = kind
            self.mode = mode
        }
    }

    enum Format { case pax, zip, odc }
    enum Filter { case none, gzip, bzip2, xz }

    struct BuildError: Error, CustomStringConvertible {
        var description: String
    }

    /// Writes `entries` to `url` as `format`, compressed with `filter`.
    static func write(_ entries: [Entry], to url: URL, format: Format = .pax, filter: Filter = .none) throws {
        let a = archive_write_new()!
        defer { archive_write_free(a) }
        switch format {
        case .pax: archive_write_set_format_pax(a)
        case .odc: archive_write_set_format_cpio_odc(a)
        case .zip:
            archive_write_set_format_zip(a)
            archive_write_zip_set_compression_deflate(a)
        }
        try add(filter, a)
        try check(a, archive_write_open_filename(a, url.path))
        let chunk = Data(count: 1 << 20)
        for e in entries {
            let entry = archive_entry_new()!
            defer { archive_entry_free(entry) }
            archive_entry_set_pathname(entry, e.path)
            archive_entry_set_perm(entry, mode_t(e.mode))
            var data = Data()
            var zeros = 0
            switch e.kind {
            case .file(let d):
                archive_entry_set_filetype(entry, 0o100000)
                archive_entry_set_size(entry, Int64(d.count))
                data = d
            case .dir:
                archive_entry_set_filetype(entry, 0o040000)
                archive_entry_set_perm(entry, 0o755)
            case .symlink(let target):
                archive_entry_set_filetype(entry, 0o120000)
                archive_entry_set_symlink(entry, target)
            case .hardlink(let target):
                archive_entry_set_filetype(entry, 0o100000)
                archive_entry_set_hardlink(entry, target)
                archive_entry_set_size(entry, 0)
            case .charDevice:
                archive_entry_set_filetype(entry, 0o020000)
                archive_entry_set_rdev(entry, dev_t(1 << 8 | 3))
            case .fifo:
                archive_entry_set_filetype(entry, 0o010000)
            case .sparse(let size, let tail):
                archive_entry_set_filetype(entry, 0o100000)
                archive_entry_set_size(entry, size)
                archive_entry_sparse_add_entry(entry, size - Int64(tail.count), Int64(tail.count))
                data = tail
            case .zeros(let count):
                archive_entry_set_filetype(entry, 0o100000)
                archive_entry_unset_size(entry)
                zeros = count
            }
            try check(a, archive_write_header(a, entry))
            if !data.isEmpty {
                let n = data.withUnsafeBytes { archive_write_data(a, $0.baseAddress, $0.count) }
                guard n == data.count else { throw BuildError(description: "short write for \(e.path): \(n)") }
            }
            while zeros > 0 {
                let n = min(zeros, chunk.count)
                _ = chunk.withUnsafeBytes { archive_write_data(a, $0.baseAddress, n) }
                zeros -= n
            }
        }
        try check(a, archive_write_close(a))
    }

    /// Compresses `data` as one file (libarchive's raw format), like `gzip -c`.
    /// A ustar archive with each name's raw bytes as given (libarchive's writer would convert
    /// them): names that are not UTF-8.
    static func ustar(_ files: [(name: [UInt8], data: Data)]) -> Data {
        var out = Data()
        func octal(_ v: Int, _ width: Int) -> [UInt8] { Array(String(format: "%0\(width - 1)o", v).utf8) + [0] }
        for (name, data) in files {
            var h = [UInt8](repeating: 0, count: 512)
            h.replaceSubrange(0..<name.count, with: name)
            h.replaceSubrange(100..<108, with: octal(0o644, 8))
            h.replaceSubrange(108..<116, with: octal(0, 8))
            h.replaceSubrange(116..<124, with: octal(0, 8))
            h.replaceSubrange(124..<136, with: octal(data.count, 12))
            h.replaceSubrange(136..<148, with: octal(0, 12))
            h[156] = UInt8(ascii: "0")
            h.replaceSubrange(257..<265, with: Array("ustar\u{0}00".utf8))
            h.replaceSubrange(148..<156, with: [UInt8](repeating: 0x20, count: 8))
            let sum = h.reduce(0) { $0 + Int($1) }
            h.replaceSubrange(148..<155, with: octal(sum, 7))
            out.append(contentsOf: h)
            out.append(data)
            out.append(Data(count: (512 - data.count % 512) % 512))
        }
        return out + Data(count: 1024)
    }

    static func compress(_ data: Data, to url: URL, filter: Filter) throws {
        let a = archive_write_new()!
        defer { archive_write_free(a) }
        archive_write_set_format_raw(a)
        try add(filter, a)
        try check(a, archive_write_open_filename(a, url.path))
        let entry = archive_entry_new()!
        defer { archive_entry_free(entry) }
        archive_entry_set_pathname(entry, "data")
        archive_entry_set_filetype(entry, 0o100000)
        archive_entry_set_size(entry, Int64(data.count))
        try check(a, archive_write_header(a, entry))
        _ = data.withUnsafeBytes { archive_write_data(a, $0.baseAddress, $0.count) }
        try check(a, archive_write_close(a))
    }

    private static func add(_ filter: Filter, _ a: OpaquePointer) throws {
        switch filter {
        case .none: break
        case .gzip: try check(a, archive_write_add_filter_gzip(a))
        case .bzip2: try check(a, archive_write_add_filter_bzip2(a))
        case .xz: try check(a, archive_write_add_filter_xz(a))
        }
    }

    private static func check(_ a: OpaquePointer, _ r: Int32) throws {
        guard r >= ARCHIVE_WARN else {
            throw BuildError(description: archive_error_string(a).map { String(cString: $0) } ?? "libarchive error \(r)")
        }
    }
}
