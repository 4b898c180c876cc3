// BatchEncoding: many texts to ids on all cores, truncated and padded into (B, L) ids and masks.
import Foundation
import Threading

/// Ids and attention masks of a batch, padded to one length, row-major: row `b` is `ids[b·L ..< (b+1)·L]`.
public struct EncodedBatch: Sendable, Equatable {
    /// B: the number of texts.
    public let count: Int
    /// L: ids per row.
    public let length: Int
    /// (B, L) token ids, `padId` after each text's last id.
    public var ids: [Int32]
    /// (B, L) 1 for a token, 0 for padding.
    public var mask: [Int32]

    /// Ids of row `b`, padding included.
    public func row(_ b: Int) -> ArraySlice<Int32> {
        precondition(b >= 0 && b < count, "row \(b) of a batch of \(count)")
        return ids[(b * length)..<((b + 1) * length)]
    }
}

extension Tokenizer {
    /// The ids of every text (as `encode`), unpadded, computed on `threads` threads (default: all cores).
    public func encodeAll(_ texts: [String], addSpecialTokens: Bool = true, maxLength: Int? = nil,
                          threads: Int? = nil) -> [[Int32]] {
        var out = [[Int32]](repeating: [], count: texts.count)
        let workers = max(1, min(threads ?? ProcessInfo.processInfo.activeProcessorCount, texts.count))
        // Workers take blocks of rows from a shared cursor (balanced even when a core is busy elsewhere);
        // each has its own workspace, and rows are disjoint, so only the cursor is locked.
        let block = max(16, texts.count / (workers * 16))
        let cursor = NSLock()
        var next = 0
        out.withUnsafeMutableBufferPointer { buffer in
            let dst = buffer
            let work = { (_: Int) in
                let ws = Workspace()
                var content: [Int32] = []
                while true {
                    cursor.lock()
                    let lo = next
                    next += block
                    cursor.unlock()
                    if lo >= texts.count { return }
                    for i in lo..<min(lo + block, texts.count) {
                        content.removeAll(keepingCapacity: true)
                        var s = texts[i]
                        s.withUTF8 { self.encodeContent($0, into: &content, workspace: ws) }
                        dst[i] = self.assemble(content, addSpecialTokens: addSpecialTokens, maxLength: maxLength)
                    }
                }
            }
            if workers == 1 {
                work(0)
            } else {
                ComputePool.shared.run(workers, threads: workers, work)
            }
        }
        return out
    }

    /// Encodes a batch for a model: each text truncated to `maxLength` ids (special tokens included, as
    /// HF truncates) and right-padded with `padId`. Rows are `maxLength` long when `padToMaxLength` (FiD pads
    /// every passage to `text_maxlength`), else as long as the longest row.
    public func encodeBatch(_ texts: [String], maxLength: Int? = nil, addSpecialTokens: Bool = true,
                            padToMaxLength: Bool = true, threads: Int? = nil) -> EncodedBatch {
        precondition(maxLength.map { $0 >= 0 } ?? true, "maxLength \(maxLength!) < 0")
        let rows = encodeAll(texts, addSpecialTokens: addSpecialTokens, maxLength: maxLength, threads: threads)
        let longest = rows.map(\.count).max() ?? 0
        let L = (padToMaxLength ? maxLength : nil) ?? longest
        var ids = [Int32](repeating: padId, count: texts.count * L)  // (B, L)
        var mask = [Int32](repeating: 0, count: texts.count * L)    // (B, L)
        ids.withUnsafeMutableBufferPointer { idp in
            mask.withUnsafeMutableBufferPointer { mp in
                for (b, row) in rows.enumerated() {
                    for (t, id) in row.enumerated() {
                        idp[b * L + t] = id
                        mp[b * L + t] = 1
                    }
                }
            }
        }
        return EncodedBatch(count: texts.count, length: L, ids: ids, mask: mask)
    }
}
