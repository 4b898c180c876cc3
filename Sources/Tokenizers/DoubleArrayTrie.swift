// DoubleArrayTrie: a byte trie over vocabulary pieces in one flat array, for common-prefix search.

/// A double-array trie (Aoe 1989) mapping byte strings to piece ids. Node `s` has child `t = base[s] + byte`
/// when `check[t] == s`; `value[t]` is the id of the piece ending at `t`, or -1. One array read per byte,
/// which is what makes the unigram lattice fast (sentencepiece uses darts-clone the same way).
struct DoubleArrayTrie: Sendable {
    /// base, check and value interleaved so one cache line holds a node.
    struct Unit { var base: Int32; var check: Int32; var value: Int32 }
    private(set) var units: [Unit]

    /// Builds the trie; when two keys are equal the first id wins (as a dictionary insert would).
    init(keys: [[UInt8]], ids: [Int32]) {
        precondition(keys.count == ids.count, "trie: \(keys.count) keys but \(ids.count) ids")
        let order = keys.indices.filter { !keys[$0].isEmpty }.sorted { a, b in
            keys[a].lexicographicallyPrecedes(keys[b]) || (keys[a] == keys[b] && a < b)
        }
        units = [Unit](repeating: Unit(base: 0, check: -1, value: -1), count: 1024)
        units[0].check = -2
        var firstFree = 1
        // Iterative placement: (node, lo, hi, depth) over the sorted keys sharing a prefix of `depth` bytes.
        var stack: [(Int, Int, Int, Int)] = [(0, 0, order.count, 0)]
        var labels: [Int] = []
        var starts: [Int] = []
        while let (node, lo, hi, depth) = stack.popLast() {
            labels.removeAll(keepingCapacity: true)
            starts.removeAll(keepingCapacity: true)
            var i = lo
            while i < hi, keys[order[i]].count == depth {
                if units[node].value < 0 { units[node].value = ids[order[i]] }
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
            // Smallest base whose slots for every label are free.
            var scan = firstFree
            var base = 0
            search: while true {
                while scan < units.count, units[scan].check != -1 { scan += 1 }
                base = scan - labels[0]
                if base < 1 { scan += 1; continue }
                let needed = base + labels[labels.count - 1] + 1
                if needed > units.count { grow(to: needed) }
                for c in labels where units[base + c].check != -1 { scan += 1; continue search }
                break
            }
            units[node].base = Int32(base)
            for c in labels { units[base + c].check = Int32(node) }
            while firstFree < units.count, units[firstFree].check != -1 { firstFree += 1 }
            for k in stride(from: labels.count - 1, through: 0, by: -1) {
                stack.append((base + labels[k], starts[k], starts[k + 1], depth + 1))
            }
        }
        if let last = units.lastIndex(where: { $0.check != -1 }) { units.removeLast(units.count - last - 1) }
        // Slack so a transition from any node can be computed without a bounds check on `base + 255`.
        grow(to: units.count + 256)
    }

    private mutating func grow(to n: Int) {
        if n <= units.count { return }
        let target = max(n, units.count * 2)
        units.append(contentsOf: repeatElement(Unit(base: 0, check: -1, value: -1), count: target - units.count))
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
