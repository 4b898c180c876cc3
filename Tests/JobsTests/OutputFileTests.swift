// OutputFileTests: streamed outputs: temp name with the token, commit by rename, nothing left on failure.
import Foundation
import Testing
@testable import Jobs
import JobsTesting

@Suite struct OutputFileTests {
    @Test func streamsToATemporaryNameAndRenamesOnCommit() throws {
        let f = try QueueFixture()
        let c = try makeContext(f, token: "a.1")
        let file = try c.openOutput("emb/shard-0.npy")
        #expect(file.temporaryPath == c.out + "/emb/.shard-0.npy.a.1.part")
        for i in 0..<100 { try file.write(Data(repeating: UInt8(i), count: 1000)) }
        try [Float](repeating: 1.5, count: 10).withUnsafeBytes { try file.write($0) }
        #expect(!FileManager.default.fileExists(atPath: file.path), "nothing is visible before the commit")
        #expect(file.count == 100_040)
        try file.commit()
        let data = try #require(FileManager.default.contents(atPath: c.out + "/emb/shard-0.npy"))
        #expect(data.count == 100_040 && data[999] == 0 && data[1000] == 1 && data[99_999] == 99)
        #expect(entries(c.out + "/emb") == ["shard-0.npy"])
        // Rewriting replaces the old version whole.
        try c.writeOutput("emb/shard-0.npy") { try $0.write(Data("v2".utf8)) }
        #expect(f.read(c.out + "/emb/shard-0.npy") == "v2")
    }

    @Test func aFailedOrAbandonedWriteLeavesNothing() throws {
        let f = try QueueFixture()
        let c = try makeContext(f, token: "a.1")
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try c.writeOutput("big.bin") { file in
                try file.write(Data(repeating: 7, count: 4096))
                throw Boom()
            }
        }
        do {
            let file = try c.openOutput("abandoned.bin")
            try file.write(Data("x".utf8))
        }  // released without a commit
        #expect(entries(c.out).isEmpty, "\(entries(c.out))")
        for bad in ["", "/etc/passwd", "../escape", "a/../b", "a//b", "./x"] {
            #expect(throws: JobError.self, "\(bad)") { _ = try c.openOutput(bad) }
        }
    }

    @Test func neverFollowsOrSharesATemporaryName() throws {
        let f = try QueueFixture()
        let c = try makeContext(f, token: "a.1")
        // Something already at our temporary name (a planted symlink): O_EXCL|O_NOFOLLOW refuses it.
        try FileManager.default.createSymbolicLink(atPath: c.out + "/.x.bin.a.1.part", withDestinationPath: f.workspace + "/target")
        #expect(throws: FSError.self) { _ = try c.openOutput("x.bin") }
        #expect(!FileManager.default.fileExists(atPath: f.workspace + "/target"))
    }

    @Test func aTakenOverJobCannotCommit() throws {
        let f = try QueueFixture()
        let c = try makeContext(f, token: "a.1")
        let file = try c.openOutput("big.bin")
        try file.write(Data("zombie".utf8))
        let taker = f.queueDir + "/running/train@b.2"
        try FileManager.default.moveItem(atPath: c.folder, toPath: taker)
        #expect { try file.commit() } throws: { ($0 as? CancellationError)?.reason == .leaseLost }
        #expect(!FileManager.default.fileExists(atPath: c.folder))
        #expect(!FileManager.default.fileExists(atPath: taker + "/out/big.bin"), "the zombie published nothing into the taker's out/")
    }

    @Test func publishMakesSubfoldersOneLevelAtATimeUnderOut() throws {
        let f = try QueueFixture()
        let c = try makeContext(f, token: "a.1")
        try c.publish("a/b/c.txt", Data("in memory".utf8))
        #expect(f.read(c.out + "/a/b/c.txt") == "in memory" && entries(c.out + "/a/b") == ["c.txt"])
        #expect(throws: JobError.self) { try c.publish("../escape.txt", Data()) }
        // out/ itself is never made: without it (a broken claim folder) publish fails, making nothing.
        try FileManager.default.removeItem(atPath: c.out)
        #expect(throws: FSError.self) { try c.publish("x/y.txt", Data()) }
        #expect(entries(c.folder).isEmpty)
    }

    @Test func aNewAttemptSweepsPartialFilesOfKilledOnes() throws {
        let f = try QueueFixture()
        let out = f.workspace + "/j.run/out"
        try FileManager.default.createDirectory(atPath: out + "/emb", withIntermediateDirectories: true)
        // publish's temporary names (`.<name>.<token>.<n>.tmp`) too: they went to done/ half-written.
        for name in ["emb/.shard.npy.dead.1.part", ".big.bin.dead.1.part", "emb/kept.npy", ".hidden", ".train.json.dead.3.tmp", "emb/.block-0.f32.dead.1.tmp"] {
            try Data("x".utf8).write(to: URL(fileURLWithPath: out + "/" + name))
        }
        try Data(#"{"kind": "test.train", "params": {"steps": 1}}"#.utf8).write(to: URL(fileURLWithPath: f.workspace + "/j.json"))
        _ = try ForegroundRun(file: f.workspace + "/j.json", workspace: f.workspace).run(registry: trainRegistry())
        #expect(entries(out + "/emb") == ["kept.npy"])
        #expect(entries(out) == [".hidden", "checkpoint", "emb", "steps.log"])
    }
}
