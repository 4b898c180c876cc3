// SHA256Tests: fidq's SHA-256, on the SHA extensions and on the portable rounds, against FIPS
// 180-2's examples and coreutils' sha256sum, whole and in chunks.
import Foundation
import Testing

@testable import Fetch

@Suite struct SHA256Tests {
    /// Both paths: the SHA extensions (where the CPU has them) and the portable rounds.
    static let paths = [false, true]

    static func digest(_ bytes: [UInt8], chunks: [Int] = [], portable: Bool = false) -> String {
        var h = SHA256(portable: portable)
        bytes.withUnsafeBytes { raw in
            var at = 0
            for size in chunks + [bytes.count] where at < bytes.count {
                let end = min(bytes.count, at + size)
                h.update(bufferPointer: UnsafeRawBufferPointer(rebasing: raw[at..<end]))
                at = end
            }
        }
        return hex(h.finalize())
    }

    /// coreutils' digest of `bytes` (an independent implementation on every Debian machine).
    static func sha256sum(_ bytes: [UInt8]) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fidq-sha-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("data")
        try Data(bytes).write(to: file)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        p.arguments = [file.path]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        try #require(p.terminationStatus == 0, "sha256sum failed on \(file.path)")
        return String(text.prefix(64))
    }

    /// FIPS 180-2 appendix B's messages (one block, two blocks, a million bytes) and the empty one.
    @Test(arguments: paths) func standardExamples(portable: Bool) {
        if !portable && !SHA256.cpuHasExtensions {
            print("SHA256Tests: WARNING: this CPU has no SHA extensions; only the portable path is tested here")
        }
        #expect(SHA256(portable: portable).extensions == (!portable && SHA256.cpuHasExtensions))
        func digest(_ bytes: [UInt8], chunks: [Int] = []) -> String { Self.digest(bytes, chunks: chunks, portable: portable) }
        #expect(digest([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(digest(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let two = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        #expect(digest(two) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(digest(million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        #expect(digest(million, chunks: [1, 63, 64, 65, 4095, 100_000]) == digest(million))
    }

    /// Every length around the padding's edges (55, 56, 63, 64, 119, 120 bytes…), and random data
    /// split at random, equal sha256sum's digests; `finalize` leaves the hasher going on.
    @Test(arguments: paths) func everyLengthAndSplitMatchesSha256sum(portable: Bool) throws {
        var rng = SystemRandomNumberGenerator()
        for length in Array(0...200) + [1_000, 4_096, 65_537, 3_000_001] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let expected = try Self.sha256sum(bytes)
            #expect(Self.digest(bytes, portable: portable) == expected, "length \(length)")
            let cuts = (0..<5).map { _ in Int.random(in: 1...max(1, length / 2 + 1), using: &rng) }
            #expect(Self.digest(bytes, chunks: cuts, portable: portable) == expected, "length \(length), chunks \(cuts)")
        }
        var h = SHA256(portable: portable)
        let abc = Array("abc".utf8)
        abc.withUnsafeBytes { h.update(bufferPointer: $0) }
        #expect(hex(h.finalize()) == Self.digest(abc, portable: portable))
        abc.withUnsafeBytes { h.update(bufferPointer: $0) }
        #expect(hex(h.finalize()) == Self.digest(abc + abc, portable: portable))
    }
}
