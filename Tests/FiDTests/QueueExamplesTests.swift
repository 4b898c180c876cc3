// QueueExamplesTests: every descriptor in queue/examples/ passes `fidq submit --dry-run`.
import Foundation
import Testing

@testable import FiD
import Jobs

struct QueueExamplesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let fidq: String = {
        let argv0 = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let candidates = [argv0.deletingLastPathComponent().appendingPathComponent("fidq").path,
                          root.appendingPathComponent(".build/debug/fidq").path]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[1]
    }()

    /// The example folders: each is one batch (its `after` references point inside it).
    static let folders: [String] = {
        let dir = root.appendingPathComponent("queue/examples").path
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { name in
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: dir + "/" + name, isDirectory: &isDir) && isDir.boolValue
        }.sorted().map { "queue/examples/" + $0 }
    }()

    @Test func theExampleFoldersAreFound() {
        #expect(Self.folders.contains("queue/examples/demo") && Self.folders.count >= 3, "\(Self.folders)")
    }

    @Test(arguments: folders)
    func everyDescriptorPassesSubmitDryRun(folder: String) throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.fidq), "build first: swift build (looked for \(Self.fidq))")
        let dir = Self.root.appendingPathComponent(folder)
        let ws = FileManager.default.temporaryDirectory.appendingPathComponent("fidq-examples-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: ws, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: ws) }
        // What each folder's README tells the user to provide before submitting it.
        let fm = FileManager.default
        try fm.createDirectory(at: ws.appendingPathComponent("inputs"), withIntermediateDirectories: true)
        try Data("# protocol\n".utf8).write(to: ws.appendingPathComponent("inputs/queue-protocol.md"))  // basics/
        try fm.createDirectory(at: ws.appendingPathComponent("models"), withIntermediateDirectories: true)  // retrieval/
        // A copy, not a link: a link out of the workspace is refused, as it should be.
        try fm.copyItem(atPath: URL(fileURLWithPath: try ExampleWorldTests.asset("minilm/vocab.txt")).deletingLastPathComponent().path,
                        toPath: ws.appendingPathComponent("models/minilm").path)
        let world = try ExampleWorld(config: ExampleWorldConfig(seed: 1, train: 8, dev: 4, nContext: 3))
        try world.write(to: ws.appendingPathComponent("world").path)
        try fm.createDirectory(at: ws.appendingPathComponent("data"), withIntermediateDirectories: true)
        try fm.copyItem(atPath: ws.appendingPathComponent("world/passages.tsv").path, toPath: ws.appendingPathComponent("data/psgs.tsv").path)
        try fm.copyItem(atPath: ws.appendingPathComponent("world/dev.json").path, toPath: ws.appendingPathComponent("data/questions.json").path)
        var files: [String] = []
        // score-shards/: the two fetch jobs its README has the user write.
        if folder.hasSuffix("/score-shards") {
            // Its nq-data fetch makes data/: a data/ already there (the other folders' inputs)
            // would fail that fetch, and submit refuses it.
            try fm.removeItem(at: ws.appendingPathComponent("data"))
            for (id, source, dest) in [("nq-reader-base", "nq_reader_base", "models/nq_reader_base"), ("nq-data", "nq_data", "data")] {
                let path = ws.appendingPathComponent(id + ".json")
                try Data(#"{"kind": "fetch", "params": {"source": "\#(source)", "dest": "\#(dest)"}}"#.utf8).write(to: path)
                files.append(path.path)
            }
        }
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() {
            let src = dir.appendingPathComponent(name)
            if name.hasSuffix(".json") && name != "README.json" {
                files.append(src.path)
            } else if name.hasSuffix(".json.in") {
                // Templates (`fetch-docs.json.in`): filled as ops/demo fills them, with a real file.
                let archive = ws.appendingPathComponent("archive.tar.gz")
                try Data("x".utf8).write(to: archive)
                let text = try String(contentsOf: src, encoding: .utf8)
                    .replacingOccurrences(of: "@ARCHIVE@", with: archive.path)
                    .replacingOccurrences(of: "@SHA256@", with: String(repeating: "0", count: 64))
                let filled = ws.appendingPathComponent(String(name.dropLast(3)))
                try Data(text.utf8).write(to: filled)
                files.append(filled.path)
            }
        }
        #expect(!files.isEmpty, "\(folder) holds no descriptors")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.fidq)
        // The first file as an argument, the rest listed on standard input (`--files-from -`, for
        // batches too large for the argument parser): both reach the one submit.
        p.arguments = ["submit", "--dry-run", "--queue", ws.appendingPathComponent("queue").path, "--files-from", "-", files[0]]
        let err = Pipe(), out = Pipe(), input = Pipe()
        p.standardError = err
        p.standardOutput = out
        p.standardInput = input
        try p.run()
        input.fileHandleForWriting.write(Data(files.dropFirst().map { $0 + "\n" }.joined().utf8))
        try input.fileHandleForWriting.close()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(folder): \(String(decoding: stderr, as: UTF8.self))")
        let valid = String(decoding: stdout, as: UTF8.self).split(separator: "\n").filter { $0.hasPrefix("valid ") }
        #expect(valid.count == files.count, "\(folder): \(valid.count) of \(files.count) valid")
        #expect(files.contains { $0.hasPrefix(dir.path) }, "\(folder): none of its own files submitted")
        // A dry run drops nothing.
        let pending = (try? FileManager.default.contentsOfDirectory(atPath: ws.appendingPathComponent("queue/pending").path)) ?? []
        #expect(pending.isEmpty)
    }

    /// kinds/'s reader is the demo's `reader-exercises` recipe, which the demo's CI loop proves
    /// learns (from scratch on the world's own questions a reader this small memorises them and stays
    /// near chance on dev; at lr 1e-3 and above it never learns to match the question's person).
    @Test func theKindsReaderKeepsTheDemosProvenRecipe() throws {
        func params(_ path: String) throws -> [String: JSONValue] {
            let url = Self.root.appendingPathComponent("queue/examples/" + path)
            guard case .object(let job) = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: url)),
                  case .object(let params)? = job["params"] else { throw CocoaError(.fileReadCorruptFile) }
            return params
        }
        let kinds = try params("kinds/train_reader.json"), demo = try params("demo/reader-exercises.json")
        for key in ["n_context", "text_maxlength", "answer_maxlength", "per_gpu_batch_size", "lr", "optim", "scheduler",
                    "warmup_steps", "total_steps", "weight_decay", "seed", "eval_freq", "save_freq"] {
            #expect(kinds[key] != nil && kinds[key] == demo[key], "\(key): kinds \(String(describing: kinds[key])), demo \(String(describing: demo[key]))")
        }
        // Both worlds write the exercises that recipe reads, as many as it reads in one pass.
        #expect(try params("kinds/example.json")["exercises"] == .number(64000))
        #expect(try params("demo/world.json")["exercises"] == .number(64000))
    }
}
