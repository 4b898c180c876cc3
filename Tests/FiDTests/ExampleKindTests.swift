// ExampleKindTests: the `example` job kind: strict params, field-naming errors, the files it publishes.
import Foundation
import Jobs
import Testing

@testable import FiD

struct ExampleKindTests {
    /// A fresh workspace folder with the descriptor `json` in it; returns (workspace, descriptor path).
    func workspace(_ json: String) throws -> (String, String) {
        let ws = FileManager.default.temporaryDirectory.appendingPathComponent("fidq-example-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: ws, withIntermediateDirectories: true)
        let file = ws + "/world.json"
        try Data(json.utf8).write(to: URL(fileURLWithPath: file))
        return (ws, file)
    }

    func registry() -> KindRegistry {
        let r = KindRegistry()
        r.register(ExampleKind())
        return r
    }

    func run(_ json: String) throws -> (ws: String, result: JSONValue) {
        let (ws, file) = try workspace(json)
        var run = ForegroundRun(file: file, workspace: ws)
        run.outDir = ws + "/run"
        return (ws, try run.run(registry: registry()))
    }

    @Test func writesTheWorldIntoOut() throws {
        let (ws, result) = try run(#"{"kind": "example", "params": {"seed": 5, "train": 30, "dev": 6, "n_context": 4}}"#)
        defer { try? FileManager.default.removeItem(atPath: ws) }
        let out = ws + "/run/out"
        let expected = try ExampleWorld(config: ExampleWorldConfig(seed: 5, train: 30, dev: 6, nContext: 4)).files()
        for (name, data) in expected {
            let written = FileManager.default.contents(atPath: out + "/" + name)
            #expect(written == data, "out/\(name) differs from ExampleWorld.files()")
        }
        guard case .object(let o) = result, case .object(let summary)? = o["summary"] else {
            Issue.record("result is not an object with a summary: \(result)")
            return
        }
        #expect(summary["train"] == .number(30))
        #expect(summary["dev"] == .number(6))
        #expect(o["folder"] == .string(out))
        // The demo's model configs decode as the models will read them.
        let reader = try JSONSerialization.jsonObject(with: try #require(FileManager.default.contents(atPath: out + "/reader/config.json"))) as? [String: Any]
        #expect(reader?["d_model"] as? Int == 128)
        #expect(reader?["vocab_size"] as? Int == ExampleWorld.readerVocabularySize)
        let bert = try JSONSerialization.jsonObject(with: try #require(FileManager.default.contents(atPath: out + "/retriever/config.json"))) as? [String: Any]
        #expect(bert?["hidden_size"] as? Int == 64)
        #expect(bert?["vocab_size"] as? Int == ExampleWorld.retrieverVocabulary.count)
    }

    @Test func writesToAnOutputFolderInTheWorkspace() throws {
        let (ws, _) = try run(#"{"kind": "example", "params": {"output": "data/world", "train": 12, "dev": 3, "n_context": 3}}"#)
        defer { try? FileManager.default.removeItem(atPath: ws) }
        for name in ExampleWorld.fileNames {
            #expect(FileManager.default.fileExists(atPath: ws + "/data/world/" + name), "data/world/\(name) missing")
        }
        // Nothing half-written stays behind.
        let left = try FileManager.default.contentsOfDirectory(atPath: ws + "/data/world").filter { $0.hasPrefix(".") }
        #expect(left.isEmpty, "temporary files left: \(left)")
    }

    /// `output: "."` writes the world into the workspace beside its queue: the job writes named
    /// files, not the folder as a whole (it was refused as holding the queue).
    @Test func theWorkspaceItselfIsAnOutput() throws {
        let (ws, file) = try workspace(#"{"kind": "example", "params": {"output": ".", "train": 12, "dev": 3, "n_context": 3}}"#)
        defer { try? FileManager.default.removeItem(atPath: ws) }
        try Queue(root: ws + "/queue").createLayout()
        var run = ForegroundRun(file: file, workspace: ws)
        run.outDir = ws + "/run"
        _ = try run.run(registry: registry())
        for name in ExampleWorld.fileNames { #expect(FileManager.default.fileExists(atPath: ws + "/" + name), "\(name) missing") }
    }

    /// A folder inside `output` that links outside the workspace is refused before a file is
    /// written: the world's `reader/` files went wherever it pointed.
    @Test func aLinkInsideTheOutputFolderIsFollowedAndRefused() throws {
        let (ws, file) = try workspace(#"{"kind": "example", "params": {"output": "exo", "train": 12, "dev": 3, "n_context": 3}}"#)
        let victim = ws + "-victim"
        defer { for d in [ws, victim] { try? FileManager.default.removeItem(atPath: d) } }
        try FileManager.default.createDirectory(atPath: victim, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: ws + "/exo", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: ws + "/exo/reader", withDestinationPath: victim)
        var run = ForegroundRun(file: file, workspace: ws)
        run.outDir = ws + "/run"
        let e = #expect(throws: JobError.self) { try run.run(registry: registry()) }
        #expect(e?.field == "params.output" && e?.message.contains("outside the workspace") == true, "\(String(describing: e))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: victim).isEmpty)
    }

    @Test(arguments: [
        (#"{"seed": 1, "trian": 5}"#, "params.trian"),
        (#"{"train": 0}"#, "params.train"),
        (#"{"n_context": 0}"#, "params.n_context"),
        (#"{"decoys_min": 4, "decoys_max": 3}"#, "params.decoys_max"),
        (#"{"train": "many"}"#, "params.train"),
        (#"{"output": "/etc/world"}"#, "params.output"),
        // Each alone a valid Int: their sum overflowed (a trap in the worker, again at each takeover).
        (#"{"train": 4611686018427387904, "dev": 4611686018427387904}"#, "params.train"),
        (#"{"people": 1}"#, "params.people"),
        (#"{"n_context": 101}"#, "params.n_context"),
        (#"{"exercises": -3}"#, "params.exercises"),
        (#"{"people": 2, "train": 4, "dev": 2, "exercises": 10}"#, "params.people"),
        // Valid alone, but the world has fewer passages without the answer than n_context − 1.
        (#"{"train": 1, "dev": 1, "decoys_min": 0, "decoys_max": 0, "n_context": 10}"#, "params.n_context"),
        // The descriptor itself: a file, not a folder.
        (#"{"output": "world.json"}"#, "params.output"),
    ])
    func badParamsNameTheField(params: String, field: String) throws {
        let (ws, file) = try workspace(#"{"kind": "example", "params": "# + params + "}")
        defer { try? FileManager.default.removeItem(atPath: ws) }
        var run = ForegroundRun(file: file, workspace: ws)
        run.outDir = ws + "/run"
        do {
            _ = try run.run(registry: registry())
            Issue.record("params \(params) were accepted")
        } catch let e as JobError {
            #expect(e.field == field, "\(e.description)")
            #expect(e.permanence == .permanent)
        }
    }

    @Test func paramsRoundTrip() throws {
        let p = ExampleParams(output: "w", world: ExampleWorldConfig(seed: 9, train: 7, dev: 2, nContext: 3, decoysMin: 0, decoysMax: 2, people: 3, exercises: 5))
        let back = try JSONDecoder().decode(ExampleParams.self, from: JSONEncoder().encode(p))
        #expect(back == p)
    }
}
