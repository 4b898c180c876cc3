// AvailableCPUsTests: the affinity list and the cgroup quotas that bound fidq's default thread count.
import Foundation
import Testing
@testable import Tensor

@Suite struct AvailableCPUsTests {
    @Test func affinityListsCountTheirCPUs() {
        let status = "Name:\tfidq\nCpus_allowed:\tf0f\nCpus_allowed_list:\t0-3,8,10-11\nMems_allowed:\t1\n"
        #expect(AvailableCPUs.allowedList(status) == "0-3,8,10-11")
        #expect(AvailableCPUs.listCount("0-3,8,10-11") == 7)
        #expect(AvailableCPUs.listCount("5") == 1)
        for bad in ["", "3-1", "a-b", "1-2-3", ","] { #expect(AvailableCPUs.listCount(bad) == nil, "\(bad)") }
        #expect(AvailableCPUs.allowedList("Name:\tx\n") == nil)
    }

    @Test func quotasRoundUpToWholeCPUs() {
        #expect(AvailableCPUs.quotaV2("max 100000\n") == nil)
        #expect(AvailableCPUs.quotaV2("150000 100000\n") == 2)
        #expect(AvailableCPUs.quotaV2("50000 100000") == 1)
        #expect(AvailableCPUs.quotaV2("400000 100000") == 4)
        #expect(AvailableCPUs.quotaV1(quota: "-1\n", period: "100000\n") == nil)
        #expect(AvailableCPUs.quotaV1(quota: "250000\n", period: "100000\n") == 3)
    }

    @Test func memoryLimitsParse() {
        #expect(AvailableMemory.parseLimit("max\n") == nil)
        #expect(AvailableMemory.parseLimit("1073741824\n") == 1 << 30)
        #expect(AvailableMemory.parseLimit("") == nil && AvailableMemory.parseLimit("0") == nil)
        let physical = Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
        #expect(AvailableMemory.bytes > 0 && AvailableMemory.bytes <= physical)
        // `ulimit -v` / `-d` (PBS's and SGE's h_vmem) cap it too: the soft limits, RLIM_INFINITY none.
        #expect(AvailableMemory.smallestLimit([UInt64.max, UInt64.max]) == nil && AvailableMemory.smallestLimit([nil, nil]) == nil)
        #expect(AvailableMemory.smallestLimit([12 << 30, UInt64.max]) == 12 << 30)
        #expect(AvailableMemory.smallestLimit([12 << 30, 8 << 30]) == 8 << 30)
        #expect(AvailableMemory.bytes <= (AvailableMemory.resourceLimitLeft ?? Int.max))
        // What a limit leaves: less what the process maps already and OpenBLAS's buffers.
        #expect(AvailableMemory.left(limit: 1 << 30, used: 400 << 20, reserve: 384 << 20) == 240 << 20)
        #expect(AvailableMemory.left(limit: 500 << 20, used: 400 << 20, reserve: 384 << 20) == 0)
        // OpenBLAS's buffers and malloc's arenas per computing thread, before the first product
        // only (after it they are in VmSize: counted twice, every job after a worker's first was
        // refused), and no more threads than cores (--threads 16 on 2 cores runs 2 at once).
        #expect(AvailableMemory.reserve(threads: 2, cores: 2, hasRun: false) == 3 * AvailableMemory.perThreadBytes)
        #expect(AvailableMemory.reserve(threads: 16, cores: 2, hasRun: false) == 3 * AvailableMemory.perThreadBytes)
        #expect(AvailableMemory.reserve(threads: 8, cores: 64, hasRun: true) == 0)
        #expect(AvailableMemory.statusKiB("Name:\tfidq\nVmPeak:\t  999 kB\nVmSize:\t  383000 kB\nVmData: 12 kB\n", "VmSize:") == 383000)
        #expect(AvailableMemory.statusKiB("VmRSS:\t 1 kB\n", "VmSize:") == nil)
    }

    /// Messages' GiB keep one decimal: a need of 23.6 GiB against 24 read "24 … more than the 24".
    @Test func gibKeepsADecimal() {
        #expect(AvailableMemory.gib(23.6 * 1_073_741_824) == "23.6" && AvailableMemory.gib(24 * 1_073_741_824) == "24.0")
        #expect(AvailableMemory.gib(1e30).contains("e+"))
    }

    @Test func theCountIsWithinTheMachine() {
        let n = AvailableCPUs.count
        #expect(n >= 1 && n <= max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }
}
