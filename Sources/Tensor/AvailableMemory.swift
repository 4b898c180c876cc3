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
    /// `memory.limit_in_bytes`) and by what its address-space and data limits (`ulimit -v`, `-d`:
    /// how PBS's and SGE's h_vmem bound a job) leave when set (`resourceLimitLeft`).
    public static var bytes: Int {
        min(machineOrCgroup, resourceLimitLeft ?? Int.max)
    }

    /// Address space a computing thread maps at its first product: OpenBLAS's buffer (128 MiB,
    /// which it retries for ever when refused, so under `ulimit -v` a run the check passed spun
    /// at 100 % CPU) and glibc's malloc arena (64 MiB).
    public static let perThreadBytes = 192 << 20

    /// Whether the limit that binds is `ulimit -v` / `-d`, which counts the process itself (its
    /// mappings are subtracted): a plan's allowance for the process around it would count it twice.
    public static var limitCountsProcess: Bool {
        guard let left = resourceLimitLeft else { return false }
        return left < machineOrCgroup
    }

    /// What RLIMIT_AS and RLIMIT_DATA leave this process: each limit less what it maps already
    /// (VmSize, VmData: libraries, thread stacks, mapped inputs) and, before its first product,
    /// less `perThreadBytes` for each computing thread and one more (after it, they are in VmSize:
    /// counting them again refused every job after a worker's first); nil when neither limit is
    /// set. Comparing a plan with the whole limit passed runs that then hung in OpenBLAS.
    static var resourceLimitLeft: Int? {
        #if canImport(Glibc)
        let status = AvailableCPUs.readText("/proc/self/status") ?? ""
        let reserve = reserve(threads: Threads.count, cores: AvailableCPUs.count, hasRun: Gemm.hasRun)
        let remaining = [(RLIMIT_AS, "VmSize:"), (RLIMIT_DATA, "VmData:")].compactMap { resource, field -> Int? in
            var r = rlimit()
            guard getrlimit(__rlimit_resource_t(resource.rawValue), &r) == 0,
                  let limit = smallestLimit([UInt64(r.rlim_cur)]) else { return nil }
            return left(limit: limit, used: statusKiB(status, field).map { $0 << 10 } ?? 0, reserve: reserve)
        }
        return remaining.min()
        #else
        return nil
        #endif
    }

    /// A flag set once (the first product), read from any thread.
    final class OnceFlag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        func set() { lock.withLock { value = true } }
        var isSet: Bool { lock.withLock { value } }
    }

    /// Address space the computing threads will map at their first product: none once products
    /// have run (it is in VmSize then); `threads` past the cores run no more at once.
    static func reserve(threads: Int, cores: Int, hasRun: Bool) -> Int {
        hasRun ? 0 : perThreadBytes * (min(threads, cores) + 1)
    }

    /// A limit less what is used and reserved, never below 0.
    static func left(limit: Int, used: Int, reserve: Int) -> Int { max(0, limit - used - reserve) }

    /// A `/proc/self/status` field in kB (`VmSize:\t  383000 kB`), nil when absent.
    static func statusKiB(_ status: String, _ field: String) -> Int? {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field) }) else { return nil }
        return Int(line.dropFirst(field.count).filter(\.isNumber))
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
