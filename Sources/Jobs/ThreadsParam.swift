// ThreadsParam: the `threads` param every kind accepts without declaring it.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `params.threads` (an integer >= 1) is taken out of the params before the kind's own strict
/// decoding sees them, so every kind accepts it and none declares it (a kind must not use the
/// name for anything else). It reaches the handler as `JobContext.threads`, capped by the
/// worker's `--threads`.
public enum ThreadsParam {
    /// The params without `threads`, and its value when present.
    /// - Throws: `JobError.permanent` naming `params.threads` unless it is an integer >= 1.
    public static func split(_ params: JSONValue) throws -> (JSONValue, Int?) {
        guard case .object(var o) = params, let value = o.removeValue(forKey: "threads") else { return (params, nil) }
        if case .null = value { return (.object(o), nil) }
        guard case .number(let d) = value, d >= 1, d == d.rounded(), d <= 4096 else {
            throw JobError.permanent("expected an integer in 1…4096, found \(describe(value))", field: "params.threads",
                                     hint: "threads for BLAS and fidq's kernels; the worker's --threads is the default and the cap")
        }
        return (.object(o), Int(d))
    }

    static func describe(_ v: JSONValue) -> String {
        switch v {
        case .string(let s): return "\"\(s)\""
        case .number(let d): return format3(d, d == d.rounded() ? 0 : 3)
        case .bool(let b): return "\(b)"
        case .array: return "an array"
        case .object: return "an object"
        case .null: return "null"
        }
    }
}
