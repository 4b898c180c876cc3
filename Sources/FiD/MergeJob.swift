// MergeJob: the `merge` job kind: joins the outputs of `score` shards into what one unsharded
// `score` job writes, in the data set's order (FiD joins `test_results/{rank}.txt` instead).
import Formats
import Foundation
import Jobs

/// `merge` params: the output folders of the shards' `score` jobs, in `shard_id` order
/// (`"job:score-0"` names a finished job's `out/`).
public struct MergeParams: JobParams, Equatable {
    public var shards: [String]
    /// FiD's run name and `checkpoint_dir`, as `score` takes them: with `checkpoint_dir`, the
    /// merged `final_output.txt` and `dataset_wscores.json` are also copied to
    /// `checkpoint_dir/name/`, where FiD's test_reader.py writes a (distributed) run's.
    public var name = "experiment_name"
    public var checkpointDir: String?

    enum CodingKeys: String, CodingKey, CaseIterable { case shards, name, checkpointDir = "checkpoint_dir" }

    public init(shards: [String]) { self.shards = shards }

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        shards = try c.require(try c.decode([String].self, forKey: .shards), .shards, "a non-empty list of score output folders") { !$0.isEmpty }
        name = try FiDLayout.runName(c, .name)
        checkpointDir = try c.decodeIfPresent(String.self, forKey: .checkpointDir)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(shards, forKey: .shards)
        try c.encode(name, forKey: .name)
        try c.encodeIfPresent(checkpointDir, forKey: .checkpointDir)
    }

    public var inputPaths: [(field: String, path: String)] {
        shards.enumerated().map { ("shards[\($0.offset)]", $0.element) }
    }
    public var outputPaths: [(field: String, path: String)] {
        // The run folder itself, links followed: a `name` linking elsewhere is refused at submit.
        checkpointDir.map { [("checkpoint_dir", $0 + "/" + name)] } ?? []
    }
    /// FiD's layout: runs of other names share a `checkpoint_dir`.
    public var exclusiveOutputs: [(field: String, path: String)] {
        checkpointDir.map { [("checkpoint_dir", $0 + "/" + name)] } ?? []
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
        // A merge is not resumed: an earlier merge's files in out/ (one the shards no longer
        // give, a result a failed re-merge would leave beside its error) go first.
        for name in ["result.json", "predictions.jsonl", "final_output.txt", "dataset_wscores.json"] where context.fs.exists(context.out + "/" + name) {
            try context.fs.unlink(context.out + "/" + name)
        }
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
        try Self.checkOneRun(results, dirs)
        let fm = FileManager.default
        func all(_ name: String) -> Bool { dirs.allSatisfy { fm.fileExists(atPath: $0 + "/" + name) } }
        var outputs: [String] = []
        let lines = try Self.predictionLines(dirs, results)
        try mergeLines(lines, context)
        outputs.append("predictions.jsonl")
        for name in ["final_output.txt", "dataset_wscores.json"] {
            let missing = dirs.indices.filter { !fm.fileExists(atPath: dirs[$0] + "/" + name) }
            if !missing.isEmpty && missing.count < n {
                context.log("merge: \(name) not merged: " + (missing.count == 1 ? "shard \(missing[0]) has" : "shards \(missing.map(String.init).joined(separator: ", ")) have")
                            + " none (score them with "
                            + (name == "final_output.txt" ? "write_results" : "write_crossattention_scores") + ")")
            }
        }
        if all("final_output.txt") {
            try mergeResults(lines, context)
            outputs.append("final_output.txt")
        }
        if all("dataset_wscores.json") {
            try mergeArrays("dataset_wscores.json", dirs, results, context)
            outputs.append("dataset_wscores.json")
        }
        let correct = results.reduce(0) { $0 + $1.correct }, count = results.reduce(0) { $0 + $1.count }
        let examples = results.reduce(0) { $0 + $1.examples }
        // Kernels in the order shards list them: more than one set is allowed, and said.
        var kernels: [String] = []
        for k in results.flatMap({ $0.kernels ?? [] }) where !kernels.contains(k) { kernels.append(k) }
        if kernels.count > 1 {
            context.log("merge: the shards were computed with \(kernels.count) sets of kernels (workers on different CPUs: "
                        + kernels.joined(separator: "; ") + "), so answers and scores may differ in their last bits from one run's")
        }
        let merged = ScoreResult(correct: correct, count: count, examples: examples, shardId: 0, numShards: 1,
                                 outputs: outputs + ["result.json"], model: results.lazy.compactMap(\.model).first,
                                 evalData: results.lazy.compactMap(\.evalData).first, dataExamples: examples, inputs: results[0].inputs,
                                 kernels: kernels.isEmpty ? nil : kernels)
        try context.publish("result.json", try jsonEncoder().encode(merged))
        if let dir = params.checkpointDir { try ScoreKind.copyToFiDLayout(merged, checkpointDir: dir, name: params.name, context, kind: "merge") }
        context.log("merge: \(n) shards, \(merged.exactMatchText), Total number of example \(count)")
        return merged
    }

    /// Shards of one reader, one data file, each holding its share of it: a shard re-run with
    /// another checkpoint, or on the file after it changed, would make the merged files a mixture
    /// (an interleave of two data sets) and the figures wrong. Older results record neither the
    /// reader nor the file's size; what one shard records is compared with every other's.
    static func checkOneRun(_ results: [ScoreResult], _ dirs: [String]) throws {
        let n = results.count
        let hint = "merge the shards of one score run; re-run the odd shard with the same model_path and eval_data"
        // Shards that record their inputs compare those (settings, and files by size, time and
        // inode, not path: workers may mount the files elsewhere); older ones their paths.
        if let first = results.indices.first(where: { results[$0].inputs != nil }) {
            /// A record's lines by what they describe (`model file config.json`, `data`), in order.
            func fields(_ record: String) -> [(key: String, value: String)] {
                record.split(separator: "\n").map { line in
                    guard let colon = line.range(of: ": ") else { return (String(line), "") }
                    return (String(line[..<colon.lowerBound]), String(line[colon.upperBound...]))
                }
            }
            let theirs = fields(results[first].inputs!)
            for (s, r) in results.enumerated() {
                guard let record = r.inputs else {
                    throw JobError.permanent("\(dirs[s]) was scored by an older fidq that did not record its inputs, unlike \(dirs[first])",
                                             field: "params.shards[\(s)]",
                                             hint: "run that shard's score command again (it adds the record when its out/ records "
                                                + "unchanged inputs in .score-inputs.txt), or score it again in a new --out")
                }
                let mine = fields(record)
                let mineByKey = Dictionary(mine, uniquingKeysWith: { a, _ in a }), theirsByKey = Dictionary(theirs, uniquingKeysWith: { a, _ in a })
                guard let key = (theirs + mine).map(\.key).first(where: { mineByKey[$0] != theirsByKey[$0] }) else { continue }
                func value(_ v: String?) -> String { v.map { key + ": " + $0 } ?? "no \(key)" }
                throw JobError.permanent("\(dirs[s]) was scored from other inputs than \(dirs[first]): \(value(mineByKey[key])) there, \(value(theirsByKey[key])) in \(dirs[first])",
                                         field: "params.shards[\(s)]",
                                         hint: "merge the shards of one score run: the same settings, model files and data file "
                                            + "(compared by size, modification time and inode, so a copy or a rewrite counts as another file); "
                                            + "score the odd shard again")
            }
        }
        for (what, value) in [("reader", \ScoreResult.model), ("data", \ScoreResult.evalData)] where results.contains(where: { $0.inputs == nil }) {
            guard let first = results.indices.first(where: { results[$0][keyPath: value] != nil }) else { continue }
            for (s, r) in results.enumerated() {
                if let mine = r[keyPath: value], mine != results[first][keyPath: value]! {
                    throw JobError.permanent("\(dirs[s]) scored \(what) \(mine), but \(dirs[first]) scored \(results[first][keyPath: value]!)",
                                             field: "params.shards[\(s)]", hint: hint)
                }
            }
        }
        let recorded = results.indices.first { results[$0].dataExamples != nil }
        for (s, r) in results.enumerated() {
            if let f = recorded, let mine = r.dataExamples, mine != results[f].dataExamples! {
                throw JobError.permanent("\(dirs[s]) scored a data file of \(mine) examples, but \(dirs[f]) one of \(results[f].dataExamples!)",
                                         field: "params.shards[\(s)]", hint: hint)
            }
        }
        // FiD's sharding: example k is shard k mod n's, so shard s of N examples holds ⌈(N − s) / n⌉.
        let total = recorded.map { results[$0].dataExamples! } ?? results.reduce(0) { $0 + $1.examples }
        for (s, r) in results.enumerated() {
            let expected = total > s ? (total - s + n - 1) / n : 0
            if r.examples != expected {
                throw JobError.permanent("\(dirs[s]) holds \(r.examples) examples, but shard \(s) of \(n) of \(total) examples holds \(expected)",
                                         field: "params.shards[\(s)]", hint: "a shard of another data set, or of the file before it changed? " + hint)
            }
        }
    }

    /// A shard's mapped `predictions.jsonl` and its lines' byte ranges (newline excluded).
    struct ShardLines {
        let stream: JSONStream
        var ranges: [Range<Int>] = []
        func line(_ j: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: stream.bytes[ranges[j]]) }
    }

    /// Each shard's `predictions.jsonl`, checked: one JSON object per example its result.json counts.
    static func predictionLines(_ dirs: [String], _ results: [ScoreResult]) throws -> [ShardLines] {
        try dirs.indices.map { s in
            let path = dirs[s] + "/predictions.jsonl", field = "params.shards[\(s)]"
            let stream: JSONStream
            do { stream = try JSONStream(path: path) } catch {
                throw JobError.permanent("\(error)", field: field, hint: "a score job's out/ holds predictions.jsonl once it has finished")
            }
            let raw = stream.bytes
            var lines = ShardLines(stream: stream)
            var start = 0
            while start < raw.count, let base = raw.baseAddress {
                var end = raw.count
                if let hit = memchr(base + start, 0x0A, raw.count - start) { end = UnsafeRawPointer(hit) - base }
                let line = UnsafeRawBufferPointer(rebasing: raw[start..<end])
                var parser = JSONParser(bytes: line)
                let value: JSONNode
                do { value = try parser.parseDocument() } catch {
                    throw JobError.permanent("\(path): line \(lines.ranges.count + 1): not a prediction (\(error))", field: field,
                                             hint: "expected one JSON object per line, as score writes them")
                }
                guard case .object = value else {
                    throw JobError.permanent("\(path): line \(lines.ranges.count + 1): expected a prediction object, found \(value.kindName)",
                                             field: field)
                }
                lines.ranges.append(start..<end)
                start = end + 1
            }
            guard lines.ranges.count == results[s].examples else {
                throw JobError.permanent("\(path) holds \(lines.ranges.count) predictions, but its result.json counts \(results[s].examples) examples",
                                         field: field, hint: "a shard's files were changed after it finished: score it again")
            }
            return lines
        }
    }

    /// Interleaves the shards' prediction lines: line j of shard s is example j·n + s.
    func mergeLines(_ lines: [ShardLines], _ context: JobContext) throws {
        let out = try context.openOutput("predictions.jsonl")
        var buffer: [UInt8] = []
        try Self.interleave(lines) { line in
            buffer += line
            buffer.append(10)
            if buffer.count > 1 << 20 {
                try buffer.withUnsafeBytes { try out.write($0) }
                buffer.removeAll(keepingCapacity: true)
            }
        }
        try buffer.withUnsafeBytes { try out.write($0) }
        try out.commit()
    }

    /// `final_output.txt` as `score` writes it (`id<TAB>prediction` per example), from the merged
    /// predictions: the shards' own copies hold the same lines, and a prediction holding a line
    /// break would make line counts of them lie.
    func mergeResults(_ lines: [ShardLines], _ context: JobContext) throws {
        let out = try context.openOutput("final_output.txt")
        var buffer: [UInt8] = []
        try Self.interleave(lines) { line in
            var parser = JSONParser(bytes: line)
            let p = try parser.parseDocument()
            buffer += Array("\(ScoreKind.idText(p["id"]))\t\(p["prediction"]?.stringValue ?? "")\n".utf8)
            if buffer.count > 1 << 20 {
                try buffer.withUnsafeBytes { try out.write($0) }
                buffer.removeAll(keepingCapacity: true)
            }
        }
        try buffer.withUnsafeBytes { try out.write($0) }
        try out.commit()
    }

    /// Calls `body` with the lines of every shard in the data set's order (round j: shard 0's
    /// j-th, shard 1's, …; shards hold ⌈(N − s) / n⌉ lines, checked by `checkOneRun`).
    static func interleave(_ shards: [ShardLines], _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let rounds = shards.map(\.ranges.count).max() ?? 0
        for j in 0..<rounds {
            for shard in shards where j < shard.ranges.count { try body(shard.line(j)) }
        }
    }

    /// Interleaves the elements of each shard's JSON list into one `indent=4` list, after checking
    /// each holds one element per example its result.json counts.
    func mergeArrays(_ name: String, _ dirs: [String], _ results: [ScoreResult], _ context: JobContext) throws {
        var cursors: [JSONArrayCursor] = []
        for (s, dir) in dirs.enumerated() {
            let path = dir + "/" + name, field = "params.shards[\(s)]"
            do {
                let stream = try JSONStream(path: path)
                var count = 0
                try stream.forEachElement(parse: false) { _ in count += 1 }
                guard count == results[s].examples else {
                    throw JobError.permanent("\(path) holds \(count) examples, but its result.json counts \(results[s].examples)",
                                             field: field, hint: "a shard's files were changed after it finished: score it again")
                }
                cursors.append(try JSONArrayCursor(stream))
            } catch let e as FormatError {
                throw JobError.permanent(e.description, field: field)
            } catch let e as JobError { throw e } catch {
                throw JobError.permanent("\(error)", field: field, hint: "score the shard with write_crossattention_scores again")
            }
        }
        let out = try context.openOutput(name)
        var buffer: [UInt8] = [UInt8(ascii: "[")]
        var count = 0
        let rounds = results.map(\.examples).max() ?? 0
        for _ in 0..<rounds {
            for s in cursors.indices {
                // Counted above: a shard past its last element returns nil.
                let next: JSONNode?
                do { next = try cursors[s].next() } catch let e as FormatError {
                    throw JobError.permanent(e.description, field: "params.shards[\(s)]")
                }
                guard let v = next else { continue }
                buffer += count == 0 ? [10, 32, 32, 32, 32] : [44, 10, 32, 32, 32, 32]
                PyJSON.appendIndented(v, level: 1, to: &buffer)
                count += 1
            }
            if buffer.count > 1 << 20 {
                try buffer.withUnsafeBytes { try out.write($0) }
                buffer.removeAll(keepingCapacity: true)
            }
        }
        buffer += count == 0 ? [93] : [10, 93]
        try buffer.withUnsafeBytes { try out.write($0) }
        try out.commit()
    }
}
