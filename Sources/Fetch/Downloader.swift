// Downloader: streams one URL to a part file with sha256, resumes by HTTP range, retries with backoff.
import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Threading

/// Progress of a fetch, reported about twice a second while bytes move.
public struct FetchProgress: Sendable, Equatable {
    /// `download`, `unpack` or `preprocess`.
    public var phase: String
    /// The file or archive being worked on.
    public var item: String
    /// Bytes (or examples, for preprocess) done so far.
    public var done: Int64
    /// The total when known.
    public var total: Int64?
}

/// What one finished download produced.
struct DownloadResult {
    /// The verified file (in the work folder).
    var file: URL
    /// Hex sha256 of its bytes.
    var sha256: String
    var bytes: Int64
    /// Bytes that were already on disk from an earlier attempt or run when this run started.
    var resumedFrom: Int64
}

/// What a part file's sidecar remembers so a later run can resume it with a range request.
struct PartMeta: Codable, Equatable {
    var url: String
    var etag: String?
    var lastModified: String?
    var total: Int64?
}

/// What a finished file's sidecar records, so a restarted job skips the download.
struct DoneMeta: Codable, Equatable {
    var url: String
    var sha256: String
    var bytes: Int64
    /// The source as it was copied or downloaded; without a sha256 param, a finished file is
    /// reused only while the source still looks the same.
    var source: SourceStamp?
}

/// How a source looked: a local file's size, modification time and inode; an HTTP resource's
/// validators.
struct SourceStamp: Codable, Equatable {
    var size: Int64?
    var modifiedNs: Int64?
    var inode: UInt64?
    var etag: String?
    var lastModified: String?

    /// A local file's stamp; nil when it cannot be read.
    static func file(_ path: String) -> SourceStamp? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return SourceStamp(size: Int64(st.st_size), modifiedNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec),
                           inode: UInt64(st.st_ino))
    }
}

/// Downloads URLs into a work folder. Partial bytes live in `<key>.part` beside `<key>.meta.json`;
/// a finished, verified file is renamed to `<key>` with `<key>.done.json`.
final class Downloader {
    let params: FetchParams
    /// What a relative `file:` URL (`file:data/x.tsv`) is read against: the workspace, as every
    /// other relative path of a fetch, not the process's working folder.
    let workspace: URL?
    let readCheck: ReadCheck?
    let progress: (FetchProgress) -> Void
    let isCancelled: () -> Bool
    let log: (String) -> Void
    /// Set when a transfer threw away the bytes it found (no validator, changed resource).
    private var restarted = false
    /// The Content-Encoding the last HTTP body was decoded from (URLSession always decodes).
    private var decodedFrom: String?
    /// What the last answer's Retry-After asked for (429, 503), in seconds.
    private var retryAfter: Double?
    /// The longest a Retry-After is waited for within one run; a longer one ends the run's retries
    /// early instead of holding a worker (the queue's next attempt comes later anyway).
    static let retryAfterCap = 600.0

    init(
        params: FetchParams, workspace: URL? = nil, readCheck: ReadCheck? = nil, progress: @escaping (FetchProgress) -> Void,
        isCancelled: @escaping () -> Bool, log: @escaping (String) -> Void
    ) {
        self.params = params
        self.workspace = workspace
        self.readCheck = readCheck
        self.progress = progress
        self.isCancelled = isCancelled
        self.log = log
    }

    /// The file a `file:` URL names, a relative one under the workspace.
    func localPath(_ url: URL) -> String {
        let path = url.path
        guard !path.hasPrefix("/"), let workspace else { return path }
        return workspace.appendingPathComponent(path).path
    }

    /// Downloads `url` to `work/<key>`, verifying `sha256` if given; reuses a finished earlier run.
    /// `field` names the param the URL came from, for errors about a local file.
    func download(_ url: URL, key: String, in work: URL, sha256 expected: String?, field: String = "url") throws -> DownloadResult {
        let final = work.appendingPathComponent(key)
        let part = work.appendingPathComponent(key + ".part")
        let metaURL = work.appendingPathComponent(key + ".meta.json")
        let doneURL = work.appendingPathComponent(key + ".done.json")
        let expected = expected?.lowercased()
        // Checked before reusing a finished copy too: it may have been adopted from another attempt.
        if url.isFileURL { try readCheck?(localPath(url), field) }
        if let done = try? JSONDecoder().decode(DoneMeta.self, from: Data(contentsOf: doneURL)),
            done.url == url.absoluteString, expected == nil || expected == done.sha256,
            fileSize(final) == done.bytes
        {
            // A sha256 pins the content; without one the source must still be what was fetched.
            if expected != nil || unchanged(url, since: done) {
                log("fetch: \(url.absoluteString): already downloaded (\(done.bytes) bytes)")
                return DownloadResult(file: final, sha256: done.sha256, bytes: done.bytes, resumedFrom: done.bytes)
            }
            log("fetch: \(url.absoluteString): the source changed since an earlier attempt downloaded it"
                + " (or cannot be checked): downloading it again")
            try? FileManager.default.removeItem(at: doneURL)
        }
        let startSize = fileSize(part) ?? 0
        restarted = false
        decodedFrom = nil
        var attempt = 0
        var digest = ""
        var stamp: SourceStamp?
        while true {
            do {
                if url.isFileURL {
                    stamp = SourceStamp.file(localPath(url))
                    digest = try copyFile(url, to: part, field: field)
                } else {
                    digest = try transfer(url, part: part, metaURL: metaURL, expected: expected)
                    let meta = try? JSONDecoder().decode(PartMeta.self, from: Data(contentsOf: metaURL))
                    stamp = SourceStamp(size: meta?.total, etag: meta?.etag, lastModified: meta?.lastModified)
                }
                break
            } catch let error as FetchError where !error.isPermanent && error != .cancelled && (retryAfter ?? 0) > Self.retryAfterCap {
                guard case .http(_, let status) = error, let seconds = retryAfter else { throw error }
                throw FetchError.retryLater(url: url.absoluteString, status: status, seconds: seconds)
            } catch let error as FetchError where !error.isPermanent && error != .cancelled && attempt < params.retries {
                attempt += 1
                let backoff = min(params.retryBackoffS * pow(2, Double(attempt - 1)), 60)
                // A server that says when to come back is believed (429, 503 with Retry-After).
                let wait = max(backoff, retryAfter ?? 0)
                log("fetch: \(error); retry \(attempt) of \(params.retries) in \(String(format: "%.2f", wait)) s"
                    + (retryAfter.map { $0 > backoff ? " (the server's Retry-After: \(Int($0.rounded(.up))) s)" : "" } ?? ""))
                retryAfter = nil
                try pause(wait)
            }
        }
        let bytes = fileSize(part) ?? 0
        if let expected, expected != digest {
            // The bytes are wrong, not incomplete: drop them so no later run resumes from them.
            try? FileManager.default.removeItem(at: part)
            try? FileManager.default.removeItem(at: metaURL)
            throw FetchError.checksum(url: url.absoluteString, expected: expected, found: digest, decodedFrom: decodedFrom)
        }
        try? FileManager.default.removeItem(at: final)
        guard rename(part.path, final.path) == 0 else { throw FetchError.posix(final.path, "cannot rename part file") }
        try? FileManager.default.removeItem(at: metaURL)
        let done = DoneMeta(url: url.absoluteString, sha256: digest, bytes: bytes, source: stamp)
        try writeAtomically(JSONEncoder().encode(done), to: doneURL)
        let resumedFrom = restarted || url.isFileURL ? 0 : startSize
        log("fetch: \(url.absoluteString): \(bytes) bytes, sha256 \(digest)"
            + (resumedFrom > 0 ? ", resumed from byte \(resumedFrom)" : ""))
        return DownloadResult(file: final, sha256: digest, bytes: bytes, resumedFrom: resumedFrom)
    }

    /// Whether the source of a finished download still looks as it did: a local file's size,
    /// time and inode; an HTTP resource's strong ETag or Last-Modified (and length), asked with
    /// HEAD. False when nothing was recorded or the server cannot be asked.
    func unchanged(_ url: URL, since done: DoneMeta) -> Bool {
        guard let was = done.source else { return false }
        if url.isFileURL { return SourceStamp.file(localPath(url)) == was }
        let strong = was.etag.flatMap { $0.hasPrefix("W/") ? nil : $0 }
        guard strong != nil || was.lastModified != nil, let now = head(url) else { return false }
        if let strong, now.value(forHTTPHeaderField: "ETag") != strong { return false }
        if strong == nil, now.value(forHTTPHeaderField: "Last-Modified") != was.lastModified { return false }
        if let length = now.value(forHTTPHeaderField: "Content-Length").flatMap({ Int64($0) }), length != done.bytes { return false }
        return now.statusCode == 200
    }

    /// A HEAD request's response within the connect and idle timeouts; nil on any failure.
    private func head(_ url: URL) -> HTTPURLResponse? {
        guard (try? checkThreads(url)) != nil else { return nil }
        var request = URLRequest(url: url)
        request.httpMethod = "HEAD"
        request.setValue("identity", forHTTPHeaderField: "Accept-Encoding")
        request.setValue("fidq-fetch", forHTTPHeaderField: "User-Agent")
        let config = URLSessionConfiguration.ephemeral
        config.requestCachePolicy = .reloadIgnoringLocalCacheData
        config.urlCache = nil
        let session = URLSession(configuration: config)
        defer { session.invalidateAndCancel() }
        final class Box: @unchecked Sendable { var response: HTTPURLResponse? }
        let box = Box(), done = DispatchSemaphore(value: 0)
        session.dataTask(with: request) { _, response, _ in
            box.response = response as? HTTPURLResponse
            done.signal()
        }.resume()
        guard done.wait(timeout: .now() + params.connectTimeoutS + params.idleTimeoutS) == .success else { return nil }
        return box.response
    }

    /// Sleeps `seconds`, waking early (with `.cancelled`) when the job is cancelled.
    func pause(_ seconds: Double) throws {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if isCancelled() { throw FetchError.cancelled }
            Thread.sleep(forTimeInterval: min(0.05, max(0, end.timeIntervalSinceNow)))
        }
    }

    /// Copies a local file to `part`, hashing as it goes; returns the hex sha256.
    private func copyFile(_ url: URL, to part: URL, field: String) throws -> String {
        let path = localPath(url)
        // O_NONBLOCK: opening a FIFO waits for a writer, for ever, and no cancel reaches it.
        let src = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard src >= 0 else {
            // A missing or forbidden local file will not change by retrying.
            let code = errno
            throw FetchError.localFile(path: path, field: field, reason: code == ENOENT ? "no such file" : String(cString: strerror(code)))
        }
        var st = stat()
        guard fstat(src, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            close(src)
            throw FetchError.localFile(path: path, field: field, reason: "not a regular file")
        }
        defer { close(src) }
        let out = try PartFile(part, truncate: true)
        defer { out.close() }
        var hasher = SHA256()
        let total = fileSize(URL(fileURLWithPath: path))
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var done: Int64 = 0
        var lastReport = Date.distantPast
        while true {
            if isCancelled() { throw FetchError.cancelled }
            let n = buffer.withUnsafeMutableBytes { read(src, $0.baseAddress, $0.count) }
            if n < 0 { throw FetchError.posix(path, "read failed") }
            if n == 0 { break }
            try buffer.withUnsafeBytes { raw in
                let chunk = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                hasher.update(bufferPointer: chunk)
                try out.write(chunk)
            }
            done += Int64(n)
            if done > params.maxBytes {
                throw FetchError.limit(archive: url.absoluteString, entry: url.lastPathComponent,
                                       what: "download size", limit: params.maxBytes)
            }
            if Date().timeIntervalSince(lastReport) > 0.5 {
                lastReport = Date()
                progress(FetchProgress(phase: "download", item: url.lastPathComponent, done: done, total: total))
            }
        }
        return hex(hasher.finalize())
    }

    /// URLSession runs on libdispatch's threads, and libdispatch waits for ever on one the
    /// process limit refuses (no timeout, no cancel could act): fail fast, transiently, instead.
    private func checkThreads(_ url: URL) throws {
        do { try probeThreads(2, for: "the HTTP client's threads") } catch {
            throw FetchError.network(url: url.absoluteString, reason: "\(error)")
        }
    }

    /// One HTTP attempt: resumes `part` if its sidecar matches `url`; returns the hex sha256.
    private func transfer(_ url: URL, part: URL, metaURL: URL, expected: String?) throws -> String {
        try checkThreads(url)
        var meta = (try? JSONDecoder().decode(PartMeta.self, from: Data(contentsOf: metaURL))) ?? nil
        if meta?.url != url.absoluteString {
            try? FileManager.default.removeItem(at: part)
            meta = nil
        }
        let out = try PartFile(part, truncate: false)
        defer { out.close() }
        let strongETag = meta?.etag.flatMap { $0.hasPrefix("W/") ? nil : $0 }
        if strongETag == nil, meta?.lastModified == nil, expected == nil, let size = fileSize(part), size > 0 {
            // Without a validator If-Range cannot tell a changed file, and without a sha256 nothing
            // would catch the splice of two versions: only a whole download is trustworthy.
            log("fetch: \(url.absoluteString): the server sent no ETag or Last-Modified and no sha256 is set:"
                + " restarting from byte 0 instead of resuming at byte \(size)")
            try out.truncate()
            restarted = true
        }
        // The digest must cover the bytes already on disk, so re-hash them before appending.
        var hasher = SHA256()
        let offset = try out.hashExisting(into: &hasher)
        var request = URLRequest(url: url)
        request.setValue("identity", forHTTPHeaderField: "Accept-Encoding")
        request.setValue("fidq-fetch", forHTTPHeaderField: "User-Agent")
        if offset > 0 {
            request.setValue("bytes=\(offset)-", forHTTPHeaderField: "Range")
            // If-Range makes a changed resource come back whole (200) instead of a wrong tail.
            if let etag = strongETag {
                request.setValue(etag, forHTTPHeaderField: "If-Range")
            } else if let modified = meta?.lastModified {
                request.setValue(modified, forHTTPHeaderField: "If-Range")
            }
            log("fetch: \(url.absoluteString): resuming at byte \(offset)")
        }
        let state = TransferState(
            url: url.absoluteString, out: out, hasher: hasher, offset: offset, knownTotal: meta?.total,
            knownETag: offset > 0 ? strongETag : nil, knownLastModified: offset > 0 ? meta?.lastModified : nil,
            knownAnyETag: offset > 0 ? meta?.etag : nil, maxBytes: params.maxBytes, headers: request.allHTTPHeaderFields ?? [:],
            saveMeta: { m in try? writeAtomically(JSONEncoder().encode(m), to: metaURL) })
        let config = URLSessionConfiguration.ephemeral
        config.requestCachePolicy = .reloadIgnoringLocalCacheData
        config.urlCache = nil
        // Our own watchdog enforces both timeouts; URLSession's are only a backstop.
        config.timeoutIntervalForRequest = params.connectTimeoutS + params.idleTimeoutS + 5
        config.timeoutIntervalForResource = 7 * 24 * 3600
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1
        let session = URLSession(configuration: config, delegate: state, delegateQueue: queue)
        defer { session.invalidateAndCancel() }
        let task = session.dataTask(with: request)
        let started = Date()
        var lastReport = Date.distantPast
        task.resume()
        while state.done.wait(timeout: .now() + 0.05) == .timedOut {
            let snap = state.snapshot()
            var reason: FetchError?
            if isCancelled() {
                reason = .cancelled
            } else if !snap.gotResponse, Date().timeIntervalSince(started) > params.connectTimeoutS {
                reason = .timeout(url: url.absoluteString, phase: "connect", seconds: params.connectTimeoutS)
            } else if snap.gotResponse, Date().timeIntervalSince(snap.lastActivity) > params.idleTimeoutS {
                reason = .timeout(url: url.absoluteString, phase: "idle", seconds: params.idleTimeoutS)
            }
            if let reason {
                state.fail(reason)
                task.cancel()
                // Completion follows a cancel promptly; bound the wait so a stuck stack cannot hang us.
                _ = state.done.wait(timeout: .now() + 10)
                break
            }
            if snap.gotResponse, Date().timeIntervalSince(lastReport) > 0.5 {
                lastReport = Date()
                progress(FetchProgress(phase: "download", item: url.lastPathComponent, done: snap.offset, total: snap.total))
            }
        }
        let snap = state.snapshot()
        retryAfter = snap.retryAfter
        if snap.restartedAtZero { restarted = true }
        decodedFrom = snap.encoded ? snap.encoding : nil
        // Decoded bytes cannot be resumed by a range: an unfinished encoded body starts over.
        if snap.discardPart || (snap.encoded && snap.failure != nil) {
            try? FileManager.default.removeItem(at: part)
            try? FileManager.default.removeItem(at: metaURL)
            restarted = true
        }
        if let failure = snap.failure { throw failure }
        progress(FetchProgress(phase: "download", item: url.lastPathComponent, done: snap.offset, total: snap.total))
        return hex(state.finalDigest())
    }
}

/// The shared state of one HTTP attempt: written by URLSession's delegate queue, read by the watchdog.
final class TransferState: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    struct Snapshot {
        var gotResponse: Bool
        var lastActivity: Date
        var offset: Int64
        var total: Int64?
        var failure: FetchError?
        var discardPart: Bool
        /// The body came with a Content-Encoding: its bytes are decoded, so a range cannot resume them.
        var encoded: Bool
        /// That Content-Encoding, as the server named it.
        var encoding: String
        /// The server answered a range request with the whole body (200): the bytes start over.
        var restartedAtZero: Bool
        /// Seconds a 429 or 503 answer's Retry-After asked the client to wait.
        var retryAfter: Double?
    }

    let url: String
    let out: PartFile
    let maxBytes: Int64
    let headers: [String: String]
    let saveMeta: (PartMeta) -> Void
    let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var hasher: SHA256
    private var offset: Int64
    private let knownTotal: Int64?
    private var total: Int64?
    private var gotResponse = false
    private var lastActivity = Date()
    private var failure: FetchError?
    private var discardPart = false
    private var encoded = false
    private var encoding = ""
    private var restartedAtZero = false
    private var redirects = 0
    /// The validators the bytes on disk came with (the part's sidecar), to check a 206 against.
    private let knownETag: String?
    private let knownLastModified: String?
    /// The part's ETag, weak ones included (a weak one cannot guard If-Range, but a new one still
    /// says the resource changed).
    private let knownAnyETag: String?
    /// What a 429 or 503 answer's Retry-After asked for, in seconds.
    private var retryAfter: Double?

    init(url: String, out: PartFile, hasher: SHA256, offset: Int64, knownTotal: Int64?, knownETag: String? = nil,
         knownLastModified: String? = nil, knownAnyETag: String? = nil, maxBytes: Int64, headers: [String: String],
         saveMeta: @escaping (PartMeta) -> Void)
    {
        self.knownAnyETag = knownAnyETag
        self.url = url
        self.out = out
        self.hasher = hasher
        self.offset = offset
        self.knownTotal = knownTotal
        self.knownETag = knownETag
        self.knownLastModified = knownLastModified
        self.maxBytes = maxBytes
        self.headers = headers
        self.saveMeta = saveMeta
    }

    func snapshot() -> Snapshot {
        lock.lock()
        defer { lock.unlock() }
        return Snapshot(gotResponse: gotResponse, lastActivity: lastActivity, offset: offset, total: total,
                        failure: failure, discardPart: discardPart, encoded: encoded, encoding: encoding,
                        restartedAtZero: restartedAtZero, retryAfter: retryAfter)
    }

    /// Records the first failure; later ones (the cancel it causes) are ignored.
    func fail(_ error: FetchError, discard: Bool = false) {
        lock.lock()
        if failure == nil { failure = error }
        if discard { discardPart = true }
        lock.unlock()
    }

    func finalDigest() -> SHA256.Digest {
        lock.lock()
        defer { lock.unlock() }
        return hasher.finalize()
    }

    /// Whether a 206's validators fail to show its tail is of the version the part's bytes are.
    /// A strong ETag repeated exactly proves it (a Last-Modified may differ across a server farm);
    /// otherwise at least one validator the part has must come back (ETags compared weakly, dates
    /// as dates) and none may differ. With none on the part (a `sha256` guards it) any tail goes.
    static func tailChanged(etag: String?, modified: String?, knownStrongETag: String?, knownETag: String?,
                            knownModified: String?) -> Bool {
        if let own = knownStrongETag, etag == own { return false }
        guard knownETag != nil || knownModified != nil else { return false }
        func weak(_ tag: String) -> String {
            let t = tag.trimmingCharacters(in: .whitespaces)
            return t.hasPrefix("W/") ? String(t.dropFirst(2)) : t
        }
        func sameDate(_ a: String, _ b: String) -> Bool {
            if let x = parseHTTPDate(a), let y = parseHTTPDate(b) { return x == y }
            return a == b
        }
        var repeated = false
        if let was = knownETag, let now = etag {
            if weak(was) != weak(now) { return true }
            repeated = true
        }
        if let was = knownModified, let now = modified {
            if !sameDate(was, now) { return true }
            repeated = true
        }
        return !repeated
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void)
    {
        guard let http = response as? HTTPURLResponse else {
            fail(.network(url: url, reason: "not an HTTP response"))
            return completionHandler(.cancel)
        }
        lock.lock()
        gotResponse = true
        lastActivity = Date()
        let status = http.statusCode
        let header = { (name: String) in http.value(forHTTPHeaderField: name) }
        var error: FetchError?
        // A server may encode the body although identity was asked (an object stored with
        // Content-Encoding: gzip); URLSession then hands over the decoded bytes, which neither
        // Content-Length nor a byte range describes.
        encoding = header("Content-Encoding")?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        encoded = !encoding.isEmpty && encoding != "identity"
        if encoded, status < 300, !FetchError.decodable(encoding) {
            // libcurl would fail it as a connection error, which every retry repeats.
            failure = failure ?? .encoding(url: url, encoding: encoding)
            lock.unlock()
            return completionHandler(.cancel)
        }
        // A tail is only ours if it is of the version our bytes are: a server that ignores
        // If-Range sends a changed file's tail under its new validator, or none.
        let etag = header("ETag"), modified = header("Last-Modified")
        let changed = Self.tailChanged(etag: etag, modified: modified, knownStrongETag: knownETag,
                                       knownETag: knownAnyETag, knownModified: knownLastModified)
        switch status {
        case 200:
            if offset > 0 {
                // The server ignored the range (or If-Range said the resource changed): start over.
                do {
                    try out.truncate()
                    hasher = SHA256()
                    offset = 0
                    restartedAtZero = true
                } catch let e as FetchError { error = e } catch {}
            }
            total = http.expectedContentLength >= 0 && !encoded ? http.expectedContentLength : nil
        case 206 where encoded:
            error = .network(url: url, reason: "server resumed a body it sends with Content-Encoding: \(encoding); restarting from 0")
            discardPart = true
        case 206 where changed:
            let was = [knownAnyETag, knownLastModified].compactMap { $0 }.joined(separator: ", ")
            let now = [etag, modified].compactMap { $0 }.joined(separator: ", ")
            error = .network(url: url, reason: "the server's tail is not shown to be of the version downloaded so far"
                             + " (\(was) before, \(now.isEmpty ? "no ETag or Last-Modified" : now) now); restarting from 0")
            discardPart = true
        case 206:
            // Content-Range: bytes START-END/TOTAL; the tail must start exactly where our bytes stop.
            let range = header("Content-Range") ?? ""
            let parsed = parseContentRange(range)
            if parsed?.start != offset {
                error = .network(url: url, reason: "server resumed at '\(range)' instead of byte \(offset); restarting from 0")
                discardPart = true
            } else if let t = parsed?.total, let known = knownTotal, t != known {
                error = .network(url: url, reason: "resource size changed from \(known) to \(t); restarting from 0")
                discardPart = true
            } else {
                total = parsed?.total
            }
        case 416 where offset > 0:
            error = .network(url: url, reason: "range not satisfiable at byte \(offset); restarting from 0")
            discardPart = true
        default:
            error = .http(url: url, status: status)
            if status == 429 || status == 503 { retryAfter = header("Retry-After").flatMap { parseRetryAfter($0) } }
        }
        if error == nil, let t = total, t > maxBytes {
            error = .limit(archive: url, entry: (url as NSString).lastPathComponent, what: "download size", limit: maxBytes)
        }
        if let error, failure == nil { failure = error }
        let meta = encoded ? PartMeta(url: url, etag: nil, lastModified: nil, total: nil)
            : PartMeta(url: url, etag: header("ETag"), lastModified: header("Last-Modified"), total: total)
        lock.unlock()
        if error != nil { return completionHandler(.cancel) }
        saveMeta(meta)
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        lock.lock()
        defer { lock.unlock() }
        guard failure == nil else { return }
        lastActivity = Date()
        do {
            try data.withUnsafeBytes { raw in
                hasher.update(bufferPointer: raw)
                try out.write(raw)
            }
        } catch let e as FetchError {
            failure = e
        } catch {}
        offset += Int64(data.count)
        if offset > maxBytes {
            failure = .limit(archive: url, entry: (url as NSString).lastPathComponent, what: "download size", limit: maxBytes)
        }
        if failure != nil { dataTask.cancel() }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void)
    {
        lock.lock()
        redirects += 1
        let count = redirects
        lock.unlock()
        // The Location header as sent: Foundation rewrites a `file://` target into a request to
        // the same host, so the rewritten request's scheme does not tell.
        let location = response.value(forHTTPHeaderField: "Location").flatMap { URL(string: $0, relativeTo: response.url) }
        let scheme = (location ?? request.url)?.scheme?.lowercased() ?? ""
        guard count <= 10 else {
            let to = request.url?.absoluteString ?? "?"
            fail(.redirect(url: url, reason: "more than 10 redirects (a loop?); the last one to \(to)"))
            return completionHandler(nil)
        }
        guard scheme == "http" || scheme == "https" else {
            fail(.redirect(url: url, reason: "redirected to '\((location ?? request.url)?.absoluteString ?? "?")', which is not http(s); not followed"))
            return completionHandler(nil)
        }
        // Keep the range headers on the redirected request.
        var next = request
        for (k, v) in headers { next.setValue(v, forHTTPHeaderField: k) }
        completionHandler(next)
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        lock.lock()
        if failure == nil {
            if let error {
                let ns = error as NSError
                if ns.domain == NSURLErrorDomain, ns.code == NSURLErrorTimedOut {
                    failure = .timeout(url: url, phase: "idle", seconds: task.currentRequest?.timeoutInterval ?? 0)
                } else {
                    failure = .network(url: url, reason: error.localizedDescription)
                }
            } else if !gotResponse, let http = task.response as? HTTPURLResponse {
                // An answer that never reached the delegate: a redirect without a Location.
                failure = (300..<400).contains(http.statusCode)
                    ? .redirect(url: url, reason: "HTTP \(http.statusCode) without a Location header; nothing to follow")
                    : .http(url: url, status: http.statusCode)
            } else if !gotResponse {
                failure = .network(url: url, reason: "no response")
            } else if let t = total, offset != t {
                failure = .network(url: url, reason: "connection closed at byte \(offset) of \(t)")
            }
        }
        lock.unlock()
        done.signal()
    }
}

/// Seconds a Retry-After value asks for: delay-seconds, or an HTTP-date (RFC 9110 §10.2.3), from
/// now; nil when it is neither.
func parseRetryAfter(_ value: String, now: Date = Date()) -> Double? {
    let v = value.trimmingCharacters(in: .whitespaces)
    if let seconds = Int(v), seconds >= 0 { return Double(seconds) }
    return parseHTTPDate(v).map { max(0, $0.timeIntervalSince(now)) }
}

/// An HTTP-date in any of RFC 9110's three forms (IMF-fixdate, RFC 850, asctime); nil otherwise.
func parseHTTPDate(_ value: String) -> Date? {
    let v = value.trimmingCharacters(in: .whitespaces)
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "GMT")
    for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
        formatter.dateFormat = format
        if let date = formatter.date(from: v) { return date }
    }
    return nil
}

/// Parses `bytes START-END/TOTAL` (TOTAL may be `*`).
func parseContentRange(_ value: String) -> (start: Int64, end: Int64, total: Int64?)? {
    let v = value.trimmingCharacters(in: .whitespaces)
    guard v.lowercased().hasPrefix("bytes ") else { return nil }
    let rest = v.dropFirst(6)
    let halves = rest.split(separator: "/", maxSplits: 1)
    guard halves.count == 2 else { return nil }
    let ends = halves[0].split(separator: "-", maxSplits: 1)
    guard ends.count == 2, let s = Int64(ends[0]), let e = Int64(ends[1]) else { return nil }
    return (s, e, Int64(halves[1]))
}

/// An append-only file descriptor for a part file.
final class PartFile: @unchecked Sendable {
    let path: String
    private var fd: Int32

    init(_ url: URL, truncate: Bool) throws {
        path = url.path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (truncate ? O_TRUNC : 0), 0o666)
        guard fd >= 0 else { throw FetchError.posix(path, "cannot open part file") }
    }

    /// Feeds the bytes already in the file to `hasher`; returns their count and leaves the offset at the end.
    func hashExisting(into hasher: inout SHA256) throws -> Int64 {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var total: Int64 = 0
        lseek(fd, 0, SEEK_SET)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 { throw FetchError.posix(path, "cannot read part file") }
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            total += Int64(n)
        }
        return total
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        try writeAll(fd, bytes, path: path, what: "cannot write part file")
    }

    func truncate() throws {
        guard ftruncate(fd, 0) == 0, lseek(fd, 0, SEEK_SET) == 0 else { throw FetchError.posix(path, "cannot truncate part file") }
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}
