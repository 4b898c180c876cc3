// TextKinds: `count` and `concat`, two small real job kinds the demo runs before the model kinds land.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Kinds that need no model: word counts and file concatenation.
public enum TextKinds {
    public static func register(into registry: KindRegistry) {
        registry.register(CountKind())
        registry.register(ConcatKind())
    }
}

/// `count`: lines, words and bytes of each input file (like `wc`), into `out/counts.json`.
public struct CountKind: JobKind {
    public struct Params: JobParams {
        /// Files to count (workspace-relative, absolute, or `job:ID/…`).
        public var inputs: [String]

        enum CodingKeys: String, CodingKey, CaseIterable { case inputs }

        public init(from decoder: Decoder) throws {
            let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
            inputs = try c.require(try c.decode([String].self, forKey: .inputs), .inputs, "at least one path") { !$0.isEmpty }
        }

        public var inputPaths: [(field: String, path: String)] {
            inputs.enumerated().map { ("inputs[\($0.offset)]", $0.element) }
        }
    }

    public struct FileCount: Codable, Sendable {
        public var path: String
        public var lines: Int
        public var words: Int
        public var bytes: Int
    }

    public struct Output: Codable, Sendable {
        public var files: [FileCount]
        public var lines: Int
        public var words: Int
        public var bytes: Int
    }

    public init() {}
    public var name: String { "count" }

    public func run(_ p: Params, _ context: JobContext) throws -> Output {
        var files: [FileCount] = []
        for (i, path) in p.inputs.enumerated() {
            try context.checkCancelled()
            let resolved = context.resolve(path)
            let data = try context.fs.retrying { try context.fs.read(resolved, limit: 1 << 30) }
            var lines = 0, words = 0, inWord = false
            for b in data {
                if b == 10 { lines += 1 }
                let space = b == 32 || (b >= 9 && b <= 13)
                if !space && !inWord { words += 1 }
                inWord = !space
            }
            files.append(FileCount(path: path, lines: lines, words: words, bytes: data.count))
            context.log("\(path): \(lines) lines, \(words) words, \(data.count) bytes")
            context.progress.update(step: i + 1, total: p.inputs.count)
        }
        let out = Output(files: files, lines: files.map(\.lines).reduce(0, +), words: files.map(\.words).reduce(0, +),
                         bytes: files.map(\.bytes).reduce(0, +))
        try context.publish("counts.json", try jsonEncoder().encode(out))
        return out
    }
}

/// `concat`: joins the input files, in order, into `dest` (inside the workspace) and `out/`.
public struct ConcatKind: JobKind {
    public struct Params: JobParams {
        public var inputs: [String]
        /// Where the joined file goes (workspace-relative or absolute, inside the allowed roots).
        public var dest: String

        enum CodingKeys: String, CodingKey, CaseIterable { case inputs, dest }

        public init(from decoder: Decoder) throws {
            let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
            inputs = try c.require(try c.decode([String].self, forKey: .inputs), .inputs, "at least one path") { !$0.isEmpty }
            dest = try c.decode(String.self, forKey: .dest)
        }

        public var outputPaths: [(field: String, path: String)] { [("dest", dest)] }
        public var inputPaths: [(field: String, path: String)] {
            inputs.enumerated().map { ("inputs[\($0.offset)]", $0.element) }
        }
    }

    public struct Output: Codable, Sendable {
        public var dest: String
        public var bytes: Int
    }

    public init() {}
    public var name: String { "concat" }

    public func run(_ p: Params, _ context: JobContext) throws -> Output {
        var joined = Data()
        for path in p.inputs {
            try context.checkCancelled()
            joined.append(try context.fs.retrying { try context.fs.read(context.resolve(path), limit: 1 << 30) })
        }
        let dest = try context.output(p.dest, field: "params.dest")
        try context.fs.makeDirectories(NSStringPath(dest).parent)
        try context.fs.writeAtomically(dest, joined, tag: "concat")
        try context.publish(NSStringPath(dest).last, joined)
        context.log("wrote \(joined.count) bytes to \(dest)")
        return Output(dest: dest, bytes: joined.count)
    }
}
