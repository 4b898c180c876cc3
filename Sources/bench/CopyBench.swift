// CopyBench: `bench copy`, the machine's copy bandwidth, the yardstick for elementwise kernels.
import Foundation
import Tensor

/// Copy bandwidth over buffers far larger than the caches (256 MiB each way), with `parallelFor`
/// so it uses the same threads as our kernels. GB/s counts bytes read plus bytes written, the
/// convention elementwise kernel benchmarks use too (a softmax over X bytes moves 2·X).
enum CopyBench {
    /// Bytes in each of the source and destination buffers.
    static let bytes = 256 << 20

    /// Source and destination of the copy; allocated once and kept so kernel benchmarks can
    /// interleave `contenders` with their own without paying the allocation again.
    final class Buffers {
        let src: UnsafeMutableBufferPointer<Float>
        let dst: UnsafeMutableBufferPointer<Float>

        init(bytes: Int = CopyBench.bytes) {
            let count = bytes / MemoryLayout<Float>.stride
            src = .allocate(capacity: count)
            dst = .allocate(capacity: count)
            // Touch every page now so no sample pays the page faults.
            for i in 0..<count { src[i] = Float(i & 1023) }
            dst.initialize(repeating: 0)
        }

        deinit {
            src.deallocate()
            dst.deallocate()
        }

        /// Bytes moved by one copy: read plus write.
        var bytesMoved: Double { Double(2 * src.count * MemoryLayout<Float>.stride) }
    }

    /// The copy as an element loop in Swift (what an elementwise kernel's memory traffic looks
    /// like) and as libc `memcpy` on the same chunks (the library's best).
    static func contenders(_ buffers: Buffers, minTime: Double) -> [Contender] {
        let src = buffers.src
        let dst = buffers.dst
        // Chunks of at least 1 MiB so the threads' work dwarfs the dispatch cost.
        let grain = 1 << 18
        return [
            Contender(name: "Swift loop") {
                Timing.sample(minTime: minTime) {
                    parallelFor(src.count, grain: grain) { range in
                        for i in range { dst[i] = src[i] }
                    }
                }
            },
            Contender(name: "memcpy") {
                Timing.sample(minTime: minTime) {
                    parallelFor(src.count, grain: grain) { range in
                        _ = memcpy(
                            dst.baseAddress! + range.lowerBound, src.baseAddress! + range.lowerBound,
                            range.count * MemoryLayout<Float>.stride)
                    }
                }
            },
        ]
    }

    static func run(_ settings: TimingSettings) throws {
        print("## copy: copy bandwidth, 256 MiB → 256 MiB, GB/s counting read + write (1 GB = 1e9 B)")
        print("The yardstick for elementwise kernels (goal for them: ≥ 0.5 × copy at the same threads).")
        print("spread: slowest/fastest sample − 1, worst contender; \(LoadMeter.legend)")
        let buffers = Buffers()
        let table = Table(["threads", "Swift loop", "memcpy", "loop/memcpy", "spread", "other+steal"])
        for threads in settings.threads {
            Threads.set(threads)
            try Machine.waitForQuiet(settings)
            let meter = LoadMeter(peers: [])
            let stats = try Timing.interleaved(contenders(buffers, minTime: settings.minTime), settings)
            let gbs = stats.map { buffers.bytesMoved / $0.median / 1e9 }
            table.add([
                "\(threads)", fixed(gbs[0]), fixed(gbs[1]), ratio(stats[0].speedup(over: stats[1])),
                percent(stats.map(\.spread).max()!), meter.summary(),
            ])
        }
        print()
    }
}
