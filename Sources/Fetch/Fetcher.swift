// Fetcher: the `fetch` entry point — download, verify, unpack into a staging folder, publish by rename.
import Foundation

/// What a fetch produced.
public struct FetchResult: Codable, Equatable, Sendable {
    /// One downloaded file.
    public struct Download: Codable, Equatable, Sendable {
        public var url: String
        public var sha256: String
        public var bytes: Int64
        /// Bytes already on disk from an interrupted earlier run when this run began.
        public var resumedFrom: Int64

        enum CodingKeys: String, CodingKey {
            case url, sha256, bytes
            case resumedFrom = "resumed_from"
        }
    }

    /// The published folder (absolute).
    public var dest: String
    /// Regular files under `dest`.
    public var files: Int
    /// Their total size in bytes.
    public var bytes: Int64
    public var downloads: [Download]
    /// True when `dest` already held this fetch's result and nothing was done.
    public var alreadyPresent: Bool

    enum CodingKeys: String, CodingKey {
        case dest, files, bytes, downloads
        case alreadyPresent = "already_present"
    }
}

/// Runs fetches. Stateless: everything an interrupted run leaves is in `.<dest>.fetch/` beside `dest`.
public enum Fetcher {
    /// Marker written into every published `dest`, so a retried job recognises its own result.
    public static let markerName = ".fidq-fetch.json"

    /// Fetches `params` into the workspace.
    ///
    /// - Parameters:
    ///   - params: what to fetch; `dest` resolves against `workspace` and must stay inside it.
    ///   - workspace: the folder relative paths resolve against.
    ///   - progress: called about twice a second with bytes done.
    ///   - isCancelled: polled often; when true the run stops and keeps its partial download.
    ///   - log: one line per event (start, resume, retry, result).
    /// - Returns: the published folder, its size, and each download's sha256.
    /// - Throws: `FetchError`; `isPermanent` says whether a retry could help.
    public static func run(
        _ params: FetchParams, workspace: URL,
        progress: @escaping (FetchProgress) -> Void = { _ in },
        isCancelled: @escaping () -> Bool = { false },
        log: @escaping (String) -> Void = { _ in }
    ) throws -> FetchResult {
        try params.validate()
        let dest = try resolveDest(params.dest, workspace: workspace)
        let parent = dest.deletingLastPathComponent()
        let marker = Marker(params)
        if let existing = try? JSONDecoder().decode(Marker.self, from: Data(contentsOf: dest.appendingPathComponent(markerName))),
            existing == marker
        {
            log("fetch: \(dest.path) already holds this fetch's result")
            let (files, bytes) = treeSize(dest)
            return FetchResult(dest: dest.path, files: files, bytes: bytes, downloads: [], alreadyPresent: true)
        }
        if FileManager.default.fileExists(atPath: dest.path), !params.replace, !isEmptyFolder(dest) {
            throw FetchError.destExists(path: dest.path)
        }
        let work = parent.appendingPathComponent(".\(dest.lastPathComponent).fetch")
        if mkdir(work.path, 0o755) != 0, errno != EEXIST { throw FetchError.posix(work.path, "cannot create work folder") }
        // A worker whose lease expired may still be running this fetch: never share its part files.
        let lock = try WorkLock(work.appendingPathComponent("lock"))
        defer { lock.release() }
        if let json = try? JSONEncoder().encode(params), let text = String(data: json, encoding: .utf8) {
            log("fetch: params \(text)")
        }
        let stage = work.appendingPathComponent("stage")
        try removeTree(stage)
        do {
            let downloader = Downloader(params: params, progress: progress, isCancelled: isCancelled, log: log)
            var downloads: [FetchResult.Download] = []
            let record = { (r: DownloadResult, url: URL) in
                downloads.append(.init(url: url.absoluteString, sha256: r.sha256, bytes: r.bytes, resumedFrom: r.resumedFrom))
            }
            if let source = params.source, let preset = Presets.named(source) {
                try preset.build(params: params, workspace: workspace, work: work, stage: stage, downloader: downloader,
                                 record: record, progress: progress, isCancelled: isCancelled, log: log)
            } else {
                let url = URL(string: params.url!)!
                log("fetch: \(url.absoluteString) -> \(dest.path)")
                let got = try downloader.download(url, key: "download", in: work, sha256: params.sha256)
                record(got, url)
                let name = params.filename ?? defaultName(url)
                try unpack(got.file, name: name, params: params, into: stage, progress: progress, isCancelled: isCancelled, log: log)
            }
            try writeAtomically(JSONEncoder().encode(marker), to: stage.appendingPathComponent(markerName))
            try publish(stage, to: dest, work: work, log: log)
            try removeTree(work)
            let (files, bytes) = treeSize(dest)
            log("fetch: published \(dest.path): \(files) files, \(bytes) bytes")
            return FetchResult(dest: dest.path, files: files, bytes: bytes, downloads: downloads, alreadyPresent: false)
        } catch let error as FetchError {
            // Keep partial downloads for a retry; a permanent failure leaves nothing behind.
            if error.isPermanent { try? removeTree(work) } else { try? removeTree(stage) }
            throw error
        }
    }

    /// The queue's `fetch` kind in one call: decodes a job's `params` JSON strictly, runs it, and
    /// returns the result as JSON (`dest`, `files`, `bytes`, `downloads`, `already_present`).
    /// - Throws: `FetchError` (`badParams` for a bad descriptor; `isPermanent` says whether to retry).
    public static func runJob(
        params json: Data, workspace: URL,
        progress: @escaping (FetchProgress) -> Void = { _ in },
        isCancelled: @escaping () -> Bool = { false },
        log: @escaping (String) -> Void = { _ in }
    ) throws -> Data {
        let params = try FetchParams.decode(json)
        let result = try run(params, workspace: workspace, progress: progress, isCancelled: isCancelled, log: log)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(result)
    }

    /// Turns a downloaded file into the staging folder: unpacks an archive, decompresses a single
    /// compressed file, or links the file in as `name`.
    static func unpack(
        _ file: URL, name: String, params: FetchParams, into stage: URL,
        progress: @escaping (FetchProgress) -> Void, isCancelled: @escaping () -> Bool, log: (String) -> Void
    ) throws {
        let zip = name.lowercased().hasSuffix(".zip")
        let content = params.unpack == .off ? .plain : Unpacker.detect(file, allowZip: zip)
        let unpacker = Unpacker(archiveName: name, maxBytes: params.maxBytes, maxFiles: params.maxFiles,
                                stripComponents: params.stripComponents, progress: progress, isCancelled: isCancelled)
        switch content {
        case .archive:
            log("fetch: unpacking \(name)")
            try unpacker.extract(file, into: stage, zip: zip)
            log("fetch: unpacked \(unpacker.entries) entries, \(unpacker.bytes) bytes")
        case .compressedFile:
            guard mkdir(stage.path, 0o755) == 0 else { throw FetchError.posix(stage.path, "cannot create staging folder") }
            let out = stage.appendingPathComponent(stripCompressionSuffix(name))
            log("fetch: decompressing \(name) to \(out.lastPathComponent)")
            try unpacker.decompress(file, to: out)
        case .plain:
            guard mkdir(stage.path, 0o755) == 0 else { throw FetchError.posix(stage.path, "cannot create staging folder") }
            try linkOrCopy(file, to: stage.appendingPathComponent(name))
        }
    }

    /// Renames `stage` to `dest`; an existing `dest` (allowed by the caller) is moved aside first.
    static func publish(_ stage: URL, to dest: URL, work: URL, log: (String) -> Void) throws {
        if FileManager.default.fileExists(atPath: dest.path) {
            let old = work.appendingPathComponent("old")
            try removeTree(old)
            guard rename(dest.path, old.path) == 0 else { throw FetchError.posix(dest.path, "cannot move the old dest aside") }
            log("fetch: replacing \(dest.path)")
        }
        guard rename(stage.path, dest.path) == 0 else { throw FetchError.posix(dest.path, "cannot publish") }
    }

    /// `dest` as an absolute URL inside the workspace, with its parent folders created.
    static func resolveDest(_ dest: String, workspace: URL) throws -> URL {
        let ws = URL(fileURLWithPath: realpathOrSelf(workspace.path))
        let raw = dest.hasPrefix("/") ? URL(fileURLWithPath: dest) : ws.appendingPathComponent(dest)
        let url = raw.standardizedFileURL
        let parent = url.deletingLastPathComponent()
        func outside() -> FetchError {
            .badParams(field: "dest", expected: "a folder inside the workspace \(ws.path)", found: "\"\(dest)\"",
                       hint: "use a relative path")
        }
        guard isInside(parent.path, ws.path) else { throw outside() }
        do { try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true) } catch {
            throw FetchError.io(path: parent.path, message: "cannot create dest's parent: \(error)")
        }
        // A symlinked parent could point anywhere; judge where it really is.
        let real = URL(fileURLWithPath: realpathOrSelf(parent.path)).appendingPathComponent(url.lastPathComponent)
        guard isInside(real.deletingLastPathComponent().path, ws.path) else { throw outside() }
        var st = stat()
        if lstat(real.path, &st) == 0, st.st_mode & S_IFMT == S_IFLNK {
            throw FetchError.badParams(field: "dest", expected: "a folder, not a symlink", found: real.path, hint: nil)
        }
        return real
    }

    static func isInside(_ path: String, _ root: String) -> Bool {
        path == root || path.hasPrefix(root.hasSuffix("/") ? root : root + "/")
    }

    static func realpathOrSelf(_ path: String) -> String {
        guard let p = realpath(path, nil) else { return path }
        defer { free(p) }
        return String(cString: p)
    }

    /// The URL's last path component, or `download` when it has none.
    static func defaultName(_ url: URL) -> String {
        let n = url.lastPathComponent
        return n.isEmpty || n == "/" || n == "." || n == ".." ? "download" : n
    }

    /// `a.tsv.gz` → `a.tsv`; `a.tgz` → `a.tar`; names without a known suffix get `.out`.
    static func stripCompressionSuffix(_ name: String) -> String {
        let lower = name.lowercased()
        if lower.hasSuffix(".tgz") { return String(name.dropLast(4)) + ".tar" }
        for s in [".gz", ".bz2", ".xz", ".zst", ".lzma", ".lz4", ".z"] where lower.hasSuffix(s) && name.count > s.count {
            return String(name.dropLast(s.count))
        }
        return name + ".out"
    }

    static func isEmptyFolder(_ url: URL) -> Bool {
        (try? FileManager.default.contentsOfDirectory(atPath: url.path).isEmpty) ?? false
    }
}

/// What a published `dest` was fetched from; equal markers mean the same fetch.
struct Marker: Codable, Equatable {
    var url: String?
    var source: String?
    var sha256: String?
    var unpack: String
    var stripComponents: Int

    init(_ p: FetchParams) {
        url = p.url
        source = p.source
        sha256 = p.sha256?.lowercased()
        unpack = p.unpack.rawValue
        stripComponents = p.stripComponents
    }
}

/// An exclusive `flock` on a file in the work folder, held for one run (a local guard; the queue's
/// lease is the cross-machine one).
final class WorkLock {
    private var fd: Int32

    init(_ url: URL) throws {
        fd = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FetchError.posix(url.path, "cannot open lock file") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            close(fd)
            fd = -1
            throw FetchError.io(path: url.path, message: "another fetch into the same dest is running")
        }
    }

    func release() {
        if fd >= 0 { close(fd) }
        fd = -1
    }
}

/// Removes a file or folder tree without following symlinks; absent is fine.
func removeTree(_ url: URL) throws {
    var st = stat()
    guard lstat(url.path, &st) == 0 else { return }
    do { try FileManager.default.removeItem(atPath: url.path) } catch {
        throw FetchError.io(path: url.path, message: "cannot remove: \(error)")
    }
}

/// Hard-links `src` to `dst`, copying when the file system refuses links.
func linkOrCopy(_ src: URL, to dst: URL) throws {
    if link(src.path, dst.path) == 0 { return }
    do { try FileManager.default.copyItem(at: src, to: dst) } catch {
        throw FetchError.io(path: dst.path, message: "cannot place file: \(error)")
    }
}

/// Regular files under `url` and their total bytes (symlinks not followed).
func treeSize(_ url: URL) -> (Int, Int64) {
    var files = 0
    var bytes: Int64 = 0
    guard let e = FileManager.default.enumerator(atPath: url.path) else { return (0, 0) }
    while let rel = e.nextObject() as? String {
        var st = stat()
        if lstat(url.path + "/" + rel, &st) == 0, st.st_mode & S_IFMT == S_IFREG, rel != Fetcher.markerName {
            files += 1
            bytes += Int64(st.st_size)
        }
    }
    return (files, bytes)
}
