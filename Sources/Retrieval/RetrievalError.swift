// RetrievalError: bad input to the retrieval code, naming the file, the field or line, expected vs found, a hint.

/// A retrieval input that cannot be used. Every case names the file and where in it.
public struct RetrievalError: Error, CustomStringConvertible, Equatable {
    /// The file (or param) at fault.
    public var file: String
    /// Where in it: `line 12`, `header`, `row count`, a param name.
    public var field: String
    public var expected: String
    public var found: String
    public var hint: String?

    public init(file: String, field: String, expected: String, found: String, hint: String? = nil) {
        (self.file, self.field, self.expected, self.found, self.hint) = (file, field, expected, found, hint)
    }

    /// The error without its hint (for wrappers that carry the hint apart).
    public var message: String { "\(file): \(field): expected \(expected), found \(found)" }

    public var description: String { message + (hint.map { " (hint: \($0))" } ?? "") }
}
