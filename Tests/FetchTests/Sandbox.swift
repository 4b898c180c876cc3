// Sandbox: a throwaway folder per test (workspace, sources, a sentinel outside) and helpers to inspect it.
import Foundation

@testable import Fetch

/// `root/ws` is the workspace, `root/src` holds inputs, `root/outside.txt` is a sentinel a hostile
/// archive would try to reach. `snapshot()` lists every path under `root` without following links.
final class Sandbox {
    let root: URL
    var ws: URL { root.appendingPathComponent("ws") }
    var src: URL { root.appendingPathComponent("src") }
    var sentinel: URL { root.appendingPathComponent("outside.txt") }

    init() throws {
        root = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("fidq-fetch-\(UUID().uuidString)")
        for d in [ws, src] { try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true) }
        try Data("sentinel\n".utf8).write(to: sentinel)
    }

    deinit { try? FileManager.default.removeItem(at: root) }

    /// Every path under `root` (relative), with a type letter and size, sorted.
    func snapshot(_ under: URL? = nil) -> [String] {
        let base = under ?? root
        var out: [String] = []
        func walk(_ rel: String) {
            let path = rel.isEmpty ? base.path : base.path + "/" + rel
            var st = stat()
            guard lstat(path, &st) == 0 else { return }
            let type = st.st_mode & S_IFMT
            if !rel.isEmpty {
                out.append("\(rel) \(type == S_IFDIR ? "d" : type == S_IFLNK ? "l" : type == S_IFREG ? "f" : "?") \(type == S_IFREG ? st.st_size : 0)")
            }
            if type == S_IFDIR {
                for name in ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() {
                    walk(rel.isEmpty ? name : rel + "/" + name)
                }
            }
        }
        walk("")
        return out.sorted()
    }

    /// Writes `data` to `src/name` and returns its file URL.
    @discardableResult
    func source(_ name: String, _ data: Data) throws -> URL {
        let url = src.appendingPathComponent(name)
        try data.write(to: url)
        return url
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
func testBytes(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> Data {
    var x = seed
    var bytes = [UInt8](repeating: 0, count: count)
    for i in 0..<count {
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        bytes[i] = UInt8(truncatingIfNeeded: x)
    }
    return Data(bytes)
}

/// sha256 from coreutils' sha256sum: an implementation independent of the one under test.
func sha256sum(_ data: Data) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
    let inPipe = Pipe(), outPipe = Pipe()
    p.standardInput = inPipe
    p.standardOutput = outPipe
    try p.run()
    let writer = Thread {
        inPipe.fileHandleForWriting.write(data)
        try? inPipe.fileHandleForWriting.close()
    }
    writer.start()
    let out = outPipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return String(decoding: out.prefix(64), as: UTF8.self)
}

/// The part file of `key` in whichever attempt folder (`a-*`) of `work` has one, or nil.
func partFile(in work: URL, key: String = "download") -> URL? {
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: work.path)) ?? []).filter { $0.hasPrefix("a-") }.sorted()
    return names.map { work.appendingPathComponent($0).appendingPathComponent(key + ".part") }.first { fileSize($0) != nil }
}
