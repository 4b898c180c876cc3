// StaleFiles: removes what a killed writer of the same output left beside it (its temporary names).
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Every output is written under a temporary name in its own folder and renamed into place. A
/// writer killed in between leaves that name behind, and nothing but the next writer of the same
/// output can remove it: outputs are one job's alone (submit refuses a second writer), so the only
/// other writer is a dead or superseded attempt of that job. Failures are ignored: a leftover that
/// cannot be removed costs disk, never correctness.
public enum StaleFiles {
    /// Removes the entries of `folder` whose names satisfy `isStale`: files, links, or whole folders
    /// (a staged checkpoint is a folder). Links are removed, never followed.
    public static func remove(in folder: String, where isStale: (String) -> Bool) {
        for name in entries(of: folder) where isStale(name) { removeTree(folder + "/" + name) }
    }

    /// Removes the entries beside `prefix` (a path) whose names start with its last component.
    public static func remove(prefix: String) {
        let slash = prefix.lastIndex(of: "/")
        let folder = slash.map { String(prefix[..<$0]) } ?? "."
        let start = slash.map { String(prefix[prefix.index(after: $0)...]) } ?? prefix
        guard !start.isEmpty else { return }
        remove(in: folder.isEmpty ? "/" : folder) { $0.hasPrefix(start) }
    }

    /// Removes `.<name>.<tag>.tmp` entries of `folder`, the staging names of `name` of every attempt.
    public static func removeStaged(in folder: String, name: String) {
        remove(in: folder) { $0.hasPrefix("." + name + ".") && $0.hasSuffix(".tmp") }
    }

    static func entries(of folder: String) -> [String] {
        guard let d = opendir(folder) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }

    static func removeTree(_ path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if info.st_mode & S_IFMT == S_IFDIR {
            for name in entries(of: path) { removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }
}
