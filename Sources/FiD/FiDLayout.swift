// FiDLayout: what FiD's scripts write under `checkpoint_dir/name/`, and the FiD options a kind
// accepts so FiD's command lines run unchanged.
import Foundation
import Jobs

/// FiD's run folder `checkpoint_dir/name/`: the scripts' outputs copied there, each under a
/// temporary name and then renamed, so a reader never sees half a file or folder.
public enum FiDLayout {
    /// Copies the last step and `best_dev` to FiD's layout `checkpoint_dir/name/checkpoint/`.
    public static func exportCheckpoints(_ result: TrainResult, to run: String, kind: String, _ context: JobContext) throws {
        let dest = run + "/checkpoint"
        var pairs = [(result.latest, "step-\(result.steps)")]
        if let best = result.bestDev { pairs.append((best, "best_dev")) }
        for (src, name) in pairs { try FiDLayout.copy(src, to: dest + "/" + name, tag: context.token) }
        try Data("step-\(result.steps)\n".utf8).write(to: URL(fileURLWithPath: dest + "/latest"), options: .atomic)
        context.log("\(kind): exported step-\(result.steps)\(result.bestDev == nil ? "" : " and best_dev") to \(dest)")
    }

    /// Copies `source` (a file or a folder) to `destination`, replacing what is there.
    public static func copy(_ source: String, to destination: String, tag: String) throws {
        let fm = FileManager.default
        let folder = (destination as NSString).deletingLastPathComponent
        try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let staged = folder + "/." + (destination as NSString).lastPathComponent + ".\(tag).tmp"
        try? fm.removeItem(atPath: staged)
        var isFolder: ObjCBool = false
        _ = fm.fileExists(atPath: source, isDirectory: &isFolder)
        if isFolder.boolValue {
            try fm.createDirectory(atPath: staged, withIntermediateDirectories: false)
            for f in try fm.contentsOfDirectory(atPath: source) where !f.hasPrefix(".") {
                try fm.copyItem(atPath: source + "/" + f, toPath: staged + "/" + f)
            }
        } else {
            try fm.copyItem(atPath: source, toPath: staged)
        }
        // A file replaces the old one in one rename; a folder cannot replace one, so the old goes first.
        if isFolder.boolValue, fm.fileExists(atPath: destination) { try fm.removeItem(atPath: destination) }
        guard Foundation.rename(staged, destination) == 0 else {
            let e = errno
            throw JobError.transient("cannot rename \(staged) to \(destination): \(String(cString: strerror(e)))")
        }
    }
}

/// FiD options that a kind accepts, so that FiD's own command lines (its README's) run, and that
/// change nothing: FiD's script ignores them too, or fidq has one behaviour where FiD offers two.
/// A run names the ones given in its log, with why.
public struct FiDIgnoredOptions: Equatable, Sendable {
    /// "option (why)" for each one given, in the order of `options`.
    public var given: [String] = []

    public init() {}

    /// The `options` (key, why) present in `c`; their values are not read.
    public init<K: CodingKey>(_ c: KeyedDecodingContainer<K>, _ options: [(K, String)]) {
        given = options.filter { c.contains($0.0) }.map { "\($0.0.stringValue) (\($0.1))" }
    }

    /// The log line, nil when none was given.
    public func note(_ kind: String) -> String? {
        given.isEmpty ? nil : "\(kind): FiD options without effect here: " + given.joined(separator: "; ")
    }
}
