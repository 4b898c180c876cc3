// FrozenArray: immutable elements in memory of their own, read by hot loops without reference counting.

/// A read-only copy of an array of trivial values. Hot loops on several threads read `buffer` through
/// a `let` reference, so they never touch a shared array's reference count (whose cache line would
/// bounce between cores on every lattice).
final class FrozenArray<T>: @unchecked Sendable {
    /// The elements; valid as long as this object lives, never written after init.
    let buffer: UnsafeBufferPointer<T>

    init(_ a: [T]) {
        let p = UnsafeMutableBufferPointer<T>.allocate(capacity: max(1, a.count))
        _ = p.initialize(from: a)
        buffer = UnsafeBufferPointer(start: p.baseAddress, count: a.count)
    }

    deinit {
        UnsafeMutableBufferPointer(mutating: buffer).deallocate()
    }

    @inline(__always) subscript(i: Int) -> T { buffer[i] }
    var count: Int { buffer.count }
}
