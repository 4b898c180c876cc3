// PickleValue: the data a safe pickle reader can produce — plain Python values, whitelisted
// globals, and opaque Swift objects that whitelisted rebuild functions return.

/// One value on a pickle machine's stack.
///
/// Lists and dicts are classes because pickle shares them by reference: a list memoised before
/// its APPENDS and fetched again later must show the appended items. Nothing here ever runs
/// Python: a `global` is only a name the reader's whitelist accepted, and `object` is whatever
/// Swift value a whitelisted rebuild function built.
public enum PickleValue: CustomStringConvertible {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    /// A whitelisted global pushed by GLOBAL / STACK_GLOBAL, not yet called.
    case global(PickleGlobal)
    /// A value built by a whitelisted rebuild function (a tensor, a storage, an array).
    case object(any PickleObject)

    /// A short name of the value's kind, for error messages.
    public var kind: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case let .tuple(t): return "tuple of \(t.count)"
        case let .list(l): return "list of \(l.items.count)"
        case let .dict(d): return "\(d.className ?? "dict") of \(d.count)"
        case let .global(g): return "global \(g.qualifiedName)"
        case let .object(o): return o.pickleKind
        }
    }

    /// The value in brief: scalars in full, containers by kind (never recursive, so shared or
    /// cyclic containers cannot make it loop).
    public var description: String {
        switch self {
        case .none: return "None"
        case let .bool(b): return b ? "True" : "False"
        case let .int(i): return "\(i)"
        case let .float(f): return "\(f)"
        case let .string(s): return "'\(s.count > 60 ? String(s.prefix(60)) + "…" : s)'"
        case let .bytes(b): return "bytes of \(b.count)"
        default: return kind
        }
    }

    public var intValue: Int? { if case let .int(i) = self { return i }; return nil }
    public var stringValue: String? { if case let .string(s) = self { return s }; return nil }
    public var boolValue: Bool? { if case let .bool(b) = self { return b }; return nil }

    /// The items of a tuple or list.
    public var sequence: [PickleValue]? {
        switch self {
        case let .tuple(t): return t
        case let .list(l): return l.items
        default: return nil
        }
    }
}

/// A pickled list, shared by reference as Python shares it.
public final class PickleList {
    public var items: [PickleValue]
    /// Nesting depth as the reader tracks it (1 for a list of scalars).
    var depth = 1
    /// Whether it was placed inside another container (then it may no longer grow deeper).
    var contained = false
    public init(_ items: [PickleValue] = []) { self.items = items }
}

/// A pickled dict (or `collections.OrderedDict`): keys in insertion order, as Python ≥ 3.7 keeps
/// them. Keys are strings, ints, bools, None, or tuples of these; any other key is refused when
/// set (`PickleKey.init` returns nil).
public final class PickleDict {
    /// `collections.OrderedDict` when built by it; nil for a plain dict.
    public let className: String?
    public private(set) var keys: [PickleValue] = []
    public private(set) var values: [PickleValue] = []
    private var index: [PickleKey: Int] = [:]
    /// The state a BUILD gave it (OrderedDict's instance `__dict__`, e.g. a state dict's `_metadata`).
    public var attributes: PickleValue?
    /// Nesting depth and containment, as for `PickleList`.
    var depth = 1
    var contained = false

    public init(className: String? = nil) { self.className = className }

    public var count: Int { keys.count }

    /// Sets `key` to `value`, replacing an existing key's value in place (Python's order rule).
    /// Returns false when `key` is not a hashable pickle value fidq accepts.
    @discardableResult
    public func set(_ key: PickleValue, _ value: PickleValue) -> Bool {
        guard let k = PickleKey(key) else { return false }
        if let i = index[k] {
            values[i] = value
        } else {
            index[k] = keys.count
            keys.append(key)
            values.append(value)
        }
        return true
    }

    /// The value under `key`, if any.
    public subscript(key: PickleValue) -> PickleValue? {
        guard let k = PickleKey(key), let i = index[k] else { return nil }
        return values[i]
    }

    /// The value under the string key `key`, if any.
    public subscript(key: String) -> PickleValue? { self[.string(key)] }
}

/// A hashable form of the pickle values that may be dict keys.
enum PickleKey: Hashable {
    case none, bool(Bool), int(Int), float(Double), string(String), bytes([UInt8])
    indirect case tuple([PickleKey])

    /// The most values one key may expand to. A pickle shares a memoised tuple by reference
    /// (DUP, GET), so 24 nested pairs of one tuple are 55 bytes but 2^25 values when copied out;
    /// real keys are a name or a short tuple.
    static let maxParts = 1024

    init?(_ v: PickleValue) {
        var budget = Self.maxParts
        self.init(v, budget: &budget)
    }

    private init?(_ v: PickleValue, budget: inout Int) {
        budget -= 1
        guard budget >= 0 else { return nil }
        switch v {
        case .none: self = .none
        case let .bool(b): self = .bool(b)
        case let .int(i): self = .int(i)
        case let .float(f): self = .float(f)
        case let .string(s): self = .string(s)
        case let .bytes(b): self = .bytes(b)
        case let .tuple(t):
            // The budget also bounds the depth: each level costs one part.
            var parts: [PickleKey] = []
            for item in t {
                guard let k = PickleKey(item, budget: &budget) else { return nil }
                parts.append(k)
            }
            self = .tuple(parts)
        default: return nil
        }
    }
}

/// A `module.name` global that a reader's whitelist accepted.
public struct PickleGlobal: Sendable, Equatable {
    public let module: String
    public let name: String
    public var qualifiedName: String { module + "." + name }

    public init(module: String, name: String) {
        self.module = module
        self.name = name
    }
}

/// A Swift value made by a whitelisted rebuild function. BUILD on it calls `build(state:)`, which
/// changes it in place (pickle memoises an object before its BUILD, so the memo must see the change).
/// It should copy what it needs out of its arguments and state rather than keep `PickleValue`s:
/// the reader bounds nesting depth by what it can see on its stack.
public protocol PickleObject: AnyObject {
    /// What it is, for error messages ("torch tensor", "numpy.ndarray").
    var pickleKind: String { get }
    /// Applies a BUILD opcode's state; the default refuses.
    func build(state: PickleValue) throws
}

extension PickleObject {
    public func build(state: PickleValue) throws {
        throw PickleError(.refused, offset: nil, "BUILD on a \(pickleKind) is not allowed")
    }
}
