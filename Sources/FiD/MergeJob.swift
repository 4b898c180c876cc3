// MergeJob: the `merge` job kind: joins the outputs of `score` shards into what one unsharded
// `score` job writes, in the data set's order (FiD joins `test_results/{rank}.txt` instead).
import Formats
import Foundation
import Jobs

/// `merge` params: the output folders of the shards' `score` jobs, in `shard_id` order
/// (`"job:score-0"` names a finished job's `out/`).
public struct MergeParams: JobParams, Equatable {
    public var shards: [String]

    enum CodingKeys: String, CodingKey, CaseIterable { case shards }

    public init(shards: [String]) { self.shards = shards }

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        shards = try c.require(try c.decode([String].self, forKey: .shards), .shards, "a non-empty list of score output folders") { !$0.isEmpty }
    }

    public var inputPaths: [(field: String, path: String)] {
        shards.enumerated().map { ("shards[\($0.offset)]", $0.element) }
    }
}

/// Joins `predictions.jsonl`, `final_output.txt`, `dataset_wscores.json` (each when every shard
/// has it) and `result.json` (exact match over all questions). Shard `s` of `n` holds examples
/// `k ≡ s (mod n)` in order, so the original order is shard 0's first, shard 1's first, …
public struct MergeKind: JobKind {
    public init() {}
    public var name: String { "merge" }

    public func run(_ params: MergeParams, _ context: JobContext) throws -> ScoreResult {
        // A shard is a score job's out/ (what `job:ID` names), or the folder around it: a foreground
        // run's `--out` (`score-0.run`) or a queue's `done/<id>` (a score's out/ has no out/ of its own).
        let dirs = params.shards.map { path -> String in
            let dir = context.resolve(path)
            return context.fs.exists(dir + "/out/result.json") ? dir + "/out" : dir
        }
        let n = dirs.count
        var results: [ScoreResult] = []
        for (s, dir) in dirs.enumerated() {
            let field = "params.shards[\(s)]"
            let r: ScoreResult
            do {
                r = try JSONDecoder().decode(ScoreResult.self, from: context.fs.read(dir + "/result.json", limit: 1 << 20))
            } catch {
                throw JobError.permanent("\(dir)/result.json: not a finished score job's result (\(error))", field: field,
                                         hint: "name each score shard's folder (its out/, its --out, or its done/<id>) once it has finished")
            }
            guard r.numShards == n, r.shardId == s else {
                throw JobError.permanent("\(dir) is shard \(r.shardId) of \(r.numShards), expected shard \(s) of \(n)", field: field,
                                         hint: "list the score jobs' outputs in shard_id order, all of them")
            }
            results.append(r)
        }
        // Shards of one reader and one data set only: a shard re-run with another checkpoint (or
        // on another file of the same size) would make the merged figures a mixture. Older results
        // record neither and are not compared.
        for (s, r) in results.enumerated() {
            for (what, mine, first) in [("reader", r.model, results[0].model), ("data", r.evalData, results[0].evalData)] {
                if let mine, let first, mine != first {
                    throw JobError.permanent("\(dirs[s]) scored \(what) \(mine), but \(dirs[0]) scored \(first)",
                                             field: "params.shards[\(s)]",
                                             hint: "merge the shards of one score run; re-run the odd shard with the same model_path and eval_data")
                }
            }
        }
        let fm = FileManager.default
        func all(_ name: String) -> Bool { dirs.allSatisfy { fm.fileExists(atPath: $0 + "/" + name) } }
        var outputs: [String] = []
        try mergeLines("predictions.jsonl", dirs, context)
        outputs.append("predictions.jsonl")
        if all("final_output.txt") {
            try mergeLines("final_output.txt", dirs, context)
            outputs.append("final_output.txt")
        }
        if all("dataset_wscores.json") {
            try mergeArrays("dataset_wscores.json", dirs, context)
            outputs.append("dataset_wscores.json")
        }
        let correct = results.reduce(0) { $0 + $1.correct }, count = results.reduce(0) { $0 + $1.count }
        let examples = results.reduce(0) { $0 + $1.examples }
        let merged = ScoreResult(correct: correct, count: count, examples: examples, shardId: 0, numShards: 1,
                                 outputs: outputs + ["result.json"], model: results[0].model, evalData: results[0].evalData)
        try context.publish("result.json", try jsonEncoder().encode(merged))
        context.log("merge: \(n) shards, \(merged.exactMatchText), Total number of example \(count)")
        return merged
    }

    /// Interleaves the lines of `name` from each shard: line j of shard s is example j·n + s.
    func mergeLines(_ name: String, _ dirs: [String], _ context: JobContext) throws {
        let streams = try dirs.map { try JSONStream(path: $0 + "/" + name) }
        var cursors = [Int](repeating: 0, count: streams.count)
        let out = try context.openOutput(name)
        var buffer: [UInt8] = []
        func nextLine(_ s: Int) -> UnsafeRawBufferPointer? {
            let raw = streams[s].bytes
            guard cursors[s] < raw.count else { return nil }
            var end = cursors[s]
            while end < raw.count, raw[end] != 10 { end += 1 }
            defer { cursors[s] = end + 1 }
            return UnsafeRawBufferPointer(rebasing: raw[cursors[s]..<min(end + 1, raw.count)])
        }
        var round = 0
        while true {
            var any = false
            for s in 0..<streams.count {
                guard let line = nextLine(s) else {
                    // A shard runs out only after the shards before it in the same round (k = j·n + s).
                    for t in (s + 1)..<max(s + 1, streams.count) where nextLine(t) != nil {
                        throw JobError.permanent("\(streams[s].file) ends at line \(round) but \(streams[t].file) goes on",
                                                 field: "params.shards[\(s)]", hint: "a shard of another data set or split?")
                    }
                    break
                }
                any = true
                buffer += line
                if line.last != 10 { buffer.append(10) }
            }
            if !any { break }
            round += 1
            if buffer.count > 1 << 20 {
                try buffer.withUnsafeBytes { try out.write($0) }
                buffer.removeAll(keepingCapacity: true)
            }
            if streams.indices.contains(where: { cursors[$0] < streams[$0].bytes.count }) == false { break }
        }
        try buffer.withUnsafeBytes { try out.write($0) }
        try out.commit()
    }

    /// Interleaves the elements of each shard's JSON list into one `indent=4` list.
    func mergeArrays(_ name: String, _ dirs: [String], _ context: JobContext) throws {
        var cursors = try dirs.map { try JSONArrayCursor(try JSONStream(path: $0 + "/" + name)) }
        let out = try context.openOutput(name)
        var buffer: [UInt8] = [UInt8(ascii: "[")]
        var count = 0
        do {
            outer: while true {
                for s in 0..<cursors.count {
                    guard let v = try cursors[s].next() else {
                        for t in (s + 1)..<max(s + 1, cursors.count) where try cursors[t].next() != nil {
                            throw JobError.permanent("\(dirs[s])/\(name) ends before \(dirs[t])/\(name)", field: "params.shards[\(s)]")
                        }
                        break outer
                    }
                    buffer += count == 0 ? [10, 32, 32, 32, 32] : [44, 10, 32, 32, 32, 32]
                    PyJSON.appendIndented(v, level: 1, to: &buffer)
                    count += 1
                }
                if buffer.count > 1 << 20 {
                    try buffer.withUnsafeBytes { try out.write($0) }
                    buffer.removeAll(keepingCapacity: true)
                }
            }
        } catch let e as FormatError {
            throw JobError.permanent(e.description, field: "params.shards")
        }
        buffer += count == 0 ? [93] : [10, 93]
        try buffer.withUnsafeBytes { try out.write($0) }
        try out.commit()
    }
}
