// FetchError: every way a fetch can fail, each classified permanent (do not retry) or transient.
import Foundation

/// A failed fetch. `isPermanent` tells the queue whether another attempt can help.
///
/// Permanent: bad params, an HTTP 4xx answer, a checksum mismatch, a refused (hostile) archive,
/// a limit exceeded, a corrupt archive, a preprocessing input in the wrong format, a `dest` that
/// is already taken. Transient: connection failures, 5xx/408/429 answers, timeouts, local IO.
public enum FetchError: Error, CustomStringConvertible, Equatable {
    /// A param is missing, unknown, of the wrong type or out of range.
    case badParams(field: String, expected: String, found: String, hint: String?)
    /// The server answered with an HTTP error status.
    case http(url: String, status: Int)
    /// Redirects that cannot be followed: a loop (more than 10) or a scheme other than http(s).
    case redirect(url: String, reason: String)
    /// A 429 or 503 whose Retry-After asks for longer than one run waits: the queue's next
    /// attempt waits for it instead.
    case retryLater(url: String, status: Int, seconds: Double)
    /// The server sends the body under a Content-Encoding the HTTP client cannot decode.
    case encoding(url: String, encoding: String)
    /// The connection failed or dropped (curl/URLSession message in `reason`).
    case network(url: String, reason: String)
    /// No answer within `connect_timeout_s`, or no data for `idle_timeout_s`.
    case timeout(url: String, phase: String, seconds: Double)
    /// The downloaded bytes do not hash to the expected sha256.
    /// `decodedFrom`: the server sent the body with this Content-Encoding, and the digest is of
    /// the decoded bytes (Foundation's HTTP client always decodes).
    case checksum(url: String, expected: String, found: String, decodedFrom: String? = nil)
    /// An archive entry was refused as unsafe; names the archive and the entry.
    case refused(archive: String, entry: String, reason: String)
    /// A size or count limit was exceeded; `what` names the limit and its param.
    case limit(archive: String, entry: String, what: String, limit: Int64)
    /// libarchive could not read the archive.
    case archive(archive: String, message: String)
    /// A local file operation failed.
    case io(path: String, message: String)
    /// A local file operation this user may not do (EACCES, EPERM): retrying cannot help.
    case permission(path: String, message: String)
    /// A local file the params name (a `file://` URL, `passages`) is missing or unreadable.
    case localFile(path: String, field: String, reason: String)
    /// `dest` exists and holds something other than this fetch's earlier result.
    case destExists(path: String)
    /// A preprocessing input is not in the expected upstream format.
    case format(file: String, field: String, expected: String, found: String)
    /// `isCancelled` returned true; the partial download is kept for the next attempt.
    case cancelled

    /// Whether retrying the same params can never succeed.
    public var isPermanent: Bool {
        switch self {
        case .badParams, .checksum, .refused, .limit, .archive, .destExists, .format, .localFile, .redirect, .permission, .encoding: return true
        case .http(_, let status): return !FetchError.retryableStatus(status)
        case .network, .timeout, .io, .cancelled, .retryLater: return false
        }
    }

    /// Content-Encodings URLSession (libcurl) decodes; others fail every attempt alike.
    static let decodableEncodings = ["gzip", "x-gzip", "deflate", "br", "zstd"]

    /// Whether a Content-Encoding header's codings (a comma list, `identity` aside) all decode.
    static func decodable(_ header: String) -> Bool {
        header.lowercased().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .allSatisfy { $0.isEmpty || $0 == "identity" || decodableEncodings.contains($0) }
    }

    /// HTTP statuses worth another attempt: server errors, request timeout, too many requests.
    static func retryableStatus(_ status: Int) -> Bool {
        status >= 500 || status == 408 || status == 429
    }

    public var description: String {
        switch self {
        case .badParams(let field, let expected, let found, let hint):
            return "fetch params: '\(field)': expected \(expected), found \(found)"
                + (hint.map { " (hint: \($0))" } ?? "")
        case .http(let url, let status):
            let kind = FetchError.retryableStatus(status) ? "retryable" : "not retried"
            return "\(url): HTTP \(status) (\(kind))"
        case .retryLater(let url, let status, let seconds):
            return "\(url): HTTP \(status), and the server asks to come back in \(Int(seconds.rounded(.up))) s (Retry-After),"
                + " longer than one run waits (\(Int(Downloader.retryAfterCap)) s): the queue's next attempt waits for it"
        case .encoding(let url, let encoding):
            return "\(url): the server sends the file with Content-Encoding: \(encoding), which the HTTP client cannot decode"
                + " (it decodes \(FetchError.decodableEncodings.joined(separator: ", "))); not retried"
                + " (hint: fetch it from a server that sends the file as it is stored)"
        case .network(let url, let reason):
            return "\(url): connection failed: \(reason)"
        case .redirect(let url, let reason):
            return "\(url): \(reason)"
        case .timeout(let url, let phase, let seconds):
            return "\(url): \(phase) timeout after \(seconds) s"
                + " (hint: raise \(phase == "connect" ? "connect_timeout_s" : "idle_timeout_s"))"
        case .checksum(let url, let expected, let found, let decodedFrom):
            return "\(url): sha256 mismatch: expected \(expected), found \(found); nothing was published"
                + (decodedFrom.map {
                    " (the server sent the file with Content-Encoding: \($0), and what was hashed is the decoded content;"
                        + " give the sha256 of the decoded file, or fetch from a server that sends the file as it is stored)"
                } ?? "")
        case .refused(let archive, let entry, let reason):
            return "\(archive): entry '\(entry)' refused: \(reason)"
        case .limit(let archive, let entry, let what, let limit):
            return "\(archive): entry '\(entry)': \(what) exceeds the limit of \(limit)"
                + " (hint: raise \(what.hasSuffix("count") ? "max_files" : "max_bytes") if the source is trusted)"
        case .archive(let archive, let message):
            return "\(archive): cannot read archive: \(message)"
        case .io(let path, let message):
            return "\(path): \(message)"
        case .permission(let path, let message):
            return "\(path): \(message) (hint: another user's files: a folder a group shares needs umask 002 when each fetch runs, group write, and no sticky bit, which lets only a file's owner rename it; the download is kept for the rerun)"
        case .localFile(let path, let field, let reason):
            return "\(path): \(reason) (named by '\(field)')"
        case .destExists(let path):
            return "\(path): dest already exists and was not produced by this fetch (it holds something else, or a fetch of"
                + " other settings: url or source, sha256, unpack, strip_components, filename, passages)"
                + " (hint: choose another dest, remove it, or set \"replace\": true; fidq fetch --replace)"
        case .format(let file, let field, let expected, let found):
            return "\(file): '\(field)': expected \(expected), found \(found)"
        case .cancelled:
            return "fetch cancelled; the partial download is kept and the next attempt resumes it (a file:// source is copied again from its start)"
        }
    }

    /// An `io` error carrying `errno`'s text.
    static func posix(_ path: String, _ what: String, _ code: Int32 = errno) -> FetchError {
        let message = "\(what): \(String(cString: strerror(code)))"
        return code == EACCES || code == EPERM ? .permission(path: path, message: message) : .io(path: path, message: message)
    }
}
