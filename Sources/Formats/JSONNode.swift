// JSONNode: a parsed JSON value that keeps object pairs in file order and numbers as written.

/// A JSON value as `JSONParser` reads it and `PyJSONWriter` writes it.
///
/// Objects keep their pairs in file order, duplicates included, so callers can refuse repeated
/// keys (Foundation's parser drops them silently) and write unknown fields back unchanged.
/// Numbers keep their text, so a value read and written again is the same number.
public enum JSONNode: Equatable, Sendable {
    case object([(String, JSONNode)])
    case array([JSONNode])
    case string(String)
    /// A non-negative integer literal without fraction or exponent that fits in Int.
    case integer(Int)
    /// Any other number, as written (`-1`, `1.5`, `2e3`, an integer too large for Int).
    case number(String)
    case bool(Bool)
    case null

    /// A float as Python's `repr` (and so `json.dump`) writes it: `0.5`, `1e-05`, `-3.25`.
    public static func double(_ value: Double) -> JSONNode { .number(PythonFloat.repr(value)) }

    /// "an object", "a string", … for error messages.
    public var kindName: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string(let s): return "a string (\"\(s.prefix(40))\")"
        case .integer(let n): return "the integer \(n)"
        case .number(let t): return "the number \(t)"
        case .bool(let b): return "\(b)"
        case .null: return "null"
        }
    }

    /// The value of the first pair named `key` of an object; nil for other kinds or no such key.
    public subscript(key: String) -> JSONNode? {
        guard case .object(let pairs) = self else { return nil }
        return pairs.first { $0.0 == key }?.1
    }

    /// The string of a `.string`, else nil.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The number of an `.integer` or `.number`, else nil.
    public var doubleValue: Double? {
        switch self {
        case .integer(let n): return Double(n)
        case .number(let t): return Double(t)
        default: return nil
        }
    }

    public static func == (a: JSONNode, b: JSONNode) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case let (.array(x), .array(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.integer(x), .integer(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }
}

/// Python's float repr (`float_repr_style = 'short'`): the shortest digits that round-trip, fixed
/// notation for decimal exponents -4 ≤ e < 16 (always with a fraction, `1.0`), else `d.ddde±XX`.
public enum PythonFloat {
    /// The text Python's json writes back for the float it reads from `text` (JSON number syntax):
    /// `repr(float(text))`. Text already in that form (Swift's shortest digits, which are
    /// Python's between 1e-4 and 2^53) is returned without building the repr.
    public static func canonical(_ text: String) -> String {
        guard let d = Double(text) else { return text }
        if d.magnitude >= 1e-4, d.magnitude < 0x1p53, d.description == text { return text }
        return repr(d)
    }

    public static func repr(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value < 0 ? "-Infinity" : "Infinity" }
        if value == 0 { return value.sign == .minus ? "-0.0" : "0.0" }
        // Swift's description is also shortest-round-trip; only the layout differs.
        var text = Swift.abs(value).description
        var exp = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exp = Int(text[text.index(after: e)...])!
            text = String(text[..<e])
        }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        var digits = String(parts[0]) + (parts.count > 1 ? String(parts[1]) : "")
        // value = 0.digits × 10^point
        var point = parts[0].count + exp
        while digits.first == "0", digits.count > 1 { digits.removeFirst(); point -= 1 }
        while digits.last == "0", digits.count > 1 { digits.removeLast() }
        let sign = value < 0 ? "-" : ""
        let e10 = point - 1  // scientific exponent of the first digit
        if e10 >= -4 && e10 < 16 {
            if point <= 0 { return sign + "0." + String(repeating: "0", count: -point) + digits }
            if point >= digits.count { return sign + digits + String(repeating: "0", count: point - digits.count) + ".0" }
            let i = digits.index(digits.startIndex, offsetBy: point)
            return sign + digits[..<i] + "." + digits[i...]
        }
        let mantissa = digits.count == 1 ? digits : String(digits.first!) + "." + digits.dropFirst()
        let expText = String(Swift.abs(e10))
        return sign + mantissa + "e" + (e10 < 0 ? "-" : "+") + (expText.count < 2 ? "0" : "") + expText
    }
}
