// LRSchedule: FiD's learning-rate schedules `fixed` and `linear` (warmup, then linear decay).

/// A learning-rate multiplier as a function of the scheduler steps taken so far, as FiD's
/// `LambdaLR` schedules compute it (fid-spec §8.1).
///
/// PyTorch's `LambdaLR` sets `lr = base · factor(s)` where `s` counts `scheduler.step()` calls;
/// FiD calls it once after each optimizer step, so the update number `k` (1-based) runs at
/// `factor(k − 1)`. Pass `optimizer.state.step` before the update: with warmup the very first
/// update runs at LR 0, as in FiD.
public struct LRSchedule: Codable, Equatable, Sendable {
    /// `fixed`: factor 1 always. `linear`: warmup from 0, then linear decay to 0.
    public var kind: OptimConfig.Scheduler
    /// Steps of linear warmup from 0 (FiD `--warmup_steps`).
    public var warmupSteps: Int
    /// The step at which the decay reaches 0 (FiD `--scheduler_steps`, defaulting to `--total_steps`).
    public var schedulerSteps: Int
    /// Linear schedule only: hold factor 1 after warmup instead of decaying (FiD `--fixed_lr`).
    public var fixedLr: Bool
    /// The floor the schedule decays to; FiD always passes 0.
    public var minRatio: Double

    public init(
        kind: OptimConfig.Scheduler, warmupSteps: Int = 0, schedulerSteps: Int = 1, fixedLr: Bool = false,
        minRatio: Double = 0
    ) {
        self.kind = kind
        self.warmupSteps = warmupSteps
        self.schedulerSteps = schedulerSteps
        self.fixedLr = fixedLr
        self.minRatio = minRatio
    }

    /// The multiplier after `s` scheduler steps, with FiD's `WarmupLinearScheduler.lr_lambda`
    /// arithmetic in Double, term for term.
    public func factor(afterSteps s: Int) -> Double {
        switch kind {
        case .fixed:
            return 1
        case .linear:
            if s < warmupSteps {
                return (1 - minRatio) * Double(s) / Double(max(1, warmupSteps)) + minRatio
            }
            if fixedLr { return 1 }
            let span = max(1.0, Double(schedulerSteps - warmupSteps))
            return max(0, 1.0 + (minRatio - 1) * Double(s - warmupSteps) / span)
        }
    }

    /// `base · factor(afterSteps: s)`.
    public func lr(base: Double, afterSteps s: Int) -> Double { base * factor(afterSteps: s) }
}
