// TensorMap: an ordered name → Tensor collection, as checkpoints and safetensors files hold them.

/// Named tensors in insertion order, with lookups that explain a missing name.
///
/// Order is kept because it is meaningful to people (a file's layout, a model's parameter
/// order) and makes iteration deterministic. `source` (usually a file path) labels errors.
public struct TensorMap: Sequence, Equatable, Sendable, ExpressibleByDictionaryLiteral {
    /// Names in insertion order.
    public private(set) var names: [String] = []
    private var tensors: [Tensor] = []
    private var index: [String: Int] = [:]
    /// Where the tensors came from, for error messages (a file path, "checkpoint step-3", …).
    public var source: String

    /// An empty map; `source` labels its errors.
    public init(source: String = "tensor map") {
        self.source = source
    }

    /// A map of `pairs` in their order; a repeated name is a bug (`precondition`).
    public init(_ pairs: [(String, Tensor)], source: String = "tensor map") {
        self.source = source
        for (name, tensor) in pairs {
            precondition(index[name] == nil, "TensorMap: name '\(name)' given twice")
            append(name, tensor)
        }
    }

    public init(dictionaryLiteral elements: (String, Tensor)...) {
        self.init(elements)
    }

    /// Number of tensors.
    public var count: Int { names.count }
    /// Whether the map holds no tensor.
    public var isEmpty: Bool { names.isEmpty }
    /// Total number of elements over all tensors.
    public var elementCount: Int { tensors.reduce(0) { $0 + $1.count } }

    /// Whether a tensor is called `name`.
    public func contains(_ name: String) -> Bool { index[name] != nil }

    /// The tensor called `name`, or nil. Setting a new name appends it; setting an existing one
    /// replaces it in place (its position is kept); setting nil removes it.
    public subscript(name: String) -> Tensor? {
        get { index[name].map { tensors[$0] } }
        set {
            if let value = newValue {
                if let i = index[name] { tensors[i] = value } else { append(name, value) }
            } else if let i = index[name] {
                names.remove(at: i)
                tensors.remove(at: i)
                index[name] = nil
                for j in i..<names.count { index[names[j]] = j }
            }
        }
    }

    /// The tensor called `name`.
    /// - Throws: `TensorMapError.missing`, naming `source` and listing close names.
    public func tensor(_ name: String) throws -> Tensor {
        if let i = index[name] { return tensors[i] }
        throw TensorMapError.missing(name: name, source: source, close: closeNames(to: name))
    }

    /// The tensor called `name`, which must have `shape`.
    /// - Throws: `TensorMapError.missing`, or `.shape` with both shapes.
    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        let t = try tensor(name)
        guard t.shape == shape else {
            throw TensorMapError.shape(name: name, source: source, expected: shape, found: t.shape)
        }
        return t
    }

    /// Adds `tensor` under a name not yet present (a present name is a bug).
    public mutating func append(_ name: String, _ tensor: Tensor) {
        precondition(index[name] == nil, "TensorMap.append: '\(name)' is already in \(source)")
        index[name] = names.count
        names.append(name)
        tensors.append(tensor)
    }

    public func makeIterator() -> AnyIterator<(name: String, tensor: Tensor)> {
        var i = 0
        return AnyIterator {
            guard i < names.count else { return nil }
            defer { i += 1 }
            return (names[i], tensors[i])
        }
    }

    /// Equal when the same names map to equal tensors in the same order (`source` is ignored).
    public static func == (a: TensorMap, b: TensorMap) -> Bool {
        a.names == b.names && a.tensors == b.tensors
    }

    /// Up to five names nearest to `name`: by edit distance, or sharing its tail after a prefix
    /// (so "block.0.q.weight" finds "encoder.block.0.q.weight").
    public func closeNames(to name: String, limit: Int = 5) -> [String] {
        Self.closeNames(to: name, among: names, limit: limit)
    }

    /// Up to `limit` of `names` nearest to `name`, ranked as `closeNames(to:)` ranks them.
    public static func closeNames(to name: String, among names: [String], limit: Int = 5) -> [String] {
        let target = Array(name.utf8)
        let budget = Swift.max(2, target.count / 3)
        var scored: [(Int, String)] = []
        for candidate in names {
            if candidate.hasSuffix("." + name) || name.hasSuffix("." + candidate) {
                scored.append((0, candidate))
                continue
            }
            let d = editDistance(target, Array(candidate.utf8))
            if d <= budget { scored.append((d, candidate)) }
        }
        scored.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        return scored.prefix(limit).map(\.1)
    }
}

/// Levenshtein distance over bytes, two rows (error paths only).
private func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}

/// A lookup in a `TensorMap` that the data cannot satisfy.
public enum TensorMapError: Error, CustomStringConvertible, Equatable {
    /// No tensor of that name; `close` lists near names.
    case missing(name: String, source: String, close: [String])
    /// The tensor exists with another shape.
    case shape(name: String, source: String, expected: [Int], found: [Int])
    /// The tensor holds NaN or ±inf (a run that diverged saved it): every output would be NaN.
    case nonFinite(name: String, source: String, index: Int, value: Float)
    /// A tensor that cannot be negative (Adam's second moment) holds a negative value.
    case negative(name: String, source: String, index: Int, value: Float)

    public var description: String {
        switch self {
        case let .missing(name, source, close):
            let hint = close.isEmpty
                ? " (no similar names among its tensors)"
                : "; close names: \(close.map { "'\($0)'" }.joined(separator: ", "))"
            return "\(source): no tensor '\(name)'\(hint)"
        case let .shape(name, source, expected, found):
            return "\(source): tensor '\(name)' has shape \(found), expected \(expected)"
        case let .nonFinite(name, source, index, value):
            return "\(source): tensor '\(name)' holds \(value) at element \(index), expected finite weights "
                + "(hint: the run that saved it diverged; take an earlier checkpoint)"
        case let .negative(name, source, index, value):
            return "\(source): tensor '\(name)' holds \(value) at element \(index), expected values >= 0 "
                + "(hint: the file is damaged; take an earlier checkpoint)"
        }
    }
}
