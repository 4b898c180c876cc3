// UnigramDecoder: ids back to text, as sentencepiece's DecodeIds or Hugging Face's Metaspace decoder.

extension UnigramTokenizer {
    /// Text of `ids`; ids out of range are ignored.
    /// - From a `.model`: sentencepiece `DecodeIds`. Control pieces (`<pad>`, `</s>`) print nothing, `<unk>`
    ///   prints the model's unknown surface, and while nothing is printed yet a piece loses one leading `▁`
    ///   (`[<pad>, ▁Hello]` is "Hello"): every such piece when the model removes extra whitespace, else
    ///   only the first (`[▁, ▁, ▁a]` is "  a", as sentencepiece's `bos_ws_seen` decides). Extra ids print as
    ///   their text, as USER_DEFINED pieces would. `skipSpecialTokens` first drops control, unknown and
    ///   extra ids (what T5Tokenizer's `skip_special_tokens` drops), then decodes the rest the same way.
    /// - From a tokenizer.json: `Tokenizer.decode`: added tokens marked special are dropped when skipping,
    ///   else kept as their text; then the Metaspace decoder turns `▁` into a space, except in the first
    ///   token left, where every `▁` is dropped (`[<pad>, ▁Hello]` is "<pad> Hello" or "Hello").
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        var out: [UInt8] = []
        let space: [UInt8] = [0xE2, 0x96, 0x81]
        var first = true
        // sentencepiece's is_bos_ws / bos_ws_seen: a leading `▁` is consumed until text appears,
        // but with add_dummy_prefix alone only the first (the one encoding added); removing
        // extra whitespace consumes every leading one.
        var atStart = true, consumedOne = false
        for id in ids {
            guard id >= 0, Int(id) < pieces.count else { continue }
            if skipSpecialTokens && skipIds.contains(id) { continue }
            let kind = kinds[Int(id)]
            switch pipeline {
            case .sentencePiece(let spec):
                if consumedOne || !out.isEmpty { atStart = false }
                consumedOne = false
                if kind == .control { continue }
                if kind == .unknown {
                    out.append(contentsOf: Array(unkSurface.utf8))
                    continue
                }
                var p = pieceBytes[Int(id)][...]
                if atStart && (spec.addDummyPrefix || spec.removeExtraWhitespaces) && p.starts(with: space) {
                    p = p.dropFirst(3)
                    consumedOne = !spec.removeExtraWhitespaces
                }
                appendReplacing(p, space, with: [0x20], into: &out)
            case .huggingFace(let pre):
                let drop = first && pre.prepend != .never && pre.metaspace
                first = false
                appendReplacing(pieceBytes[Int(id)][...], pre.metaspace ? pre.replacement : [], with: drop ? [] : [0x20],
                                into: &out)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private func appendReplacing(_ p: ArraySlice<UInt8>, _ what: [UInt8], with rep: [UInt8], into out: inout [UInt8]) {
        if what.isEmpty { out.append(contentsOf: p); return }
        var i = p.startIndex
        while i < p.endIndex {
            if p.endIndex - i >= what.count && p[i..<(i + what.count)].elementsEqual(what) {
                out.append(contentsOf: rep)
                i += what.count
            } else {
                out.append(p[i])
                i += 1
            }
        }
    }
}
