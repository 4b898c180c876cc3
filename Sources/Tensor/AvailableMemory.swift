// AvailableMemory: how many bytes this process may use (the machine's memory, capped by a cgroup
// limit under Slurm, systemd or a container), so a job can refuse a shape that cannot fit.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

public enum AvailableMemory {
    /// Physical memory, capped by this process's cgroup memory limit (v2 `memory.max`, v1
    /// `memory.limit_in_bytes`) when one is set.
    public static var bytes: Int {
        let physical = Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
        let (v2Path, v1Path) = AvailableCPUs.cgroupPaths(controller: "memory")
        let base = "/sys/fs/cgroup"
        var limit: Int? = nil
        for dir in [base + v2Path, base] where limit == nil {
            limit = AvailableCPUs.readText(dir + "/memory.max").flatMap(parseLimit)
        }
        for dir in [base + "/memory" + v1Path, base + "/memory"] where limit == nil {
            limit = AvailableCPUs.readText(dir + "/memory.limit_in_bytes").flatMap(parseLimit)
        }
        return physical > 0 ? min(physical, limit ?? physical) : (limit ?? Int.max)
    }

    /// A cgroup memory limit file's value in bytes; nil for `max` (v2's none) or what does not
    /// parse (v1 writes its none as a number near 2^63, which the `min` above absorbs).
    static func parseLimit(_ text: String) -> Int? {
        guard let n = Int(text.filter { !$0.isWhitespace }), n > 0 else { return nil }
        return n
    }
}
