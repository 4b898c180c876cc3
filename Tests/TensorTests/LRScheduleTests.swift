// LRScheduleTests: FiD's fixed and linear schedules against FiD's WarmupLinearScheduler under PyTorch.
import Foundation
import Testing
import TestSupport
@testable import Tensor

fileprivate let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

@Suite struct LRScheduleTests {
    @Test func linearMatchesFiD() throws {
        let f = try Fixture("optim.json", in: fixtures)
        let cases = try #require(f.meta["schedules"] as? [[Int]])
        #expect(cases.count == 4)
        for (i, c) in cases.enumerated() {
            let s = LRSchedule(kind: .linear, warmupSteps: c[0], schedulerSteps: c[1], fixedLr: c[2] != 0)
            let want = try f.tensor("sched\(i).factor").data
            let got = (0..<want.count).map { Float(s.factor(afterSteps: $0)) }
            let r = compare("schedule \(c)", got, want, rtol: 1e-6, atol: 1e-7)
            #expect(r.ok, "\(r)")
        }
    }

    @Test func linearShape() {
        let s = LRSchedule(kind: .linear, warmupSteps: 4, schedulerSteps: 10)
        #expect(s.factor(afterSteps: 0) == 0)  // FiD's first update runs at LR 0
        #expect(s.factor(afterSteps: 2) == 0.5)
        #expect(s.factor(afterSteps: 4) == 1)
        #expect(s.factor(afterSteps: 7) == 0.5)
        #expect(s.factor(afterSteps: 10) == 0 && s.factor(afterSteps: 50) == 0)
        #expect(s.lr(base: 1e-4, afterSteps: 2) == 0.5e-4)
    }

    @Test func fixedIsConstant() {
        let s = OptimConfig(scheduler: .fixed, lr: 3e-4, warmupSteps: 5, totalSteps: 10).schedule
        #expect(s.kind == .fixed)
        for step in [0, 1, 4, 5, 9, 10, 1_000] {
            #expect(s.lr(base: 3e-4, afterSteps: step) == 3e-4)
        }
    }

    @Test func schedulerStepsDefaultsToTotalSteps() {
        let c = OptimConfig(scheduler: .linear, warmupSteps: 2, totalSteps: 12)
        #expect(c.schedule.schedulerSteps == 12)
        #expect(OptimConfig(scheduler: .linear, totalSteps: 12, schedulerSteps: 30).schedule.schedulerSteps == 30)
    }

    /// The fixed schedule through a whole optimizer step: clip, then update at the constant LR.
    @Test func fixedScheduleStepUsesBaseLR() {
        var rng = RNG(seed: 61)
        let config = OptimConfig(optim: .adam, scheduler: .fixed, lr: 1e-3, clip: 1e9)
        var opt = config.makeOptimizer(count: 10)
        var p = rng.normalArray(10)
        for _ in 0..<3 {
            var g = rng.normalArray(10)
            let (_, lr) = config.step(&opt, params: &p, grads: &g)
            #expect(lr == 1e-3)
        }
        #expect(opt.state.step == 3)
    }
}
