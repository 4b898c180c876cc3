// TextKindsTests: `count` counts like wc; `concat` joins into a destination inside the workspace.
import Foundation
import Testing
@testable import Jobs

@Suite struct TextKindsTests {
    @Test func countAndConcatRunThroughForegroundRun() throws {
        let f = try QueueFixture()
        try Data("one two\nthree\n\n four  \n".utf8).write(to: URL(fileURLWithPath: f.workspace + "/a.txt"))
        try Data(#"{"kind": "count", "params": {"inputs": ["a.txt"]}}"#.utf8).write(to: URL(fileURLWithPath: f.workspace + "/c.json"))
        let value = try ForegroundRun(file: f.workspace + "/c.json", workspace: f.workspace).run(registry: testRegistry())
        guard case .object(let o) = value else { Issue.record("not an object: \(value)"); return }
        #expect(o["lines"] == .number(4) && o["words"] == .number(4) && o["bytes"] == .number(23))
        #expect(FileManager.default.fileExists(atPath: f.workspace + "/c.run/out/counts.json"))
        #expect(f.read(f.workspace + "/c.run/log.txt")?.contains("status: done") == true)

        try Data(#"{"kind": "concat", "params": {"inputs": ["a.txt", "a.txt"], "dest": "r/both.txt"}}"#.utf8)
            .write(to: URL(fileURLWithPath: f.workspace + "/j.json"))
        var run = ForegroundRun(file: f.workspace + "/j.json", workspace: f.workspace)
        run.outDir = f.workspace + "/jout"
        _ = try run.run(registry: testRegistry())
        #expect(f.read(f.workspace + "/r/both.txt")?.count == 46)
        #expect(f.read(f.workspace + "/jout/out/both.txt")?.count == 46)
    }

    @Test func foregroundRunWritesErrorJSONOnFailure() throws {
        let f = try QueueFixture()
        try Data(#"{"kind": "test.record", "params": {"fail": "permanent"}}"#.utf8).write(to: URL(fileURLWithPath: f.workspace + "/bad.json"))
        #expect(throws: JobError.self) { try ForegroundRun(file: f.workspace + "/bad.json", workspace: f.workspace).run(registry: testRegistry()) }
        #expect(f.json(f.workspace + "/bad.run/error.json")?["field"] as? String == "params.fail")
    }
}
