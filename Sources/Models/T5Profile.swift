// T5Profile: optional wall-clock time per phase of a T5Model's forward and backward and of
// T5Stepper's steps, to see where the time goes (`ops/bench reader` prints it). Per model, not
// global: nothing is timed unless a profile is attached, and then each phase costs two clock reads.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Seconds and calls per phase, accumulated until `reset`.
public final class T5Profile {
    /// What a span of work is. Forward phases and their backward mirrors (`…Back`) are separate.
    public enum Phase: String, CaseIterable, Sendable {
        /// Embedding gathers, relative-position bias gathers, and their scatter-add backward.
        case embed
        /// RMSNorm.
        case norm, normBack
        /// The q, k, v, o and feed-forward products (sgemm; sgemv for one-row steps).
        case linear, linearBack
        /// Attention over a batch (`Attention.forward`/`backward`: scores, softmax, context).
        case attention, attentionBack
        /// T5Stepper's single-query self-attention over its key/value cache.
        case cacheAttention
        /// Residual adds, activations, dropout and its mask, buffer copies.
        case elementwise, elementwiseBack
        /// The output layer (logits = y · lm_headᵀ) and its two gradient products.
        case lmHead, lmHeadBack
        /// Cross-entropy and its gradient.
        case loss
    }

    public private(set) var seconds: [Phase: Double] = [:]
    public private(set) var calls: [Phase: Int] = [:]

    public init() {}

    public func reset() {
        seconds = [:]
        calls = [:]
    }

    /// Sum over every phase.
    public var total: Double { seconds.values.reduce(0, +) }

    /// Runs `body`, adding its wall-clock time to `phase`.
    @inline(__always)
    public func measure<T>(_ phase: Phase, _ body: () throws -> T) rethrows -> T {
        let t0 = Self.now()
        let r = try body()
        seconds[phase, default: 0] += Self.now() - t0
        calls[phase, default: 0] += 1
        return r
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

extension T5Model {
    /// Runs `body` under `phase` of the attached profile; without one, just runs it.
    @inline(__always)
    func timed<T>(_ phase: T5Profile.Phase, _ body: () throws -> T) rethrows -> T {
        guard let p = profile else { return try body() }
        return try p.measure(phase, body)
    }
}
