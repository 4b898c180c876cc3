// DoubleArrayTrie: a byte trie over vocabulary pieces in one flat array of 4-byte units, for prefix walks.

/// A double-array trie (Aoe 1989) mapping byte strings to piece ids, packed like darts-clone into one
/// `UInt32` per node so a 32k vocabulary fits in L2: `unit = base << 10 | hasValue << 9 | 1 << 8 | label`.
/// The child of node `s` on byte `c` is slot `t = base(s) + c`; it exists when `units[t] & 0x1FF == 0x100 | c`
/// (bases are unique per node, so the label alone proves the parent; see `Builder.init` for leaves). `values[t]` is the piece id ending at
/// `t` when `hasValue`. The root is slot 0. One load per byte is what makes the unigram lattice fast.
struct DoubleArrayTrie: Sendable {
    let units: FrozenArray<UInt32>
    let values: FrozenArray<Int32>
    /// Free slots the builder looked at: the work of building, which tests bound.
    let buildSteps: Int

    /// The walk step: the unit of the child of `unit` on byte `c`, and its slot, or nil.
    @inline(__always)
    static func child(_ u: UnsafeBufferPointer<UInt32>, _ unit: UInt32, _ c: UInt8) -> (UInt32, Int)? {
        let t = Int(unit >> 10) + Int(c)
        let v = u[t]
        return v & 0x1FF == 0x100 | UInt32(c) ? (v, t) : nil
    }

    /// A vocabulary whose trie needs a base past the unit's 22 bits (about 4M slots: a few
    /// hundred thousand long pieces that share few prefixes); the loader names the file.
    struct CapacityError: Error {
        let slots: Int
        let keys: Int
    }

    /// Builds the trie; when two keys are equal the first id wins (as a dictionary insert would).
    /// - Parameter maxSlots: the units' 22-bit base bounds the slots (a parameter for tests).
    init(keys: [[UInt8]], ids: [Int32], maxSlots: Int = 1 << 22) throws {
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
                if b.values[node] < 0 { b.values[node] = ids[order[i]] }
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
        // Pack; slack after the last slot keeps `base + 255` in range without a bounds check.
        let last = b.used.lastIndex(of: true) ?? 0
        guard last < maxSlots else { throw CapacityError(slots: last + 1, keys: order.count) }
        let n = last + 1 + 256
        var u = [UInt32](repeating: 0, count: n)
        var v = [Int32](repeating: -1, count: n)
        for t in 0...last where b.used[t] && !b.closed[t] && !(1...255).contains(t) {
            u[t] = UInt32(b.bases[t]) << 10 | (b.values[t] >= 0 ? 1 << 9 : 0) | (t == 0 ? 0 : 1 << 8) | UInt32(b.labels[t])
            v[t] = b.values[t]
        }
        units = FrozenArray(u)
        values = FrozenArray(v)
        buildSteps = b.steps
    }

    /// Places children in free slots; free slots form a doubly linked list so the search skips used ones.
    private struct Builder {
        var used: [Bool] = [true]
        var bases: [Int] = [0]
        var labels: [UInt8] = [0]
        var values: [Int32] = [-1]
        var baseTaken: [Bool] = [true]
        var next: [Int] = [-1]
        var prev: [Int] = [-1]
        /// Free slots given up on (darts-clone's fixed blocks): marked used so no placement lands
        /// there, but packed as empty.
        var closed: [Bool] = [false]
        var head = -1
        var tail = -1
        var steps = 0
        /// One past the highest slot taken.
        var extent = 1
        /// How far behind `extent` a free slot stays a candidate. Free slots left behind by the
        /// placements are mostly ones no sibling set fits; walking past all of them on every
        /// placement made building quadratic (a 250k-piece vocabulary of unshared words took
        /// minutes). darts-clone keeps 16 blocks of 256; 4 build the T5 and MiniLM tries within
        /// 30 units of the unbounded walk's size.
        static let window = 4 * 256

        /// Slots 1...255 stay empty: a node without children has base 0, so its transitions land on
        /// slots 0...255, and none of those may look like a child (slot 0, the root, has no 0x100 bit).
        init() {
            grow(to: 1024)
            for t in 1...255 { take(t) }
        }

        mutating func grow(to n: Int) {
            let old = used.count
            if n <= old { return }
            let target = max(n, old * 2)
            used += repeatElement(false, count: target - old)
            bases += repeatElement(0, count: target - old)
            labels += repeatElement(0, count: target - old)
            values += repeatElement(-1, count: target - old)
            baseTaken += repeatElement(false, count: target - old)
            next += repeatElement(-1, count: target - old)
            prev += repeatElement(-1, count: target - old)
            closed += repeatElement(false, count: target - old)
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
            used[t] = true
            extent = max(extent, t + 1)
        }

        /// Smallest unused base (walking the free list) whose slots for every label are free; claims them.
        mutating func place(_ ls: [Int], parent: Int) -> Int {
            while head >= 0 && head + Self.window < extent {
                let t = head
                take(t)
                closed[t] = true
            }
            var f = head
            while true {
                steps += 1
                if f < 0 {
                    grow(to: used.count + 256)
                    f = head
                    continue
                }
                let base = f - ls[0]
                if base >= 1 {
                    if base + 256 > used.count {
                        let keep = f
                        grow(to: base + 256)
                        f = keep
                    }
                    var ok = !baseTaken[base]
                    if ok { for c in ls.dropFirst() where used[base + c] { ok = false; break } }
                    if ok {
                        baseTaken[base] = true
                        bases[parent] = base
                        for c in ls {
                            take(base + c)
                            labels[base + c] = UInt8(c)
                        }
                        return base
                    }
                }
                f = next[f]
            }
        }
    }

    /// Length of the longest key that is a prefix of `p[0..<n]`, or 0 when none is.
    func longestPrefix(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        let u = units.buffer
        var unit = u[0]
        var best = 0
        for k in 0..<n {
            guard let (v, _) = DoubleArrayTrie.child(u, unit, p[k]) else { break }
            unit = v
            if v & (1 << 9) != 0 { best = k + 1 }
        }
        return best
    }

    /// The id of exactly `key`, or nil.
    func id(of key: [UInt8]) -> Int32? {
        let u = units.buffer
        var unit = u[0]
        var slot = 0
        for c in key {
            guard let (v, t) = DoubleArrayTrie.child(u, unit, c) else { return nil }
            unit = v
            slot = t
        }
        return slot != 0 && unit & (1 << 9) != 0 ? values[slot] : nil
    }
}
