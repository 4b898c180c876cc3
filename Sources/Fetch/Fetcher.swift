// Fetcher: the `fetch` entry point — download, verify, unpack into a staging folder, publish by rename.
import Foundation

/// What a fetch produced.
public struct FetchResult: Codable, Equatable, Sendable {
    /// One downloaded file.
    public struct Download: Codable, Equatable, Sendable {
        public var url: String
        public var sha256: String
        public var bytes: Int64
        /// Bytes reused from an interrupted earlier run or attempt (0 when the download started over).
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

/// Checks that a local file the fetch is about to read may be read; throws to refuse it.
/// `field` is the param that named it (`url`, `mirror`, `passages`).
public typealias ReadCheck = (_ path: String, _ field: String) throws -> Void

/// Runs fetches. Stateless: everything an interrupted run leaves is in `.<dest>.fetch/` beside `dest`.
///
/// Each run (a queue attempt, or one `fidq fetch`) works in its own folder `.<dest>.fetch/a-<token>/`
/// (downloads, staging, the old dest moved aside) under the rules of `Attempts`: it never waits on,
/// or writes into, the folder of an earlier attempt that may still be alive, and adopts the partial
/// downloads of one that is gone. Publishing into `dest` is no-replace: a run that finds `dest`
/// already holding this fetch's result (published meanwhile by another attempt) loses and leaves it alone.
public enum Fetcher {
    /// Marker written into every published `dest`, so a retried job recognises its own result.
    public static let markerName = ".fidq-fetch.json"

    /// Test hooks: `crash(point)` is called at publish's steps and may throw to stop the run there,
    /// as a crash would; `network` forces the network-file-system rules on or off.
    struct Hooks {
        var crash: (String) throws -> Void = { _ in }
        var network: Bool?
    }

    /// Fetches `params` into the workspace.
    ///
    /// - Parameters:
    ///   - params: what to fetch; `dest` resolves against `workspace` and must stay inside it.
    ///   - workspace: the folder relative paths resolve against.
    ///   - roots: more folders `dest` may lie in (the queue's `--allow-root`s).
    ///   - attempt: a name for this run's work folder, unique per attempt (the queue's claim
    ///     token); nil makes one up.
    ///   - readCheck: called with every local file before it is read (`file://` URLs, `passages`);
    ///     nil reads anything the process can.
    ///   - progress: called about twice a second with bytes done.
    ///   - isCancelled: polled often; when true the run stops and keeps its partial download.
    ///   - log: one line per event (start, resume, retry, result).
    /// - Returns: the published folder, its size, and each download's sha256.
    /// - Throws: `FetchError`; `isPermanent` says whether a retry could help.
    public static func run(
        _ params: FetchParams, workspace: URL, roots: [URL] = [], attempt: String? = nil, readCheck: ReadCheck? = nil,
        progress: @escaping (FetchProgress) -> Void = { _ in },
        isCancelled: @escaping () -> Bool = { false },
        log: @escaping (String) -> Void = { _ in }
    ) throws -> FetchResult {
        try run(params, workspace: workspace, roots: roots, attempt: attempt, readCheck: readCheck, hooks: Hooks(),
                progress: progress, isCancelled: isCancelled, log: log)
    }

    static func run(
        _ params: FetchParams, workspace: URL, roots: [URL] = [], attempt: String?, readCheck: ReadCheck?, hooks: Hooks,
        progress: @escaping (FetchProgress) -> Void = { _ in },
        isCancelled: @escaping () -> Bool = { false },
        log: @escaping (String) -> Void = { _ in }
    ) throws -> FetchResult {
        try params.validate()
        let dest = try resolveDest(params.dest, workspace: workspace, roots: roots)
        let parent = dest.deletingLastPathComponent()
        let marker = Marker(params)
        let work = parent.appendingPathComponent(".\(dest.lastPathComponent).fetch")
        func present() -> FetchResult {
            let (files, bytes) = treeSize(dest)
            return FetchResult(dest: dest.path, files: files, bytes: bytes, downloads: [], alreadyPresent: true)
        }
        if marker.sameFetch(as: Marker.read(dest), in: dest, passagesRead: params.passages), !FileManager.default.fileExists(atPath: work.path) {
            log("fetch: \(dest.path) already holds this fetch's result")
            return present()
        }
        if mkdir(work.path, 0o777) != 0, errno != EEXIST { throw FetchError.posix(work.path, "cannot create work folder") }
        let attempts = Attempts(work: work, network: hooks.network ?? Attempts.isNetworkFileSystem(work))
        let (mine, lock) = try attempts.claim(token: Attempts.name(attempt))
        // Whatever happens, this attempt's folder goes (kept only for a retry), and the work
        // folder with it once no other attempt lives there.
        var keepMine = false
        defer {
            lock.release()
            if !keepMine { try? removeTree(mine) }
            rmdir(work.path)
        }
        do { try adoptAbandoned(attempts, mine: mine, dest: dest, marker: marker, log: log) } catch {
            keepMine = true  // it may already hold adopted downloads
            throw error
        }
        if marker.sameFetch(as: Marker.read(dest), in: dest, passagesRead: params.passages) {
            log("fetch: \(dest.path) already holds this fetch's result")
            return present()
        }
        if FileManager.default.fileExists(atPath: dest.path), !params.replace, !isEmptyFolder(dest) {
            throw FetchError.destExists(path: dest.path)
        }
        let paramsEncoder = JSONEncoder()
        paramsEncoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        if let json = try? paramsEncoder.encode(params), let text = String(data: json, encoding: .utf8) {
            log("fetch: params \(text)")
        }
        let stage = mine.appendingPathComponent("stage")
        try removeTree(stage)
        do {
            let downloader = Downloader(params: params, workspace: workspace, readCheck: readCheck, progress: progress, isCancelled: isCancelled, log: log)
            var downloads: [FetchResult.Download] = []
            let record = { (r: DownloadResult, url: URL) in
                downloads.append(.init(url: url.absoluteString, sha256: r.sha256, bytes: r.bytes, resumedFrom: r.resumedFrom))
            }
            if let source = params.source, let preset = Presets.named(source) {
                try preset.build(params: params, workspace: workspace, work: mine, stage: stage, downloader: downloader,
                                 readCheck: readCheck, record: record, progress: progress, isCancelled: isCancelled, log: log)
            } else {
                let url = URL(string: params.url!)!
                log("fetch: \(url.absoluteString) -> \(dest.path)")
                let got = try downloader.download(url, key: "download", in: mine, sha256: params.sha256, field: "url")
                record(got, url)
                let name = params.filename ?? defaultName(url)
                try unpack(got.file, name: name, params: params, into: stage, progress: progress, isCancelled: isCancelled, log: log)
            }
            try writeAtomically(JSONEncoder().encode(marker), to: stage.appendingPathComponent(markerName))
            guard try publish(stage, to: dest, marker: marker, replace: params.replace, mine: mine, crash: hooks.crash, log: log) else {
                return present()
            }
            let (files, bytes) = treeSize(dest)
            log("fetch: published \(dest.path): \(files) files, \(bytes) bytes")
            return FetchResult(dest: dest.path, files: files, bytes: bytes, downloads: downloads, alreadyPresent: false)
        } catch let error as FetchError {
            // Keep partial downloads for a retry, unless another attempt has published meanwhile;
            // a permanent failure leaves nothing behind, except a refusal by permission: once the
            // modes are fixed, the rerun publishes the finished download (it was deleted).
            let permission: Bool
            if case .permission = error { permission = true } else { permission = false }
            if !error.isPermanent || permission, !marker.sameFetch(as: Marker.read(dest), in: dest) {
                keepMine = true
                try? removeTree(stage)
            }
            throw error
        } catch {
            // Not ours to classify (a test's simulated crash): leave everything as a crash would.
            keepMine = true
            throw error
        }
    }

    /// The queue's `fetch` kind in one call: decodes a job's `params` JSON strictly, runs it, and
    /// returns the result as JSON (`dest`, `files`, `bytes`, `downloads`, `already_present`).
    /// - Throws: `FetchError` (`badParams` for a bad descriptor; `isPermanent` says whether to retry).
    public static func runJob(
        params json: Data, workspace: URL, attempt: String? = nil, readCheck: ReadCheck? = nil,
        progress: @escaping (FetchProgress) -> Void = { _ in },
        isCancelled: @escaping () -> Bool = { false },
        log: @escaping (String) -> Void = { _ in }
    ) throws -> Data {
        let params = try FetchParams.decode(json)
        let result = try run(params, workspace: workspace, attempt: attempt, readCheck: readCheck,
                             progress: progress, isCancelled: isCancelled, log: log)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(result)
    }

    /// Takes over what abandoned earlier attempts left in `work` (see `Attempts.abandoned`): their
    /// finished and partial downloads move into `mine` (copied on a network file system, where a
    /// paused holder could still write into them); a complete staging folder whose publish was cut
    /// short is published (or, when it is another fetch's, the dest it moved aside is put back);
    /// then their folders are removed.
    static func adoptAbandoned(_ attempts: Attempts, mine: URL, dest: URL, marker: Marker, log: (String) -> Void) throws {
        for (other, held) in attempts.abandoned(except: mine, log: log) {
            defer { held.release() }
            let name = other.lastPathComponent
            let stage = other.appendingPathComponent("stage")
            let old = other.appendingPathComponent("old")
            if !exists(dest) {
                if marker.sameFetch(as: Marker.read(stage), in: stage) {
                    try rename(stage, to: dest)
                    log("fetch: finished attempt \(name)'s interrupted publish of \(dest.path)")
                } else if exists(old) {
                    try rename(old, to: dest)
                    log("fetch: put back \(dest.path), which attempt \(name) had moved aside")
                }
            }
            for file in (try? FileManager.default.contentsOfDirectory(atPath: other.path)) ?? [] where file != "lock" {
                let from = other.appendingPathComponent(file), to = mine.appendingPathComponent(file)
                guard fileSize(from) != nil, !exists(to) else { continue }
                if attempts.network {
                    do { try FileManager.default.copyItem(at: from, to: to) } catch {
                        throw FetchError.io(path: to.path, message: "cannot copy \(from.path): \(error)")
                    }
                } else {
                    try rename(from, to: to)
                }
            }
            log("fetch: adopted what attempt \(name) left")
            try removeTree(other)
        }
        // Before per-attempt folders, one run worked in `work` itself under `work/lock`: adopt its
        // downloads the same way once that lock is free.
        let legacy = attempts.work.appendingPathComponent("lock")
        if exists(legacy), let held = try? WorkLock(legacy, create: false) {
            defer { held.release() }
            for name in (try? FileManager.default.contentsOfDirectory(atPath: attempts.work.path)) ?? []
            where !name.hasPrefix("a-") && !name.hasPrefix(".tmp-a-") && name != "lock" {
                let from = attempts.work.appendingPathComponent(name), to = mine.appendingPathComponent(name)
                if fileSize(from) != nil, !exists(to) { try rename(from, to: to) } else { try removeTree(from) }
            }
            try removeTree(legacy)
            log("fetch: adopted what an earlier version left in \(attempts.work.path)")
        }
    }

    /// Turns a downloaded file into the staging folder: unpacks an archive, decompresses a single
    /// compressed file, or links the file in as `name`.
    static func unpack(
        _ file: URL, name: String, params: FetchParams, into stage: URL,
        progress: @escaping (FetchProgress) -> Void, isCancelled: @escaping () -> Bool, log: (String) -> Void
    ) throws {
        let zip = name.lowercased().hasSuffix(".zip")
        let content = params.unpack == .off ? .plain : try Unpacker.detect(file, allowZip: zip, name: name)
        let unpacker = Unpacker(archiveName: name, maxBytes: params.maxBytes, maxFiles: params.maxFiles,
                                stripComponents: params.stripComponents, progress: progress, isCancelled: isCancelled)
        switch content {
        case .archive:
            log("fetch: unpacking \(name)")
            try unpacker.extract(file, into: stage, zip: zip)
            log("fetch: unpacked \(unpacker.entries) entries, \(unpacker.bytes) bytes")
        case .compressedFile:
            guard mkdir(stage.path, 0o777) == 0 else { throw FetchError.posix(stage.path, "cannot create staging folder") }
            let out = stage.appendingPathComponent(safeName(stripCompressionSuffix(name)))
            log("fetch: decompressing \(name) to \(out.lastPathComponent)")
            try unpacker.decompress(file, to: out)
        case .plain:
            guard mkdir(stage.path, 0o777) == 0 else { throw FetchError.posix(stage.path, "cannot create staging folder") }
            // A name that says compressed over bytes that are not: a server that sent the file with
            // Content-Encoding (which the HTTP client decodes) or a mislabelled file. What is kept
            // is the plain content, so it gets the plain name (`psgs_w100.tsv`, which presets read).
            var plainName = name
            if params.unpack != .off, case let stripped = stripCompressionSuffix(name), !stripped.hasSuffix(".out"),
               !stripped.lowercased().hasSuffix(".tar") {
                log("fetch: \(name) holds no compressed data (sent decoded, or misnamed); kept as \(stripped)")
                plainName = stripped
            }
            try linkOrCopy(file, to: stage.appendingPathComponent(safeName(plainName)))
        }
    }

    /// Publishes the complete `stage` as `dest`; returns false when `dest` turned out to hold this
    /// fetch's result already (another attempt published it: this one loses and changes nothing).
    ///
    /// A replaced `dest` is moved aside into this attempt's folder only now that the new one is
    /// complete; a crash between the two renames is repaired by the next run (`adoptAbandoned`).
    /// The final rename cannot replace a published `dest`: it holds at least the marker, and a
    /// folder is never renamed over a non-empty one.
    static func publish(_ stage: URL, to dest: URL, marker: Marker, replace: Bool, mine: URL,
                        crash: (String) throws -> Void, log: (String) -> Void) throws -> Bool {
        try crash("publish")
        if exists(dest) {
            if marker.sameFetch(as: Marker.read(dest), in: dest) {
                log("fetch: \(dest.path) was published meanwhile by another attempt; discarding this one's result")
                return false
            }
            guard replace || isEmptyFolder(dest) else { throw FetchError.destExists(path: dest.path) }
            let old = mine.appendingPathComponent("old")
            try removeTree(old)
            guard rename(dest.path, old.path) == 0 else { throw FetchError.posix(dest.path, "cannot move the old dest aside") }
            log("fetch: replacing \(dest.path)")
            try crash("aside")
        }
        guard rename(stage.path, dest.path) == 0 else {
            let code = errno
            if (code == ENOTEMPTY || code == EEXIST), marker.sameFetch(as: Marker.read(dest), in: dest) {
                log("fetch: \(dest.path) was published meanwhile by another attempt; discarding this one's result")
                return false
            }
            throw FetchError.posix(dest.path, "cannot publish", code)
        }
        try crash("published")
        return true
    }

    /// `dest` as an absolute URL inside the workspace (or one of `roots`), with its parent folders created.
    static func resolveDest(_ dest: String, workspace: URL, roots: [URL] = []) throws -> URL {
        let ws = URL(fileURLWithPath: realpathOrSelf(workspace.path))
        // Both spellings of each root: the lexical check below sees dest as written (through a
        // symlinked root), the second check where it really is.
        let allowed = [ws.path, workspace.standardizedFileURL.path] + roots.flatMap { [realpathOrSelf($0.path), $0.standardizedFileURL.path] }
        let raw = dest.hasPrefix("/") ? URL(fileURLWithPath: dest) : ws.appendingPathComponent(dest)
        let url = raw.standardizedFileURL
        let parent = url.deletingLastPathComponent()
        func outside() -> FetchError {
            .badParams(field: "dest", expected: "a folder inside the workspace \(ws.path)" + (roots.isEmpty ? "" : " or an --allow-root folder"),
                       found: "\"\(dest)\"", hint: "use a relative path")
        }
        guard allowed.contains(where: { isInside(parent.path, $0) }) else { throw outside() }
        // Where the part that exists really is, before making the rest: a symlink out of the
        // workspace got its folders made outside, and only then was dest refused.
        var existing = parent
        while existing.path != "/", !FileManager.default.fileExists(atPath: existing.path) { existing = existing.deletingLastPathComponent() }
        // (A root not made yet lies below it: nothing between them exists, so no link either.)
        let realExisting = realpathOrSelf(existing.path)
        guard allowed.contains(where: { isInside(realExisting, $0) || isInside($0, existing.path) }) else { throw outside() }
        do { try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true) } catch {
            throw FetchError.io(path: parent.path, message: "cannot create dest's parent: \(error)")
        }
        // A symlinked parent could point anywhere; judge where it really is.
        let real = URL(fileURLWithPath: realpathOrSelf(parent.path)).appendingPathComponent(url.lastPathComponent)
        guard allowed.contains(where: { isInside(real.deletingLastPathComponent().path, $0) }) else { throw outside() }
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

    /// The URL's last path component, split off *before* percent-decoding (so `%2F` cannot make
    /// it a path), then made safe by `safeName`; `download` when there is none.
    static func defaultName(_ url: URL) -> String {
        let encoded = URLComponents(url: url, resolvingAgainstBaseURL: false)?.percentEncodedPath ?? url.lastPathComponent
        let last = encoded.split(separator: "/").last.map(String.init) ?? ""
        return safeName(last.removingPercentEncoding ?? last)
    }

    /// A name that can only mean one entry in the staging folder: `/` and NUL become `_`, at most
    /// 200 bytes (cut at a character boundary), and empty, `.`, `..` or the marker's name become
    /// `download`. Applied to every derived name (URL-derived, decompressed, `filename`).
    static func safeName(_ raw: String) -> String {
        var name = String(raw.map { $0 == "/" || $0 == "\0" ? "_" : $0 })
        while name.utf8.count > 200 { name.removeLast() }
        if name.isEmpty || name == "." || name == ".." || Unpacker.reservedNames.contains(name) { return "download" }
        return name
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

    /// Whether a run of `params` into the resolved `dest` would stop at once (`destExists`): it
    /// holds something, not this fetch's result, and `replace` is off. Submit refuses such a job.
    public static func destConflict(_ params: FetchParams, dest: String) -> Bool {
        let url = URL(fileURLWithPath: dest)
        return !params.replace && FileManager.default.fileExists(atPath: dest) && !isEmptyFolder(url)
            && !Marker(params).sameFetch(as: Marker.read(url), in: url, passagesRead: params.passages)
    }

    static func isEmptyFolder(_ url: URL) -> Bool {
        (try? FileManager.default.contentsOfDirectory(atPath: url.path).isEmpty) ?? false
    }

    static func exists(_ url: URL) -> Bool {
        var st = stat()
        return lstat(url.path, &st) == 0
    }
}

/// What a published `dest` was fetched from; equal markers mean the same fetch.
struct Marker: Codable, Equatable {
    var url: String?
    var source: String?
    var sha256: String?
    var unpack: String
    var stripComponents: Int
    /// The file's name in `dest` and a preset's passages file: both change what `dest` holds.
    var filename: String?
    var passages: String?
    /// 2 for markers that record `filename` and `passages`; nil in those an older fidq wrote.
    var version: Int?

    init(_ p: FetchParams) {
        url = p.url
        source = p.source
        sha256 = p.sha256?.lowercased()
        unpack = p.unpack.rawValue
        stripComponents = p.stripComponents
        filename = p.filename
        passages = p.passagesAsWritten ?? p.passages
        version = 2
    }

    /// Whether `stored`, the marker found in `folder`, records this fetch. A marker of an older
    /// fidq (no version, filename or passages recorded) matches when the rest agrees and the
    /// file this fetch names is there, so a rerun after the upgrade is "already present"; with
    /// `passages` it cannot tell, and does not match. `passagesRead` is the path this run reads
    /// for a `job:` passages: markers of earlier versions recorded it, resolved (or with its
    /// symlinks resolved too), and match on the worker that wrote them.
    func sameFetch(as stored: Marker?, in folder: URL, passagesRead: String? = nil) -> Bool {
        guard let stored, stored.url == url, stored.source == source, stored.sha256 == sha256, stored.unpack == unpack,
              stored.stripComponents == stripComponents else { return false }
        if stored.version != nil || stored.filename != nil || stored.passages != nil {
            guard stored.filename == filename else { return false }
            if stored.passages == passages { return true }
            guard let recorded = stored.passages, let read = passagesRead, read != passages else { return false }
            return recorded == read || recorded == Fetcher.realpathOrSelf(read)
        }
        guard passages == nil else { return false }
        return filename.map { FileManager.default.fileExists(atPath: folder.appendingPathComponent($0).path) } ?? true
    }

    /// The marker inside `folder`, or nil when there is none (or it does not parse).
    static func read(_ folder: URL) -> Marker? {
        try? JSONDecoder().decode(Marker.self, from: Data(contentsOf: folder.appendingPathComponent(Fetcher.markerName)))
    }
}
