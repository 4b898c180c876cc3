// DownloaderTests: downloads from a scripted loopback server — checksum, resume, retry, redirect, timeouts.
import Foundation
import Testing

@testable import Fetch

@Suite(.serialized) struct DownloaderTests {
    static func params(_ url: String, dest: String = "out") -> FetchParams {
        var p = FetchParams(url: url, dest: dest)
        p.retryBackoffS = 0.01
        p.connectTimeoutS = 5
        p.idleTimeoutS = 5
        p.unpack = .off
        return p
    }

    @Test func normalDownloadWithAndWithoutChecksum() throws {
        let box = try Sandbox()
        let data = testBytes(300_000)
        let server = try LoopbackServer(["/f.bin": .ok(data)])
        defer { server.stop() }
        let plain = try Fetcher.run(Self.params(server.base + "/f.bin"), workspace: box.ws)
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/f.bin")) == data)
        let expected = try sha256sum(data)
        #expect(plain.downloads.first?.sha256 == expected)
        #expect(plain.files == 1 && plain.bytes == 300_000)

        var p = Self.params(server.base + "/f.bin", dest: "checked")
        p.sha256 = expected.uppercased()
        let checked = try Fetcher.run(p, workspace: box.ws)
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("checked/f.bin")) == data)
        #expect(checked.downloads.first?.sha256 == expected)
        // The work folders are gone once published.
        #expect(box.snapshot(box.ws).filter { $0.contains(".fetch") }.isEmpty)
    }

    @Test func wrongChecksumFailsPermanentlyAndLeavesNothing() throws {
        let box = try Sandbox()
        let server = try LoopbackServer(["/f.bin": .ok(testBytes(50_000))])
        defer { server.stop() }
        var p = Self.params(server.base + "/f.bin")
        p.sha256 = String(repeating: "ab", count: 32)
        #expect {
            try Fetcher.run(p, workspace: box.ws)
        } throws: { e in
            guard let e = e as? FetchError, case .checksum = e else { return false }
            return e.isPermanent
        }
        #expect(box.snapshot(box.ws).isEmpty, "nothing at dest or in a work folder: \(box.snapshot(box.ws))")
        #expect(server.requests.count == 1, "a checksum mismatch is not retried")
    }

    @Test func droppedConnectionResumesWithRange() throws {
        let box = try Sandbox()
        let data = testBytes(2_000_000)
        let server = try LoopbackServer(["/big.bin": .drop(data, after: 700_000, times: 1)])
        defer { server.stop() }
        let r = try Fetcher.run(Self.params(server.base + "/big.bin"), workspace: box.ws)
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/big.bin")) == data)
        #expect(r.downloads.first?.sha256 == (try sha256sum(data)))
        let reqs = server.requests
        #expect(reqs.count == 2)
        #expect(reqs.first?.range == nil)
        // The retry asks only for the missing tail, naming the ETag it resumes.
        let range = reqs.last?.range ?? ""
        let offset = Int(range.dropFirst("bytes=".count).dropLast()) ?? -1
        #expect(range.hasPrefix("bytes=") && offset > 0 && offset <= 700_000, "range was '\(range)'")
        #expect(reqs.last?.ifRange == "\"v1\"")
    }

    @Test func notFoundFailsAtOnce() throws {
        let box = try Sandbox()
        let server = try LoopbackServer([:])
        defer { server.stop() }
        #expect(throws: FetchError.http(url: server.base + "/missing.bin", status: 404)) {
            try Fetcher.run(Self.params(server.base + "/missing.bin"), workspace: box.ws)
        }
        #expect(server.requests.count == 1)
        #expect(FetchError.http(url: "", status: 404).isPermanent)
        #expect(box.snapshot(box.ws).isEmpty)
    }

    @Test func serviceUnavailableIsRetried() throws {
        let box = try Sandbox()
        let data = testBytes(10_000)
        let server = try LoopbackServer(["/f.bin": .failThen(status: 503, times: 2, data)])
        defer { server.stop() }
        var lines: [String] = []
        _ = try Fetcher.run(Self.params(server.base + "/f.bin"), workspace: box.ws, log: { lines.append($0) })
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/f.bin")) == data)
        #expect(server.requests.count == 3)
        #expect(lines.filter { $0.contains("HTTP 503") && $0.contains("retry") }.count == 2)
    }

    @Test func retriesRunOutWithATransientError() throws {
        let box = try Sandbox()
        let server = try LoopbackServer(["/f.bin": .status(503)])
        defer { server.stop() }
        var p = Self.params(server.base + "/f.bin")
        p.retries = 2
        #expect {
            try Fetcher.run(p, workspace: box.ws)
        } throws: { e in
            (e as? FetchError) == .http(url: server.base + "/f.bin", status: 503) && !(e as! FetchError).isPermanent
        }
        #expect(server.requests.count == 3)
    }

    @Test func redirectIsFollowed() throws {
        let box = try Sandbox()
        let data = testBytes(20_000)
        let server = try LoopbackServer(["/old": .redirect("/new.bin"), "/new.bin": .ok(data)])
        defer { server.stop() }
        var p = Self.params(server.base + "/old")
        p.filename = "kept.bin"
        _ = try Fetcher.run(p, workspace: box.ws)
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/kept.bin")) == data)
        #expect(server.requests.map(\.path) == ["/old", "/new.bin"])
    }

    @Test func resumeThroughARedirectKeepsTheRange() throws {
        let box = try Sandbox()
        let data = testBytes(900_000)
        let server = try LoopbackServer(["/latest": .redirect("/v1.bin"), "/v1.bin": .drop(data, after: 250_000, times: 1)])
        defer { server.stop() }
        _ = try Fetcher.run(Self.params(server.base + "/latest"), workspace: box.ws)
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/latest")) == data)
        let reqs = server.requests
        #expect(reqs.map(\.path) == ["/latest", "/v1.bin", "/latest", "/v1.bin"])
        #expect(reqs[3].range == reqs[2].range && reqs[3].range?.hasPrefix("bytes=") == true, "\(reqs)")
    }

    /// A redirect loop is named as one and not retried (it said "HTTP 302").
    @Test func aRedirectLoopIsNamed() throws {
        let box = try Sandbox()
        let server = try LoopbackServer(["/loop": .redirect("/loop")])
        defer { server.stop() }
        var thrown: FetchError?
        do { _ = try Fetcher.run(Self.params(server.base + "/loop"), workspace: box.ws) } catch let e as FetchError { thrown = e }
        #expect(thrown.map { "\($0)".contains("more than 10 redirects") && $0.isPermanent } == true, "\(String(describing: thrown))")
        #expect(server.requests.count == 11)
    }

    /// A body the server encodes although identity was asked (URLSession decodes it) is kept
    /// decoded; its encoded Content-Length made every attempt fail as "connection closed".
    @Test func aBodySentWithContentEncodingIsKeptDecoded() throws {
        let box = try Sandbox()
        let data = Data((0..<3000).map { "\($0)\tpassage \($0)\n" }.joined().utf8)
        let gz = box.src.appendingPathComponent("body.gz")
        try ArchiveBuilder.compress(data, to: gz, filter: .gzip)
        let server = try LoopbackServer(["/p.tsv": .encoded(try Data(contentsOf: gz), encoding: "gzip")])
        defer { server.stop() }
        var p = Self.params(server.base + "/p.tsv")
        p.retries = 0
        let r = try Fetcher.run(p, workspace: box.ws)
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/p.tsv")) == data)
        #expect(r.downloads.first?.sha256 == (try sha256sum(data)))
    }

    @Test func stalledServerTimesOut() throws {
        let box = try Sandbox()
        let server = try LoopbackServer(["/slow.bin": .stall(testBytes(100_000), after: 1000)])
        defer { server.stop() }
        var p = Self.params(server.base + "/slow.bin")
        // 1.5 s, not less: on a loaded 2-core CI machine the first 1000 bytes took over 0.5 s to
        // arrive, so the first attempt timed out holding nothing and the retry did not resume.
        p.idleTimeoutS = 1.5
        p.retries = 1
        let start = Date()
        #expect(throws: FetchError.timeout(url: server.base + "/slow.bin", phase: "idle", seconds: 1.5)) {
            try Fetcher.run(p, workspace: box.ws)
        }
        #expect(Date().timeIntervalSince(start) < 15)
        // The retry resumed after the 1000 bytes the stalled attempt delivered.
        #expect(server.requests.map(\.range) == [nil, "bytes=1000-"])
        // A transient failure keeps the partial download (1000 bytes from each attempt) for the next run.
        let work = box.ws.appendingPathComponent(".out.fetch")
        #expect(partFile(in: work).flatMap(fileSize) == 2000, "\(box.snapshot(box.ws))")
    }

    @Test func silentServerHitsTheConnectTimeout() throws {
        let box = try Sandbox()
        let server = try LoopbackServer(["/x": .silent])
        defer { server.stop() }
        var p = Self.params(server.base + "/x")
        p.connectTimeoutS = 0.5
        p.retries = 0
        #expect(throws: FetchError.timeout(url: server.base + "/x", phase: "connect", seconds: 0.5)) {
            try Fetcher.run(p, workspace: box.ws)
        }
    }

    @Test func serverIgnoringRangeRestartsFromZero() throws {
        let box = try Sandbox()
        let data = testBytes(400_000)
        let server = try LoopbackServer(["/f.bin": .stall(data, after: 150_000)])
        defer { server.stop() }
        var p = Self.params(server.base + "/f.bin")
        // Long enough that a loaded machine still delivers the 150,000 bytes before the stall is
        // taken for idle (at 0.3 s a busy CI box timed out before the first byte: nothing to resume).
        p.idleTimeoutS = 2
        p.retries = 0
        #expect(throws: FetchError.self) { try Fetcher.run(p, workspace: box.ws) }
        server.set("/f.bin", .ignoreRange(data))
        let r = try Fetcher.run(Self.params(server.base + "/f.bin"), workspace: box.ws)
        #expect(server.requests.last?.range == "bytes=150000-")
        // The 200 answer replaced the partial bytes instead of being appended to them.
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/f.bin")) == data)
        #expect(r.downloads.first?.resumedFrom == 0, "the whole file came again")
        #expect(r.downloads.first?.sha256 == (try sha256sum(data)))
    }

    @Test func cancelledJobResumesOnTheNextRun() throws {
        let box = try Sandbox()
        let data = testBytes(1_000_000)
        let server = try LoopbackServer(["/f.bin": .stall(data, after: 300_000)])
        defer { server.stop() }
        let work = box.ws.appendingPathComponent(".out.fetch")
        #expect(throws: FetchError.cancelled) {
            try Fetcher.run(Self.params(server.base + "/f.bin"), workspace: box.ws,
                            isCancelled: { (partFile(in: work).flatMap(fileSize) ?? 0) >= 300_000 })
        }
        server.set("/f.bin", .ok(data))
        let r = try Fetcher.run(Self.params(server.base + "/f.bin"), workspace: box.ws)
        #expect(r.downloads.first?.resumedFrom == 300_000)
        #expect(server.requests.last?.range == "bytes=300000-")
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/f.bin")) == data)
    }

    @Test func fileURLAndDownloadLimit() throws {
        let box = try Sandbox()
        let data = testBytes(70_000)
        let src = try box.source("local.bin", data)
        _ = try Fetcher.run(Self.params(src.absoluteString), workspace: box.ws)
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/local.bin")) == data)
        var p = Self.params(src.absoluteString, dest: "small")
        p.maxBytes = 10_000
        #expect {
            try Fetcher.run(p, workspace: box.ws)
        } throws: { e in
            guard let e = e as? FetchError, case .limit(_, _, "download size", 10_000) = e else { return false }
            return e.isPermanent
        }
        // A missing local file says so, with its path (it used to read "HTTP 404").
        let missing = box.src.appendingPathComponent("nope")
        #expect {
            try Fetcher.run(Self.params(missing.absoluteString, dest: "nope"), workspace: box.ws)
        } throws: { e in
            guard let e = e as? FetchError, case .localFile(missing.path, "url", "no such file") = e else { return false }
            return e.isPermanent && "\(e)".contains(missing.path) && "\(e)".contains("no such file")
        }
        #expect(throws: FetchError.localFile(path: box.src.path, field: "url", reason: "not a regular file")) {
            try Fetcher.run(Self.params(box.src.absoluteString, dest: "dir"), workspace: box.ws)
        }
        // A FIFO no one writes: refused at once (opening it waited for a writer, for ever, deaf to a cancel).
        let fifo = box.src.appendingPathComponent("fifo")
        #expect(mkfifo(fifo.path, 0o600) == 0)
        #expect(throws: FetchError.localFile(path: fifo.path, field: "url", reason: "not a regular file")) {
            try Fetcher.run(Self.params(fifo.absoluteString, dest: "fifo"), workspace: box.ws)
        }
    }

    @Test func resumeWithoutAValidatorRestartsFromZero() throws {
        // The server sends neither ETag nor Last-Modified, so If-Range cannot protect a resume:
        // the file changes between the attempts, and a resumed download would splice v1 and v2.
        let box = try Sandbox()
        let v1 = testBytes(600_000, seed: 1), v2 = testBytes(600_000, seed: 2)
        let server = try LoopbackServer(["/f.bin": .dropBare(v1, after: 200_000, times: 1)])
        defer { server.stop() }
        var p = Self.params(server.base + "/f.bin")
        p.retries = 0
        #expect(throws: FetchError.self) { try Fetcher.run(p, workspace: box.ws) }
        #expect(partFile(in: box.ws.appendingPathComponent(".out.fetch")).flatMap(fileSize) == 200_000)
        server.set("/f.bin", .okBare(v2))
        var lines: [String] = []
        let r = try Fetcher.run(p, workspace: box.ws, log: { lines.append($0) })
        #expect(server.requests.map(\.range) == [nil, nil], "the second run asks for the whole file")
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/f.bin")) == v2)
        #expect(r.downloads.first?.resumedFrom == 0)
        // The sha256 of what was fetched is recorded, so the preset can be pinned later.
        #expect(r.downloads.first?.sha256 == (try sha256sum(v2)))
        #expect(lines.contains { $0.contains("no ETag or Last-Modified") && $0.contains("restarting from byte 0") }, "\(lines)")

        // With a pinned sha256 a splice would be caught, so resuming is allowed.
        let box2 = try Sandbox()
        server.set("/f.bin", .dropBare(v2, after: 200_000, times: 1))
        var pinned = Self.params(server.base + "/f.bin")
        pinned.sha256 = try sha256sum(v2)
        let r2 = try Fetcher.run(pinned, workspace: box2.ws)
        #expect(try Data(contentsOf: box2.ws.appendingPathComponent("out/f.bin")) == v2)
        #expect(server.requests.suffix(2).map(\.range) == [nil, "bytes=200000-"])
        #expect(r2.downloads.first?.sha256 == pinned.sha256)
    }

    /// A server that ignores If-Range sends the tail of a file that changed since the bytes on
    /// disk were fetched, under the new version's ETag: the two are not spliced, the download
    /// starts over, and the result says it was not resumed.
    @Test func aTailOfAChangedFileIsNotSplicedOn() throws {
        let box = try Sandbox()
        let v1 = testBytes(600_000, seed: 1), v2 = testBytes(600_000, seed: 2)
        let server = try LoopbackServer(["/f.bin": .drop(v1, after: 200_000, times: 1)])
        defer { server.stop() }
        var p = Self.params(server.base + "/f.bin")
        p.retries = 0
        #expect(throws: FetchError.self) { try Fetcher.run(p, workspace: box.ws) }
        server.set("/f.bin", .ignoreIfRange(v2, etag: "\"v2\""))
        p.retries = 2
        var lines: [String] = []
        let r = try Fetcher.run(p, workspace: box.ws, log: { lines.append($0) })
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/f.bin")) == v2)
        #expect(r.downloads.first?.sha256 == (try sha256sum(v2)))
        #expect(r.downloads.first?.resumedFrom == 0)
        #expect(lines.contains { $0.contains("not shown to be of the version downloaded so far") && $0.contains("\"v2\"") }, "\(lines)")
    }

    /// A redirect to file:// is refused from its Location header (Foundation turned it into a
    /// request for that path on the same host), and the path is never asked for.
    @Test func aRedirectToAFileURLIsRefused() throws {
        let box = try Sandbox()
        let server = try LoopbackServer(["/r": .redirectRaw("file:///etc/passwd")])
        defer { server.stop() }
        var thrown: FetchError?
        do { _ = try Fetcher.run(Self.params(server.base + "/r"), workspace: box.ws) } catch let e as FetchError { thrown = e }
        #expect(thrown.map { "\($0)".contains("file:///etc/passwd") && "\($0)".contains("not http(s)") && $0.isPermanent } == true,
                "\(String(describing: thrown))")
        #expect(server.requests.map(\.path) == ["/r"], "\(server.requests.map(\.path))")
    }

    /// A sha256 of the file as stored cannot match a body the server sent encoded (the client
    /// hashes the decoded bytes): the error says so instead of only "mismatch".
    @Test func aChecksumOfAnEncodedBodyNamesTheEncoding() throws {
        let box = try Sandbox()
        let data = Data((0..<2000).map { "\($0)\tpassage \($0)\n" }.joined().utf8)
        let gz = box.src.appendingPathComponent("body.gz")
        try ArchiveBuilder.compress(data, to: gz, filter: .gzip)
        let stored = try Data(contentsOf: gz)
        let server = try LoopbackServer(["/p.tsv.gz": .encoded(stored, encoding: "gzip")])
        defer { server.stop() }
        var p = Self.params(server.base + "/p.tsv.gz")
        p.retries = 0
        p.sha256 = try sha256sum(stored)
        var thrown: FetchError?
        do { _ = try Fetcher.run(p, workspace: box.ws) } catch let e as FetchError { thrown = e }
        #expect(thrown.map { "\($0)".contains("Content-Encoding: gzip") && $0.isPermanent } == true, "\(String(describing: thrown))")
        // Unpacked (the default), the decoded file keeps the plain name a preset looks for.
        var q = Self.params(server.base + "/p.tsv.gz", dest: "plain")
        q.unpack = .auto
        q.retries = 0
        _ = try Fetcher.run(q, workspace: box.ws)
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("plain/p.tsv")) == data)
    }

    @Test func contentRangeParsing() {
        #expect(parseContentRange("bytes 100-199/200")! == (100, 199, 200))
        #expect(parseContentRange("bytes 0-9/*")!.total == nil)
        #expect(parseContentRange("items 0-9/10") == nil)
    }
}

/// Answers that misbehave in ways a resume, a retry or an error message must see through.
@Suite(.serialized) struct DownloaderOddServerTests {
    typealias Answer = LoopbackServer.Answer

    /// A resumed download whose tail comes from a changed file is never spliced to the old head:
    /// the 206 must repeat the validator If-Range named, and no ETag or Last-Modified may differ.
    /// A tail under a new Last-Modified without the ETag (or under a new weak ETag) was appended,
    /// and a file that is neither version was published.
    @Test(arguments: [
        (["ETag: \"v1\"", "Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT"], ["Last-Modified: Tue, 02 Jan 2024 00:00:00 GMT"]),
        (["ETag: \"v1\""], [String]()),
        (["ETag: W/\"a\"", "Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT"], ["ETag: W/\"b\""]),
    ])
    func aChangedTailIsNeverSpliced(head: [String], tail: [String]) throws {
        let box = try Sandbox()
        let old = testBytes(200_000), new = Data(testBytes(200_000).reversed())
        let server = try LoopbackServer(["/f.bin": .script([
            Answer(status: 200, headers: head, body: old, cut: 50_000),
            Answer(status: 206, headers: ["Content-Range: bytes 50000-199999/200000"] + tail, body: new.subdata(in: 50_000..<200_000)),
            Answer(status: 200, headers: tail, body: new),
        ])])
        defer { server.stop() }
        var p = DownloaderTests.params(server.base + "/f.bin")
        p.retries = 3
        let r = try Fetcher.run(p, workspace: box.ws)
        #expect(server.requests.map(\.range) == [nil, "bytes=50000-", nil], "\(server.requests.map(\.range))")
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/f.bin")) == new, "old head and new tail spliced")
        #expect(r.downloads.first?.sha256 == (try sha256sum(new)))
    }

    /// Legitimate resumes stay resumes: a matching strong ETag whatever the Last-Modified (a
    /// server farm), a 206 that drops the ETag but repeats the date (CDNs), weak and strong forms
    /// of one tag, one date in two formats. Changed tails never pass. (The first version of the
    /// splice check restarted every one of the legitimate ones, on every attempt.)
    @Test func aTailIsJudgedByTheValidatorsItRepeats() {
        let lm = "Tue, 01 Dec 2026 10:00:00 GMT", lm850 = "Tuesday, 01-Dec-26 10:00:00 GMT", later = "Tue, 01 Dec 2026 10:00:01 GMT"
        func changed(_ etag: String?, _ modified: String?, strong: String?, etag known: String?, modified was: String?) -> Bool {
            TransferState.tailChanged(etag: etag, modified: modified, knownStrongETag: strong, knownETag: known, knownModified: was)
        }
        // Ours.
        #expect(!changed("\"v1\"", later, strong: "\"v1\"", etag: "\"v1\"", modified: lm))
        #expect(!changed(nil, lm, strong: "\"v1\"", etag: "\"v1\"", modified: lm))
        #expect(!changed("W/\"v1\"", nil, strong: nil, etag: "W/\"v1\"", modified: lm))
        #expect(!changed(nil, lm850, strong: nil, etag: nil, modified: lm))
        #expect(!changed("\"v1\"", lm, strong: nil, etag: "W/\"v1\"", modified: lm))
        #expect(!changed(nil, nil, strong: nil, etag: nil, modified: nil), "no validator on the part: a sha256 guards it")
        // Not shown to be ours.
        #expect(changed(nil, later, strong: "\"v1\"", etag: "\"v1\"", modified: lm))
        #expect(changed(nil, nil, strong: "\"v1\"", etag: "\"v1\"", modified: nil))
        #expect(changed("W/\"b\"", nil, strong: nil, etag: "W/\"a\"", modified: lm))
        #expect(changed("W/\"v2\"", lm, strong: nil, etag: "W/\"v1\"", modified: lm))
        #expect(changed("\"v2\"", lm, strong: "\"v1\"", etag: "\"v1\"", modified: lm))
    }

    /// Content-Encoding lists decode when every coding does (`gzip, identity` is gzip).
    @Test func encodingListsAreJudgedCodingByCoding() {
        #expect(FetchError.decodable("gzip, identity") && FetchError.decodable("identity, gzip") && FetchError.decodable("GZIP"))
        #expect(FetchError.decodable("x-gzip") && FetchError.decodable("br") && FetchError.decodable("deflate, gzip"))
        #expect(!FetchError.decodable("x-compress") && !FetchError.decodable("gzip, compress"))
    }

    /// A Retry-After longer than one run waits ends the run with that wait, which the queue's
    /// next attempt keeps (it was a plain "HTTP 503" retried 10 s later).
    @Test func aLongRetryAfterIsLeftToTheQueue() throws {
        let box = try Sandbox()
        let server = try LoopbackServer(["/f.bin": .script([Answer(status: 503, headers: ["Retry-After: 601"])])])
        defer { server.stop() }
        var p = DownloaderTests.params(server.base + "/f.bin")
        p.retries = 3
        #expect(throws: FetchError.retryLater(url: server.base + "/f.bin", status: 503, seconds: 601)) {
            try Fetcher.run(p, workspace: box.ws)
        }
        #expect(server.requests.count == 1)
        #expect("\(FetchError.retryLater(url: "u", status: 503, seconds: 601))".contains("come back in 601 s"))
    }

    /// A 429 or 503 with Retry-After is retried no sooner than it asks (seconds or an HTTP-date),
    /// where the backoff alone came back in 0.01 s.
    @Test func retryAfterIsWaitedFor() throws {
        let box = try Sandbox()
        let data = testBytes(10_000)
        let server = try LoopbackServer(["/f.bin": .script([
            Answer(status: 503, headers: ["Retry-After: 1"]),
            Answer(status: 200, headers: ["ETag: \"v\""], body: data),
        ])])
        defer { server.stop() }
        var p = DownloaderTests.params(server.base + "/f.bin")
        p.retries = 2
        let start = Date()
        _ = try Fetcher.run(p, workspace: box.ws)
        #expect(Date().timeIntervalSince(start) >= 1, "retried after \(Date().timeIntervalSince(start)) s")
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/f.bin")) == data)
        let now = Date(timeIntervalSince1970: 1_700_000_000)  // Tue, 14 Nov 2023 22:13:20 GMT
        #expect(parseRetryAfter("120", now: now) == 120)
        #expect(parseRetryAfter("Tue, 14 Nov 2023 22:15:20 GMT", now: now) == 120)
        #expect(parseRetryAfter("Tuesday, 14-Nov-23 22:15:20 GMT", now: now) == 120)
        #expect(parseRetryAfter("soon", now: now) == nil)
    }

    /// A Content-Encoding the client cannot decode fails at once, permanently, naming it (it was
    /// a "connection failed" that every retry repeated).
    @Test func anUndecodableEncodingIsPermanent() throws {
        let box = try Sandbox()
        let server = try LoopbackServer(["/f.Z": .encoded(testBytes(1000), encoding: "x-compress")])
        defer { server.stop() }
        var p = DownloaderTests.params(server.base + "/f.Z")
        p.retries = 2
        #expect {
            try Fetcher.run(p, workspace: box.ws)
        } throws: { e in
            guard let e = e as? FetchError, case .encoding(_, "x-compress") = e else { return false }
            return e.isPermanent && "\(e)".contains("Content-Encoding: x-compress")
        }
        #expect(server.requests.count == 1)
    }

    /// A redirect without a Location is the server's answer, not "no response": permanent.
    @Test func aRedirectWithoutLocationIsPermanent() throws {
        let box = try Sandbox()
        let server = try LoopbackServer(["/f.bin": .script([Answer(status: 302, headers: [])])])
        defer { server.stop() }
        var p = DownloaderTests.params(server.base + "/f.bin")
        p.retries = 2
        #expect {
            try Fetcher.run(p, workspace: box.ws)
        } throws: { e in
            guard let e = e as? FetchError, case .redirect(_, let reason) = e else { return false }
            return e.isPermanent && reason.contains("HTTP 302 without a Location")
        }
        #expect(server.requests.count == 1)
    }
}
