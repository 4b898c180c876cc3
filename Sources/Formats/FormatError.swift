// FormatError: a data or text file that is not in the expected format, or cannot be read or written.

/// A file that could not be read, parsed or written: names the file, where in it (a byte offset
/// and line, an element index, a field), what was expected and what was found, with a hint when
/// the fix is known.
public struct FormatError: Error, CustomStringConvertible, Equatable {
    public var file: String
    /// Where in the file: "byte 120 (line 3)", "[5].ctxs[2].title", "line 7".
    public var location: String
    public var message: String
    public var hint: String?

    public init(file: String, location: String, _ message: String, hint: String? = nil) {
        self.file = file
        self.location = location
        self.message = message
        self.hint = hint
    }

    public var description: String {
        "\(file)\(location.isEmpty ? "" : ": " + location): \(message)" + (hint.map { " (hint: \($0))" } ?? "")
    }
}
