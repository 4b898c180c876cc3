// TokenizeCommandTests: `fidq tokenize` end to end (the binary `swift build --build-tests` puts next to the tests).
import Foundation
import Testing

@testable import Tokenizers

@Suite struct TokenizeCommandTests {
    static var fidq: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("fidq")
    }

    /// Runs `fidq tokenize ARGS` with `input` on stdin; returns (status, stdout, stderr).
    func run(_ args: [String], _ input: [UInt8]) throws -> (Int32, String, String) {
        guard FileManager.default.isExecutableFile(atPath: TokenizeCommandTests.fidq.path) else {
            throw MissingAsset(path: TokenizeCommandTests.fidq.path + " (build it: swift build --build-tests)")
        }
        let p = Process()
        p.executableURL = TokenizeCommandTests.fidq
        p.arguments = ["tokenize"] + args
        let inPipe = Pipe(), outPipe = Pipe(), errPipe = Pipe()
        p.standardInput = inPipe
        p.standardOutput = outPipe
        p.standardError = errPipe
        try p.run()
        inPipe.fileHandleForWriting.write(Data(input))
        try inPipe.fileHandleForWriting.close()
        let out = outPipe.fileHandleForReading.readDataToEndOfFile()
        let err = errPipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
    }

    @Test func idsPiecesAndDecodeRoundTrip() throws {
        let t5 = try Assets.path("t5/tokenizer.json")
        let input = Array("Hello world\n\n   \nbad \u{FF} x\u{0}y\n".utf8) + [0xFF, 0x0A]
        let (status, out, _) = try run(["--tokenizer", t5], input)
        #expect(status == 0)
        let lines = out.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 6 && lines[0] == "8774 296 1" && lines[1] == "1" && lines[2] == "1")
        let (_, noSpecial, _) = try run(["--tokenizer", t5, "--no-special", "--max-length", "1"], Array("Hello world\n".utf8))
        #expect(noSpecial == "8774\n")
        let (_, pieces, _) = try run(["--tokenizer", t5, "--pieces", "--no-special"], Array("Hello world\n".utf8))
        #expect(pieces == "▁Hello ▁world\n")
        let (_, text, _) = try run(["--tokenizer", t5, "--decode"], Array("8774 296 1\n\n".utf8))
        #expect(text == "Hello world\n\n")
        let (_, kept, _) = try run(["--tokenizer", t5, "--decode", "--keep-special"], Array("8774 1\n".utf8))
        #expect(kept == "Hello</s>\n")
        // A generated answer starts with <pad>: Hugging Face keeps it as text when asked, sentencepiece
        // (a .model) never prints it, and neither leaves a space before the first word.
        let (_, padded, _) = try run(["--tokenizer", t5, "--decode", "--keep-special"], Array("0 8774 296 1\n".utf8))
        #expect(padded == "<pad> Hello world</s>\n")
        let hello = try Assets.spiece.get().encode("Hello world", addSpecialTokens: false).map(String.init)
        let line = (["0"] + hello + ["1"]).joined(separator: " ") + "\n"
        for flags in [["--decode"], ["--decode", "--keep-special"]] {
            let (_, spm, _) = try run(["--tokenizer", Assets.fixture("spiece.model")] + flags, Array(line.utf8))
            #expect(spm == "Hello world\n", "\(flags)")
        }
    }

    @Test func errorsAreMessagesNotCrashes() throws {
        let (status, _, err) = try run(["--tokenizer", "/nonexistent.json"], [])
        #expect(status != 0 && err.contains("/nonexistent.json"))
        let (s2, _, e2) = try run(["--tokenizer", try Assets.path("t5/tokenizer.json"), "--decode"], Array("12 x\n".utf8))
        #expect(s2 != 0 && e2.contains("line 1"))
        // A model's config.json given as the tokenizer is named as such (it said "field `model`:
        // expected an object, found nothing").
        let config = NSTemporaryDirectory() + "config-\(UInt32.random(in: 0...UInt32.max)).json"
        try Data(#"{"model_type": "t5", "d_model": 8}"#.utf8).write(to: URL(fileURLWithPath: config))
        let (s3, _, e3) = try run(["--tokenizer", config], Array("hi\n".utf8))
        #expect(s3 != 0 && e3.contains("a model's config.json; the tokenizer is the tokenizer.json"), "\(e3)")
    }
}
