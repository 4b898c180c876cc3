// StrictDecoding: Codable helpers that reject unknown keys and apply defaults, naming the field.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A coding key for any string (used to list the keys actually present).
public struct AnyCodingKey: CodingKey, Hashable, Sendable {
    public var stringValue: String
    public var intValue: Int?
    public init(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) {
        self.stringValue = "\(intValue)"
        self.intValue = intValue
    }
}

/// The key a strict container refused and the keys it allows (the `DecodingError`'s underlying
/// error), so the command line can complete an abbreviated flag as argparse does.
public struct UnknownKey: Error, Sendable, Equatable {
    public let key: String
    public let allowed: [String]
}

extension Decoder {
    /// A keyed container that first rejects any key not in `K`, naming it, the allowed keys and
    /// the closest allowed key.
    ///
    ///     let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
    ///     lr = try c.decode(.lr, default: 5e-5)
    public func strictContainer<K: CodingKey & CaseIterable>(keyedBy type: K.Type) throws -> KeyedDecodingContainer<K> {
        let any = try container(keyedBy: AnyCodingKey.self)
        let allowed = K.allCases.map(\.stringValue)
        for key in any.allKeys where K(stringValue: key.stringValue) == nil {
            var message = "unknown key '\(key.stringValue)'; allowed: \(allowed.joined(separator: ", "))"
            if let near = closest(key.stringValue, in: allowed) { message += "; did you mean '\(near)'?" }
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath + [key], debugDescription: message,
                                                    underlyingError: UnknownKey(key: key.stringValue, allowed: allowed)))
        }
        return try container(keyedBy: K.self)
    }
}

extension KeyedDecodingContainer {
    /// The value at `key`, or `value` when the key is absent or null.
    public func decode<T: Decodable>(_ key: Key, default value: T) throws -> T {
        if T.self == Int.self { return try (decodeInteger(key) as! T?) ?? value }
        if T.self == UInt64.self {
            guard let i = try decodeInteger(key) else { return value }
            return try UInt64(require(i, key, "an integer >= 0") { $0 >= 0 }) as! T
        }
        if T.self == Float.self { return try (decodeFloat(key) as! T?) ?? value }
        return try decodeIfPresent(T.self, forKey: key) ?? value
    }

    /// The float32 at `key`, nil when absent or null. Foundation's decoder reports a number a
    /// Float cannot hold (1e39, 1e-300) as "The given data was not valid JSON" without the field;
    /// this names the field and the number.
    public func decodeFloat(_ key: Key) throws -> Float? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        let d = try decode(Double.self, forKey: key)  // a string or list: the type mismatch names the field
        let f = Float(d)
        if f.isInfinite || (f == 0 && d != 0) {
            throw DecodingError.dataCorrupted(.init(
                codingPath: codingPath + [key],
                debugDescription: "expected a number a 32-bit float holds (magnitude up to about 3.4e38, "
                    + "and 0 or above about 1.4e-45), found \(d)"))
        }
        return f
    }

    /// The integer at `key`, nil when absent or null. Foundation's decoder reports a number that
    /// is no Int (2.5, 1e22) as "The given data was not valid JSON" without the field; this names
    /// the field and the number.
    public func decodeInteger(_ key: Key) throws -> Int? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        if let i = try? decode(Int.self, forKey: key) { return i }
        if let d = try? decode(Double.self, forKey: key) {
            throw DecodingError.dataCorrupted(.init(
                codingPath: codingPath + [key],
                debugDescription: "expected an integer, found \(d)" + (d == d.rounded() ? " (beyond ±9.2e18)" : "")))
        }
        return try decode(Int.self, forKey: key)  // a string or list: the type mismatch names the field
    }

    /// Throws a field-naming error unless `check(value)` holds.
    public func require<T>(_ value: T, _ key: Key, _ expected: String, _ check: (T) -> Bool) throws -> T {
        if !check(value) {
            // A whole number as typed: `max_attempts: 0` decoded as a Double read "found 0.0".
            var shown = "\(value)"
            if let d = (value as? Double) ?? (value as? Float).map(Double.init), d.isFinite, d == d.rounded(), abs(d) < 1e15 {
                shown = String(Int64(d))
            }
            throw DecodingError.dataCorrupted(.init(
                codingPath: codingPath + [key], debugDescription: "expected \(expected), found \(shown)"))
        }
        return value
    }
}

/// The allowed name nearest to `name` by edit distance, if it is close enough to be a typo.
func closest(_ name: String, in allowed: [String]) -> String? {
    func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var prev = row[0]
            row[0] = i
            for j in 1...b.count {
                let cur = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1))
                prev = cur
            }
        }
        return row[b.count]
    }
    let a = Array(name)
    let best = allowed.map { ($0, distance(a, Array($0))) }.min { $0.1 < $1.1 }
    guard let (candidate, d) = best, d <= max(2, name.count / 3) else { return nil }
    return candidate
}

/// Any JSON value; keeps a descriptor's `params` until the kind's own type decodes them.
public enum JSONValue: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// The value at a decoder's coding path (object keys, array indices), or nil.
    func value(at path: [CodingKey]) -> JSONValue? {
        var v = self
        for k in path {
            switch v {
            case .object(let o): guard let next = o[k.stringValue] else { return nil }; v = next
            case .array(let a): guard let i = k.intValue, a.indices.contains(i) else { return nil }; v = a[i]
            default: return nil
            }
        }
        return v
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) {
            // Past 2^53 a double skips integers: a seed of 9007199254740993 would run as …992.
            // Such an integer is refused rather than run as another number than the one written.
            if d.magnitude >= 0x1p53,
               let written = (try? c.decode(Int64.self)).map({ "\($0)" }) ?? (try? c.decode(UInt64.self)).map({ "\($0)" }),
               let problem = Self.inexactInteger(written, d) {
                throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: problem))
            }
            self = .number(d)
        }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else {
            // Every JSON value is one of these, except a number Double cannot hold. An error inside
            // an array or object (such a number in it) passes through, naming its own field; an
            // element never throws typeMismatch, so that error means "not an array".
            do { self = .array(try c.decode([JSONValue].self)); return } catch DecodingError.typeMismatch {}
            do { self = .object(try c.decode([String: JSONValue].self)) } catch DecodingError.typeMismatch {
                throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath,
                                                        debugDescription: "expected a number within ±1.8e308 (a double), found one beyond"))
            }
        }
    }

    /// Why the integer written as `written` (decimal digits) cannot be the double `d` it reads
    /// as, or nil when `d` is exactly it.
    public static func inexactInteger(_ written: String, _ d: Double) -> String? {
        // d is within a rounding of a 64-bit integer, so at most 2^64 (UInt64.max's rounding).
        let held = Int64(exactly: d).map { "\($0)" } ?? UInt64(exactly: d).map { "\($0)" }
            ?? (d == 0x1p64 ? "18446744073709551616" : "\(d)")
        if held == written { return nil }
        return "expected an integer that a double holds exactly (every integer up to 2^53 = 9007199254740992), "
            + "found \(written), which would run as \(held) (hint: use a smaller number)"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let d):
            // Integers print without a fraction so Int fields decode again.
            if d == d.rounded(), abs(d) < 9e15 { try c.encode(Int64(d)) } else { try c.encode(d) }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// Every string anywhere inside (to find `job:ID/...` references).
    public var allStrings: [String] {
        switch self {
        case .string(let s): return [s]
        case .array(let a): return a.flatMap(\.allStrings)
        case .object(let o): return o.keys.sorted().flatMap { o[$0]!.allStrings }
        default: return []
        }
    }

    /// The same value with every string that is `old` or a path under it re-rooted at `new`: a
    /// result names the attempt's folder, which the commit renames to `done/<id>`.
    public func replacingPathPrefix(_ old: String, with new: String) -> JSONValue {
        switch self {
        case .string(let s):
            if s == old { return .string(new) }
            if s.hasPrefix(old + "/") { return .string(new + s.dropFirst(old.count)) }
            return self
        case .array(let a): return .array(a.map { $0.replacingPathPrefix(old, with: new) })
        case .object(let o): return .object(o.mapValues { $0.replacingPathPrefix(old, with: new) })
        default: return self
        }
    }

    /// Encodes any Encodable value as a JSONValue.
    public static func from<T: Encodable>(_ value: T) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(value))
    }
}

/// The JSON encoder every published file uses: sorted keys, pretty, slashes unescaped.
public func jsonEncoder() -> JSONEncoder {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return e
}
