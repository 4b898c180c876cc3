// FlagParams: a kind's command-line flags (`--n_context 10 --write_results`) turned into the params
// JSON its descriptor would carry, typed by the kind's own params decoder.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Builds params from FiD-style flags without a per-kind flag list: each `--key` becomes the
/// param `key`, and the params type's decoder decides the JSON type.
///
/// - `--key` with no value (the next word is another `--flag`, or none) is `true` (FiD's
///   `store_true` flags); `--key=value` and `--key value` give one value; `--key a b` or a
///   repeated `--key` give a list.
/// - A value that is a JSON number is a number, `true`/`false` a boolean, anything else a
///   string. Then the params are decoded with the kind's type and, while the decoder reports a
///   type mismatch at a flag's field, that flag is retyped and the params decoded again: a number
///   or boolean becomes its text where a string is expected (`--name 2024`), a single value
///   becomes a one-element list where a list is expected, and `1`/`0` a boolean where one is expected.
/// - A flag that is no param but begins exactly one param's name stands for it, as argparse
///   takes an unambiguous prefix (FiD's README trains with `--total_step 15000 --warmup_step 1000`);
///   one that begins several is refused, naming them.
///   Any other decoding error is left to the registry, which names the field.
public enum FlagParams {
    /// A flag word that does not parse.
    public struct Failure: Error, CustomStringConvertible, Equatable {
        public let description: String
    }

    /// - Parameters:
    ///   - args: the words after the subcommand, minus the options the command itself handles.
    ///   - decode: the kind's params decoder (`KindRegistry.decodeParams(kind:_:)`).
    /// - Returns: the params object.
    /// - Throws: `Failure` for a word outside any `--flag`, or a flag given twice as different kinds.
    public static func build(_ args: [String], decode: (JSONValue) throws -> Void) throws -> JSONValue {
        // key → the words given for it, in order (empty: a bare flag).
        var order: [String] = []
        var words: [String: [String]] = [:]
        var current: String? = nil
        for arg in args {
            if arg.hasPrefix("--"), arg.count > 2 {
                var key = String(arg.dropFirst(2))
                var inline: String? = nil
                if let eq = key.firstIndex(of: "=") {
                    inline = String(key[key.index(after: eq)...])
                    key = String(key[..<eq])
                }
                key = String(key.map { $0 == "-" ? "_" : $0 })
                if words[key] == nil {
                    order.append(key)
                    words[key] = []
                }
                if let inline {
                    words[key]!.append(inline)
                    current = nil
                } else {
                    current = key
                }
            } else if let key = current {
                words[key]!.append(arg)
            } else {
                throw Failure(description: "unexpected '\(arg)': every value follows a --flag (FiD's option names, e.g. --n_context 10)")
            }
        }
        var values: [String: JSONValue] = [:]
        for key in order {
            let w = words[key]!
            values[key] = w.isEmpty ? .bool(true) : w.count == 1 ? literal(w[0]) : .array(w.map(literal))
        }
        // Retype by the decoder's mismatches and complete abbreviations; each flag changes at most
        // three times (two retypes, one completion), so this ends.
        for _ in 0...(3 * order.count + 1) {
            do {
                try decode(.object(values))
                return .object(values)
            } catch DecodingError.typeMismatch(let type, let ctx) {
                guard let key = ctx.codingPath.first?.stringValue, let old = values[key] else { return .object(values) }
                if case .string(let word) = old, ctx.codingPath.count == 1, isJSONNumber(word),
                   Int64(word) != nil || UInt64(word) != nil, let d = Double(word), let problem = JSONValue.inexactInteger(word, d) {
                    throw Failure(description: "--\(key) \(word): \(problem)")
                }
                guard let new = retype(old, words: words[key] ?? [], path: Array(ctx.codingPath.dropFirst()), expected: type) else {
                    // A list where one value belongs: the flag was given twice, or a value has a space.
                    if case .array = old, ctx.codingPath.count == 1, let given = words[key], given.count > 1 {
                        throw Failure(description: "--\(key) takes one value, given \(given.count): "
                                      + given.map { "'\($0)'" }.joined(separator: ", ")
                                      + " (a repeated flag, or a value with spaces that needs quotes)")
                    }
                    return .object(values)
                }
                values[key] = new
            } catch DecodingError.dataCorrupted(let ctx) where ctx.codingPath.count == 1 && ctx.underlyingError is UnknownKey {
                let unknown = ctx.underlyingError as! UnknownKey
                let matches = unknown.allowed.filter { $0.hasPrefix(unknown.key) }
                guard let full = matches.first, values[unknown.key] != nil else { return .object(values) }
                if matches.count > 1 {
                    throw Failure(description: "--\(unknown.key) is ambiguous: it could be "
                                  + matches.map { "--\($0)" }.joined(separator: ", "))
                }
                if values[full] != nil {
                    throw Failure(description: "--\(unknown.key) abbreviates --\(full), which is given too")
                }
                values[full] = values.removeValue(forKey: unknown.key)
                words[full] = words.removeValue(forKey: unknown.key)
                order = order.map { $0 == unknown.key ? full : $0 }
            } catch {
                return .object(values)  // the registry reports it with the field named
            }
        }
        return .object(values)
    }

    /// A flag value as JSON: a number when it is one (JSON's syntax), a boolean for true/false, else a string.
    static func literal(_ word: String) -> JSONValue {
        if word == "true" { return .bool(true) }
        if word == "false" { return .bool(false) }
        if isJSONNumber(word), let d = Double(word) {
            // An integer a double would round stays text; decoding it as a number is refused below.
            if d.magnitude >= 0x1p53, Int64(word) != nil || UInt64(word) != nil, JSONValue.inexactInteger(word, d) != nil {
                return .string(word)
            }
            return .number(d)
        }
        return .string(word)
    }

    /// JSON's number syntax: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    static func isJSONNumber(_ s: String) -> Bool {
        let b = Array(s.utf8)
        var i = 0
        func digits() -> Int {
            let start = i
            while i < b.count, b[i] >= 48, b[i] <= 57 { i += 1 }
            return i - start
        }
        if i < b.count, b[i] == 45 { i += 1 }
        let first = i
        let n = digits()
        if n == 0 || (n > 1 && b[first] == 48) { return false }
        if i < b.count, b[i] == 46 {
            i += 1
            if digits() == 0 { return false }
        }
        if i < b.count, b[i] == 101 || b[i] == 69 {
            i += 1
            if i < b.count, b[i] == 43 || b[i] == 45 { i += 1 }
            if digits() == 0 { return false }
        }
        return i == b.count
    }

    /// `value` changed to fit `expected` at `path` inside it, or nil when no rule applies.
    static func retype(_ value: JSONValue, words: [String], path: [CodingKey], expected: Any.Type) -> JSONValue? {
        let name = "\(expected)"
        if let index = path.first?.intValue, case .array(var items) = value, index < items.count {
            guard let fixed = retype(items[index], words: index < words.count ? [words[index]] : [], path: [], expected: expected) else { return nil }
            items[index] = fixed
            return .array(items)
        }
        if name.hasPrefix("Array<") || name.hasPrefix("[") {
            if case .array = value { return nil }
            return .array([value])
        }
        switch value {
        case .number, .bool:
            if expected == String.self, words.count == 1 { return .string(words[0]) }
            if expected == Bool.self, words == ["1"] || words == ["0"] { return .bool(words == ["1"]) }
        case .string(let s):
            if expected == Bool.self, s == "1" || s == "0" { return .bool(s == "1") }
        default: break
        }
        return nil
    }
}
