// PrefetchTests: the producer thread the embed job tokenises on: order, bounded lead, errors at their
// position, and a stop that never leaves the producer blocked or running.
import Foundation
import Testing
@testable import FiD

private struct Boom: Error, Equatable { var at: Int }

/// A counter shared with the producer thread.
private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func next() -> Int { lock.lock(); defer { lock.unlock() }; value += 1; return value - 1 }
    var current: Int { lock.lock(); defer { lock.unlock() }; return value }
}

@Suite struct PrefetchTests {
    /// Items come out in production order, each once, and the producer never runs more than
    /// `depth` finished items (plus the one in hand) ahead of the consumer.
    @Test(arguments: [1, 2])
    func itemsComeInOrderWithABoundedLead(depth: Int) throws {
        let made = Counter()
        let prefetch = Prefetch<Int>(depth: depth) {
            let i = made.next()
            return i < 50 ? i : nil
        }
        defer { prefetch.stop() }
        var got: [Int] = []
        while let i = try prefetch.next() {
            // Let the producer run as far ahead as it may, then check how far that was.
            usleep(i % 10 == 0 ? 20_000 : 200)
            #expect(made.current - got.count <= depth + 2, "produced \(made.current) with \(got.count) consumed")
            got.append(i)
        }
        #expect(got == Array(0..<50))
        #expect(try prefetch.next() == nil)
    }

    /// An error comes out after every item produced before it, and ends the sequence.
    @Test func anErrorComesAtItsPosition() throws {
        let made = Counter()
        let prefetch = Prefetch<Int>(depth: 2) {
            let i = made.next()
            if i == 3 { throw Boom(at: i) }
            return i
        }
        defer { prefetch.stop() }
        var got: [Int] = []
        do {
            while let i = try prefetch.next() { got.append(i) }
            Issue.record("no error after \(got)")
        } catch let e as Boom {
            #expect(e == Boom(at: 3))
        }
        #expect(got == [0, 1, 2])
        #expect(made.current == 4, "the producer went on after its error")
    }

    /// A consumer that leaves early stops the producer: `stop()` returns only once the producer
    /// has left its closure, and it produces nothing after that.
    @Test func stopWaitsForTheProducerAndEndsIt() throws {
        let made = Counter()
        let prefetch = Prefetch<Int>(depth: 1) {
            usleep(5_000)
            return made.next()
        }
        #expect(try prefetch.next() == 0)
        prefetch.stop()
        let after = made.current
        usleep(50_000)
        #expect(made.current == after, "the producer ran after stop()")
        #expect(after <= 3)
        #expect(try prefetch.next() == nil)
        prefetch.stop()  // idempotent
    }
}
