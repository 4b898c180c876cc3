// FetchKindTests: `fetch` as a queued job through the built fidq: a killed worker's retry resumes, bad jobs fail once.
import Foundation
import Testing

@testable import Fetch

@Suite(.serialized) struct FetchKindTests {
    static let fidq = FetcherTests.fidq

    /// A queue in the sandbox's workspace (`ws/queue`), so relative dests land in `ws/`.
    struct QueueBox {
        let box: Sandbox
        var queue: URL { box.ws.appendingPathComponent("queue") }
        func dir(_ state: String) -> URL { queue.appendingPathComponent(state) }
        func entries(_ state: String) -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: dir(state).path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        }
        func json(_ state: String, _ id: String, _ file: String) throws -> [String: Any] {
            let data = try Data(contentsOf: dir(state).appendingPathComponent(id).appendingPathComponent(file))
            return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        }

        /// Writes a descriptor to `src/<id>.json` and returns its path (for `fidq submit`).
        func descriptor(_ id: String, _ json: String) throws -> String {
            try box.source(id + ".json", Data(json.utf8)).path
        }

        /// Drops a descriptor straight into pending/ (temp name + rename), bypassing submit's checks.
        func drop(_ id: String, _ json: String) throws {
            try FileManager.default.createDirectory(at: dir("pending"), withIntermediateDirectories: true)
            let tmp = dir("pending").appendingPathComponent(".\(id).tmp")
            try Data(json.utf8).write(to: tmp)
            try FileManager.default.moveItem(at: tmp, to: dir("pending").appendingPathComponent(id + ".json"))
        }

        func worker() -> Process {
            let p = Process()
            p.executableURL = FetchKindTests.fidq
            p.arguments = ["worker", "--queue", queue.path, "--drain", "--lease", "2", "--poll", "0.2", "--backoff", "0.2"]
            p.standardError = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            return p
        }
    }

    /// Runs `fidq args…` to the end (bounded) and returns its status and stderr.
    static func fidqRun(_ args: [String], timeout: Double = 60) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = fidq
        p.arguments = args
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(waitExit(p, timeout), "fidq \(args.joined(separator: " ")) did not finish in \(timeout) s")
        return (p.isRunning ? -1 : p.terminationStatus, text)
    }

    /// Waits up to `timeout` seconds for `p` to exit; false if it is still running.
    static func waitExit(_ p: Process, _ timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        return !p.isRunning
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: fidq.path), "needs the fidq binary (swift build)"))
    func workerKilledMidDownloadTheRetriedAttemptResumes() throws {
        let q = QueueBox(box: try Sandbox())
        let data = testBytes(3_000_000)
        let sum = try sha256sum(data)
        // The first answer sends 700 KB and then holds the connection open: a download caught midway.
        let server = try LoopbackServer(["/big.bin": .stall(data, after: 700_000)], lifetime: 120)
        defer { server.stop() }
        let id = "fetch-big"
        let file = try q.descriptor(id, #"""
            {"kind": "fetch", "id": "\#(id)", "max_attempts": 3,
             "params": {"url": "\#(server.base)/big.bin", "dest": "data/x", "sha256": "\#(sum)", "unpack": "off"}}
            """#)
        let (submitted, submitErr) = try Self.fidqRun(["submit", "--queue", q.queue.path, file])
        #expect(submitted == 0, "\(submitErr)")
        #expect(q.entries("pending") == [id + ".json"])

        let first = q.worker()
        try first.run()
        var second: Process?
        defer {
            for p in [first, second].compactMap({ $0 }) where p.isRunning {
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
            }
        }
        let part = q.box.ws.appendingPathComponent("data/.x.fetch/download.part")
        let deadline = Date().addingTimeInterval(30)
        while (fileSize(part) ?? 0) < 700_000, Date() < deadline, first.isRunning { Thread.sleep(forTimeInterval: 0.02) }
        #expect(fileSize(part) == 700_000, "the first attempt should have stored what the server sent")
        #expect(q.entries("running").count == 1)
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        #expect(first.terminationReason == .uncaughtSignal)

        // The server recovers; a fresh worker waits out the dead one's 2 s lease and takes the job over.
        server.set("/big.bin", .ok(data))
        let next = q.worker()
        second = next
        try next.run()
        #expect(Self.waitExit(next, 60), "the second worker did not drain the queue in 60 s")
        #expect(next.terminationStatus == 0)

        #expect(q.entries("done") == [id])
        #expect(q.entries("running").isEmpty && q.entries("pending").isEmpty && q.entries("failed").isEmpty)
        let result = try q.json("done", id, "result.json")
        #expect(result["attempt"] as? Int == 2)
        let downloads = (result["result"] as? [String: Any])?["downloads"] as? [[String: Any]]
        let resumedFrom = downloads?.first?["resumed_from"] as? Int ?? 0
        #expect(resumedFrom == 700_000)
        #expect(downloads?.first?["sha256"] as? String == sum)
        let ranges = server.requests.filter { $0.path == "/big.bin" }.map(\.range)
        #expect(ranges.first == .some(nil), "the first attempt asks for the whole file")
        #expect(ranges.contains("bytes=700000-"), "the retry asks only for the rest: \(ranges)")
        #expect(ranges.allSatisfy { $0 == nil || $0 == "bytes=700000-" }, "\(ranges)")
        #expect(try Data(contentsOf: q.box.ws.appendingPathComponent("data/x/big.bin")) == data)
        #expect(!FileManager.default.fileExists(atPath: q.box.ws.appendingPathComponent("data/.x.fetch").path))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: fidq.path), "needs the fidq binary (swift build)"))
    func wrongChecksumAndMisspeltParamFailPermanently() throws {
        let q = QueueBox(box: try Sandbox())
        let data = testBytes(50_000)
        let server = try LoopbackServer(["/f.bin": .ok(data)], lifetime: 120)
        defer { server.stop() }
        let wrong = String(repeating: "0", count: 64)
        let bad = try q.descriptor("bad-sum", #"""
            {"kind": "fetch", "max_attempts": 3,
             "params": {"url": "\#(server.base)/f.bin", "dest": "data/f", "sha256": "\#(wrong)"}}
            """#)
        let (submitted, submitErr) = try Self.fidqRun(["submit", "--queue", q.queue.path, bad])
        #expect(submitted == 0, "\(submitErr)")

        // A misspelt field is refused at submit with a hint, and nothing is queued...
        let typo = #"""
            {"kind": "fetch", "max_attempts": 3,
             "params": {"url": "\#(server.base)/f.bin", "dest": "data/g", "strip_component": 1}}
            """#
        let (refused, refusal) = try Self.fidqRun(["submit", "--queue", q.queue.path, try q.descriptor("typo", typo)])
        #expect(refused == 1)
        #expect(refusal.contains("strip_component") && refusal.contains("did you mean") && refusal.contains("strip_components"), "\(refusal)")
        #expect(q.entries("pending") == ["bad-sum.json"])
        // ...and, dropped into pending/ behind submit's back, fails at once naming the field.
        try q.drop("typo", typo)

        let worker = q.worker()
        try worker.run()
        defer { if worker.isRunning { kill(worker.processIdentifier, SIGKILL); worker.waitUntilExit() } }
        #expect(Self.waitExit(worker, 60), "the worker did not drain the queue in 60 s")

        #expect(q.entries("failed") == ["bad-sum", "typo"])
        #expect(q.entries("done").isEmpty && q.entries("pending").isEmpty && q.entries("running").isEmpty)
        let sumError = try q.json("failed", "bad-sum", "error.json")
        #expect(sumError["permanence"] as? String == "permanent")
        #expect((sumError["attempts"] as? [Any])?.count == 1, "a wrong checksum is not retried: \(sumError)")
        let message = (sumError["message"] as? String ?? "") + " " + (sumError["field"] as? String ?? "")
        #expect(message.contains("sha256") || message.contains("checksum"), "\(sumError)")
        #expect(server.requests.filter { $0.path == "/f.bin" }.count == 1, "one download, no retry")
        #expect(!FileManager.default.fileExists(atPath: q.box.ws.appendingPathComponent("data/f").path))

        let typoError = try q.json("failed", "typo", "error.json")
        #expect(typoError["permanence"] as? String == "permanent")
        let named = (typoError["message"] as? String ?? "") + " " + (typoError["field"] as? String ?? "")
        #expect(named.contains("strip_component"), "\(typoError)")
    }
}
