// AvailableCPUs: how many cores this process may use, which is not how many the machine has
// under Slurm, taskset or a container (a 64-thread pool pinned to 8 cores runs far slower).
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

public enum AvailableCPUs {
    /// The CPUs in this process's affinity mask (taskset, Slurm's task affinity, a cpuset), capped
    /// by a cgroup CPU quota (`docker --cpus`, Slurm or systemd `CPUQuota`), rounded up; all online
    /// cores when neither can be read.
    public static var count: Int {
        let online = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        var n = readText("/proc/self/status").flatMap(allowedList).flatMap(listCount) ?? online
        if let quota = quotaCPUs() { n = min(n, quota) }
        return max(1, min(n, online))
    }

    /// `Cpus_allowed_list`'s value in /proc/self/status (`0-3,8-11`).
    static func allowedList(_ status: String) -> String? {
        for line in status.split(separator: "\n") where line.hasPrefix("Cpus_allowed_list:") {
            return String(line.dropFirst("Cpus_allowed_list:".count).filter { !$0.isWhitespace })
        }
        return nil
    }

    /// The number of CPUs in a kernel CPU list (`0-3,8,10-11` is 7); nil when it does not parse.
    static func listCount(_ list: String) -> Int? {
        var total = 0
        for part in list.split(separator: ",") {
            let ends = part.split(separator: "-", omittingEmptySubsequences: false)
            guard let lo = Int(ends[0]), let hi = Int(ends.count == 2 ? ends[1] : ends[0]), ends.count <= 2, hi >= lo
            else { return nil }
            total += hi - lo + 1
        }
        return total > 0 ? total : nil
    }

    /// cgroup v2 `cpu.max` (`max 100000`, or `150000 100000`: 1.5 CPUs) as whole CPUs, rounded up.
    static func quotaV2(_ text: String) -> Int? {
        let f = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard f.count == 2, let quota = Double(f[0]), let period = Double(f[1]), quota > 0, period > 0 else { return nil }
        return max(1, Int((quota / period).rounded(.up)))
    }

    /// cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` (quota -1: none) as whole CPUs.
    static func quotaV1(quota: String, period: String) -> Int? {
        guard let q = Double(quota.filter { !$0.isWhitespace }), let p = Double(period.filter { !$0.isWhitespace }),
              q > 0, p > 0 else { return nil }
        return max(1, Int((q / p).rounded(.up)))
    }

    /// The quota of this process's own cgroup, v2 or v1; nil when there is none.
    private static func quotaCPUs() -> Int? {
        let (v2Path, v1Path) = cgroupPaths(controller: "cpu")
        let base = "/sys/fs/cgroup"
        for dir in [base + v2Path, base] {
            if let text = readText(dir + "/cpu.max") { return quotaV2(text) }
        }
        for mount in [base + "/cpu", base + "/cpu,cpuacct"] {
            for dir in [mount + v1Path, mount] {
                if let q = readText(dir + "/cpu.cfs_quota_us"), let p = readText(dir + "/cpu.cfs_period_us") {
                    return quotaV1(quota: q, period: p)
                }
            }
        }
        return nil
    }

    /// This process's cgroup path in the v2 hierarchy and in v1's `controller` hierarchy (from
    /// /proc/self/cgroup; empty when absent).
    static func cgroupPaths(controller: String) -> (v2: String, v1: String) {
        var v2Path = ""
        var v1Path = ""
        for line in (readText("/proc/self/cgroup") ?? "").split(separator: "\n") {
            let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard f.count == 3 else { continue }
            if f[0] == "0" && f[1].isEmpty { v2Path = String(f[2]) }
            if f[1].split(separator: ",").contains(Substring(controller)) { v1Path = String(f[2]) }
        }
        return (v2Path, v1Path)
    }

    /// A small text file's contents (procfs and cgroupfs report size 0, so read until the end).
    static func readText(_ path: String) -> String? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20 {
            let n = fread(&chunk, 1, chunk.count, f)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
