// Checkpoints: durable step-N folders with a `latest` pointer inside a job's out/, safe against take-overs.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// A job's checkpoint folder, `out/checkpoint/`, which moves with the claim on a take-over.
///
/// ```
/// out/checkpoint/
///   step-120/                     one complete checkpoint (the handler's files + .checkpoint.json)
///   step-130/
///   best_dev/                     a named checkpoint, replaced as a whole
///   latest                        text file: "step-130\n" (written temp + fsync + rename)
///   .step-140.<token>.tmp/        being written by the attempt holding <token>
/// ```
///
/// `save(step:)` writes into a temporary folder named with the claim token, fsyncs every file and
/// the folder, renames it to `step-N` (no-replace: a folder cannot be renamed onto a non-empty one,
/// and every checkpoint holds `.checkpoint.json`), fsyncs `checkpoint/`, and only then moves
/// `latest`. If `step-N` already exists it came from an earlier attempt of this job (only durable
/// folders are ever renamed in), so it is kept, ours is discarded, and `latest` moves to it: the
/// first writer of a step wins, as the first finisher of a job does.
///
/// `latest` is a regular file rather than a symlink: it survives NFS and a folder rename
/// (`running/<id>@<token>` → `done/<id>`), and Python reads it with
/// `open(".../checkpoint/latest").read().strip()`.
///
/// A worker whose claim was taken over (its folder renamed to the taker's name) can no longer
/// write: every path here is built from its old folder name, and nothing here creates more than
/// one level under a folder that must already exist, so its writes fail and surface as
/// `CancellationError(.leaseLost)`.
public final class Checkpoints: @unchecked Sendable {
    /// `<job folder>/out/checkpoint`.
    public let root: String
    /// How many `step-N` folders to keep (the one `latest` names is never removed).
    public let keepLast: Int
    let folder: String
    let token: String
    let fs: FileSystem

    /// The marker every complete checkpoint holds; also what makes the folder non-empty, so a
    /// rename onto it fails instead of replacing it.
    public static let marker = ".checkpoint.json"

    /// Opens (creating one level) `out/checkpoint/`, and removes what crashed attempts left:
    /// temporary folders of other tokens and half-deleted folders.
    init(folder: String, token: String, fs: FileSystem, keepLast: Int) throws {
        precondition(keepLast >= 1, "keepLast must be at least 1")
        self.folder = folder
        self.root = folder + "/out/checkpoint"
        self.token = token
        self.fs = fs
        self.keepLast = keepLast
        try guarded {
            do { try fs.retrying { try fs.mkdir(root) } } catch let e as FSError where e.code == EEXIST {
                guard (try? fs.info(root))?.kind == .directory else { throw e }
            }
        }
        // Leftovers of killed (or taken-over) attempts. Their writers cannot reach this folder any
        // more (it was renamed away from them), so nothing here is still being written by name.
        for name in (try? fs.list(root)) ?? [] where name.hasPrefix(".") && name != Checkpoints.marker {
            if name.hasSuffix(".tmp") || name.hasPrefix(".trash-") {
                if name.hasPrefix(".trash-"), restoreNamed(fromTrash: name) { continue }
                try? fs.removeTree(root + "/" + name)
            }
        }
    }

    // MARK: step checkpoints

    /// Writes checkpoint `step`: `write` fills the folder it is given (plain files, any layout);
    /// then the folder is made durable, renamed to `step-N`, `latest` is moved to it, and all but
    /// the last `keepLast` step folders are removed.
    ///
    /// - Returns: the final folder, `out/checkpoint/step-N`.
    /// - Throws: `CancellationError(.leaseLost)` once the job was taken over; the handler's errors;
    ///   file errors.
    @discardableResult
    public func save(step: Int, _ write: (String) throws -> Void) throws -> String {
        precondition(step >= 0, "checkpoint steps are >= 0")
        let name = Checkpoints.stepName(step)
        let final = root + "/" + name
        let staged = try stage(name, write)
        try guarded {
            do {
                try fs.retrying { try fs.rename(staged, final) }
            } catch let e as FSError {
                // The outcome decides: our marker at the final name means a retransmitted rename worked.
                if readMarker(final)?.token == token {
                    // Ours: a retransmitted rename that worked (nothing staged is left), or this
                    // attempt's own earlier save of the step, which is kept as another attempt's is.
                    if fs.exists(staged) { try? fs.removeTree(staged) }
                } else if e.code == EEXIST || e.code == ENOTEMPTY, readMarker(final) != nil {
                    // An earlier attempt already committed this step: keep it, drop ours.
                    try? fs.removeTree(staged)
                } else if e.code == EEXIST || e.code == ENOTEMPTY {
                    // A folder without a marker (a crash inside `discardSteps`, or a marker removed
                    // by hand) is never resumed from, but blocked every save of its step: it goes
                    // through a `.trash-` name, and ours takes its place. A commit is one rename of
                    // a folder holding its marker, so no other attempt's commit is in flight here.
                    let trash = root + "/.trash-" + name + "." + token
                    try fs.retrying { try fs.rename(final, trash) }
                    try? fs.removeTree(trash)
                    try fs.retrying { try fs.rename(staged, final) }
                } else {
                    try? fs.removeTree(staged)
                    throw e
                }
            }
            try syncPath(root)
            if (pointer() ?? -1) <= step {
                try fs.writeAtomically(root + "/latest", Data((name + "\n").utf8), tag: token)
                try syncPath(root)
            }
        }
        prune()
        return final
    }

    /// The checkpoint to resume from: the step `latest` names, if that folder is complete;
    /// otherwise (no pointer yet, or it names a removed folder) the highest complete `step-N`.
    /// Temporary folders are never returned.
    public func latest() -> (step: Int, path: String)? {
        if let step = pointer() { return (step, root + "/" + Checkpoints.stepName(step)) }
        guard let step = steps().last else { return nil }
        return (step, root + "/" + Checkpoints.stepName(step))
    }

    /// The step `latest` names, if that folder is complete.
    func pointer() -> Int? {
        guard let step = Checkpoints.pointedStep(root + "/latest", fs: fs),
              readMarker(root + "/" + Checkpoints.stepName(step)) != nil else { return nil }
        return step
    }

    /// The step a `latest` file names ("step-130\n"), or nil for anything else.
    static func pointedStep(_ path: String, fs: FileSystem) -> Int? {
        guard let text = try? fs.readString(path),
              let name = text.split(whereSeparator: { $0 == "\n" || $0 == " " || $0 == "\r" }).first else { return nil }
        return parseStep(String(name))
    }

    /// An input path naming a checkpoint's `latest` file means the folder it names: FiD's
    /// `latest` is a symlink, so `model_path: …/checkpoint/latest` loads the last checkpoint
    /// there, and must here too. Any other path (or a `latest` that names no existing folder)
    /// comes back unchanged.
    public static func followingLatest(_ path: String, fs: FileSystem) -> String {
        guard path.hasSuffix("/latest"), (try? fs.info(path))?.kind == .regular,
              let step = pointedStep(path, fs: fs) else { return path }
        let target = String(path.dropLast("latest".count)) + stepName(step)
        return (try? fs.info(target))?.kind == .directory ? target : path
    }

    /// Removes the `latest` pointer and every step checkpoint (named ones such as `best_dev` stay),
    /// for a handler whose checkpoints record other work (another shard, another input) and that
    /// starts over: `save(step:)` keeps an existing step, so stale ones must go first. Each marker
    /// goes before its folder, so a crash midway leaves incomplete folders, which are never resumed.
    public func discardSteps() throws {
        try guarded {
            if fs.exists(root + "/latest") { try fs.retrying { try fs.unlink(root + "/latest") } }
            for step in steps() {
                let dir = root + "/" + Checkpoints.stepName(step)
                try fs.retrying { try fs.unlink(dir + "/" + Checkpoints.marker) }
                try fs.removeTree(dir)
            }
            try syncPath(root)
        }
    }

    /// Steps of the complete `step-N` folders, ascending.
    public func steps() -> [Int] {
        ((try? fs.list(root)) ?? []).compactMap { name in
            Checkpoints.parseStep(name).flatMap { readMarker(root + "/" + name) != nil ? $0 : nil }
        }.sorted()
    }

    /// Removes complete step folders beyond the newest `keepLast`, never the one `latest` names.
    /// Each goes through a `.trash-` name first, so no half-deleted `step-N` is ever visible.
    func prune() {
        let keep = Set(steps().suffix(keepLast) + [latest()?.step].compactMap { $0 })
        for step in steps() where !keep.contains(step) {
            let name = Checkpoints.stepName(step)
            let trash = root + "/.trash-" + name + "." + token
            if (try? fs.retrying { try fs.rename(root + "/" + name, trash) }) != nil { try? fs.removeTree(trash) }
        }
    }

    // MARK: named checkpoints

    /// Writes (replacing) a named checkpoint such as `best_dev` (FiD keeps `checkpoint/best_dev`).
    ///
    /// The new folder is staged and made durable first; the old one is renamed to a `.trash-`
    /// name and the new one into place. A crash between those two renames leaves no `best_dev`;
    /// the next `Checkpoints` open (every attempt makes one) puts the old one back.
    /// - Returns: the final folder.
    @discardableResult
    public func save(name: String, _ write: (String) throws -> Void) throws -> String {
        guard Checkpoints.isValidName(name) else {
            throw JobError.permanent("bad checkpoint name '\(name)'",
                                     hint: "use letters, digits, '_' and '-' (not step-N, not latest)")
        }
        let final = root + "/" + name
        let staged = try stage(name, write)
        let trash = root + "/.trash-" + name + "." + token
        try guarded {
            try? fs.removeTree(trash)  // a leftover of this attempt's own failed save
            if fs.exists(final) { try fs.retrying { try fs.rename(final, trash) } }
            do { try fs.retrying { try fs.rename(staged, final) } } catch {
                if readMarker(final)?.token != token {
                    if fs.exists(trash) && !fs.exists(final) { try? fs.rename(trash, final) }
                    try? fs.removeTree(staged)
                    throw error
                }
            }
            try syncPath(root)
        }
        try? fs.removeTree(trash)
        return final
    }

    /// A complete named checkpoint's folder, or nil.
    public func named(_ name: String) -> String? {
        guard Checkpoints.isValidName(name), readMarker(root + "/" + name) != nil else { return nil }
        return root + "/" + name
    }

    /// Puts a named checkpoint back from its trash name when the replacement never arrived.
    private func restoreNamed(fromTrash trash: String) -> Bool {
        // `.trash-<name>.<token>`: tokens contain dots, names do not.
        let rest = trash.dropFirst(".trash-".count)
        guard let dot = rest.firstIndex(of: ".") else { return false }
        let name = String(rest[..<dot])
        guard Checkpoints.isValidName(name), !fs.exists(root + "/" + name),
              readMarker(root + "/" + trash) != nil else { return false }
        return (try? fs.rename(root + "/" + trash, root + "/" + name)) != nil
    }

    // MARK: internals

    /// What `.checkpoint.json` records.
    struct Marker: Codable {
        var name: String
        var token: String
        var written: String
    }

    /// Makes `.<name>.<token>.tmp/`, lets `write` fill it, writes the marker, fsyncs it all.
    private func stage(_ name: String, _ write: (String) throws -> Void) throws -> String {
        let staged = root + "/." + name + "." + token + ".tmp"
        try guarded {
            if fs.exists(staged) { try fs.removeTree(staged) }  // our own earlier failed try
            // One level only: after a take-over `root` is gone and this fails, never re-creating it.
            try fs.retrying { try fs.mkdir(staged) }
        }
        do {
            try write(staged)
            try guarded {
                let marker = Marker(name: name, token: token, written: isoTimestamp())
                try fs.write(staged + "/" + Checkpoints.marker, try jsonEncoder().encode(marker), sync: false)
                try syncTree(staged)
            }
        } catch {
            try? fs.removeTree(staged)
            // The handler's own writes fail too once the folder was taken over: say so.
            if !(error is CancellationError), !fs.exists(folder) { throw CancellationError(reason: .leaseLost) }
            throw error
        }
        return staged
    }

    func readMarker(_ dir: String) -> Marker? {
        guard let data = try? fs.retrying({ try fs.read(dir + "/" + Checkpoints.marker, limit: 65536) }) else { return nil }
        return try? JSONDecoder().decode(Marker.self, from: data)
    }

    /// fsyncs every file and folder under `path`, then `path` itself. Symlinks hold no data of
    /// their own to sync (their folder's fsync records them) and are not followed.
    private func syncTree(_ path: String) throws {
        switch try fs.info(path).kind {
        case .directory:
            for name in try fs.list(path) { try syncTree(path + "/" + name) }
            try syncPath(path)
        case .regular: try syncPath(path)
        case .symlink, .other: break
        }
    }

    private func syncPath(_ path: String) throws { try fs.retrying { try fs.sync(path) } }

    /// Runs `body`; a file error once the job folder is gone becomes `leaseLost`.
    private func guarded<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as FSError {
            if !fs.exists(folder) { throw CancellationError(reason: .leaseLost) }
            throw e
        }
    }

    static func stepName(_ step: Int) -> String { "step-\(step)" }

    static func parseStep(_ name: String) -> Int? {
        guard name.hasPrefix("step-"), let n = Int(name.dropFirst(5)), n >= 0, stepName(n) == name else { return nil }
        return n
    }

    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && name != "latest" && parseStep(name) == nil && !name.hasPrefix("step-")
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
    }
}

extension FileSystem {
    /// `fsync` of an existing file or folder (a folder's fsync makes the renames in it durable).
    /// Not a protocol requirement: fault-injecting file systems sync through the real one.
    public func sync(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 { throw FSError("open", path, errno) }
        defer { close(fd) }
        if fsync(fd) != 0 { throw FSError("fsync", path, errno) }
    }
}
