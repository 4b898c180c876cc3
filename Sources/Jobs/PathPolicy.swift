// PathPolicy: resolves job paths against the workspace and keeps every output inside it.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Where relative paths and `job:ID/…` references point, and where jobs may write.
public struct PathPolicy: Sendable {
    /// Absolute workspace folder: relative paths resolve here, and outputs must stay inside.
    public var workspace: String
    /// Absolute queue folder: `job:ID/rest` resolves to `<queue>/done/ID/out/rest`.
    public var queue: String
    /// More absolute folders outputs may go to (`--allow-root`).
    public var allowedRoots: [String]

    public init(workspace: String, queue: String, allowedRoots: [String] = []) {
        self.workspace = PathPolicy.normalize(PathPolicy.absolute(workspace))
        self.queue = PathPolicy.normalize(PathPolicy.absolute(queue))
        self.allowedRoots = allowedRoots.map { PathPolicy.normalize(PathPolicy.absolute($0)) }
    }

    /// `fidq run FILE` under this policy into `out`, quoted for a shell: a log's reproduce line.
    /// `--queue` when it is not the workspace's default, each `--allow-root`.
    public func runCommand(_ file: String, out: String) -> String {
        var words = ["fidq", "run", file, "--workspace", workspace]
        if queue != PathPolicy.normalize(workspace + "/queue") { words += ["--queue", queue] }
        for root in allowedRoots { words += ["--allow-root", root] }
        return (words + ["--out", out]).map(shellQuoted).joined(separator: " ")
    }

    /// The absolute, lexically normalised path `path` names.
    public func resolve(_ path: String) -> String {
        if path.hasPrefix("job:") {
            let rest = path.dropFirst(4)
            let id = rest.prefix { $0 != "/" }
            let tail = rest.dropFirst(id.count)
            return PathPolicy.normalize(queue + "/done/" + id + "/out" + tail)
        }
        if path.hasPrefix("/") { return PathPolicy.normalize(path) }
        return PathPolicy.normalize(workspace + "/" + path)
    }

    /// Resolves an output path and checks it lies inside the workspace or an allowed root,
    /// following symlinks in the part of the path that exists.
    ///
    /// - Throws: `JobError.permanent` naming the field when the path escapes.
    public func checkOutput(_ path: String, field: String, fs: FileSystem) throws -> String {
        if path.isEmpty { throw JobError.permanent("empty output path", field: field) }
        let resolved = resolve(path)
        // What no file system takes fails at run time after the job's work, with folders made.
        if let long = resolved.split(separator: "/").first(where: { $0.utf8.count > 255 }) {
            throw JobError.permanent("output '\(path)' has a name of \(long.utf8.count) bytes (\(long.prefix(24))…); file systems take at most 255",
                                     field: field, hint: "shorten that file or folder name")
        }
        if resolved.utf8.count >= 4096 {
            throw JobError.permanent("output '\(path.prefix(60))…' resolves to a path of \(resolved.utf8.count) bytes; Linux takes at most 4095",
                                     field: field, hint: "write somewhere with a shorter path")
        }
        let real = PathPolicy.realOf(resolved, fs: fs)
        let roots = ([workspace] + allowedRoots).map { PathPolicy.realOf($0, fs: fs) }
        // The queue is the workers' own state (pending/, done/, `job:` targets…): no job writes
        // there, even though it usually lies inside the workspace.
        let queueReal = PathPolicy.realOf(queue, fs: fs)
        if PathPolicy.isInside(real, queueReal) || PathPolicy.isInside(resolved, queue) {
            throw JobError.permanent(
                "output '\(path)' resolves to \(real), inside the queue folder \(queueReal)", field: field,
                hint: "write outside the queue; a job's own files go to its out/ folder")
        }
        if roots.contains(where: { PathPolicy.isInside(real, $0) }) { return resolved }
        throw JobError.permanent(
            "output '\(path)' resolves to \(real), outside the workspace \(roots[0])", field: field,
            hint: "write inside the workspace, or pass --allow-root for that folder to fidq submit and fidq worker (or fidq run)")
    }

    /// Refuses an output the job writes as a whole (`JobParams.exclusiveOutputs`: a fetch `dest`
    /// it may replace, a run folder) that holds the queue: `dest` over the queue with `replace`
    /// deleted every job in it.
    public func checkHoldsNoQueue(_ path: String, field: String, fs: FileSystem) throws {
        // A queue not made yet counts too: submit makes it next.
        let resolved = resolve(path), real = PathPolicy.realOf(resolved, fs: fs)
        let queueReal = PathPolicy.realOf(queue, fs: fs)
        if PathPolicy.isInside(queueReal, real) || PathPolicy.isInside(queue, resolved) {
            throw JobError.permanent("output '\(path)' resolves to \(real), which holds the queue folder \(queueReal)", field: field,
                                     hint: "give it a folder of its own beside the queue; the job writes that folder as a whole")
        }
    }

    /// Resolves an input path and checks it lies inside the workspace, an allowed root, or an
    /// earlier job's output (`<queue>/done/<id>/out/`), following every symlink: on a shared queue a job
    /// must not copy another user's files into its workspace.
    ///
    /// - Throws: `JobError.permanent` naming the field when the path lies elsewhere.
    public func checkInput(_ path: String, field: String, fs: FileSystem) throws -> String {
        if path.isEmpty { throw JobError.permanent("empty input path", field: field) }
        let resolved = resolve(path)
        let real = PathPolicy.realOf(resolved, fs: fs)
        // Inside the queue only an earlier job's published output (`done/<id>/out/…`, what
        // `job:` names) may be read: pending/ and running/ hold other users' descriptors and state.
        let queueReal = PathPolicy.realOf(queue, fs: fs)
        for q in [queue, queueReal] where PathPolicy.isInside(real, q) {
            let rest = real.dropFirst(q.count).split(separator: "/")
            if rest.count >= 3 && rest[0] == "done" && rest[2] == "out" { return resolved }
            throw JobError.permanent(
                "input '\(path)' resolves to \(real), inside the queue folder \(queueReal)", field: field,
                hint: "name an earlier job's output as job:ID/path; the queue's own files are not inputs")
        }
        let roots = ([workspace] + allowedRoots).map { PathPolicy.realOf($0, fs: fs) }
        if roots.contains(where: { PathPolicy.isInside(real, $0) }) { return resolved }
        throw JobError.permanent(
            "input '\(path)' resolves to \(real), outside the workspace \(roots[0])", field: field,
            hint: "read from inside the workspace, or pass --allow-root for that folder to fidq submit and fidq worker (or fidq run)")
    }

    /// `checkInput` for a folder input and what it holds: every symlink below it (a model folder
    /// of links to another user's files) must lead where an input may lie too; a dangling one
    /// leads nowhere to read. Folders are walked `depth` levels down (a shard's `out/`, a
    /// checkpoint's step); one holding more than `limit` entries there is refused, since what
    /// is not checked could not be trusted.
    public func checkInputTree(_ path: String, field: String, fs: FileSystem, depth: Int = 3, limit: Int = 10_000) throws {
        var budget = limit
        let root = PathPolicy.realOf(resolve(path), fs: fs)
        func walk(_ dir: String, _ level: Int) throws {
            guard level < depth, (try? fs.info(dir))?.kind == .directory else { return }
            for name in (try? fs.list(dir)) ?? [] {
                budget -= 1
                guard budget >= 0 else {
                    throw JobError.permanent("input folder \(root) holds more than \(limit) entries within \(depth) levels, and each link in a folder input is checked",
                                             field: field, hint: "name the model, tokenizer or shard folder itself, not a folder around many files")
                }
                let entry = dir + "/" + name
                switch (try? fs.info(entry))?.kind {
                case .symlink?:
                    guard (try? fs.realpath(entry)) != nil else { continue }  // dangling: nothing to read
                    _ = try checkInput(entry, field: field, fs: fs)
                case .directory?: try walk(entry, level + 1)
                default: break
                }
            }
        }
        try walk(root, 0)
    }

    /// `path` with symlinks resolved in its deepest existing ancestor (the rest appended as is).
    static func realOf(_ path: String, fs: FileSystem) -> String {
        var head = path
        var tail: [String] = []
        while head != "/" && !head.isEmpty {
            if let info = try? fs.info(head) {
                if let real = try? fs.realpath(head) {
                    return normalize(([real] + tail.reversed()).joined(separator: "/"))
                }
                // A dangling symlink would let a write create its target anywhere.
                if info.kind == .symlink { return "dangling symlink " + head }
            }
            tail.append(NSStringPath(head).last)
            head = NSStringPath(head).parent
        }
        return normalize("/" + tail.reversed().joined(separator: "/"))
    }

    /// Two outputs written by both when one is the other or lies inside it (a fetch's `dest` and a
    /// file another job writes in it).
    static func overlap(_ a: String, _ b: String) -> Bool { isInside(a, b) || isInside(b, a) }

    static func isInside(_ path: String, _ root: String) -> Bool {
        guard path.hasPrefix("/") else { return false }
        return path == root || root == "/" || path.hasPrefix(root + "/")
    }

    static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        return FileManager.default.currentDirectoryPath + "/" + path
    }

    /// Removes `.`, empty components and `..` (never above `/`).
    public static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for c in path.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
            parts.append(c)
        }
        return "/" + parts.joined(separator: "/")
    }
}
