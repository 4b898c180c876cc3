// TimingTests: the statistics and settings behind every benchmark figure (no timing is asserted).
import Testing

@testable import bench

@Suite struct TimingTests {
    @Test func medianOfOddAndEvenCounts() {
        #expect(Stats([3, 1, 2]).median == 2)
        #expect(Stats([4, 1, 3, 2]).median == 2.5)
        #expect(Stats([5]).median == 5)
    }

    @Test func spreadIsSlowestOverFastest() {
        let s = Stats([0.2, 0.1, 0.15])
        #expect(s.fastest == 0.1 && s.slowest == 0.2)
        #expect(abs(s.spread - 1.0) < 1e-12)
    }

    /// The ratio pairs samples of the same round: when the machine is 3x slower in some rounds
    /// and the two contenders were unlucky in different rounds, the ratio of medians is off by
    /// 3x while the paired ratio still says 10 %.
    @Test func speedupPairsSamplesOfTheSameRound() {
        let ours = Stats([1.0, 3.0, 1.0, 3.0, 3.0])  // seconds per op, round by round
        let peer = Stats([1.1, 3.3, 1.1, 3.3, 1.1])  // 10 % slower in the same round but the last
        #expect(abs(peer.median / ours.median - 1.1 / 3) < 1e-12)  // 0.37 from medians, misleading
        #expect(abs(ours.speedup(over: peer) - 1.1) < 1e-12)
        #expect(abs(peer.speedup(over: ours) - 1 / 1.1) < 1e-12)
        let ourSlow = Stats([2.0, 2.0, 2.0])
        let peerFast = Stats([1.0, 1.0, 1.0])
        #expect(ourSlow.speedup(over: peerFast) == 0.5)
    }

    @Test func interleavedKeepsRoundsAfterWarmupAndRotatesOrder() throws {
        var log: [String] = []
        var counter = 0.0
        func contender(_ name: String) -> Contender {
            Contender(name: name) {
                log.append(name)
                counter += 1
                return counter
            }
        }
        var settings = TimingSettings()
        settings.warmup = 1
        settings.samples = 2
        settings.settle = 0
        let stats = try Timing.interleaved([contender("a"), contender("b")], settings)
        #expect(log == ["a", "b", "b", "a", "a", "b"])
        // Warm-up round (1, 2) dropped; round 2 ran b=3 then a=4, round 3 a=5 then b=6.
        #expect(stats[0].rounds == [4, 5])
        #expect(stats[1].rounds == [3, 6])
    }

    @Test func sampleRunsUntilTheMinimumTime() {
        var calls = 0
        let seconds = Timing.sample(minTime: 0.01) { calls += 1 }
        #expect(calls >= 1)
        #expect(seconds * Double(calls) >= 0.01)
    }

    @Test func settingsFromEnvironment() throws {
        let s = try TimingSettings.fromEnvironment([
            "BENCH_SAMPLES": "9", "BENCH_MIN_TIME": "0.25", "BENCH_THREADS": "1, 4", "BENCH_QUIET": "0.3",
        ])
        #expect(s.samples == 9 && s.minTime == 0.25 && s.threads == [1, 4] && s.quietLoad == 0.3)
        let defaults = try TimingSettings.fromEnvironment([:])
        #expect(defaults.samples == 7 && defaults.threads == [1, 2] && defaults.quietLoad == nil)
    }

    @Test func badSettingsAreThrownErrorsNamingTheVariable() {
        for env in [["BENCH_SAMPLES": "many"], ["BENCH_THREADS": "0"], ["BENCH_SAMPLES": "0"]] {
            #expect {
                try TimingSettings.fromEnvironment(env)
            } throws: { error in
                "\(error)".contains(env.keys.first!) || "\(error)".contains("samples=0")
            }
        }
    }
}
