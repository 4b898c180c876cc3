// KernelSwitch: the FIDQ_… variables that force a kernel (to time or test another CPU's path), read one way,
// and the summary of the kernels a process runs.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Reads an environment variable naming one of a kernel's variants (`FIDQ_DOT8_KERNEL`,
/// `FIDQ_OVER_MEMORY_KERNEL`, `FIDQ_BF16`). Unset or empty keeps the default. A value that names
/// no variant, or one this CPU cannot run, also keeps the default, but says so on stderr: a run
/// meant to time or test Zen 3's path on a Zen 4 would otherwise time or test Zen 4's in silence.
public enum KernelSwitch {
    /// The variant `value` selects, and the warning to print when it is not the one asked for.
    ///
    /// - Parameters:
    ///   - variable: the variable's name, for the warning.
    ///   - value: its value, nil when unset.
    ///   - variants: every variant, in the order the warning lists them.
    ///   - name: a variant's spelling in the variable.
    ///   - aliases: other spellings (e.g. "0" for "off").
    ///   - isSupported: whether this CPU runs a variant.
    ///   - fallback: the variant without the variable.
    public static func choose<K>(
        _ variable: String, value: String?, variants: [K], name: (K) -> String,
        aliases: [String: String] = [:], isSupported: (K) -> Bool, fallback: K
    ) -> (choice: K, warning: String?) {
        guard let value, !value.isEmpty else { return (fallback, nil) }
        let spelled = aliases[value] ?? value
        guard let asked = variants.first(where: { name($0) == spelled }) else {
            let all = variants.map(name).joined(separator: ", ")
            return (fallback, "fidq: \(variable)=\(value) names none of \(all); using \(name(fallback))")
        }
        guard isSupported(asked) else {
            let runs = variants.filter(isSupported).map(name).joined(separator: ", ")
            return (fallback, "fidq: \(variable)=\(value): this CPU cannot run it (it runs \(runs)); using \(name(fallback))")
        }
        return (asked, nil)
    }

    /// `choose` on the variable's value in this process's environment, printing its warning on
    /// stderr. Each switch reads it once, into a `static let`.
    public static func fromEnvironment<K>(
        _ variable: String, variants: [K], name: (K) -> String, aliases: [String: String] = [:],
        isSupported: (K) -> Bool, fallback: K
    ) -> K {
        let value = getenv(variable).map { String(cString: $0) }
        let (choice, warning) = choose(
            variable, value: value, variants: variants, name: name, aliases: aliases,
            isSupported: isSupported, fallback: fallback)
        if let warning { fputs(warning + "\n", stderr) }
        return choice
    }
}

extension KernelSwitch {
    /// The kernels this process computes with, for a job's log: OpenBLAS's version and core type
    /// (its sgemm kernels), and the variants `FIDQ_OVER_MEMORY_KERNEL`, `FIDQ_BF16` and
    /// `FIDQ_DOT8_KERNEL` chose, e.g. "OpenBLAS 0.3.21 Cooperlake, cross-attention avx512, bfloat16
    /// avx512, 8-bit vnni". Two workers whose outputs differ in their last bits can be told apart
    /// by it: the sgemm kernels round differently on Zen 3 and Zen 4.
    public static var summary: String {
        let words = Gemm.library.split(separator: " ")
        let version = words.count > 1 && words[0] == "OpenBLAS" ? "OpenBLAS \(words[1])" : "BLAS"
        return "\(version) \(Gemm.coreDescription), cross-attention \(Attention.OverMemoryKernel.best.rawValue), "
            + "bfloat16 \(Gemm.BF16Kernel.fast.map { "\($0)" } ?? "off"), 8-bit \(Gemm.Int8Kernel.best)"
    }
}
