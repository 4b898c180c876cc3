// T5Arena: named activation buffers, allocated once for the largest shape seen and then reused.

/// Float buffers by name: `take` returns the same memory on every call with a size it has
/// already seen (or smaller), so a training step allocates nothing once the largest batch shape
/// has run. Contents are not cleared; `takeZeroed` clears.
final class T5Arena {
    private var slots: [String: (pointer: UnsafeMutablePointer<Float>, capacity: Int)] = [:]

    deinit { for s in slots.values { UnsafeMutableRawPointer(s.pointer).deallocate() } }

    /// A buffer of at least `count` floats under `name`.
    func take(_ name: String, _ count: Int) -> UnsafeMutablePointer<Float> {
        if let s = slots[name], s.capacity >= count { return s.pointer }
        if let s = slots[name] { UnsafeMutableRawPointer(s.pointer).deallocate() }
        let n = max(count, 1)
        let p = UnsafeMutableRawPointer.allocate(byteCount: n * 4, alignment: 64).bindMemory(to: Float.self, capacity: n)
        slots[name] = (p, n)
        return p
    }

    /// `take`, zero-filled.
    func takeZeroed(_ name: String, _ count: Int) -> UnsafeMutablePointer<Float> {
        let p = take(name, count)
        p.update(repeating: 0, count: count)
        return p
    }

    /// Bytes held (peak-memory reports).
    var bytes: Int { slots.values.reduce(0) { $0 + $1.capacity * 4 } }

    /// Frees every buffer.
    func release() {
        for s in slots.values { UnsafeMutableRawPointer(s.pointer).deallocate() }
        slots = [:]
    }
}
