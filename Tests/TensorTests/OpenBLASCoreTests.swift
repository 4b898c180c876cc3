// OpenBLASCoreTests: fidq gives OpenBLAS this CPU's kernels when the library falls back to
// Prescott's SSE3 ones on a CPU it does not know (COpenBLASCore).
import COpenBLASCore
import Foundation
import Testing
@testable import Tensor

@Suite struct OpenBLASCoreTests {
    /// The rule the constructor applies: OpenBLAS's own order of instruction sets.
    @Test func coreFollowsTheInstructionSet() {
        func core(avx: Bool = false, avx2: Bool = false, fma: Bool = false, avx512: Bool = false, bf16: Bool = false) -> String? {
            fidq_openblas_core_for(avx ? 1 : 0, avx2 ? 1 : 0, fma ? 1 : 0, avx512 ? 1 : 0, bf16 ? 1 : 0).map { String(cString: $0) }
        }
        #expect(core(avx: true, avx2: true, fma: true, avx512: true, bf16: true) == "Cooperlake")
        #expect(core(avx: true, avx2: true, fma: true, avx512: true) == "SkylakeX")
        #expect(core(avx: true, avx2: true, fma: true) == "Haswell")
        #expect(core(avx: true, avx2: true) == "Sandybridge", "Haswell's kernels need FMA")
        #expect(core(avx: true) == "Sandybridge")
        #expect(core() == nil, "an SSE-only CPU keeps Prescott's kernels")
        #expect(core(bf16: true) == nil, "bfloat16 without AVX-512 is no AVX-512 CPU")
    }

    /// The kernels this process runs fit its CPU: with OPENBLAS_CORETYPE unset, a CPU with AVX2
    /// and FMA never runs Prescott's (OpenBLAS 0.3.21 picks them on Emerald Rapids; without
    /// fidq's constructor this fails there), and what fidq replaced is reported as such.
    @Test func aCPUWithAVX2NeverRunsPrescottsKernels() throws {
        let flags = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
            .split(separator: "\n").first { $0.hasPrefix("flags") }.map { Set($0.split(separator: " ").map(String.init)) } ?? []
        if let replaced = Gemm.replacedCore {
            #expect(replaced == "Prescott")
            #expect(Gemm.coreName != "Prescott")
            #expect(fidq_openblas_chosen_core().map { String(cString: $0) } == Gemm.coreName)
            #expect(KernelSwitch.summary.contains("\(Gemm.coreName) (fidq's choice; OpenBLAS fell back to Prescott on this CPU)"),
                    "\(KernelSwitch.summary)")
        } else {
            #expect(fidq_openblas_chosen_core() == nil)
            #expect(!KernelSwitch.summary.contains("fidq's choice"))
        }
        guard ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil else { return }  // the user's choice
        if flags.contains("avx2") && flags.contains("fma") {
            #expect(Gemm.coreName != "Prescott", "OpenBLAS runs SSE3 kernels on a CPU with AVX2 and FMA (\(Gemm.library))")
        }
    }
}
