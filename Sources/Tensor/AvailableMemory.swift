// AvailableMemory: how many bytes this process may use (the machine's memory, capped by a cgroup
// limit under Slurm, systemd or a container), so a job can refuse a shape that cannot fit.
import Foundation
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

public enum AvailableMemory {
    /// Physical memory, capped by this process's cgroup memory limit (v2 `memory.max`, v1
    /// `memory.limit_in_bytes`) and its address-space and data limits (`ulimit -v`, `-d`: how
    /// PBS's and SGE's h_vmem bound a job) when set.
    public static var bytes: Int {
        min(machineOrCgroup, resourceLimit ?? Int.max)
    }

    /// The smaller of RLIMIT_AS and RLIMIT_DATA's soft limits in bytes; nil when neither is set.
    static var resourceLimit: Int? {
        #if canImport(Glibc)
        return smallestLimit([RLIMIT_AS, RLIMIT_DATA].map { resource -> UInt64? in
            var r = rlimit()
            guard getrlimit(__rlimit_resource_t(resource.rawValue), &r) == 0 else { return nil }
            return UInt64(r.rlim_cur)
        })
        #else
        return nil
        #endif
    }

    /// The smallest of soft limits as `getrlimit` reports them (UInt64.max: RLIM_INFINITY).
    static func smallestLimit(_ limits: [UInt64?]) -> Int? {
        limits.compactMap { $0 }.filter { $0 != UInt64.max }.map { $0 > UInt64(Int.max) ? Int.max : Int($0) }.min()
    }

    static var machineOrCgroup: Int {
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

    /// Bytes in GiB for messages: one decimal (so 23.6 and 24.0 read apart; whole numbers made
    /// "need at least 24 GiB, more than the 24 GiB"), an exponent past what a person reads.
    public static func gib(_ bytes: Double) -> String {
        let g = bytes / 1_073_741_824
        return String(format: g < 1 ? "%.2f" : g < 1e9 ? "%.1f" : "%.2e", g)
    }

    /// A cgroup memory limit file's value in bytes; nil for `max` (v2's none) or what does not
    /// parse (v1 writes its none as a number near 2^63, which the `min` above absorbs).
    static func parseLimit(_ text: String) -> Int? {
        guard let n = Int(text.filter { !$0.isWhitespace }), n > 0 else { return nil }
        return n
    }
}
