// SafeTensorsError: every way a safetensors file can be unreadable or unwritable, as a thrown error.

/// A safetensors file that cannot be read or written; `description` names the file and the problem.
///
/// Nothing a file contains makes fidq trap: each malformation below is one of these.
public struct SafeTensorsError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, for tests and callers that branch on it.
    public enum Kind: String, Sendable {
        /// open, stat, read, mmap, write, fsync or rename failed.
        case io
        /// Shorter than 8 bytes, or than its header length says.
        case truncated
        /// The header length is over safetensors' limit (100 000 000 bytes).
        case headerTooLarge
        /// The header is not UTF-8.
        case headerEncoding
        /// The header is not JSON.
        case headerJSON
        /// The header is JSON of the wrong form: not an object, a field missing or mistyped.
        case headerLayout
        /// A dtype string safetensors does not define.
        case unknownDType
        /// A dtype safetensors defines that fidq does not convert (or does not write).
        case unsupportedDType
        /// A shape whose element count does not fit its byte range.
        case sizeMismatch
        /// Byte ranges that overlap, leave gaps, end before they start, or leave trailing bytes.
        case offsets
        /// Byte ranges that run past the end of the file.
        case outOfBounds
        /// The same tensor name twice in one header.
        case duplicateName
        /// An integer or F64 value that Float32 cannot hold exactly.
        case notRepresentable
    }

    /// The file concerned.
    public let path: String
    public let kind: Kind
    /// The problem: the field or tensor, what was expected, what was found.
    public let message: String
    /// How to fix it, when known.
    public let hint: String?

    public init(_ kind: Kind, path: String, _ message: String, hint: String? = nil) {
        self.kind = kind
        self.path = path
        self.message = message
        self.hint = hint
    }

    public var description: String {
        "\(path): \(message)" + (hint.map { " (hint: \($0))" } ?? "")
    }
}
