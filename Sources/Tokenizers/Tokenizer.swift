// Tokenizer: the protocol both vocabularies implement, single-text encoding, and the scratch workspace.

/// Text to ids and back for one vocabulary. Implementations are immutable, so one instance serves every
/// thread; per-call scratch lives in a `Workspace`.
public protocol Tokenizer: AnyObject, Sendable {
    /// Ids added before the text when special tokens are asked for (`[CLS]` for BERT, none for T5).
    var prefixIds: [Int32] { get }
    /// Ids added after the text when special tokens are asked for (`</s>` for T5, `[SEP]` for BERT).
    var suffixIds: [Int32] { get }
    /// The id that pads a sequence to a fixed length (`<pad>` 0 for T5, `[PAD]` 0 for BERT).
    var padId: Int32 { get }
    /// Number of ids, added tokens included (32,100 for T5).
    var vocabSize: Int { get }
    /// Appends the ids of UTF-8 `text`, special tokens in the text kept whole but none added.
    func encodeContent(_ text: UnsafeBufferPointer<UInt8>, into ids: inout [Int32], workspace: Workspace)
    /// The vocabulary piece of `id`, or nil when out of range.
    func piece(for id: Int32) -> String?
    /// The id of vocabulary piece `piece`, or nil.
    func id(for piece: String) -> Int32?
    /// Text of `ids`, ids out of range ignored, as the reference library of the file decodes: Hugging Face's
    /// `decode(ids, skip_special_tokens:)` for a tokenizer.json or vocab.txt (special tokens kept as text
    /// unless skipped), sentencepiece's `DecodeIds` for a `.model` (control pieces never print; skipping
    /// also drops `<unk>` and the extra ids).
    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String
}

/// Reusable scratch buffers for one thread's encoding; create one per thread, never share it.
public final class Workspace {
    var normalized: [UInt8] = []
    var word: [UInt8] = []
    var scratch: [UInt8] = []
    /// Lattice scratch as raw memory: read once per lattice into locals, so the hot loop pays no
    /// exclusivity checks. Each holds `capacity` elements.
    private(set) var capacity = 0
    private(set) var bestF = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var bestD = UnsafeMutablePointer<Double>.allocate(capacity: 1)
    private(set) var starts = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    private(set) var nodeIds = UnsafeMutablePointer<Int32>.allocate(capacity: 1)

    public init() {}

    /// Makes the lattice buffers hold at least `n` elements.
    @inline(__always)
    func reserveLattice(_ n: Int) {
        if n <= capacity { return }
        let cap = max(n, 2 * capacity, 256)
        bestF.deallocate(); bestD.deallocate(); starts.deallocate(); nodeIds.deallocate()
        bestF = .allocate(capacity: cap)
        bestD = .allocate(capacity: cap)
        starts = .allocate(capacity: cap)
        nodeIds = .allocate(capacity: cap)
        capacity = cap
    }

    deinit {
        bestF.deallocate(); bestD.deallocate(); starts.deallocate(); nodeIds.deallocate()
    }
}

/// Runs `body` on `text` when it is valid UTF-8, else on a repaired copy (invalid bytes become U+FFFD), so
/// code after it may decode characters without bounds checks.
@inline(__always)
func withValidUTF8(_ text: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
    guard let p = text.baseAddress else { return }
    var i = 0
    let n = text.count
    while i < n {
        if p[i] < 0x80 { i += 1; continue }
        let l = UTF8Decoding.validLength(p + i, n - i)
        if l == 0 {
            var s = String(decoding: text, as: UTF8.self)
            s.withUTF8(body)
            return
        }
        i += l
    }
    body(text)
}

extension Tokenizer {
    /// The ids of `text`: special tokens added when `addSpecialTokens` (T5 `</s>`; BERT `[CLS]`…`[SEP]`), and
    /// at most `maxLength` ids when given, the content cut so the special tokens still fit (as HF truncates;
    /// a `maxLength` below the special tokens' count, which HF answers with the whole sequence and an
    /// error in its log, keeps the first `maxLength` ids here, so the bound always holds).
    /// Invalid UTF-8 in `text` cannot occur (Swift strings are valid); NUL and control characters are tokenised.
    public func encode(_ text: String, addSpecialTokens: Bool = true, maxLength: Int? = nil,
                       workspace: Workspace = Workspace()) -> [Int32] {
        var content: [Int32] = []
        var s = text
        s.withUTF8 { encodeContent($0, into: &content, workspace: workspace) }
        return assemble(content, addSpecialTokens: addSpecialTokens, maxLength: maxLength)
    }

    /// Content ids truncated to fit `maxLength` with the special tokens around them.
    func assemble(_ content: [Int32], addSpecialTokens: Bool, maxLength: Int?) -> [Int32] {
        let pre = addSpecialTokens ? prefixIds : []
        let suf = addSpecialTokens ? suffixIds : []
        var keep = content.count
        if let m = maxLength { keep = min(keep, max(0, m - pre.count - suf.count)) }
        var out = pre
        out.reserveCapacity(pre.count + keep + suf.count)
        out.append(contentsOf: content[0..<keep])
        out.append(contentsOf: suf)
        if let m = maxLength, out.count > m { out.removeLast(out.count - m) }
        return out
    }

    /// The vocabulary pieces of `text` (one per id of `encode`), for debugging data.
    public func pieces(_ text: String, addSpecialTokens: Bool = false, maxLength: Int? = nil) -> [String] {
        encode(text, addSpecialTokens: addSpecialTokens, maxLength: maxLength).map { piece(for: $0) ?? "?" }
    }
}
