// FetcherTests: dest rules (inside the workspace, never clobbered), idempotent retries, a killed worker resumed.
import Foundation
import Testing

@testable import Fetch

@Suite struct FetcherTests {
    static func local(_ box: Sandbox, _ dest: String) throws -> FetchParams {
        let src = try box.source("f.txt", Data("hello\n".utf8))
        return FetchParams(url: src.absoluteString, dest: dest)
    }

    @Test func destMustStayInsideTheWorkspace() throws {
        let box = try Sandbox()
        for dest in ["../escape", box.root.appendingPathComponent("abs").path, "a/../../escape"] {
            #expect(throws: FetchError.self, "\(dest)") { try Fetcher.run(try Self.local(box, dest), workspace: box.ws) }
        }
        // A parent that is a symlink out of the workspace counts as outside.
        try FileManager.default.createSymbolicLink(atPath: box.ws.appendingPathComponent("out-link").path, withDestinationPath: box.root.path)
        #expect { try Fetcher.run(try Self.local(box, "out-link/x"), workspace: box.ws) } throws: { e in
            guard case .badParams("dest", _, _, _)? = e as? FetchError else { return false }
            return true
        }
        #expect(!FileManager.default.fileExists(atPath: box.root.appendingPathComponent("x").path))
        // Refused before any folder is made where the link points (they were made, then refused).
        #expect(throws: FetchError.self) { try Fetcher.run(try Self.local(box, "out-link/made/x"), workspace: box.ws) }
        #expect(!FileManager.default.fileExists(atPath: box.root.appendingPathComponent("made").path))
        #expect(!FileManager.default.fileExists(atPath: box.root.appendingPathComponent("escape").path))
        // An absolute dest inside the workspace is fine.
        _ = try Fetcher.run(try Self.local(box, box.ws.appendingPathComponent("inside").path), workspace: box.ws)
        #expect(FileManager.default.fileExists(atPath: box.ws.appendingPathComponent("inside/f.txt").path))
        // So is one in a root the queue allows (`--allow-root`: submit accepted it, the run refused it).
        let other = box.root.appendingPathComponent("other")
        _ = try Fetcher.run(try Self.local(box, other.appendingPathComponent("x").path), workspace: box.ws, roots: [other])
        #expect(FileManager.default.fileExists(atPath: other.appendingPathComponent("x/f.txt").path))
        // Written through a link to that root (the run refused what submit accepted).
        let link = box.root.appendingPathComponent("other-link")
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: other.path)
        _ = try Fetcher.run(try Self.local(box, link.appendingPathComponent("y").path), workspace: box.ws, roots: [link])
        #expect(FileManager.default.fileExists(atPath: other.appendingPathComponent("y/f.txt").path))
    }

    @Test func existingDestIsKeptUnlessReplaceIsSet() throws {
        let box = try Sandbox()
        let dest = box.ws.appendingPathComponent("d")
        try FileManager.default.createDirectory(at: dest, withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: dest.appendingPathComponent("keep.txt"))
        #expect(throws: FetchError.destExists(path: dest.path)) { try Fetcher.run(try Self.local(box, "d"), workspace: box.ws) }
        #expect(try String(contentsOf: dest.appendingPathComponent("keep.txt"), encoding: .utf8) == "mine")
        var p = try Self.local(box, "d")
        p.replace = true
        let first = try Fetcher.run(p, workspace: box.ws)
        #expect(!first.alreadyPresent)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dest.path).sorted() == [".fidq-fetch.json", "f.txt"])
        // The same fetch again finds its own result; a different one is refused.
        #expect(try Fetcher.run(p, workspace: box.ws).alreadyPresent)
        var other = p
        other.replace = false
        other.stripComponents = 1
        #expect(throws: FetchError.destExists(path: dest.path)) { try Fetcher.run(other, workspace: box.ws) }
        // Another file name (or a preset's passages file) is another result, not "already present".
        var renamed = p
        renamed.replace = false
        renamed.filename = "g.txt"
        #expect(throws: FetchError.destExists(path: dest.path)) { try Fetcher.run(renamed, workspace: box.ws) }
        var preset = FetchParams(source: "tqa_data", dest: "d"), own = preset
        own.passages = "psgs.tsv"
        #expect(Marker(preset) != Marker(own))
        preset.passages = "psgs.tsv"
        #expect(Marker(preset) == Marker(own))
        // A marker an older fidq wrote (no filename, passages or version) matches its fetch when
        // the file the fetch names is there, so a rerun after the upgrade is "already present".
        var old = Marker(p)
        (old.filename, old.passages, old.version) = (nil, nil, nil)
        let stored = try JSONDecoder().decode(Marker.self, from: try JSONEncoder().encode(old))
        #expect(Marker(p).sameFetch(as: stored, in: dest))
        var named = p
        named.filename = "f.txt"
        #expect(Marker(named).sameFetch(as: stored, in: dest), "f.txt is there")
        #expect(!Marker(renamed).sameFetch(as: stored, in: dest), "g.txt is not")
        #expect(!Marker(own).sameFetch(as: stored, in: dest), "passages: cannot tell")
        try JSONEncoder().encode(old).write(to: dest.appendingPathComponent(Fetcher.markerName))
        #expect(try Fetcher.run(p, workspace: box.ws).alreadyPresent)
        // A queued `job:` passages is recorded as written; a marker of an earlier version, which
        // recorded the path read (resolved, or real), still matches on the worker that wrote it.
        var queued = FetchParams(source: "tqa_data", dest: "d")
        queued.passages = box.ws.appendingPathComponent("psgs.tsv").path
        queued.passagesAsWritten = "job:c/psgs.tsv"
        #expect(Marker(queued).passages == "job:c/psgs.tsv")
        var earlier = Marker(queued)
        earlier.passages = queued.passages
        #expect(Marker(queued).sameFetch(as: earlier, in: dest, passagesRead: queued.passages))
        earlier.passages = "/elsewhere/psgs.tsv"
        #expect(!Marker(queued).sameFetch(as: earlier, in: dest, passagesRead: queued.passages), "another file")
        #expect(!Marker(queued).sameFetch(as: Marker(own), in: dest, passagesRead: queued.passages), "another reference")
    }

    /// An earlier attempt's folder in `.out.fetch/` holding a partial `download.part` of `data`
    /// (first `bytes`), as a killed or frozen run leaves it; returns the folder.
    static func leftover(_ box: Sandbox, _ name: String, _ data: Data, bytes: Int, url: String) throws -> URL {
        let folder = box.ws.appendingPathComponent(".out.fetch/a-\(name)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try data.prefix(bytes).write(to: folder.appendingPathComponent("download.part"))
        let meta = PartMeta(url: url, etag: "\"v1\"", lastModified: nil, total: Int64(data.count))
        try JSONEncoder().encode(meta).write(to: folder.appendingPathComponent("download.meta.json"))
        try Data().write(to: folder.appendingPathComponent("lock"))
        return folder
    }

    @Test func aLiveAttemptIsNeverWaitedOnOrShared() throws {
        // Before: a second run failed while the first (maybe a frozen worker) held `.out.fetch/lock`.
        let box = try Sandbox()
        let data = testBytes(300_000)
        let server = try LoopbackServer(["/f.bin": .ok(data)])
        defer { server.stop() }
        let url = server.base + "/f.bin"
        let live = try Self.leftover(box, "live", data, bytes: 100_000, url: url)
        let held = try WorkLock(live.appendingPathComponent("lock"))
        defer { held.release() }
        let r = try Fetcher.run(DownloaderTests.params(url), workspace: box.ws)
        #expect(r.downloads.first?.resumedFrom == 0, "nothing taken from the live attempt")
        #expect(server.requests.map(\.range) == [nil])
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/f.bin")) == data)
        // The live attempt's files are as they were, and only its folder remains.
        #expect(fileSize(live.appendingPathComponent("download.part")) == 100_000)
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.ws.appendingPathComponent(".out.fetch").path) == ["a-live"])
    }

    @Test func anAbandonedAttemptIsAdoptedAndResumed() throws {
        let box = try Sandbox()
        let data = testBytes(300_000)
        let server = try LoopbackServer(["/f.bin": .ok(data)])
        defer { server.stop() }
        let url = server.base + "/f.bin"
        _ = try Self.leftover(box, "dead", data, bytes: 120_000, url: url)
        var lines: [String] = []
        let r = try Fetcher.run(DownloaderTests.params(url), workspace: box.ws, attempt: "next", log: { lines.append($0) })
        #expect(r.downloads.first?.resumedFrom == 120_000)
        #expect(server.requests.map(\.range) == ["bytes=120000-"])
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/f.bin")) == data)
        #expect(lines.contains { $0.contains("adopted what attempt a-dead left") }, "\(lines)")
        #expect(!FileManager.default.fileExists(atPath: box.ws.appendingPathComponent(".out.fetch").path))
    }

    @Test func anEarlierVersionsWorkFolderIsAdopted() throws {
        // Older fidq kept one run's files straight in `.out.fetch/` under `.out.fetch/lock`.
        let box = try Sandbox()
        let data = testBytes(300_000)
        let server = try LoopbackServer(["/f.bin": .ok(data)])
        defer { server.stop() }
        let url = server.base + "/f.bin"
        let folder = try Self.leftover(box, "x", data, bytes: 90_000, url: url)
        let work = folder.deletingLastPathComponent()
        for name in ["download.part", "download.meta.json", "lock"] {
            try FileManager.default.moveItem(at: folder.appendingPathComponent(name), to: work.appendingPathComponent(name))
        }
        try FileManager.default.moveItem(at: folder, to: work.appendingPathComponent("stage"))
        let r = try Fetcher.run(DownloaderTests.params(url), workspace: box.ws)
        #expect(r.downloads.first?.resumedFrom == 90_000)
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/f.bin")) == data)
        #expect(!FileManager.default.fileExists(atPath: work.path))
    }

    @Test func onANetworkFileSystemAFreeLockMustAlsoBeStale() throws {
        // flock may not exclude another NFS client: a free lock touched recently could belong to a
        // live holder elsewhere, so its files are left alone until it has been quiet for a while,
        // and are then copied, so a holder that was only paused cannot write into ours.
        let box = try Sandbox()
        let data = testBytes(300_000)
        let server = try LoopbackServer(["/f.bin": .ok(data)])
        defer { server.stop() }
        let url = server.base + "/f.bin"
        let recent = try Self.leftover(box, "recent", data, bytes: 100_000, url: url)
        let hooks = Fetcher.Hooks(network: true)
        let first = try Fetcher.run(DownloaderTests.params(url), workspace: box.ws, attempt: "n1", readCheck: nil, hooks: hooks)
        #expect(first.downloads.first?.resumedFrom == 0)
        #expect(fileSize(recent.appendingPathComponent("download.part")) == 100_000, "left alone")

        try removeTree(box.ws.appendingPathComponent("out"))
        var old = [timespec(tv_sec: 1_000_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, recent.appendingPathComponent("lock").path, &old, 0) == 0)
        let second = try Fetcher.run(DownloaderTests.params(url), workspace: box.ws, attempt: "n2", readCheck: nil, hooks: hooks)
        #expect(second.downloads.first?.resumedFrom == 100_000, "a stale, free lock is adopted")
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/f.bin")) == data)
        #expect(!FileManager.default.fileExists(atPath: recent.path))
    }

    /// A download finished by an attempt that died before publishing is reused only while its
    /// source is unchanged (without a sha256 nothing else tells): a local file by size, time and
    /// inode, an HTTP resource by its ETag, asked with HEAD.
    @Test func aFinishedDownloadIsReusedOnlyWhileItsSourceIsUnchanged() throws {
        struct Crash: Error {}
        let box = try Sandbox()
        // Dies after its download, before its staged copy was complete (the marker is written
        // last), as a kill while unpacking leaves it.
        let crashing = Fetcher.Hooks(crash: { point in
            guard point == "publish" else { return }
            for dest in ["out", "web"] {
                let work = box.ws.appendingPathComponent(".\(dest).fetch")
                for a in (try? FileManager.default.contentsOfDirectory(atPath: work.path)) ?? [] {
                    try? FileManager.default.removeItem(at: work.appendingPathComponent(a + "/stage/" + Fetcher.markerName))
                }
            }
            throw Crash()
        })
        let file = box.src.appendingPathComponent("a.tar")
        try ArchiveBuilder.write([ArchiveBuilder.Entry("v1.txt", .file(Data("one".utf8)))], to: file)
        let local = FetchParams(url: file.absoluteString, dest: "out")
        #expect(throws: Crash.self) { try Fetcher.run(local, workspace: box.ws, attempt: "t1", readCheck: nil, hooks: crashing) }
        let same = try Fetcher.run(local, workspace: box.ws, attempt: "t2")
        #expect(same.downloads.first?.resumedFrom == same.downloads.first?.bytes, "an unchanged source is not copied again")
        try FileManager.default.removeItem(at: box.ws.appendingPathComponent("out"))
        #expect(throws: Crash.self) { try Fetcher.run(local, workspace: box.ws, attempt: "t3", readCheck: nil, hooks: crashing) }
        try FileManager.default.removeItem(at: file)
        try ArchiveBuilder.write([ArchiveBuilder.Entry("v2.txt", .file(Data("two".utf8)))], to: file)
        _ = try Fetcher.run(local, workspace: box.ws, attempt: "t4")
        #expect(box.snapshot(box.ws.appendingPathComponent("out")).filter { !$0.hasPrefix(".fidq") } == ["v2.txt f 3"])

        let server = try LoopbackServer(["/f.bin": .tagged(testBytes(1000, seed: 1), etag: "\"a\"")])
        defer { server.stop() }
        let remote = DownloaderTests.params(server.base + "/f.bin", dest: "web")
        #expect(throws: Crash.self) { try Fetcher.run(remote, workspace: box.ws, attempt: "h1", readCheck: nil, hooks: crashing) }
        let kept = try Fetcher.run(remote, workspace: box.ws, attempt: "h2")
        #expect(kept.downloads.first?.resumedFrom == 1000 && server.requests.map(\.method) == ["GET", "HEAD"], "\(server.requests)")
        try FileManager.default.removeItem(at: box.ws.appendingPathComponent("web"))
        #expect(throws: Crash.self) { try Fetcher.run(remote, workspace: box.ws, attempt: "h3", readCheck: nil, hooks: crashing) }
        server.set("/f.bin", .tagged(testBytes(1000, seed: 2), etag: "\"b\""))
        _ = try Fetcher.run(remote, workspace: box.ws, attempt: "h4")
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("web/f.bin")) == testBytes(1000, seed: 2))
    }

    /// Simulates a crash at `point` of a replacing publish, then checks the next run repairs it.
    @Test(arguments: ["publish", "aside", "published"])
    func replacingPublishSurvivesACrashAtEachStep(point: String) throws {
        struct Crash: Error {}
        let box = try Sandbox()
        let dest = box.ws.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: dest, withIntermediateDirectories: true)
        try Data("old".utf8).write(to: dest.appendingPathComponent("old.txt"))
        var p = try Self.local(box, "out")
        p.replace = true
        let crashing = Fetcher.Hooks(crash: { if $0 == point { throw Crash() } })
        #expect(throws: Crash.self) { try Fetcher.run(p, workspace: box.ws, attempt: "t1", readCheck: nil, hooks: crashing) }
        // Before: a crash between the two renames left no dest at all.
        let listing = (try? FileManager.default.contentsOfDirectory(atPath: dest.path).sorted()) ?? []
        switch point {
        case "publish": #expect(listing == ["old.txt"])
        case "aside": #expect(listing == [], "dest is missing until the next run")
        default: #expect(listing == [".fidq-fetch.json", "f.txt"])
        }
        let r = try Fetcher.run(p, workspace: box.ws, attempt: "t2")
        #expect(r.alreadyPresent == (point != "publish"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dest.path).sorted() == [".fidq-fetch.json", "f.txt"])
        #expect(box.snapshot(box.ws).filter { $0.contains(".fetch") }.isEmpty, "\(box.snapshot(box.ws))")
    }

    @Test func aCrashedReplaceByAnotherFetchPutsTheOldDestBack() throws {
        struct Crash: Error {}
        let box = try Sandbox()
        let dest = box.ws.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: dest, withIntermediateDirectories: true)
        try Data("old".utf8).write(to: dest.appendingPathComponent("old.txt"))
        var p = try Self.local(box, "out")
        p.replace = true
        let crashing = Fetcher.Hooks(crash: { if $0 == "aside" { throw Crash() } })
        #expect(throws: Crash.self) { try Fetcher.run(p, workspace: box.ws, attempt: "t1", readCheck: nil, hooks: crashing) }
        // A different fetch into the same dest (no replace) finds the old dest restored and refuses.
        var other = try Self.local(box, "out")
        other.stripComponents = 1
        #expect(throws: FetchError.destExists(path: dest.path)) { try Fetcher.run(other, workspace: box.ws) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dest.path) == ["old.txt"])
    }

    @Test func aLatePublishLosesToTheOneAlreadyThere() throws {
        // A thawed zombie reaches publish after another attempt published the same fetch.
        let box = try Sandbox()
        let p = try Self.local(box, "out")
        _ = try Fetcher.run(p, workspace: box.ws)
        let dest = box.ws.appendingPathComponent("out")
        let before = box.snapshot(dest)
        let mine = box.ws.appendingPathComponent(".out.fetch/a-zombie")
        let stage = mine.appendingPathComponent("stage")
        try FileManager.default.createDirectory(at: stage, withIntermediateDirectories: true)
        try Data("zombie".utf8).write(to: stage.appendingPathComponent("f.txt"))
        try JSONEncoder().encode(Marker(p)).write(to: stage.appendingPathComponent(Fetcher.markerName))
        for replace in [false, true] {
            let won = try Fetcher.publish(stage, to: dest, marker: Marker(p), replace: replace, mine: mine, crash: { _ in }, log: { _ in })
            #expect(!won)
            #expect(box.snapshot(dest) == before)
            #expect(try String(contentsOf: dest.appendingPathComponent("f.txt"), encoding: .utf8) == "hello\n")
        }
    }

    @Test func derivedNamesCannotLeaveTheStagingFolder() throws {
        let cases: [(String, String)] = [
            ("http://h/f/..%2F..%2F..%2Ftmp%2Fpwned", ".._.._.._tmp_pwned"), ("http://h/f/..", "download"),
            ("http://h/f/%2E%2E", "download"), ("http://h/", "download"), ("http://h/a%00b", "a_b"),
            ("http://h/x/.fidq-fetch.json", "download"), ("http://h/d/data.tar.gz?x=1", "data.tar.gz"),
            ("http://h/" + String(repeating: "%C3%A9", count: 150), String(repeating: "é", count: 100)),
        ]
        for (url, name) in cases {
            #expect(Fetcher.defaultName(URL(string: url)!) == name, "\(url)")
        }
        // Stripping a compression suffix can make a name `..` too.
        #expect(Fetcher.safeName(Fetcher.stripCompressionSuffix("...gz")) == "download")
    }

    @Test func runJobDecodesParamsAndEncodesTheResult() throws {
        let box = try Sandbox()
        let src = try box.source("f.txt", Data("hello\n".utf8))
        let out = try Fetcher.runJob(params: Data(#"{"url": "\#(src.absoluteString)", "dest": "j"}"#.utf8), workspace: box.ws)
        let obj = try JSONSerialization.jsonObject(with: out) as! [String: Any]
        #expect(obj["files"] as? Int == 1 && obj["already_present"] as? Bool == false)
        #expect((obj["downloads"] as? [[String: Any]])?.first?["sha256"] as? String == (try sha256sum(Data("hello\n".utf8))))
        #expect(throws: FetchError.self) { try Fetcher.runJob(params: Data(#"{"url": "x", "dest": "j", "bogus": 1}"#.utf8), workspace: box.ws) }
    }

    @Test func removingATreeNeverFollowsItsSymlinks() throws {
        let box = try Sandbox()
        let tree = box.ws.appendingPathComponent("t/sub")
        try FileManager.default.createDirectory(at: tree, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: tree.appendingPathComponent("up").path, withDestinationPath: box.root.path)
        try FileManager.default.createSymbolicLink(atPath: tree.appendingPathComponent("file").path, withDestinationPath: box.sentinel.path)
        try removeTree(box.ws.appendingPathComponent("t"))
        #expect(box.snapshot() == ["outside.txt f 9", "src d 0", "ws d 0"])
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: fidq.path), "needs the fidq binary (swift build)"))
    func cliListsThePresets() throws {
        let p = Process()
        p.executableURL = Self.fidq
        p.arguments = ["fetch", "--list"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        for preset in Presets.all { #expect(text.contains(preset.name)) }
    }

    static let fidq = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/debug/fidq")

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: fidq.path), "needs the fidq binary (swift build)"))
    func workerKilledMidDownloadIsResumedByTheRetry() throws {
        let box = try Sandbox()
        let data = testBytes(1_500_000)
        let server = try LoopbackServer(["/f.bin": .stall(data, after: 400_000)])
        defer { server.stop() }
        let worker = Process()
        worker.executableURL = Self.fidq
        worker.arguments = ["fetch", "--url", server.base + "/f.bin", "--dest", "out", "--workspace", box.ws.path]
        worker.standardError = FileHandle.nullDevice
        try worker.run()
        let work = box.ws.appendingPathComponent(".out.fetch")
        let deadline = Date().addingTimeInterval(30)
        while (partFile(in: work).flatMap(fileSize) ?? 0) < 400_000, Date() < deadline, worker.isRunning {
            Thread.sleep(forTimeInterval: 0.02)
        }
        kill(worker.processIdentifier, SIGKILL)
        worker.waitUntilExit()
        #expect(worker.terminationReason == .uncaughtSignal)
        #expect(partFile(in: work).flatMap(fileSize) == 400_000)
        // The queue's next attempt runs the same params; it asks only for the rest.
        server.set("/f.bin", .ok(data))
        let r = try Fetcher.run(FetchParams(url: server.base + "/f.bin", dest: "out"), workspace: box.ws)
        #expect(r.downloads.first?.resumedFrom == 400_000)
        #expect(server.requests.map(\.range) == [nil, "bytes=400000-"])
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/f.bin")) == data)
    }

    /// Ctrl-C (or SIGTERM) to `fidq fetch`: it stops by itself, says the partial download is kept,
    /// exits 75 (worth running again), and the same command asks the server only for the rest.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: fidq.path), "needs the fidq binary (swift build)"),
          arguments: [SIGINT, SIGTERM])
    func interruptedCommandStopsCleanlyAndTheSameCommandResumes(sig: Int32) throws {
        let box = try Sandbox()
        let data = testBytes(1_500_000)
        let server = try LoopbackServer(["/f.bin": .stall(data, after: 400_000)])
        defer { server.stop() }
        let args = ["fetch", "--url", server.base + "/f.bin", "--dest", "out", "--workspace", box.ws.path]
        let (first, err) = try FetchKindTests.fidqStart(args)
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        let work = box.ws.appendingPathComponent(".out.fetch")
        let deadline = Date().addingTimeInterval(30)
        while (partFile(in: work).flatMap(fileSize) ?? 0) < 400_000, Date() < deadline, first.isRunning {
            Thread.sleep(forTimeInterval: 0.02)
        }
        kill(first.processIdentifier, sig)
        #expect(FetchKindTests.waitExit(first, 20), "still running after the signal")
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(first.terminationReason == .exit && first.terminationStatus == 75, "\(first.terminationStatus): \(text)")
        #expect(text.contains("stopping at the next safe point") && text.contains("partial download is kept"), "\(text)")
        #expect(partFile(in: work).flatMap(fileSize) == 400_000)
        server.set("/f.bin", .ok(data))
        let (status, second) = try FetchKindTests.fidqRun(args)
        #expect(status == 0, "\(second)")
        #expect(server.requests.map(\.range) == [nil, "bytes=400000-"])
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/f.bin")) == data)
    }
}
