// FiDPreprocessTests: FiD JSON from upstream-format fixtures, byte-equal to FiD's preprocess.py output.
import Foundation
import Testing

@testable import Fetch

/// Fixtures written by ops/fixtures/fid_preprocess.py: upstream-format inputs and what Python made of them.
enum FiDFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("fid")
    static let download = root.appendingPathComponent("download")
    static let passages = root.appendingPathComponent("psgs_w100.tsv")
    static let expected = root.appendingPathComponent("expected")
    static let outputs = ["NQ/train", "NQ/dev", "NQ/test", "TQA/train", "TQA/dev", "TQA/test"]
}

@Suite struct FiDPreprocessTests {
    @Test func matchesPythonPreprocessByteForByte() throws {
        let box = try Sandbox()
        let inputs = try FiDPreprocess.locate(in: FiDFixtures.download, passages: FiDFixtures.passages, nq: true, tqa: true)
        let counts = try FiDPreprocess.run(inputs, out: box.ws)
        #expect(counts == ["NQ/train": 3, "NQ/dev": 2, "NQ/test": 2, "TQA/train": 2, "TQA/dev": 2, "TQA/test": 2])
        for name in FiDFixtures.outputs {
            let got = try Data(contentsOf: box.ws.appendingPathComponent(name + ".json"))
            let want = try Data(contentsOf: FiDFixtures.expected.appendingPathComponent(name + ".json"))
            #expect(got == want, "\(name).json differs from preprocess.py's")
        }
        // The result is FiD JSON: a list of {question, answers, [target], ctxs: [{id, title, text}]}.
        let nq = try JSONSerialization.jsonObject(with: Data(contentsOf: box.ws.appendingPathComponent("NQ/test.json"))) as! [[String: Any]]
        #expect(nq[0]["question"] as? String == "what is an emoji")  // test idx [2, 0] into NQ-open.dev.jsonl
        #expect((nq[0]["ctxs"] as! [[String: String]]).map { $0["id"]! } == ["6", "5", "12"])
    }

    @Test func onlyTheRequestedSetIsWritten() throws {
        let box = try Sandbox()
        let inputs = try FiDPreprocess.locate(in: FiDFixtures.download, passages: FiDFixtures.passages, nq: false, tqa: true)
        let counts = try FiDPreprocess.run(inputs, out: box.ws)
        #expect(counts.keys.sorted() == ["TQA/dev", "TQA/test", "TQA/train"])
        #expect(!FileManager.default.fileExists(atPath: box.ws.appendingPathComponent("NQ").path))
    }

    @Test func missingPassageOrListKeyNamesTheFile() throws {
        let box = try Sandbox()
        let dl = box.src.appendingPathComponent("download")
        try FileManager.default.copyItem(at: FiDFixtures.download, to: dl)
        // A passage list naming an id the TSV lacks.
        try Data(#"{"0": ["10", "777"], "1": ["1"], "2": ["1"]}"#.utf8).write(to: dl.appendingPathComponent("nq_passages/train.json"))
        let inputs = try FiDPreprocess.locate(in: dl, passages: FiDFixtures.passages, nq: true, tqa: false)
        #expect(throws: FetchError.format(file: FiDFixtures.passages.path, field: "id 777", expected: "a passage row", found: "none")) {
            try FiDPreprocess.run(inputs, out: box.ws)
        }
        // A question without a list.
        try Data(#"{"0": ["10"]}"#.utf8).write(to: dl.appendingPathComponent("nq_passages/train.json"))
        #expect {
            try FiDPreprocess.run(inputs, out: box.ws)
        } throws: { e in
            guard case .format(let file, "1", _, _)? = e as? FetchError else { return false }
            return file.hasSuffix("nq_passages/train.json")
        }
        try FileManager.default.removeItem(at: dl.appendingPathComponent("NQ.dev.idx.json"))
        #expect(throws: FetchError.self) { try FiDPreprocess.locate(in: dl, passages: FiDFixtures.passages, nq: true, tqa: false) }
    }

    @Test func pythonStringCaseRules() {
        // Expected values are what CPython 3.11 prints for s.isupper() and s.title().
        let cases: [(String, Bool, String)] = [
            ("THE BEATLES", true, "The Beatles"), ("O'NEILL", true, "O'Neill"), ("MCDONALD'S", true, "Mcdonald'S"),
            ("UK", true, "Uk"), ("3", false, "3"), ("Paris", false, "Paris"), ("ÉCOLE NORMALE", true, "École Normale"),
            ("R2-D2", true, "R2-D2"), ("", false, ""), ("ABC def", false, "Abc Def"),
            // Greek capital sigma lower-cases to final ς at the end of a word (CPython's Final_Sigma).
            ("ΟΔΥΣΣΕΥΣ", true, "Οδυσσευς"), ("ΟΔΥΣΣΕΥΣ ΚΑΙ ΣΑΣ", true, "Οδυσσευς Και Σας"), ("Σ", true, "Σ"),
            ("ΑΣ.Β", true, "Ασ.Β"), ("ΑΣ-Β", true, "Ας-Β"), ("ΑΣ\u{0301}", true, "Ας\u{0301}"), ("ΑΣ1", true, "Ας1"),
            ("ΑΣ\u{00AD}Β", true, "Ασ\u{00AD}Β"), ("ΑΣ\u{00AD}", true, "Ας\u{00AD}"),
        ]
        for (s, upper, title) in cases {
            #expect(FiDPreprocess.pyIsUpper(s) == upper, "\(s)")
            #expect(FiDPreprocess.pyTitle(s) == title, "\(s)")
        }
    }
}
