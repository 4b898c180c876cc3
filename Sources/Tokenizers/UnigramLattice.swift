// UnigramLattice: Viterbi over piece scores, sentencepiece's and Hugging Face's variants.

extension UnigramTokenizer {
    /// Viterbi over the lattice of `text` (valid UTF-8); appends the best path's ids, unknown runs fused.
    func lattice(_ text: UnsafeBufferPointer<UInt8>, _ ids: inout [Int32], _ ws: Workspace, spm: Bool) {
        let n = text.count
        if n == 0 { return }
        ws.reserveLattice(n + 1)
        let starts = ws.starts, nodeIds = ws.nodeIds
        if spm {
            forward(text, scoreTableF.buffer, unkScoreF, true, ws.bestF, starts, nodeIds)
        } else {
            forward(text, scoreTableD.buffer, unkScoreD, false, ws.bestD, starts, nodeIds)
        }
        // Backtrack from the end; consecutive unknowns become one `<unk>`.
        let mark = ids.count
        var e = n
        var prevUnk = false
        while e > 0 {
            let id = nodeIds[e]
            if id == unkId {
                if !prevUnk { ids.append(id) }
                prevUnk = true
            } else {
                ids.append(id)
                prevUnk = false
            }
            e = Int(starts[e])
        }
        ids[mark...].reverse()
    }

    /// The forward pass: best score of a segmentation ending at each byte offset (char boundaries only).
    @inline(__always)
    private func forward<S: BinaryFloatingPoint>(
        _ text: UnsafeBufferPointer<UInt8>, _ scores: UnsafeBufferPointer<S>, _ unkScore: S, _ spm: Bool,
        _ best: UnsafeMutablePointer<S>, _ starts: UnsafeMutablePointer<Int32>, _ nodeIds: UnsafeMutablePointer<Int32>
    ) {
        let n = text.count
        for k in 1...n { starts[k] = -1 }
        best[0] = 0
        do {
            let units = trie.units.buffer, values = trie.values.buffer, kinds = kindTable.buffer
            let root = units[0]
            var pos = 0
            while pos < n {
                let here = best[pos]
                let mblen = min(UTF8Decoding.length(lead: text[pos]), n - pos)
                var hasSingle = false
                var unit = root
                var k = pos
                while k < n {
                    // The slack after the last unit keeps `base + byte` in range.
                    guard let (next, t) = DoubleArrayTrie.child(units, unit, text[k]) else { break }
                    unit = next
                    k += 1
                    if next & (1 << 9) == 0 { continue }
                    let v = values[t]
                    var score = scores[Int(v)]
                    if spm {
                        let kind = kinds[Int(v)]
                        if kind == .unused { continue }
                        if kind == .userDefined { score = S(k - pos) * S(maxScoreF) - S(0.1) }
                    }
                    let candidate = score + here
                    if starts[k] < 0 || candidate > best[k] {
                        best[k] = candidate
                        starts[k] = Int32(pos)
                        nodeIds[k] = v
                    }
                    if k - pos == mblen { hasSingle = true }
                }
                if !hasSingle {
                    let e = pos + mblen
                    let candidate = unkScore + here
                    if starts[e] < 0 || candidate > best[e] {
                        best[e] = candidate
                        starts[e] = Int32(pos)
                        nodeIds[e] = unkId
                    }
                }
                pos += mblen
            }
        }
    }

}
