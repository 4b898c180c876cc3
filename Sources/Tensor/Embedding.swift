// Embedding: table lookup by Int32 ids, and its scatter-add backward.

/// Row lookup in an embedding table: `out[n] = table[ids[n]]`.
///
/// Layout: table (V, D), ids (N) Int32, out (N, D). An id outside 0..<V is a bug upstream
/// (the tokenizer and the config disagree), so it traps with the values.
public enum Embedding {
    /// Forward: out (N, D) = table[ids] with table (V, D).
    public static func forward(
        out: UnsafeMutablePointer<Float>, ids: UnsafePointer<Int32>, table: UnsafePointer<Float>,
        count: Int, vocab: Int, dim: Int
    ) {
        let N = count, V = vocab, D = dim
        precondition(N >= 0 && V >= 1 && D >= 1, "Embedding.forward: count=\(N) vocab=\(V) dim=\(D)")
        parallelFor(N, grain: max(1, 16384 / D)) { r in
            for n in r {
                let id = Int(ids[n])
                precondition(id >= 0 && id < V, "Embedding.forward: ids[\(n)] = \(id) outside 0..<\(V)")
                (out + n * D).update(from: table + id * D, count: D)
            }
        }
    }

    /// Backward: dTable[ids[n]] += dOut[n] for every n; repeated ids add up.
    ///
    /// Threads split the D columns, not the N tokens, so two threads never add into the same
    /// table element whatever the ids are, and each element sums its tokens in order n = 0, 1, …
    /// (deterministic for any thread count).
    ///
    /// - Parameters:
    ///   - dTable: (V, D), accumulated.
    ///   - dOut: (N, D).
    ///   - ids: (N).
    ///   - threads: overrides `Threads.count` for this call (the result does not depend on it).
    public static func backward(
        dTable: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, ids: UnsafePointer<Int32>,
        count: Int, vocab: Int, dim: Int, threads: Int? = nil
    ) {
        let N = count, V = vocab, D = dim
        precondition(N >= 0 && V >= 1 && D >= 1, "Embedding.backward: count=\(N) vocab=\(V) dim=\(D)")
        for n in 0..<N {
            let id = Int(ids[n])
            precondition(id >= 0 && id < V, "Embedding.backward: ids[\(n)] = \(id) outside 0..<\(V)")
        }
        // Column blocks of 16 floats (one cache line pair) keep threads off each other's lines.
        let blocks = (D + 15) / 16
        parallelFor(blocks, grain: max(1, 2048 / max(1, N)), threads: threads) { r in
            let lo = r.lowerBound * 16, hi = min(D, r.upperBound * 16)
            for n in 0..<N {
                let src = dOut + n * D
                let dst = dTable + Int(ids[n]) * D
                for j in lo..<hi { dst[j] += src[j] }
            }
        }
    }
}

extension Embedding {
    /// Forward on tensors: table (V, D) and ids of any shape S give (S…, D).
    public static func forward(_ ids: [Int32], shape: [Int]? = nil, table: Tensor) -> Tensor {
        precondition(table.rank == 2, "Embedding.forward: table \(table.shape) is not (V, D)")
        let V = table.shape[0], D = table.shape[1]
        let s = shape ?? [ids.count]
        precondition(s.reduce(1, *) == ids.count, "Embedding.forward: shape \(s) for \(ids.count) ids")
        var out = Tensor.zeros(s + [D])
        if ids.isEmpty { return out }
        ids.withUnsafeBufferPointer { pi in
            table.withUnsafeBufferPointer { pt in
                out.withUnsafeMutableBufferPointer { po in
                    forward(out: po.baseAddress!, ids: pi.baseAddress!, table: pt.baseAddress!, count: ids.count, vocab: V, dim: D)
                }
            }
        }
        return out
    }

    /// Backward on tensors: accumulates dOut (N…, D) into dTable (V, D) at the rows `ids`.
    public static func backward(dOut: Tensor, ids: [Int32], dTable: inout Tensor, threads: Int? = nil) {
        precondition(dTable.rank == 2, "Embedding.backward: dTable \(dTable.shape) is not (V, D)")
        let V = dTable.shape[0], D = dTable.shape[1]
        precondition(dOut.count == ids.count * D, "Embedding.backward: dOut \(dOut.shape) for \(ids.count) ids of width \(D)")
        if ids.isEmpty { return }
        ids.withUnsafeBufferPointer { pi in
            dOut.withUnsafeBufferPointer { pd in
                dTable.withUnsafeMutableBufferPointer { pt in
                    backward(dTable: pt.baseAddress!, dOut: pd.baseAddress!, ids: pi.baseAddress!, count: ids.count, vocab: V, dim: D, threads: threads)
                }
            }
        }
    }
}
