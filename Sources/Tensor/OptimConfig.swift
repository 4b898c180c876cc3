// OptimConfig: FiD's optimisation options as one Codable value, and the step that applies them.

/// FiD's optimisation options (`src/options.py add_optim_options`), with FiD's names and
/// defaults; job params and CLI flags decode into this same value.
///
/// Keys are snake_case as in FiD (`weight_decay`, `warmup_steps`, …). Missing keys take the
/// defaults below; keys this type does not know are left for the enclosing config, so it can be
/// decoded from a flat job `params` object.
public struct OptimConfig: Codable, Equatable, Sendable {
    /// FiD `--optim`.
    public enum Optim: String, Codable, CaseIterable, Sendable { case adam, adamw }
    /// FiD `--scheduler`.
    public enum Scheduler: String, Codable, CaseIterable, Sendable { case fixed, linear }

    /// `adam` (no weight decay, as FiD builds it) or `adamw`.
    public var optim: Optim = .adam
    /// `fixed` (constant) or `linear` (warmup, then decay).
    public var scheduler: Scheduler = .fixed
    /// Peak learning rate.
    public var lr: Double = 1e-4
    /// AdamW's decoupled decay; ignored by `adam`, as in FiD.
    public var weightDecay: Double = 0.1
    /// Linear schedule: warmup steps from LR 0.
    public var warmupSteps: Int = 1000
    /// Training length in steps.
    public var totalSteps: Int = 1000
    /// Linear schedule: where the decay reaches 0; `nil` means `totalSteps`.
    public var schedulerSteps: Int? = nil
    /// Maximum global gradient L2 norm.
    public var clip: Double = 1.0
    /// Linear schedule: constant LR after warmup.
    public var fixedLr: Bool = false

    enum CodingKeys: String, CodingKey, CaseIterable {
        case optim, scheduler, lr, clip
        case weightDecay = "weight_decay"
        case warmupSteps = "warmup_steps"
        case totalSteps = "total_steps"
        case schedulerSteps = "scheduler_steps"
        case fixedLr = "fixed_lr"
    }

    /// FiD's defaults, overridden by whatever is passed.
    public init(
        optim: Optim = .adam, scheduler: Scheduler = .fixed, lr: Double = 1e-4, weightDecay: Double = 0.1,
        warmupSteps: Int = 1000, totalSteps: Int = 1000, schedulerSteps: Int? = nil, clip: Double = 1.0,
        fixedLr: Bool = false
    ) {
        self.optim = optim
        self.scheduler = scheduler
        self.lr = lr
        self.weightDecay = weightDecay
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.schedulerSteps = schedulerSteps
        self.clip = clip
        self.fixedLr = fixedLr
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func choice<E: RawRepresentable & CaseIterable>(_ key: CodingKeys, _ fallback: E) throws -> E
        where E.RawValue == String {
            guard let raw = try c.decodeIfPresent(String.self, forKey: key) else { return fallback }
            guard let e = E(rawValue: raw) else {
                throw OptimConfigError(
                    field: key.rawValue, expected: "one of \(E.allCases.map(\.rawValue).joined(separator: ", "))",
                    found: "\"\(raw)\"")
            }
            return e
        }
        optim = try choice(.optim, Optim.adam)
        scheduler = try choice(.scheduler, Scheduler.fixed)
        lr = try c.decodeIfPresent(Double.self, forKey: .lr) ?? 1e-4
        weightDecay = try c.decodeIfPresent(Double.self, forKey: .weightDecay) ?? 0.1
        // Foundation reports 2.5 for an Int as "The given data was not valid JSON", naming nothing.
        func integer(_ key: CodingKeys) throws -> Int? {
            guard c.contains(key), try !c.decodeNil(forKey: key) else { return nil }
            if let i = try? c.decode(Int.self, forKey: key) { return i }
            if let d = try? c.decode(Double.self, forKey: key) {
                throw OptimConfigError(field: key.rawValue, expected: "an integer", found: d == d.rounded() && d.isFinite ? "\(d) (beyond ±9.2e18)" : "\(d)")
            }
            return try c.decode(Int.self, forKey: key)  // a string or list: the type mismatch names the field
        }
        warmupSteps = try integer(.warmupSteps) ?? 1000
        totalSteps = try integer(.totalSteps) ?? 1000
        schedulerSteps = try integer(.schedulerSteps)
        clip = try c.decodeIfPresent(Double.self, forKey: .clip) ?? 1.0
        fixedLr = try c.decodeIfPresent(Bool.self, forKey: .fixedLr) ?? false
        try validate()
    }

    /// Rejects values FiD would crash on or silently misuse, naming the field.
    public func validate() throws {
        func check(_ ok: Bool, _ key: CodingKeys, _ expected: String, _ found: Any, hint: String? = nil) throws {
            if !ok { throw OptimConfigError(field: key.rawValue, expected: expected, found: "\(found)", hint: hint) }
        }
        try check(lr.isFinite && lr >= 0, .lr, "a finite number ≥ 0", lr)
        try check(weightDecay.isFinite && weightDecay >= 0, .weightDecay, "a finite number ≥ 0", weightDecay)
        try check(warmupSteps >= 0, .warmupSteps, "an integer ≥ 0", warmupSteps)
        try check(totalSteps >= 1, .totalSteps, "an integer ≥ 1", totalSteps)
        if let s = schedulerSteps { try check(s >= 1, .schedulerSteps, "an integer ≥ 1, or absent for total_steps", s) }
        try check(
            clip.isFinite && clip > 0, .clip, "a finite number > 0", clip,
            hint: "FiD always clips; a very large clip such as 1e9 effectively turns clipping off")
    }

    /// The schedule these options describe.
    public var schedule: LRSchedule {
        LRSchedule(
            kind: scheduler, warmupSteps: warmupSteps, schedulerSteps: schedulerSteps ?? totalSteps,
            fixedLr: fixedLr)
    }

    /// A fresh optimizer for `count` parameters, as FiD's `set_optim` builds it: `adam` without
    /// weight decay, `adamw` with `weightDecay` on every parameter.
    public func makeOptimizer(count: Int) -> any Optimizer {
        switch optim {
        case .adam: return Adam(count: count)
        case .adamw: return AdamW(count: count, weightDecay: weightDecay)
        }
    }

    /// One FiD optimizer step: clip the gradients in place to `clip`, then update at the LR the
    /// schedule gives for the steps already taken (`optimizer.state.step`).
    ///
    /// - Returns: the gradient norm before clipping and the LR used.
    @discardableResult
    public func step<O: Optimizer>(
        _ optimizer: inout O, params: UnsafeMutableBufferPointer<Float>, grads: UnsafeMutableBufferPointer<Float>
    ) -> (gradNorm: Float, lr: Double) {
        let norm = GradClip.clip(grads, maxNorm: clip)
        let rate = schedule.lr(base: lr, afterSteps: optimizer.state.step)
        optimizer.update(params: params, grads: UnsafeBufferPointer(grads), lr: rate)
        return (norm, rate)
    }

    /// `step` over arrays.
    @discardableResult
    public func step<O: Optimizer>(_ optimizer: inout O, params: inout [Float], grads: inout [Float])
        -> (gradNorm: Float, lr: Double)
    {
        params.withUnsafeMutableBufferPointer { p in
            grads.withUnsafeMutableBufferPointer { g in step(&optimizer, params: p, grads: g) }
        }
    }
}

/// An optimisation option with a value fidq cannot use.
public struct OptimConfigError: Error, CustomStringConvertible, Equatable {
    /// The option's FiD name, e.g. `optim`.
    public let field: String
    public let expected: String
    public let found: String
    public let hint: String?

    public init(field: String, expected: String, found: String, hint: String? = nil) {
        self.field = field
        self.expected = expected
        self.found = found
        self.hint = hint
    }

    public var description: String {
        var s = "optimisation option '\(field)': expected \(expected), found \(found)"
        if let hint { s += " (hint: \(hint))" }
        return s
    }
}
