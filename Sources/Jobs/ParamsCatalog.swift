// ParamsCatalog: the params a kind accepts, with types and defaults, learned from its own strict
// decoder (no second list to keep in step), for `fidq <kind> --help`.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One param of a kind as its decoder takes it.
public struct ParamDescription: Equatable, Sendable {
    public var name: String
    /// "string", "integer", "number", "bool" or "list"; nil when the decoder takes any value (an
    /// option FiD has and fidq ignores) or a type this catalog does not name.
    public var type: String?
    /// The decoder refuses params without it.
    public var required = false
    /// Why the decoder refuses the defaults without it (`method dense needs model_path`), for a
    /// key other params can make unnecessary.
    public var neededBy: String?
    /// The value the decoded params carry when the key is absent (nil: none, or not encoded).
    public var defaultValue: JSONValue?
    /// The kind's words for a default that depends on other params (`JobParams.defaultNotes`).
    public var defaultNote: String?
}

public enum ParamsCatalog {
    /// Every key `P`'s strict container allows, sorted, with its type and default: probes the
    /// decoder with an unknown key (the refusal lists the allowed ones), with placeholders for
    /// the keys it requires (so the rest take their defaults, read back by encoding), and with
    /// an object in each key (the type mismatch names the type expected).
    public static func describe<P: JobParams>(_ type: P.Type) -> [ParamDescription] {
        func decode(_ o: [String: JSONValue]) throws -> P { try KindRegistry.decode(P.self, .object(o)) }
        guard let allowed = allowedKeys(decode) else { return [] }
        // Placeholders for required keys until the params decode (each key retyped at most thrice).
        var base: [String: JSONValue] = [:]
        var required: Set<String> = []
        var needed: [String: String] = [:]
        var decoded: P? = nil
        func needs(_ e: JobError) -> String? {
            guard let field = e.field, field.hasPrefix("params.") else { return nil }
            let key = String(field.dropFirst(7))
            return allowed.contains(key) && base[key] == nil ? key : nil
        }
        for _ in 0...(4 * allowed.count) {
            do {
                let d = try decode(base)
                decoded = d
                // Rules between keys (`model_path` or `model_config`) live in `validate`.
                do { try d.validate() } catch let e as JobError where needs(e) != nil {
                    needed[needs(e)!] = e.message
                    base[needs(e)!] = .string("x")
                    continue
                } catch {}
                break
            } catch DecodingError.keyNotFound(let key, let ctx) where ctx.codingPath.isEmpty && base[key.stringValue] == nil {
                required.insert(key.stringValue)
                base[key.stringValue] = .string("x")
            } catch let e as JobError where needs(e) != nil {
                needed[needs(e)!] = e.message
                base[needs(e)!] = .string("x")
            } catch DecodingError.typeMismatch(let expected, let ctx) where ctx.codingPath.count == 1
                        && base[ctx.codingPath[0].stringValue] != nil {
                let key = ctx.codingPath[0].stringValue
                guard let value = placeholder(expected), value != base[key] else { break }
                base[key] = value
            } catch {
                break  // a placeholder a range check refuses: names without defaults (nor types past that key)
            }
        }
        let defaults: [String: JSONValue]
        if let decoded, case .object(let o)? = try? JSONValue.from(decoded) { defaults = o } else { defaults = [:] }
        return allowed.map { name in
            var probe = base
            probe[name] = .object([:])
            var type: String? = nil
            do { _ = try decode(probe) } catch DecodingError.typeMismatch(let expected, let ctx) where ctx.codingPath.first?.stringValue == name {
                type = typeName(expected)
            } catch {}
            let placed = base[name] != nil
            return ParamDescription(name: name, type: type, required: required.contains(name), neededBy: needed[name],
                                    defaultValue: placed ? nil : defaults[name], defaultNote: P.defaultNotes[name])
        }.sorted { (rank($0), $0.name) < (rank($1), $1.name) }
        func rank(_ p: ParamDescription) -> Int { p.required ? 0 : p.neededBy != nil ? 1 : 2 }
    }

    /// Lines for a command's help: `--name <type>` and what applies (required, the default, or
    /// that FiD's option is accepted without effect).
    public static func helpLines(_ params: [ParamDescription]) -> [String] {
        let heads = params.map { p -> String in
            switch p.type {
            case "bool"?: return "--\(p.name)"
            case "list"?: return "--\(p.name) <value> …"
            case let t?: return "--\(p.name) <\(t)>"
            case nil: return "--\(p.name) <value>"
            }
        }
        let width = min(34, (heads.map(\.count).max() ?? 0) + 2)
        return zip(params, heads).map { p, head in
            var note: String
            if p.required {
                note = "required"
            } else if let why = p.neededBy {
                note = "required: " + (why.hasPrefix("missing: ") ? String(why.dropFirst(9)) : why)
            } else if let n = p.defaultNote {
                note = "default " + n
            } else if let d = p.defaultValue {
                note = "default " + literal(d)
            } else if p.type == nil {
                note = "accepted; no effect here (FiD's option)"
            } else {
                note = "optional"
            }
            let pad = head.count < width ? String(repeating: " ", count: width - head.count) : "  "
            return wrapped("  " + head + pad, note, columns: 79)
        }
    }

    /// `lead + text`, the text broken at spaces into lines of at most `columns` under itself
    /// (the help formatter would wrap a long line back to column 0).
    static func wrapped(_ lead: String, _ text: String, columns: Int) -> String {
        let indent = String(repeating: " ", count: lead.count)
        var lines: [String] = [], line = lead, fresh = true
        for word in text.split(separator: " ") {
            if !fresh && line.count + 1 + word.count > columns {
                lines.append(line)
                line = indent
                fresh = true
            }
            line += (fresh ? "" : " ") + word
            fresh = false
        }
        return (lines + [line]).joined(separator: "\n")
    }

    static func literal(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let d): return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : "\(d)"
        case .string(let s): return s.isEmpty ? "\"\"" : s
        case .array(let a): return a.isEmpty ? "none" : a.map(literal).joined(separator: " ")
        case .object: return "{…}"
        }
    }

    /// The keys a strict container allows, from its refusal of a key no params type has.
    static func allowedKeys<P>(_ decode: ([String: JSONValue]) throws -> P) -> [String]? {
        do { _ = try decode(["\u{1}": .null]) } catch DecodingError.dataCorrupted(let ctx) {
            return (ctx.underlyingError as? UnknownKey)?.allowed
        } catch {}
        return nil
    }

    static func typeName(_ t: Any.Type) -> String? {
        let name = "\(t)"
        if name.hasPrefix("Array<") || name.hasPrefix("[") { return "list" }
        if t == String.self { return "string" }
        if t == Bool.self { return "bool" }
        if t == Int.self || t == Int64.self || t == UInt64.self || t == Int32.self || t == UInt32.self { return "integer" }
        if t == Double.self || t == Float.self { return "number" }
        return nil
    }

    static func placeholder(_ t: Any.Type) -> JSONValue? {
        switch typeName(t) {
        case "list"?: return .array([.string("x")])
        case "bool"?: return .bool(false)
        case "integer"?, "number"?: return .number(1)
        default: return nil
        }
    }
}
