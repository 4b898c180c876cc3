// Prefetch: a producer thread running ahead of its consumer by a bounded number of items, in order
// (the `embed` job reads and tokenises the next block of passages while the model embeds this one).
import Foundation
import Threading

/// Runs `produce` on a thread of its own, ahead of the consumer, holding at most `depth`
/// finished items; `next()` hands them out in production order.
///
/// `produce` returns nil at the end; an error it throws is handed out by `next()` in its place
/// (after every item produced before it) and ends production. The owner calls `stop()` when it
/// leaves, normally or by an error (a `defer`): it asks the producer to finish the item in hand
/// and waits until its thread has left `produce`, so nothing the producer reads (a file, a
/// tokenizer) is touched after the consumer returns, and no thread stays blocked on a full queue.
final class Prefetch<Item>: @unchecked Sendable {
    private let lock = NSCondition()
    private var queue: [Result<Item, Error>] = []
    private var ended = false  // the producer will add nothing more
    private var stopping = false  // the consumer wants no more
    private var exited = false  // the producer thread has left `produce` for good
    let depth: Int
    /// Set when no thread could be started: `next()` then produces each item itself, in order.
    private var inline: (() throws -> Item?)?

    /// Starts the producer thread at once, or, when the system refuses a thread (the process
    /// limit), says so once on stderr and produces in `next()` instead. Foundation's `Thread`
    /// dropped a refused start silently, and `next()` waited for ever.
    init(depth: Int, produce: @escaping () throws -> Item?) {
        precondition(depth >= 1, "Prefetch: depth \(depth)")
        self.depth = depth
        do {
            try startThread("a thread that reads ahead") { [self] in run(produce) }
        } catch {
            fputs("fidq: \(error); reading as it goes instead\n", stderr)
            inline = produce
            exited = true
        }
    }

    private func run(_ produce: () throws -> Item?) {
        defer {
            lock.lock()
            ended = true
            exited = true
            lock.broadcast()
            lock.unlock()
        }
        while true {
            lock.lock()
            while queue.count >= depth && !stopping { lock.wait() }
            let stop = stopping
            lock.unlock()
            if stop { return }
            let item: Result<Item, Error>
            do {
                guard let made = try produce() else { return }
                item = .success(made)
            } catch {
                item = .failure(error)
            }
            lock.lock()
            queue.append(item)
            if case .failure = item { ended = true }
            lock.broadcast()
            lock.unlock()
            if case .failure = item { return }
        }
    }

    /// The next item in production order, waiting for it; nil once the producer has ended (or
    /// after `stop()`). Rethrows the producer's error at its position.
    func next() throws -> Item? {
        if let produce = inline {
            lock.lock()
            let over = stopping || ended
            lock.unlock()
            if over { return nil }
            do {
                guard let made = try produce() else {
                    ended = true
                    return nil
                }
                return made
            } catch {
                ended = true
                throw error
            }
        }
        lock.lock()
        defer { lock.unlock() }
        while queue.isEmpty && !ended && !stopping { lock.wait() }
        if stopping || queue.isEmpty { return nil }
        let first = queue.removeFirst()
        lock.broadcast()
        return try first.get()
    }

    /// Asks the producer to stop after the item in hand and waits until it has. Idempotent.
    func stop() {
        lock.lock()
        stopping = true
        queue.removeAll()
        lock.broadcast()
        while !exited { lock.wait() }
        lock.unlock()
    }
}
