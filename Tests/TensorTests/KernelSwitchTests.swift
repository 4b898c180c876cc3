// KernelSwitchTests: how a FIDQ_… kernel variable is read: the asked-for variant, or the default with a warning.
import Testing

@testable import Tensor

struct KernelSwitchTests {
    enum Kind: String, CaseIterable { case portable, avx2, vnni }

    /// This test's CPU: runs portable and avx2, not vnni; its default is avx2.
    func choose(_ value: String?) -> (choice: Kind, warning: String?) {
        KernelSwitch.choose(
            "FIDQ_TEST_KERNEL", value: value, variants: Kind.allCases, name: \.rawValue,
            aliases: ["slow": "portable"], isSupported: { $0 != .vnni }, fallback: .avx2)
    }

    @Test func unsetOrEmptyKeepsTheDefaultQuietly() {
        #expect(choose(nil).choice == .avx2 && choose(nil).warning == nil)
        // ops/test-coretypes passes FIDQ_DOT8_KERNEL= (empty) on the AVX-512 core types.
        #expect(choose("").choice == .avx2 && choose("").warning == nil)
    }

    @Test func aSupportedVariantIsChosenQuietly() {
        #expect(choose("portable").choice == .portable && choose("portable").warning == nil)
        #expect(choose("avx2").choice == .avx2 && choose("avx2").warning == nil)
        #expect(choose("slow").choice == .portable && choose("slow").warning == nil)
    }

    @Test func anUnknownNameKeepsTheDefaultAndSaysWhatItKnows() {
        let (choice, warning) = choose("avx")
        #expect(choice == .avx2)
        #expect(warning == "fidq: FIDQ_TEST_KERNEL=avx names none of portable, avx2, vnni; using avx2")
        // Names are exact: a case slip is unknown too, not silently the default.
        #expect(choose("AVX2").warning != nil)
    }

    @Test func aVariantThisCPUCannotRunKeepsTheDefaultAndSaysWhatItRuns() {
        let (choice, warning) = choose("vnni")
        #expect(choice == .avx2)
        #expect(warning == "fidq: FIDQ_TEST_KERNEL=vnni: this CPU cannot run it (it runs portable, avx2); using avx2")
    }

    /// The three switches read through it: each static holds a variant this CPU runs.
    @Test func theSwitchesHoldVariantsThisCPURuns() {
        #expect(Gemm.Int8Kernel.best.isSupported)
        #expect(Attention.OverMemoryKernel.best.isSupported)
        #expect(Gemm.BF16Kernel.fast?.isSupported ?? true)
    }
}
