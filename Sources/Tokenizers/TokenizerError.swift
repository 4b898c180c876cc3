// TokenizerError: what is wrong with a tokenizer file, naming the file, the field, expected and found.

/// A tokenizer file that cannot be loaded. Every case names the file; the description says what was
/// expected, what was found, and how to fix it when that is known.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// The file could not be read at all.
    case unreadable(path: String, reason: String)
    /// The file's format is not one fidq knows (tokenizer.json, spiece.model, vocab.txt).
    case unknownFormat(path: String, found: String)
    /// A field is missing or has the wrong type or value.
    case malformed(path: String, field: String, expected: String, found: String)
    /// The file is valid but asks for a feature fidq does not implement.
    case unsupported(path: String, field: String, found: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason):
            return "tokenizer: cannot read \(path): \(reason)"
        case let .unknownFormat(path, found):
            return "tokenizer: \(path): expected a tokenizer.json, a SentencePiece .model or a WordPiece vocab.txt "
                + "(or a folder holding one), found \(found)"
        case let .malformed(path, field, expected, found):
            return "tokenizer: \(path): field `\(field)`: expected \(expected), found \(found)"
        case let .unsupported(path, field, found):
            return "tokenizer: \(path): field `\(field)` is \(found), which fidq does not implement "
                + "(supported: Unigram with Precompiled/Metaspace/WhitespaceSplit, WordPiece with BertNormalizer)"
        }
    }
}
