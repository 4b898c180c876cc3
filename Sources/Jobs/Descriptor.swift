// JobDescriptor: the job file users drop (DESIGN.md §3), decoded strictly with defaults.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Formats

/// One job: its kind, id, ordering and retry policy, and the kind's params (kept raw until the
/// kind's own Codable type decodes them).
public struct JobDescriptor: Decodable, Equatable, Sendable {
    /// The registered kind that runs this job (required).
    public var kind: String
    /// `[A-Za-z0-9._-]{1,128}`; defaults to the file name without `.json`.
    public var id: String
    /// Ids that must be in `done/` before this job starts.
    public var after: [String]
    /// Higher first; ties go to the older job.
    public var priority: Int
    /// Runs allowed, counting the first (1…100).
    public var maxAttempts: Int
    /// Wall-clock limit of one attempt in seconds; nil: none.
    public var timeoutS: Double?
    /// The kind's params, decoded later by the kind's type.
    public var params: JSONValue

    /// The largest descriptor accepted (1 MiB).
    public static let maxBytes = 1 << 20

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, id, after, priority, params
        case maxAttempts = "max_attempts"
        case timeoutS = "timeout_s"
    }

    public init(kind: String, id: String, after: [String] = [], priority: Int = 0, maxAttempts: Int = 3,
                timeoutS: Double? = nil, params: JSONValue = .object([:])) {
        self.kind = kind
        self.id = id
        self.after = after
        self.priority = priority
        self.maxAttempts = maxAttempts
        self.timeoutS = timeoutS
        self.params = params
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        kind = try c.require(try c.decode(String.self, forKey: .kind), .kind, "a kind name like train_reader") {
            !$0.isEmpty && $0.count <= 64 && $0.allSatisfy { $0.isLetter || $0.isNumber || "_.-".contains($0) }
        }
        id = try c.require(try c.decode(.id, default: ""), .id, "an id matching [A-Za-z0-9._-]{1,128}") {
            $0.isEmpty || JobDescriptor.isValidID($0)
        }
        after = try c.decode(.after, default: [])
        for (i, dep) in after.enumerated() where !JobDescriptor.isValidID(dep) {
            throw DecodingError.dataCorrupted(.init(
                codingPath: [CodingKeys.after, AnyCodingKey(intValue: i)!],
                debugDescription: "expected a job id matching [A-Za-z0-9._-]{1,128}, found '\(dep)'"))
        }
        // Decoded as numbers and checked here, so 1.5 names its field instead of failing the parse.
        priority = Int(try c.require(try c.decode(.priority, default: 0.0), .priority, "an integer in -1000000…1000000") {
            abs($0) <= 1_000_000 && $0 == $0.rounded()
        })
        maxAttempts = Int(try c.require(try c.decode(.maxAttempts, default: 3.0), .maxAttempts, "an integer in 1…100") {
            (1...100).contains($0) && $0 == $0.rounded()
        })
        timeoutS = try c.decodeIfPresent(Double.self, forKey: .timeoutS)
        if let t = timeoutS { _ = try c.require(t, .timeoutS, "a number of seconds > 0") { $0 > 0 && $0.isFinite } }
        params = try c.decode(.params, default: .object([:]))
        guard case .object = params else {
            throw DecodingError.typeMismatch([String: JSONValue].self, .init(
                codingPath: [CodingKeys.params], debugDescription: "params must be a JSON object"))
        }
    }

    /// `[A-Za-z0-9._-]{1,128}`, not starting with `.`: safe as one path component on every
    /// filesystem, and never one of the queue's hidden temporary names (which scans skip).
    public static func isValidID(_ s: String) -> Bool {
        guard (1...128).contains(s.utf8.count), !s.hasPrefix(".") else { return false }
        return s.utf8.allSatisfy { c in
            (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 46 || c == 95 || c == 45
        }
    }

    /// What fidq's strict reader refuses in `data`, which Foundation would refuse without a place
    /// or accept: the line, the column and what was expected there (a trailing comma included,
    /// which Foundation accepts and Python's json refuses); a number beyond a 64-bit float (which
    /// Python reads as inf), named with its field; a key twice in one object (Foundation keeps the
    /// first value, Python's json the last), named with its path. Nil when none applies.
    static func syntaxError(_ data: Data) -> JobError? {
        var bytes = [UInt8](data)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }  // a BOM, as Foundation skips it
        let parsed: Result<JSONNode, any Error> = bytes.withUnsafeBytes { raw in
            var p = JSONParser(bytes: raw)
            return Result { try p.parseDocument() }
        }
        switch parsed {
        case .failure(let error):
            guard let f = error as? JSONParser.Failure else { return nil }
            let before = bytes.prefix(f.offset)
            let line = 1 + before.filter { $0 == 0x0A }.count
            let column = f.offset - (before.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0) + 1
            return JobError.permanent("not valid JSON at line \(line), column \(column): \(f.message)")
        case .success(let root):
            func overflow(_ node: JSONNode, _ path: String) -> (String, String)? {
                switch node {
                case .number(let t) where !(Double(t)?.isFinite ?? true): return (path, t)
                case .object(let fields):
                    for (k, v) in fields { if let found = overflow(v, path.isEmpty ? k : path + "." + k) { return found } }
                case .array(let items):
                    for (i, v) in items.enumerated() { if let found = overflow(v, path + "[\(i)]") { return found } }
                default: break
                }
                return nil
            }
            if let (path, text) = overflow(root, "") {
                return JobError.permanent("the number \(text) is beyond a 64-bit float's range (about ±1.8e308)", field: path)
            }
            func repeated(_ node: JSONNode, _ path: String) -> String? {
                switch node {
                case .object(let fields):
                    var seen = Set<String>()
                    for (k, v) in fields {
                        let p = path.isEmpty ? k : path + "." + k
                        if !seen.insert(k).inserted { return p }
                        if let found = repeated(v, p) { return found }
                    }
                case .array(let items):
                    for (i, v) in items.enumerated() { if let found = repeated(v, path + "[\(i)]") { return found } }
                default: break
                }
                return nil
            }
            if let path = repeated(root, "") {
                return JobError.permanent("the key appears twice in one object (Foundation would keep the first value, Python's json the last)",
                                          field: path, hint: "keep one")
            }
            return nil
        }
    }

    /// Decodes a descriptor file, checking everything that does not need the kind.
    ///
    /// - Parameters:
    ///   - data: the file's bytes (the caller enforces `maxBytes`).
    ///   - fileName: the file's name; the id defaults to it without `.json` and must equal it.
    /// - Throws: `JobError.permanent` naming the field, what was expected and what was found.
    ///   - idMayDiffer: the file is not in `pending/` (submit, run): an `id` field wins over its name.
    public static func parse(_ data: Data, fileName: String?, idMayDiffer: Bool = false) throws -> JobDescriptor {
        if data.isEmpty { throw JobError.permanent("empty file", hint: "a job needs at least {\"kind\": …}") }
        if data.count > maxBytes {
            throw JobError.permanent("descriptor larger than \(maxBytes) bytes", hint: "large inputs belong in files the params name")
        }
        // The strict reader first, so a descriptor means to fidq what it means to Python's json.
        if let refused = syntaxError(data) { throw refused }
        var d: JobDescriptor
        do {
            d = try JSONDecoder().decode(JobDescriptor.self, from: data)
        } catch let e as DecodingError {
            // With the document, a wrong type names the value found (`kind: expected a string,
            // found 5`), not Foundation's sentence.
            throw JobError.describe(e, document: try? JSONDecoder().decode(JSONValue.self, from: data))
        }
        let stem = fileName.map { $0.hasSuffix(".json") ? String($0.dropLast(5)) : $0 }
        if d.id.isEmpty {
            guard let stem, isValidID(stem) else {
                throw JobError.permanent(
                    "no 'id' field and the file name '\(fileName ?? "")' is not a valid id", field: "id",
                    hint: "ids match [A-Za-z0-9._-]{1,128}; rename the file or add \"id\"")
            }
            d.id = stem
        } else if let stem, stem != d.id, !idMayDiffer {
            throw JobError.permanent(
                "id '\(d.id)' differs from the file name '\(fileName!)'", field: "id",
                hint: "name the file \(d.id).json (fidq submit does this) or drop the id field")
        }
        for (field, ref) in d.references() where ref.isEmpty || !isValidID(ref) {
            throw JobError.permanent("'job:' reference with a bad id '\(ref)'", field: field,
                                     hint: "write job:ID/path with ID matching [A-Za-z0-9._-]{1,128}")
        }
        if d.dependencies.contains(d.id) {
            throw JobError.permanent("job '\(d.id)' depends on itself (dependency cycle)", field: "after")
        }
        return d
    }

    /// `job:ID/…` references in params, as (field, ID) pairs.
    public func references() -> [(field: String, id: String)] {
        var out: [(String, String)] = []
        func walk(_ v: JSONValue, _ path: String) {
            switch v {
            case .string(let s) where s.hasPrefix("job:"):
                let rest = s.dropFirst(4)
                out.append((path, String(rest.prefix { $0 != "/" })))
            case .array(let a): for (i, x) in a.enumerated() { walk(x, "\(path)[\(i)]") }
            case .object(let o): for k in o.keys.sorted() { walk(o[k]!, "\(path).\(k)") }
            default: break
            }
        }
        walk(params, "params")
        return out
    }

    /// `after` plus every `job:` reference, sorted and unique.
    public var dependencies: [String] {
        Array(Set(after + references().map(\.id))).sorted()
    }
}
