// Tensor: a Float32 array with a shape; row-major, contiguous, copy-on-write.

/// A Float32 tensor: a shape and row-major contiguous storage.
///
/// A value type over `[Float]`, so copies are cheap until written. Kernels take its storage
/// through `withUnsafeBufferPointer` / `withUnsafeMutableBufferPointer`; nothing in fidq
/// subscripts a tensor element by element in a hot loop.
public struct Tensor: Equatable, Sendable {
    /// Sizes, outermost first.
    public private(set) var shape: [Int]
    /// Elements in row-major order; `count == shape.reduce(1, *)`.
    public var data: [Float]

    /// A tensor over the given elements.
    public init(shape: [Int], data: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative size in shape \(shape)")
        let n = shape.reduce(1, *)
        precondition(
            data.count == n, "Tensor: shape \(shape) needs \(n) elements, got \(data.count)")
        self.shape = shape
        self.data = data
    }

    /// A tensor filled with one value.
    public init(shape: [Int], repeating value: Float = 0) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative size in shape \(shape)")
        self.shape = shape
        self.data = [Float](repeating: value, count: shape.reduce(1, *))
    }

    /// A tensor of zeros.
    public static func zeros(_ shape: [Int]) -> Tensor { Tensor(shape: shape, repeating: 0) }

    /// Number of elements.
    public var count: Int { data.count }
    /// Number of axes.
    public var rank: Int { shape.count }

    /// Size of axis `i`; negative `i` counts from the end.
    public func size(_ i: Int) -> Int { shape[i < 0 ? shape.count + i : i] }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        let n = newShape.reduce(1, *)
        precondition(n == count, "reshaped: \(shape) has \(count) elements, \(newShape) needs \(n)")
        var t = self
        t.shape = newShape
        return t
    }

    /// Changes the shape in place; the element count must not change.
    public mutating func reshape(_ newShape: [Int]) {
        let n = newShape.reduce(1, *)
        precondition(n == count, "reshape: \(shape) has \(count) elements, \(newShape) needs \(n)")
        shape = newShape
    }

    /// Sets every element to zero, keeping the storage.
    public mutating func zero() {
        data.withUnsafeMutableBufferPointer { p in
            guard let base = p.baseAddress else { return }
            base.update(repeating: 0, count: p.count)
        }
    }

    /// Read access to the elements.
    @inlinable
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R)
        rethrows -> R
    {
        try data.withUnsafeBufferPointer(body)
    }

    /// Write access to the elements.
    @inlinable
    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (inout UnsafeMutableBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        try data.withUnsafeMutableBufferPointer(body)
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = data.prefix(6).map { String($0) }.joined(separator: ", ")
        return "Tensor\(shape)[\(head)\(count > 6 ? ", …" : "")]"
    }
}
