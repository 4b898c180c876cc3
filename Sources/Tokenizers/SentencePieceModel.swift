// SentencePieceModel: reads a SentencePiece `.model` (its ModelProto protobuf) without generated code.

/// The parts of sentencepiece's `ModelProto` (sentencepiece_model.proto) a unigram tokenizer needs,
/// decoded from the protobuf wire format directly.
struct SentencePieceModel {
    /// `ModelProto.SentencePiece.Type`.
    enum PieceType: Int { case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6 }

    var pieces: [String] = []
    var scores: [Float] = []
    var types: [PieceType] = []
    var modelType = 1  // UNIGRAM
    var byteFallback = false
    var treatWhitespaceAsSuffix = false
    var unkSurface = " \u{2047} "
    var normalizerName = ""
    var charsmap: [UInt8] = []
    var normalizer = SentencePieceNormalizerSpec()

    init(bytes: [UInt8], path: String) throws {
        var r = ProtoReader(bytes: bytes[...], path: path, message: "ModelProto")
        while let (field, wire) = try r.nextField() {
            switch (field, wire) {
            case (1, 2):
                var p = ProtoReader(bytes: try r.lengthDelimited(), path: path, message: "ModelProto.pieces")
                var piece = "", score: Float = 0, type = PieceType.normal
                while let (f, w) = try p.nextField() {
                    switch (f, w) {
                    case (1, 2): piece = String(decoding: try p.lengthDelimited(), as: UTF8.self)
                    case (2, 5): score = Float(bitPattern: try p.fixed32())
                    case (3, 0):
                        let raw = try p.varint()
                        guard let t = PieceType(rawValue: Int(clamping: raw)) else {
                            throw TokenizerError.malformed(
                                path: path, field: "pieces[\(pieces.count)].type", expected: "1...6", found: "\(raw)")
                        }
                        type = t
                    default: try p.skip(wire: w)
                    }
                }
                pieces.append(piece); scores.append(score); types.append(type)
            case (2, 2):
                var t = ProtoReader(bytes: try r.lengthDelimited(), path: path, message: "ModelProto.trainer_spec")
                while let (f, w) = try t.nextField() {
                    switch (f, w) {
                    case (3, 0): modelType = Int(clamping: try t.varint())
                    case (24, 0): treatWhitespaceAsSuffix = try t.varint() != 0
                    case (35, 0): byteFallback = try t.varint() != 0
                    case (44, 2): unkSurface = String(decoding: try t.lengthDelimited(), as: UTF8.self)
                    default: try t.skip(wire: w)
                    }
                }
            case (3, 2):
                var n = ProtoReader(bytes: try r.lengthDelimited(), path: path, message: "ModelProto.normalizer_spec")
                while let (f, w) = try n.nextField() {
                    switch (f, w) {
                    case (1, 2): normalizerName = String(decoding: try n.lengthDelimited(), as: UTF8.self)
                    case (2, 2): charsmap = Array(try n.lengthDelimited())
                    case (3, 0): normalizer.addDummyPrefix = try n.varint() != 0
                    case (4, 0): normalizer.removeExtraWhitespaces = try n.varint() != 0
                    case (5, 0): normalizer.escapeWhitespaces = try n.varint() != 0
                    default: try n.skip(wire: w)
                    }
                }
            default:
                try r.skip(wire: wire)
            }
        }
        if pieces.isEmpty {
            throw TokenizerError.malformed(
                path: path, field: "ModelProto.pieces", expected: "at least one piece", found: "none")
        }
    }
}

/// A cursor over protobuf wire-format bytes; every error names the file and message being read.
struct ProtoReader {
    var bytes: ArraySlice<UInt8>
    let path: String
    let message: String

    init(bytes: ArraySlice<UInt8>, path: String, message: String) {
        self.bytes = bytes
        self.path = path
        self.message = message
    }

    private func truncated(_ what: String) -> TokenizerError {
        .malformed(path: path, field: message, expected: what, found: "the end of the data (file truncated?)")
    }

    mutating func varint() throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while let b = bytes.popFirst() {
            value |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return value }
            shift += 7
            if shift > 63 {
                throw TokenizerError.malformed(
                    path: path, field: message, expected: "a varint of at most 10 bytes", found: "a longer one")
            }
        }
        throw truncated("a varint")
    }

    mutating func fixed32() throws -> UInt32 {
        guard bytes.count >= 4 else { throw truncated("4 bytes of a fixed32") }
        let s = bytes.startIndex
        let v = UInt32(bytes[s]) | UInt32(bytes[s + 1]) << 8 | UInt32(bytes[s + 2]) << 16 | UInt32(bytes[s + 3]) << 24
        bytes = bytes.dropFirst(4)
        return v
    }

    mutating func lengthDelimited() throws -> ArraySlice<UInt8> {
        let n = try varint()
        guard n <= UInt64(bytes.count) else { throw truncated("\(n) bytes of a length-delimited field") }
        let out = bytes.prefix(Int(n))
        bytes = bytes.dropFirst(Int(n))
        return out
    }

    /// The next (field number, wire type), or nil at the end.
    mutating func nextField() throws -> (Int, Int)? {
        if bytes.isEmpty { return nil }
        let key = try varint()
        return (Int(key >> 3), Int(key & 7))
    }

    mutating func skip(wire: Int) throws {
        switch wire {
        case 0: _ = try varint()
        case 1:
            guard bytes.count >= 8 else { throw truncated("8 bytes of a fixed64") }
            bytes = bytes.dropFirst(8)
        case 2: _ = try lengthDelimited()
        case 5: _ = try fixed32()
        default:
            throw TokenizerError.malformed(
                path: path, field: message, expected: "a protobuf wire type 0, 1, 2 or 5 (is this a .model file?)",
                found: "wire type \(wire)")
        }
    }
}
