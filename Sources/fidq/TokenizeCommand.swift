// TokenizeCommand: `fidq tokenize` — lines of text to ids or pieces on stdout, or ids back to text.
import ArgumentParser
import Foundation
import Tokenizers

/// Tokenises stdin line by line, for debugging data and for tests.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the ids (or pieces) of each line of stdin, or with --decode the text of lines of ids.")

    @Option(help: "A tokenizer.json, a SentencePiece .model, a WordPiece vocab.txt, or a folder holding one.")
    var tokenizer: String

    @Flag(help: "Add no special tokens (T5's </s>, BERT's [CLS] and [SEP]).")
    var noSpecial = false

    @Option(help: "Keep at most N ids per line, special tokens included.")
    var maxLength: Int?

    @Flag(help: "Print pieces instead of ids.")
    var pieces = false

    @Flag(help: "Read lines of space-separated ids and print their text (special tokens skipped).")
    var decode = false

    @Flag(help: "With --decode, keep special tokens in the text.")
    var keepSpecial = false

    func validate() throws {
        if let m = maxLength, m < 0 { throw ValidationError("--max-length must be at least 0, got \(m)") }
        if decode && pieces { throw ValidationError("--decode and --pieces cannot be combined") }
    }

    func run() throws {
        let tok = try TokenizerLoader.load(tokenizer)
        var out: [UInt8] = []
        out.reserveCapacity(1 << 16)
        // A reader that stopped (`| head`) closes the pipe: SIGPIPE is ignored (so a stopped run
        // can save its work), so the failed write must end the loop, as the signal did.
        func flush() throws {
            let written = out.withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count, stdout) }
            if written < out.count || fflush(stdout) != 0 { throw ExitCode(141) }
            out.removeAll(keepingCapacity: true)
        }
        var block: [String] = []
        var lineNo = 0
        func emit() throws {
            if decode {
                for line in block {
                    lineNo += 1
                    var ids: [Int32] = []
                    for field in line.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
                        guard let id = Int32(field) else {
                            throw ValidationError("stdin line \(lineNo): expected space-separated integer ids, found \"\(field)\"")
                        }
                        ids.append(id)
                    }
                    out.append(contentsOf: tok.decode(ids, skipSpecialTokens: !keepSpecial).utf8)
                    out.append(0x0A)
                }
            } else {
                let rows = tok.encodeAll(block, addSpecialTokens: !noSpecial, maxLength: maxLength)
                for row in rows {
                    let fields = pieces ? row.map { tok.piece(for: $0) ?? "?" } : row.map { String($0) }
                    out.append(contentsOf: fields.joined(separator: " ").utf8)
                    out.append(0x0A)
                }
            }
            block.removeAll(keepingCapacity: true)
            try flush()
        }
        // readLine decodes UTF-8 replacing invalid bytes with U+FFFD, so any input is tokenised.
        while let line = readLine(strippingNewline: true) {
            block.append(line)
            if block.count == 4096 { try emit() }
        }
        try emit()
    }
}
