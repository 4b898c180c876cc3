// tokenize-bench: passages and ids per second of fidq's tokenizers, one JSON line per model (ops/benchmarks).
import Foundation
import Tokenizers

/// Usage: tokenize-bench PASSAGES.tsv COUNT THREADS NAME=PATH[:nospecial] ...
/// Reads `text<TAB>title` lines, builds "title: T context: X" strings (repeating the file up to COUNT),
/// and encodes them all with `encodeAll` on THREADS threads; prints the best of 3 timed runs.
let args = CommandLine.arguments
guard args.count >= 5, let count = Int(args[2]), let threads = Int(args[3]) else {
    FileHandle.standardError.write("usage: tokenize-bench PASSAGES.tsv COUNT THREADS NAME=PATH[:nospecial] ...\n".data(using: .utf8)!)
    exit(2)
}
guard let raw = FileManager.default.contents(atPath: args[1]) else {
    FileHandle.standardError.write("tokenize-bench: cannot read \(args[1])\n".data(using: .utf8)!)
    exit(1)
}
let lines = String(decoding: raw, as: UTF8.self).split(separator: "\n")
var texts: [String] = []
texts.reserveCapacity(count)
for i in 0..<count {
    let fields = lines[i % lines.count].split(separator: "\t", omittingEmptySubsequences: false)
    texts.append("title: \(fields.count > 1 ? fields[1] : "") context: \(fields[0])")
}
for spec in args[4...] {
    let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
    var path = parts[1]
    var special = true
    if path.hasSuffix(":nospecial") { path.removeLast(":nospecial".count); special = false }
    let tok: any Tokenizer
    do { tok = try TokenizerLoader.load(path) } catch {
        FileHandle.standardError.write("tokenize-bench: \(error)\n".data(using: .utf8)!)
        exit(1)
    }
    _ = tok.encodeAll(Array(texts.prefix(2000)), addSpecialTokens: special, threads: threads)  // warm-up
    var best = Double.infinity
    var ids = 0
    for _ in 0..<3 {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let rows = tok.encodeAll(texts, addSpecialTokens: special, threads: threads)
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        best = min(best, dt)
        ids = rows.reduce(0) { $0 + $1.count }
    }
    print("{\"impl\": \"fidq\", \"model\": \"\(parts[0])\", \"threads\": \(threads), \"passages\": \(count), \"ids\": \(ids), \"seconds\": \(best)}")
}
