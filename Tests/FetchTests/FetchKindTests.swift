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

        func worker(_ extra: [String] = [], log: URL? = nil) throws -> Process {
            let p = Process()
            p.executableURL = FetchKindTests.fidq
            p.arguments = ["worker", "--queue", queue.path, "--drain", "--lease", "2", "--poll", "0.2", "--backoff", "0.2"] + extra
            if let log {
                try Data().write(to: log)
                p.standardError = try FileHandle(forWritingTo: log)
            } else {
                p.standardError = FileHandle.nullDevice
            }
            p.standardOutput = FileHandle.nullDevice
            return p
        }
    }

    /// Runs `fidq args…` to the end (bounded) and returns its status and stderr.
    static func fidqRun(_ args: [String], timeout: Double = 60) throws -> (Int32, String) {
        let (p, err) = try fidqStart(args)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(waitExit(p, timeout), "fidq \(args.joined(separator: " ")) did not finish in \(timeout) s")
        return (p.isRunning ? -1 : p.terminationStatus, text)
    }

    /// Starts `fidq args…`, stdout discarded: the process and its stderr pipe.
    static func fidqStart(_ args: [String]) throws -> (Process, Pipe) {
        let p = Process()
        p.executableURL = fidq
        p.arguments = args
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        return (p, err)
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

        let first = try q.worker()
        try first.run()
        var second: Process?
        defer {
            for p in [first, second].compactMap({ $0 }) where p.isRunning {
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
            }
        }
        let work = q.box.ws.appendingPathComponent("data/.x.fetch")
        let deadline = Date().addingTimeInterval(30)
        while (partFile(in: work).flatMap(fileSize) ?? 0) < 700_000, Date() < deadline, first.isRunning {
            Thread.sleep(forTimeInterval: 0.02)
        }
        #expect(partFile(in: work).flatMap(fileSize) == 700_000, "the first attempt should have stored what the server sent")
        #expect(q.entries("running").count == 1)
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        #expect(first.terminationReason == .uncaughtSignal)

        // The server recovers; a fresh worker waits out the dead one's 2 s lease and takes the job over.
        server.set("/big.bin", .ok(data))
        let next = try q.worker()
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
        // A value of the wrong type: error.json names the field and the value (it said "field":
        // null and "a value of another type").
        try q.drop("type", #"{"kind": "fetch", "params": {"url": "\#(server.base)/f.bin", "dest": "data/h", "retries": "abc"}}"#)

        let worker = try q.worker()
        try worker.run()
        defer { if worker.isRunning { kill(worker.processIdentifier, SIGKILL); worker.waitUntilExit() } }
        #expect(Self.waitExit(worker, 60), "the worker did not drain the queue in 60 s")

        #expect(q.entries("failed") == ["bad-sum", "type", "typo"])
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
        let typeError = try q.json("failed", "type", "error.json")
        #expect(typeError["field"] as? String == "params.retries", "\(typeError)")
        #expect((typeError["message"] as? String)?.hasSuffix(#"found "abc""#) == true, "\(typeError)")
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: fidq.path), "needs the fidq binary (swift build)"))
    func takeOverFinishesPastAFrozenHolderWhoseLateResultLoses() throws {
        let q = QueueBox(box: try Sandbox())
        let data = testBytes(2_000_000)
        let sum = try sha256sum(data)
        // A slow server: the first answer sends 500 KB and then nothing, so A is caught mid-download.
        let server = try LoopbackServer(["/big.bin": .stall(data, after: 500_000)], lifetime: 180)
        defer { server.stop() }
        let id = "frozen"
        try q.drop(id, #"""
            {"kind": "fetch", "id": "\#(id)", "max_attempts": 3,
             "params": {"url": "\#(server.base)/big.bin", "dest": "data/x", "unpack": "off", "idle_timeout_s": 30}}
            """#)
        let logA = q.box.root.appendingPathComponent("a.log")
        let a = try q.worker(log: logA)
        try a.run()
        var b: Process?
        defer {
            for p in [a, b].compactMap({ $0 }) where p.isRunning {
                kill(p.processIdentifier, SIGCONT)
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
            }
        }
        let work = q.box.ws.appendingPathComponent("data/.x.fetch")
        let deadline = Date().addingTimeInterval(60)
        while (partFile(in: work).flatMap(fileSize) ?? 0) < 500_000, Date() < deadline, a.isRunning { Thread.sleep(forTimeInterval: 0.02) }
        try #require(partFile(in: work).flatMap(fileSize) == 500_000, "A should be mid-download")
        let aFolder = try #require(partFile(in: work)).deletingLastPathComponent()
        // Frozen past its 2 s lease, A still holds its attempt's lock and its claim looks expired.
        kill(a.processIdentifier, SIGSTOP)
        server.set("/big.bin", .ok(data))
        let started = Date()
        let next = try q.worker()
        b = next
        try next.run()
        // Before: B failed attempt after attempt on A's lock on the shared staging folder.
        #expect(Self.waitExit(next, 60), "B did not finish the job within a minute of starting")
        let took = Date().timeIntervalSince(started)
        print("FetchKindTests: take-over past a frozen holder finished in \(String(format: "%.1f", took)) s")
        #expect(next.terminationStatus == 0)
        #expect(q.entries("done") == [id], "done: \(q.entries("done")) failed: \(q.entries("failed"))")
        let result = try q.json("done", id, "result.json")
        #expect(result["attempt"] as? Int == 2)
        let downloads = (result["result"] as? [String: Any])?["downloads"] as? [[String: Any]]
        #expect(downloads?.first?["resumed_from"] as? Int == 0, "B shares nothing with the live A")
        #expect(downloads?.first?["sha256"] as? String == sum)
        #expect(fileSize(aFolder.appendingPathComponent("download.part")) == 500_000, "A's files untouched while it is frozen")
        let dest = q.box.ws.appendingPathComponent("data/x")
        #expect(try Data(contentsOf: dest.appendingPathComponent("big.bin")) == data)
        let resultBefore = try Data(contentsOf: q.dir("done").appendingPathComponent(id).appendingPathComponent("result.json"))
        let destBefore = q.box.snapshot(dest)

        // A thaws: it learns it lost the job and leaves B's dest and result alone.
        kill(a.processIdentifier, SIGCONT)
        #expect(Self.waitExit(a, 60), "A did not exit after it was continued")
        #expect(a.terminationReason == .exit && a.terminationStatus == 0, "A's exit: \(a.terminationStatus)")
        let aLog = (try? String(contentsOf: logA, encoding: .utf8)) ?? ""
        #expect(aLog.contains("lease lost"), "A's log: \(aLog.suffix(1500))")
        #expect(q.entries("done") == [id] && q.entries("running").isEmpty && q.entries("failed").isEmpty)
        #expect(try Data(contentsOf: q.dir("done").appendingPathComponent(id).appendingPathComponent("result.json")) == resultBefore)
        #expect(q.box.snapshot(dest) == destBefore)
        #expect(try Data(contentsOf: dest.appendingPathComponent("big.bin")) == data)
        // A found B's result published and dropped its own partial download with its folder.
        #expect(!FileManager.default.fileExists(atPath: work.path), "\(q.box.snapshot(work))")
    }

    /// A dest that holds something this fetch did not produce would fail the job at its start:
    /// submit refuses it (it said "valid"), and takes it with `replace`.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: fidq.path), "needs the fidq binary (swift build)"))
    func submitRefusesADestHoldingSomethingElse() throws {
        let q = QueueBox(box: try Sandbox())
        let dest = q.box.ws.appendingPathComponent("data/x")
        try FileManager.default.createDirectory(at: dest, withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: dest.appendingPathComponent("notes.txt"))
        let source = q.box.ws.appendingPathComponent("f.bin")
        try Data("new".utf8).write(to: source)
        let job = try q.descriptor("fx", #"{"kind": "fetch", "params": {"url": "file://\#(source.path)", "dest": "data/x"}}"#)
        let (refused, text) = try Self.fidqRun(["submit", "--dry-run", "--queue", q.queue.path, job])
        #expect(refused != 0 && text.contains("params.dest") && text.contains("dest already exists and was not produced by this fetch"), "\(text)")
        let replacing = try q.descriptor("fy", #"{"kind": "fetch", "params": {"url": "file://\#(source.path)", "dest": "data/x", "replace": true}}"#)
        let (taken, takenText) = try Self.fidqRun(["submit", "--dry-run", "--queue", q.queue.path, replacing])
        #expect(taken == 0, "\(takenText)")
    }

    /// A dest this fetch published passes the check, even with `passages` named `job:ID/…`
    /// (the marker records the resolved path): a second identical fetch is submitted and is
    /// "already present" (it was refused, and a retry or take-over of the first failed for good).
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: fidq.path), "needs the fidq binary (swift build)"))
    func aDestThisFetchPublishedPassesTheCheck() throws {
        let q = QueueBox(box: try Sandbox())
        let server = try PresetsTests.mirror(q.box)
        defer { server.stop() }
        try FileManager.default.createDirectory(at: q.box.ws.appendingPathComponent("in"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: FiDFixtures.passages, to: q.box.ws.appendingPathComponent("in/psgs.tsv"))
        let concat = try q.descriptor("c", #"{"kind": "concat", "params": {"inputs": ["in/psgs.tsv"], "dest": "tmp/psgs_w100.tsv"}}"#)
        let fetch = #"{"kind": "fetch", "after": ["c"], "params": {"source": "nq_data", "mirror": "\#(server.base)", "passages": "job:c/psgs_w100.tsv", "dest": "nq"}}"#
        let first = try q.descriptor("n", fetch)
        var (status, text) = try Self.fidqRun(["submit", "--queue", q.queue.path, concat, first])
        #expect(status == 0, "\(text)")
        var worker = try q.worker()
        try worker.run()
        #expect(Self.waitExit(worker, 90), "the worker did not drain the queue in 90 s")
        #expect(q.entries("done") == ["c", "n"], "failed: \(q.entries("failed"))")
        (status, text) = try Self.fidqRun(["submit", "--queue", q.queue.path, try q.descriptor("n2", fetch)])
        #expect(status == 0, "\(text)")
        worker = try q.worker()
        try worker.run()
        defer { if worker.isRunning { kill(worker.processIdentifier, SIGKILL); worker.waitUntilExit() } }
        #expect(Self.waitExit(worker, 60), "the worker did not drain the queue in 60 s")
        #expect(q.entries("done") == ["c", "n", "n2"], "failed: \(q.entries("failed"))")
        let result = try q.json("done", "n2", "result.json")["result"] as? [String: Any]
        #expect(result?["already_present"] as? Bool == true, "\(String(describing: result))")
        // The same queue reached through a symlink: the marker holds the real path.
        let link = q.box.root.appendingPathComponent("ws-link")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: q.box.ws)
        (status, text) = try Self.fidqRun(["submit", "--dry-run", "--queue", link.appendingPathComponent("queue").path, try q.descriptor("n3", fetch)])
        #expect(status == 0, "\(text)")
        // The shared storage mounted at another path (another machine's worker): the marker
        // records `job:c/…` as written, so a retry there finds the result, at submit and run.
        let moved = q.box.root.appendingPathComponent("elsewhere")
        try FileManager.default.moveItem(at: q.box.ws, to: moved)
        defer { try? FileManager.default.moveItem(at: moved, to: q.box.ws) }
        let queue = moved.appendingPathComponent("queue")
        (status, text) = try Self.fidqRun(["submit", "--queue", queue.path, try q.descriptor("n4", fetch)])
        #expect(status == 0, "\(text)")
        worker = Process()
        worker.executableURL = Self.fidq
        worker.arguments = ["worker", "--queue", queue.path, "--drain", "--poll", "0.2"]
        worker.standardError = FileHandle.nullDevice
        try worker.run()
        #expect(Self.waitExit(worker, 60), "the worker did not drain the moved queue in 60 s")
        let failed = (try? FileManager.default.contentsOfDirectory(atPath: queue.appendingPathComponent("failed").path)) ?? []
        let record = try? Data(contentsOf: queue.appendingPathComponent("done/n4/result.json"))
        let again = record.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }?["result"] as? [String: Any]
        #expect(again?["already_present"] as? Bool == true, "failed: \(failed)")
    }

    /// A relative `file:` URL names a file in the workspace, as submit checks it, whatever folder
    /// the worker was started in (it was opened relative to the worker's working folder).
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: fidq.path), "needs the fidq binary (swift build)"))
    func aRelativeFileURLIsReadFromTheWorkspace() throws {
        let q = QueueBox(box: try Sandbox())
        try FileManager.default.createDirectory(at: q.box.ws.appendingPathComponent("src"), withIntermediateDirectories: true)
        let data = testBytes(5000)
        try data.write(to: q.box.ws.appendingPathComponent("src/x.bin"))
        let job = #"{"kind": "fetch", "params": {"url": "file:src/x.bin", "dest": "got", "unpack": "off"}}"#
        let (status, text) = try Self.fidqRun(["submit", "--queue", q.queue.path, try q.descriptor("rel", job)])
        #expect(status == 0, "\(text)")
        let worker = try q.worker()
        worker.currentDirectoryURL = URL(fileURLWithPath: "/")
        try worker.run()
        defer { if worker.isRunning { kill(worker.processIdentifier, SIGKILL); worker.waitUntilExit() } }
        #expect(Self.waitExit(worker, 60), "the worker did not drain the queue in 60 s")
        #expect(q.entries("done") == ["rel"], "failed: \(q.entries("failed"))")
        #expect(try Data(contentsOf: q.box.ws.appendingPathComponent("got/x.bin")) == data)
    }

    /// A negative number on `fidq fetch`'s command line is read as the value and refused by its
    /// range, naming it (ArgumentParser took "-1" for an option: "Missing value for '--retries'").
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: fidq.path), "needs the fidq binary (swift build)"),
          arguments: ["--retries", "--strip-components", "--max-files", "--retry-backoff"])
    func aNegativeNumberIsRefusedByItsRange(flag: String) throws {
        let box = try Sandbox()
        let (status, text) = try Self.fidqRun(["fetch", "--url", "file:///nothing", "--dest", box.ws.appendingPathComponent("d").path, flag, "-1"])
        #expect(status != 0 && !text.contains("Missing value") && text.contains("found -1"), "\(status) \(text)")
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: fidq.path), "needs the fidq binary (swift build)"))
    func urlDerivedNamesStayInsideTheWorkspace() throws {
        let q = QueueBox(box: try Sandbox())
        let data = testBytes(20_000)
        let gz = q.box.root.appendingPathComponent("body.gz")
        try ArchiveBuilder.compress(data, to: gz, filter: .gzip)
        // Foundation decodes %2F in the last path component: before, this name climbed out of the
        // staging folder, unpacked (unpack off) or decompressed (.gz).
        let target = "fidq-pwned-\(UUID().uuidString)"
        let climb = "/f/" + String(repeating: "..%2F", count: 16) + "tmp%2F" + target
        let server = try LoopbackServer([climb: .ok(data), climb + ".gz": .ok(try Data(contentsOf: gz))], lifetime: 120)
        defer { server.stop() }
        try q.drop("plain", #"{"kind": "fetch", "params": {"url": "\#(server.base)\#(climb)", "dest": "data/p", "unpack": "off"}}"#)
        try q.drop("gz", #"{"kind": "fetch", "params": {"url": "\#(server.base)\#(climb).gz", "dest": "data/g"}}"#)
        let outside = q.box.snapshot().filter { !$0.hasPrefix("ws") }
        let worker = try q.worker()
        try worker.run()
        defer { if worker.isRunning { kill(worker.processIdentifier, SIGKILL); worker.waitUntilExit() } }
        #expect(Self.waitExit(worker, 60), "the worker did not drain the queue in 60 s")
        #expect(q.entries("done") == ["gz", "plain"], "failed: \(q.entries("failed"))")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/" + target))
        #expect(!FileManager.default.fileExists(atPath: "/tmp/" + target + ".gz"))
        #expect(q.box.snapshot().filter { !$0.hasPrefix("ws") } == outside, "nothing appeared outside the workspace")
        let safe = String(repeating: ".._", count: 16) + "tmp_" + target
        #expect(try Data(contentsOf: q.box.ws.appendingPathComponent("data/p/" + safe)) == data)
        #expect(try Data(contentsOf: q.box.ws.appendingPathComponent("data/g/" + safe)) == data)
        #expect(try FileManager.default.contentsOfDirectory(atPath: q.box.ws.appendingPathComponent("data").path).sorted() == ["g", "p"])
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: fidq.path), "needs the fidq binary (swift build)"))
    func queuedReadsAreConfinedLikeWrites() throws {
        let q = QueueBox(box: try Sandbox())
        let secret = try q.box.source("secret.txt", Data("another user's file\n".utf8))
        try FileManager.default.copyItem(at: FiDFixtures.passages, to: q.box.src.appendingPathComponent("psgs.tsv"))
        try Data("mine\n".utf8).write(to: q.box.ws.appendingPathComponent("inside.txt"))
        try FileManager.default.createSymbolicLink(atPath: q.box.ws.appendingPathComponent("link.txt").path, withDestinationPath: secret.path)
        func job(_ id: String, _ params: String) throws {
            try q.drop(id, #"{"kind": "fetch", "params": {\#(params)}}"#)
        }
        try job("file-outside", #""url": "\#(secret.absoluteString)", "dest": "d1""#)
        try job("file-link", #""url": "file://\#(q.box.ws.path)/link.txt", "dest": "d2""#)
        try job("passages-outside", #""source": "nq_data", "passages": "\#(q.box.src.path)/psgs.tsv", "mirror": "http://127.0.0.1:9", "dest": "d3""#)
        try job("file-inside", #""url": "file://\#(q.box.ws.path)/inside.txt", "dest": "d4""#)
        try job("mirror-outside", #""source": "nq_reader_base", "mirror": "file://\#(q.box.src.path)", "dest": "d7""#)
        let worker = try q.worker()
        try worker.run()
        defer { if worker.isRunning { kill(worker.processIdentifier, SIGKILL); worker.waitUntilExit() } }
        #expect(Self.waitExit(worker, 60), "the worker did not drain the queue in 60 s")
        #expect(q.entries("done") == ["file-inside"])
        #expect(q.entries("failed") == ["file-link", "file-outside", "mirror-outside", "passages-outside"])
        for (id, field) in [("file-outside", "url"), ("file-link", "url"), ("passages-outside", "passages"), ("mirror-outside", "mirror")] {
            let e = try q.json("failed", id, "error.json")
            let text = "\(e["message"] ?? "") \(e["field"] ?? "") \(e["hint"] ?? "")"
            #expect(e["permanence"] as? String == "permanent", "\(id): \(e)")
            // The registry refuses it before the handler runs, naming `params.<field>`.
            #expect(text.contains("params.\(field)") && text.contains("outside the workspace") && text.contains("--allow-root"), "\(id): \(text)")
        }
        for d in ["d1", "d2", "d3", "d7"] { #expect(!FileManager.default.fileExists(atPath: q.box.ws.appendingPathComponent(d).path)) }
        // The same read is fine once the worker is told the folder is allowed.
        try job("file-allowed", #""url": "\#(secret.absoluteString)", "dest": "d5""#)
        let allowed = try q.worker(["--allow-root", q.box.src.path])
        try allowed.run()
        defer { if allowed.isRunning { kill(allowed.processIdentifier, SIGKILL); allowed.waitUntilExit() } }
        #expect(Self.waitExit(allowed, 60))
        #expect(q.entries("done") == ["file-allowed", "file-inside"])
        #expect(try Data(contentsOf: q.box.ws.appendingPathComponent("d5/secret.txt")) == Data(contentsOf: secret))
        // `fidq fetch` in the foreground still reads anywhere the user can.
        let (status, err) = try Self.fidqRun(["fetch", "--url", secret.absoluteString, "--dest", "d6", "--workspace", q.box.ws.path])
        #expect(status == 0, "\(err)")
    }
}
