// DoubleArrayTrie: a byte trie over vocabulary pieces in one flat array, for common-prefix search.

/// A double-array trie (Aoe 1989) mapping byte strings to piece ids. Node `s` has child `t = base[s] + byte`
/// when `check[t] == s`; `value[t]` is the id of the piece ending at `t`, or -1. One array read per byte,
/// which is what makes the unigram lattice fast (sentencepiece uses darts-clone the same way).
struct DoubleArrayTrie: Sendable {
    /// base, check and value interleaved so one cache line holds a node.
    struct Unit { var base: Int32; var check: Int32; var value: Int32 }
    let units: [Unit]

    /// Builds the trie; when two keys are equal the first id wins (as a dictionary insert would).
    init(keys: [[UInt8]], ids: [Int32]) {
        precondition(keys.count == ids.count, "trie: \(keys.count) keys but \(ids.count) ids")
        let order = keys.indices.filter { !keys[$0].isEmpty }.sorted { a, b in
            keys[a].lexicographicallyPrecedes(keys[b]) || (keys[a] == keys[b] && a < b)
        }
        var b = Builder()
        // Iterative placement: (node, lo, hi, depth) over the sorted keys sharing a prefix of `depth` bytes.
        var stack: [(Int, Int, Int, Int)] = [(0, 0, order.count, 0)]
        var labels: [Int] = []
        var starts: [Int] = []
        while let (node, lo, hi, depth) = stack.popLast() {
            labels.removeAll(keepingCapacity: true)
            starts.removeAll(keepingCapacity: true)
            var i = lo
            while i < hi, keys[order[i]].count == depth {
                if b.units[node].value < 0 { b.units[node].value = ids[order[i]] }
                i += 1
            }
            while i < hi {
                let c = Int(keys[order[i]][depth])
                labels.append(c)
                starts.append(i)
                while i < hi, Int(keys[order[i]][depth]) == c { i += 1 }
            }
            if labels.isEmpty { continue }
            starts.append(hi)
            let base = b.place(labels, parent: node)
            for k in stride(from: labels.count - 1, through: 0, by: -1) {
                stack.append((base + labels[k], starts[k], starts[k + 1], depth + 1))
            }
        }
        var u = b.units
        if let last = u.lastIndex(where: { $0.check != -1 }) { u.removeLast(u.count - last - 1) }
        // Slack so a transition from any node can be computed without a bounds check on `base + 255`.
        u.append(contentsOf: repeatElement(Unit(base: 0, check: -1, value: -1), count: 256))
        units = u
    }

    /// Places children in free slots; free slots form a doubly linked list so the search skips used ones.
    private struct Builder {
        var units = [Unit](repeating: Unit(base: 0, check: -1, value: -1), count: 1)
        var next: [Int] = [-1]
        var prev: [Int] = [-1]
        var head = -1
        var tail = -1

        init() {
            units[0].check = -2
            grow(to: 1024)
        }

        mutating func grow(to n: Int) {
            let old = units.count
            if n <= old { return }
            let target = max(n, old * 2)
            units.append(contentsOf: repeatElement(Unit(base: 0, check: -1, value: -1), count: target - old))
            next.append(contentsOf: repeatElement(-1, count: target - old))
            prev.append(contentsOf: repeatElement(-1, count: target - old))
            for t in old..<target {
                prev[t] = tail
                if tail >= 0 { next[tail] = t } else { head = t }
                tail = t
            }
        }

        mutating func take(_ t: Int) {
            let p = prev[t], n = next[t]
            if p >= 0 { next[p] = n } else { head = n }
            if n >= 0 { prev[n] = p } else { tail = p }
        }

        /// Smallest base (walking the free list) whose slots for every label are free; claims them.
        mutating func place(_ labels: [Int], parent: Int) -> Int {
            var f = head
            while true {
                if f < 0 {
                    grow(to: units.count + 256)
                    f = head
                    continue
                }
                let base = f - labels[0]
                if base >= 1 {
                    if base + labels[labels.count - 1] + 1 > units.count {
                        let keep = f
                        grow(to: base + labels[labels.count - 1] + 1)
                        f = keep
                    }
                    var ok = true
                    for c in labels.dropFirst() where units[base + c].check != -1 { ok = false; break }
                    if ok {
                        units[parent].base = Int32(base)
                        for c in labels {
                            units[base + c].check = Int32(parent)
                            take(base + c)
                        }
                        return base
                    }
                }
                f = next[f]
            }
        }
    }

    /// The id of exactly `key`, or nil.
    func id(of key: [UInt8]) -> Int32? {
        units.withUnsafeBufferPointer { u in
            var s = 0
            for c in key {
                let t = Int(u[s].base) + Int(c)
                if t >= u.count || Int(u[t].check) != s { return nil }
                s = t
            }
            return (s != 0 && u[s].value >= 0) ? u[s].value : nil
        }
    }
}
