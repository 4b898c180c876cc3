// FetchParams: the `fetch` job's params, decoded strictly (unknown keys and bad values are errors).
import Foundation

/// What to fetch, where to put it, and the limits that keep it safe.
///
/// The same value is built by `fidq fetch` from flags and decoded from a queued `fetch` job's
/// `params`. Keys are snake_case; every field but `dest` (and one of `url`/`source`) has a default.
public struct FetchParams: Codable, Equatable, Sendable {
    /// How to treat the downloaded bytes.
    public enum Unpack: String, Codable, Sendable, CaseIterable {
        /// Unpack tar (any compression), 7z, cpio, a single .gz/.bz2/.xz/.zst file, and zip when
        /// the name ends in `.zip` (zip is also the container of .bin/.npz/.jar, left alone).
        case auto
        /// Keep the file as downloaded, as `dest/<filename>`.
        case off
    }

    /// `http`, `https` or `file` URL. Exactly one of `url` and `source` is set.
    public var url: String?
    /// A preset name (`fidq fetch --list`).
    public var source: String?
    /// The folder to produce, relative to the workspace; published atomically.
    public var dest: String
    /// Expected sha256 of the downloaded bytes (64 hex digits); only with `url`.
    public var sha256: String?
    /// `auto` (default) or `off`.
    public var unpack: Unpack = .auto
    /// Leading path components dropped from every archive entry (as `tar --strip-components`).
    public var stripComponents: Int = 0
    /// Limit on the bytes downloaded and, separately, on the bytes unpacked (default 256 GiB).
    public var maxBytes: Int64 = 256 << 30
    /// Limit on the number of archive entries (default 1,000,000).
    public var maxFiles: Int = 1_000_000
    /// Name of the file kept when not unpacked (default: the URL's last path component, made safe:
    /// split off before percent-decoding, `/` and NUL replaced).
    public var filename: String?
    /// For the data presets: an existing `psgs_w100.tsv` to use instead of downloading it.
    public var passages: String?
    /// What `dest`'s marker records for `passages` when that is not the path read: a queued
    /// job's `job:ID/…` reference as written, the same on every worker whatever the shared
    /// storage's mount point there. Not a param (never decoded or encoded).
    public var passagesAsWritten: String?
    /// For presets: a base URL that replaces each preset URL's scheme and host (a local mirror).
    public var mirror: String?
    /// Seconds to wait for the server's first answer.
    public var connectTimeoutS: Double = 30
    /// Seconds without a byte before the transfer is abandoned (and retried).
    public var idleTimeoutS: Double = 120
    /// Transient failures retried within one run, with exponential backoff.
    public var retries: Int = 5
    /// First backoff in seconds; doubles each retry, capped at 60 s.
    public var retryBackoffS: Double = 2
    /// Replace an existing `dest` that this fetch did not produce.
    public var replace: Bool = false

    enum CodingKeys: String, CodingKey, CaseIterable {
        case url, source, dest, sha256, unpack, filename, passages, replace, retries, mirror
        case stripComponents = "strip_components"
        case maxBytes = "max_bytes"
        case maxFiles = "max_files"
        case connectTimeoutS = "connect_timeout_s"
        case idleTimeoutS = "idle_timeout_s"
        case retryBackoffS = "retry_backoff_s"
    }

    /// Params for a URL download into `dest`, all else default.
    public init(url: String? = nil, source: String? = nil, dest: String) {
        self.url = url
        self.source = source
        self.dest = dest
    }

    public init(from decoder: Decoder) throws {
        // Unknown keys first: a misspelt limit must not silently fall back to its default.
        let any = try decoder.container(keyedBy: AnyKey.self)
        let known = Set(CodingKeys.allCases.map(\.stringValue))
        for key in any.allKeys where !known.contains(key.stringValue) {
            throw FetchError.badParams(
                field: key.stringValue, expected: "one of \(known.sorted().joined(separator: ", "))",
                found: "an unknown key", hint: nearest(key.stringValue, in: known).map { "did you mean '\($0)'?" })
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func get<T: Decodable>(_ key: CodingKeys, _ type: T.Type, _ what: String) throws -> T? {
            do { return try c.decodeIfPresent(T.self, forKey: key) } catch {
                // The value as given (2.5, "abc", 1e+30), not Foundation's type name.
                var found = "a list or object"
                if let d = try? c.decode(Double.self, forKey: key) {
                    found = d.isFinite && d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(format: "%g", d)
                } else if let s = try? c.decode(String.self, forKey: key) {
                    found = "\"\(s)\""
                } else if let b = try? c.decode(Bool.self, forKey: key) {
                    found = String(b)
                }
                throw FetchError.badParams(field: key.stringValue, expected: what, found: found, hint: nil)
            }
        }
        guard let dest = try get(.dest, String.self, "a folder path string") else {
            throw FetchError.badParams(field: "dest", expected: "a folder path", found: "nothing", hint: nil)
        }
        self.init(dest: dest)
        url = try get(.url, String.self, "a URL string")
        source = try get(.source, String.self, "a preset name")
        sha256 = try get(.sha256, String.self, "64 hex digits")
        if let raw = try get(.unpack, String.self, "\"auto\" or \"off\"") {
            guard let u = Unpack(rawValue: raw) else {
                throw FetchError.badParams(field: "unpack", expected: "\"auto\" or \"off\"", found: "\"\(raw)\"", hint: nil)
            }
            unpack = u
        }
        stripComponents = try get(.stripComponents, Int.self, "an integer") ?? stripComponents
        maxBytes = try get(.maxBytes, Int64.self, "an integer byte count") ?? maxBytes
        maxFiles = try get(.maxFiles, Int.self, "an integer") ?? maxFiles
        filename = try get(.filename, String.self, "a file name")
        passages = try get(.passages, String.self, "a path to psgs_w100.tsv")
        mirror = try get(.mirror, String.self, "a base URL")
        connectTimeoutS = try get(.connectTimeoutS, Double.self, "seconds") ?? connectTimeoutS
        idleTimeoutS = try get(.idleTimeoutS, Double.self, "seconds") ?? idleTimeoutS
        retries = try get(.retries, Int.self, "an integer") ?? retries
        retryBackoffS = try get(.retryBackoffS, Double.self, "seconds") ?? retryBackoffS
        replace = try get(.replace, Bool.self, "true or false") ?? replace
        try validate()
    }

    /// Decodes params from a job's JSON `params` object.
    public static func decode(_ json: Data) throws -> FetchParams {
        do { return try JSONDecoder().decode(FetchParams.self, from: json) } catch let e as FetchError {
            throw e
        } catch {
            throw FetchError.badParams(field: "params", expected: "a JSON object", found: "\(error)", hint: nil)
        }
    }

    /// Checks ranges and combinations; called by the decoder and by `Fetcher.run`.
    public func validate() throws {
        func bad(_ f: String, _ e: String, _ found: String, _ hint: String? = nil) -> FetchError {
            .badParams(field: f, expected: e, found: found, hint: hint)
        }
        switch (url, source) {
        case (nil, nil): throw bad("url", "one of 'url' or 'source'", "neither", "fidq fetch --list shows the sources")
        case (.some, .some): throw bad("source", "one of 'url' or 'source'", "both")
        case (.some(let u), nil):
            guard let parsed = URL(string: u), let scheme = parsed.scheme?.lowercased(),
                ["http", "https", "file"].contains(scheme)
            else { throw bad("url", "an http, https or file URL", "\"\(u)\"") }
        case (nil, .some(let s)):
            guard Presets.named(s) != nil else {
                throw bad("source", "a preset name", "\"\(s)\"", "one of \(Presets.all.map(\.name).joined(separator: ", "))")
            }
            if sha256 != nil { throw bad("sha256", "no checksum with a preset", "one") }
            if filename != nil { throw bad("filename", "no filename with a preset (it names its files)", "\"\(filename!)\"") }
            // Model and data presets need their archives unpacked as published to find their files.
            if Presets.named(s)?.recipe != .files {
                if unpack == .off { throw bad("unpack", "\"auto\" with the preset '\(s)'", "\"off\"") }
                if stripComponents != 0 { throw bad("strip_components", "0 with the preset '\(s)'", "\(stripComponents)") }
            }
        }
        if dest.isEmpty || dest.contains("\0") { throw bad("dest", "a folder path", "\"\(dest)\"") }
        let last = (dest as NSString).lastPathComponent
        if last == "." || last == ".." || last == "/" { throw bad("dest", "a folder name at the end", "\"\(dest)\"") }
        // The work folder beside it is `.<name>.fetch`: 7 bytes more, within the 255 a name may have.
        if last.utf8.count > 248 { throw bad("dest", "a last name of at most 248 bytes", "\(last.utf8.count) bytes") }
        if let h = sha256, h.count != 64 || !h.allSatisfy(\.isHexDigit) {
            throw bad("sha256", "64 hex digits", "\"\(h)\"")
        }
        if !(0...64).contains(stripComponents) { throw bad("strip_components", "0...64", "\(stripComponents)") }
        if maxBytes <= 0 { throw bad("max_bytes", "a positive byte count", "\(maxBytes)") }
        if maxFiles <= 0 { throw bad("max_files", "a positive count", "\(maxFiles)") }
        if let f = filename, f.isEmpty || f.contains("/") || f.contains("\0") || f == "." || f == ".." || f.utf8.count > 200
            || Unpacker.reservedNames.contains(f) {
            throw bad("filename", "a plain file name (no '/', not '.' or '..', not fidq's marker, at most 200 bytes)", "\"\(f)\"")
        }
        if passages != nil, !(source.flatMap(Presets.named)?.usesPassages ?? false) {
            throw bad("passages", "only with a data preset (fid_data, nq_data, tqa_data)", "\"\(passages!)\"")
        }
        if let m = mirror {
            guard source != nil else { throw bad("mirror", "only with 'source'", "\"\(m)\"") }
            guard let u = URL(string: m), ["http", "https", "file"].contains(u.scheme?.lowercased() ?? "") else {
                throw bad("mirror", "an http, https or file base URL", "\"\(m)\"")
            }
        }
        if !(connectTimeoutS > 0) { throw bad("connect_timeout_s", "seconds > 0", "\(connectTimeoutS)") }
        if !(idleTimeoutS > 0) { throw bad("idle_timeout_s", "seconds > 0", "\(idleTimeoutS)") }
        if !(0...100).contains(retries) { throw bad("retries", "0...100", "\(retries)") }
        if !(retryBackoffS >= 0) { throw bad("retry_backoff_s", "seconds >= 0", "\(retryBackoffS)") }
    }
}

/// A coding key for any string, to list the keys a JSON object actually has.
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}

/// The known name closest to `name` by edit distance, if it is close (at most 3 edits).
func nearest(_ name: String, in known: Set<String>) -> String? {
    func distance(_ a: [Character], _ b: [Character]) -> Int {
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var prev = row[0]
            row[0] = i
            for j in 1...max(b.count, 1) where !b.isEmpty {
                let cur = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1))
                prev = cur
            }
        }
        return row[b.count]
    }
    let a = Array(name)
    return known.map { ($0, distance(a, Array($0))) }.filter { $0.1 <= 3 }.min { $0.1 < $1.1 }?.0
}
