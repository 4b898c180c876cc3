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
        for (name, raw) in entries(of: Array(folder.utf8CString.dropLast())) where isStale(name) { removeTree(raw) }
    }

    /// A live writer's staging file is modified more recently than this (it is written as it goes).
    public static let idleAfter: Double = 3600

    /// Removes the entries of `folder` whose names satisfy `isStale` and that nothing has modified
    /// for `idleAfter` seconds: the leftovers of killed writers, not the file of a writer still at
    /// work (a job attempt that lost its claim and the one that took over write one output at
    /// once; two retrieves of a round save one index). An hour also covers hosts whose clocks
    /// differ from the file server's.
    public static func removeIdle(in folder: String, where isStale: (String) -> Bool) {
        var clock = timespec()
        clock_gettime(CLOCK_REALTIME, &clock)
        let now = Double(clock.tv_sec)
        let base = Array(folder.utf8CString.dropLast())
        for (name, raw) in entries(of: base) where isStale(name) {
            var st = stat()
            guard lstat(raw + [0], &st) == 0, now - Double(st.st_mtim.tv_sec) > idleAfter else { continue }
            removeTree(raw)
        }
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

    /// Each entry's name (for matching) and its path as the bytes the system gave, so a name
    /// that is not UTF-8 is still removed.
    static func entries(of folder: [CChar]) -> [(name: String, path: [CChar])] {
        guard let d = opendir(folder + [0]) else { return [] }
        defer { closedir(d) }
        var out: [(String, [CChar])] = []
        while let entry = readdir(d) {
            let bytes = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if bytes == [46] || bytes == [46, 46] { continue }  // "." and ".."
            out.append((String(decoding: bytes, as: UTF8.self), folder + [47] + bytes.map { CChar(bitPattern: $0) }))
        }
        return out
    }

    static func removeTree(_ path: [CChar]) {
        let c = path + [0]
        var info = stat()
        guard lstat(c, &info) == 0 else { return }
        if info.st_mode & S_IFMT == S_IFDIR {
            for (_, child) in entries(of: path) { removeTree(child) }
            rmdir(c)
        } else {
            unlink(c)
        }
    }
}
