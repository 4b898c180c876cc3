// JobError: why a job failed, whether retrying can help, and the field and hint that explain it.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Whether a failure can go away by running the job again.
public enum Permanence: String, Codable, Sendable {
    /// Bad descriptor, bad params, missing input, failed dependency: retrying cannot help.
    case permanent
    /// I/O trouble, a killed worker, anything unclassified: retried with backoff.
    case transient
}

/// An error a handler or the queue can classify. Handlers may throw their own types conforming
/// to `ClassifiedError`; anything else is treated as transient.
public protocol ClassifiedError: Error {
    var permanence: Permanence { get }
    /// Seconds the next attempt must wait at least (a server's Retry-After), when known.
    var retryAfter: Double? { get }
    /// The descriptor field at fault (`params.retries`), when there is one: error.json names it.
    var field: String? { get }
}

extension ClassifiedError {
    public var retryAfter: Double? { nil }
    public var field: String? { nil }
}

/// A job failure with the field it concerns and a hint when the fix is known.
public struct JobError: ClassifiedError, CustomStringConvertible, Sendable {
    public var permanence: Permanence
    public var message: String
    /// Dotted path of the offending descriptor field (`params.lr`), when there is one.
    public var field: String?
    public var hint: String?
    /// A declared input that does not exist (`KindRegistry.prepare`). Permanent, but a worker
    /// retries it for a while when the job's dependencies have just finished: on NFS a file
    /// another host committed may not be visible here yet.
    public var isMissingInput = false
    /// A transient failure's next attempt waits at least this long (a server's Retry-After).
    public var retryAfter: Double?

    public init(_ permanence: Permanence, _ message: String, field: String? = nil, hint: String? = nil) {
        self.permanence = permanence
        self.message = message
        self.field = field
        self.hint = hint
    }

    public static func permanent(_ message: String, field: String? = nil, hint: String? = nil) -> JobError {
        JobError(.permanent, message, field: field, hint: hint)
    }

    public static func missingInput(_ message: String, field: String, hint: String? = nil) -> JobError {
        var e = JobError(.permanent, message, field: field, hint: hint)
        e.isMissingInput = true
        return e
    }

    public static func transient(_ message: String, field: String? = nil, hint: String? = nil) -> JobError {
        JobError(.transient, message, field: field, hint: hint)
    }

    public var description: String {
        var s = (field.map { $0 + ": " } ?? "") + message
        if let hint { s += " (hint: \(hint))" }
        return s
    }

    /// What is wrong with the storage when `text` (an error's description, which carries
    /// `strerror`'s words whatever layer threw it) says it is full, over quota or read-only.
    public static func storageTrouble(_ text: String) -> String? {
        if text.contains("No space left on device") { return "full (ENOSPC)" }
        if text.contains("Disk quota exceeded") { return "over its quota (EDQUOT)" }
        if text.contains("Read-only file system") { return "read-only (EROFS)" }
        return nil
    }

    /// Classifies any thrown error: `ClassifiedError`s say so themselves; decoding errors are
    /// permanent; file errors are permanent when a path is missing or forbidden, else transient.
    public static func classify(_ error: Error) -> JobError {
        if let e = error as? JobError { return e }
        if let e = error as? DecodingError { return describe(e, root: "params") }
        if let e = error as? CancellationError { return .permanent("cancelled: \(e.reason.rawValue)") }
        if let e = error as? ClassifiedError {
            var classified = JobError(e.permanence, "\(error)", field: e.field)
            classified.retryAfter = e.retryAfter
            return classified
        }
        if let e = error as? FSError {
            let permanent = [ENOENT, ENOTDIR, EACCES, EPERM, EISDIR, ELOOP, ENAMETOOLONG].contains(e.code)
            return JobError(permanent ? .permanent : .transient, e.description)
        }
        return .transient("\(error)")
    }

    /// Turns a `DecodingError` into a message naming the field (`params.n_context`) and, when the
    /// decoded `document` is given, the value found there (`found "abc"`, rather than Foundation's
    /// "Expected to decode Int but found a string").
    public static func describe(_ error: DecodingError, root: String? = nil, document: JSONValue? = nil) -> JobError {
        func path(_ keys: [CodingKey]) -> String {
            var out = root ?? ""
            for k in keys {
                if let i = k.intValue { out += "[\(i)]" } else { out += (out.isEmpty ? "" : ".") + k.stringValue }
            }
            return out
        }
        switch error {
        case .typeMismatch(let type, let ctx):
            let f = path(ctx.codingPath)
            if let found = document?.value(at: ctx.codingPath) {
                return .permanent("expected \(typeName(type)), found \(ThreadsParam.describe(found))", field: f.isEmpty ? nil : f)
            }
            return .permanent("expected \(typeName(type)); \(ctx.debugDescription)", field: f.isEmpty ? nil : f)
        case .valueNotFound(let type, let ctx):
            let f = path(ctx.codingPath)
            return .permanent("expected \(typeName(type)), found null", field: f)
        case .keyNotFound(let key, let ctx):
            let f = path(ctx.codingPath + [key])
            return .permanent("missing required field", field: f)
        case .dataCorrupted(let ctx):
            if ctx.codingPath.isEmpty && root == nil {
                let detail = (ctx.underlyingError.map { "\($0)" } ?? ctx.debugDescription)
                return .permanent("not valid JSON: \(detail)", hint: "check the file with `python3 -m json.tool FILE`")
            }
            let f = path(ctx.codingPath)
            return .permanent(ctx.debugDescription, field: f)
        @unknown default:
            return .permanent("\(error)")
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        case is Int.Type, is Int64.Type, is Int32.Type, is UInt.Type: return "an integer"
        case is Double.Type, is Float.Type: return "a number"
        case is [String].Type: return "a list of strings"
        default:
            let name = "\(type)"
            if name.hasPrefix("Array") || name.hasPrefix("[") { return "a list" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return name
        }
    }
}

/// Why a running job was asked to stop.
public enum CancelReason: String, Codable, Sendable {
    /// `fidq cancel ID`.
    case cancelled
    /// `timeout_s` passed.
    case timeout
    /// The worker got SIGTERM/SIGINT: the claim is released for another worker.
    case shutdown
    /// Another worker took the claim over (this worker was paused past its lease).
    case leaseLost = "lease lost"
}

/// Thrown by `CancellationToken.check()` at a safe point.
public struct CancellationError: Error, CustomStringConvertible, Sendable {
    public let reason: CancelReason
    public var description: String { "cancelled: \(reason.rawValue)" }
}
