// ForegroundRunTests: the reproduce line's words read back through a real shell as written.
import Foundation
import Testing
@testable import Jobs

@Suite struct ForegroundRunTests {
    /// Each word, quoted, comes back from /bin/sh unchanged: spaces, quotes, unicode, `$`, empty.
    @Test func shellQuotedWordsReadBackUnchanged() throws {
        let words = ["plain-path/a_b.json", "my rün", "it's", "a\"b", "$HOME", "", "x;rm -rf y", "tab\there", "--flag=1"]
        #expect(shellQuoted("plain-path/a_b.json") == "plain-path/a_b.json", "safe words stay bare")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "for w in " + words.map(shellQuoted).joined(separator: " ") + "; do printf '%s\\n' \"$w\"; done"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init) == words, "\(text)")
    }

    /// A refused --out names each differing param as it was typed: paths without JSON's `\/`.
    @Test func settingsDifferencesQuotePathsAsTyped() {
        let a = ForegroundRun.Claim(kind: "score", workspace: "/w", params: .object(["eval_data": .string("data/dev_gold.json"), "n_context": .number(10)]))
        let b = ForegroundRun.Claim(kind: "score", workspace: "/w", params: .object(["eval_data": .string("data/nq_dev.json"), "n_context": .number(10)]))
        #expect(ForegroundRun.differences(a, b) == #"eval_data: "data/dev_gold.json" there, "data/nq_dev.json" here"#)
    }
}
