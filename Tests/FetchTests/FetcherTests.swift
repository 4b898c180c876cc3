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
        #expect(!FileManager.default.fileExists(atPath: box.root.appendingPathComponent("escape").path))
        // An absolute dest inside the workspace is fine.
        _ = try Fetcher.run(try Self.local(box, box.ws.appendingPathComponent("inside").path), workspace: box.ws)
        #expect(FileManager.default.fileExists(atPath: box.ws.appendingPathComponent("inside/f.txt").path))
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
    }

    @Test func secondRunIntoTheSameDestIsRefusedWhileTheFirstHoldsIt() throws {
        let box = try Sandbox()
        let work = box.ws.appendingPathComponent(".d.fetch")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let held = try WorkLock(work.appendingPathComponent("lock"))
        #expect {
            try Fetcher.run(try Self.local(box, "d"), workspace: box.ws)
        } throws: { e in
            guard let e = e as? FetchError, case .io = e else { return false }
            return !e.isPermanent
        }
        held.release()
        _ = try Fetcher.run(try Self.local(box, "d"), workspace: box.ws)
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
        let part = box.ws.appendingPathComponent(".out.fetch/download.part")
        let deadline = Date().addingTimeInterval(30)
        while (fileSize(part) ?? 0) < 400_000, Date() < deadline, worker.isRunning { Thread.sleep(forTimeInterval: 0.02) }
        kill(worker.processIdentifier, SIGKILL)
        worker.waitUntilExit()
        #expect(worker.terminationReason == .uncaughtSignal)
        #expect(fileSize(part) == 400_000)
        // The queue's next attempt runs the same params; it asks only for the rest.
        server.set("/f.bin", .ok(data))
        let r = try Fetcher.run(FetchParams(url: server.base + "/f.bin", dest: "out"), workspace: box.ws)
        #expect(r.downloads.first?.resumedFrom == 400_000)
        #expect(server.requests.map(\.range) == [nil, "bytes=400000-"])
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("out/f.bin")) == data)
    }
}
