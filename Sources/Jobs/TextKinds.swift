// TextKinds: `count` and `concat`, two small real job kinds the demo runs before the model kinds land.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Kinds that need no model: word counts and file concatenation.
public enum TextKinds {
    /// The largest input read (they are read whole).
    static let maxInputBytes = 1 << 30

    /// Refuses an input that is not a file (symlinks followed) or is over `maxInputBytes`, naming
    /// it; with `joined`, inputs over it together too (concat holds them all in memory: three
    /// inputs of 229 MB each aborted in an allocation under `ulimit -v 1200000`, leaving no error).
    static func checkFiles(_ inputs: [String], joined: Bool = false, resolve: (String) -> String) throws {
        var total = 0
        for (i, path) in inputs.enumerated() {
            let resolved = resolve(path)
            var st = stat()
            guard stat(resolved, &st) == 0 else { continue }  // missing: the input check names it
            if st.st_mode & S_IFMT == S_IFDIR {
                throw JobError.permanent("\(resolved) is a folder; expected a file", field: "params.inputs[\(i)]",
                                         hint: "list the files in it, one path each")
            }
            if Int(st.st_size) > maxInputBytes {
                throw JobError.permanent("\(resolved) holds \(st.st_size) bytes, over the \(maxInputBytes) read whole", field: "params.inputs[\(i)]")
            }
            total += Int(st.st_size)
            if joined && total > maxInputBytes {
                throw JobError.permanent("inputs 0…\(i) hold \(total) bytes together, over the \(maxInputBytes) concat joins in memory",
                                         field: "params.inputs", hint: "concatenate in steps of under 1 GiB, or with cat")
            }
        }
    }

    /// An input read whole, an error naming its field (the read's alone named no param).
    static func read(_ path: String, field: String, _ context: JobContext) throws -> Data {
        let resolved = context.resolve(path)
        do {
            let data = try context.fs.retrying { try context.fs.read(resolved, limit: maxInputBytes + 1) }
            if data.count > maxInputBytes {
                throw JobError.permanent("\(resolved) holds over \(maxInputBytes) bytes, the most read whole", field: field)
            }
            return data
        } catch let e as FSError where [EISDIR, ENOENT, ENOTDIR, EACCES].contains(e.code) {
            throw JobError.permanent("\(e)", field: field)
        }
    }

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

        /// Each input is a file: a folder passed the existence check and failed at run time.
        public func validateInputs(resolve: (String) -> String) throws {
            try TextKinds.checkFiles(inputs, resolve: resolve)
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
            let data = try TextKinds.read(path, field: "params.inputs[\(i)]", context)
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

        public func validateInputs(resolve: (String) -> String) throws {
            try TextKinds.checkFiles(inputs, joined: true, resolve: resolve)
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
        for (i, path) in p.inputs.enumerated() {
            try context.checkCancelled()
            joined.append(try TextKinds.read(path, field: "params.inputs[\(i)]", context))
            if joined.count > TextKinds.maxInputBytes {  // grown since the check
                throw JobError.permanent("inputs 0…\(i) hold over \(TextKinds.maxInputBytes) bytes together, the most concat joins in memory", field: "params.inputs")
            }
        }
        let dest = try context.output(p.dest, field: "params.dest")
        try context.fs.makeDirectories(NSStringPath(dest).parent)
        try context.fs.writeAtomically(dest, joined, tag: "concat")
        try context.publish(NSStringPath(dest).last, joined)
        context.log("wrote \(joined.count) bytes to \(dest)")
        return Output(dest: dest, bytes: joined.count)
    }
}
