// BM25Index: a lexical first stage (Lucene/Pyserini BM25, k1 0.9, b 0.4): inverted index built once, saved, memory-mapped, searched.
import Foundation
import Tensor

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// BM25 over a passages TSV, so the loop can start with no dense model (FiD has none).
///
/// Tokenisation (`BM25Index.terms`): lower-cased maximal runs of letters, digits and marks (the
/// alphanumeric tokens of DPR's SimpleTokenizer, which `has_answer` matches on); punctuation and
/// symbols are dropped; no stemming and no stop words. Chosen because it needs no language
/// resources, is deterministic, and agrees with how answers are matched; Pyserini's default
/// analyzer (Lucene English: Porter stemming, stop words) would score morphological variants,
/// so its rankings differ somewhat.
///
/// Scoring is Lucene's BM25 (what Pyserini runs): per query term (repeated terms count again),
/// `idf · tf / (tf + k1 · (1 − b + b · dl / avgdl))` with `idf = ln(1 + (N − df + 0.5) / (df + 0.5))`;
/// the text indexed is `title + " " + text`, as Pyserini's DPR Wikipedia index contents holds both.
/// Document lengths are exact (Lucene rounds them to one byte). The title is optional.
///
/// Saved as one file (magic, version, little-endian sections) that `init(path:)` maps in place:
/// sorted vocabulary, per-term posting offsets, (doc, tf) postings, document lengths, passage ids.
public final class BM25Index {
    /// Version 2: non-ASCII terms NFD-normalised and lower-cased as Python does; a version-1
    /// index keeps them composed, which version-2 queries would silently miss, so it is refused.
    static let magic = "FIDQBM25", version: UInt32 = 2

    public let k1: Float
    public let b: Float
    public let documentCount: Int
    public let averageLength: Double
    public let ids: [String]
    /// Sorted vocabulary; postings of term i are `postingDocs[postingStart[i]..<postingStart[i+1]]`.
    let vocabulary: [String]
    let postingStart: UnsafeBufferPointer<UInt64>
    let postingDocs: UnsafeBufferPointer<UInt32>
    let postingTF: UnsafeBufferPointer<UInt16>
    let lengths: UnsafeBufferPointer<UInt32>
    /// Keeps the mapping (loaded) or the arrays (built) alive.
    private let storage: AnyObject

    /// Lower-cased alphanumeric runs (see the type's comment). A run with non-ASCII scalars is
    /// NFD-normalised and lower-cased as Python's `str.lower` does, as `AnswerMatch` treats text:
    /// a word is one term however it is composed (é or e + ◌́), and ΟΔΟΣ is οδος (final sigma).
    /// Equal terms are then equal bytes, which the sorted vocabulary's lookup compares.
    public static func terms(_ text: String, into out: inout [String]) {
        var run = String.UnicodeScalarView()
        var ascii = true
        func flush() {
            if !run.isEmpty {
                out.append(ascii ? String(run) : AnswerMatch.pythonLower(String(run).decomposedStringWithCanonicalMapping))
                run = String.UnicodeScalarView()
                ascii = true
            }
        }
        for s in text.unicodeScalars {
            if s.isASCII {
                let v = s.value
                if (v >= 48 && v <= 57) || (v >= 97 && v <= 122) {
                    run.append(s)
                } else if v >= 65 && v <= 90 {
                    run.append(Unicode.Scalar(v + 32)!)
                } else {
                    flush()
                }
                continue
            }
            if AnswerMatch.isWordScalar(s) {
                run.append(s)
                ascii = false
            } else {
                flush()
            }
        }
        flush()
    }

    public static func terms(_ text: String) -> [String] {
        var out: [String] = []
        terms(text, into: &out)
        return out
    }

    /// A built index's arrays, in buffers of their own (the index reads them like the mapping).
    private final class Owned {
        let starts: UnsafeMutableBufferPointer<UInt64>, docs: UnsafeMutableBufferPointer<UInt32>
        let tfs: UnsafeMutableBufferPointer<UInt16>, lengths: UnsafeMutableBufferPointer<UInt32>
        /// Takes `docs` and `tfs` (filled in place: a copy of the postings would be the build's peak).
        init(_ starts: [UInt64], docs: UnsafeMutableBufferPointer<UInt32>, tfs: UnsafeMutableBufferPointer<UInt16>, _ lengths: [UInt32]) {
            func copy<T>(_ a: [T]) -> UnsafeMutableBufferPointer<T> {
                let p = UnsafeMutableBufferPointer<T>.allocate(capacity: a.count)
                _ = p.initialize(from: a)
                return p
            }
            (self.starts, self.docs, self.tfs, self.lengths) = (copy(starts), docs, tfs, copy(lengths))
        }
        deinit {
            starts.deallocate()
            docs.deallocate()
            tfs.deallocate()
            lengths.deallocate()
        }
    }

    /// Builds the index from passages (read once, in order); `progress` gets the count so far.
    /// Memory while building, per distinct (term, passage) pair: 6 bytes as passages are read (up
    /// to twice that while the arrays grow), then 12 while they are inverted into the 6-byte
    /// postings; plus 8 bytes a passage, the vocabulary and the ids. `save` streams the file.
    public static func build(
        passages next: () throws -> Passage?, k1: Float = 0.9, b: Float = 0.4, progress: (Int) -> Void = { _ in }
    ) throws -> BM25Index {
        var termID: [String: Int32] = [:]
        var vocab: [String] = []
        // Pairs in document order: a document's pairs end at `pairEnd[doc]` (no document column).
        var pairTerm: [Int32] = [], pairTF: [UInt16] = [], pairEnd: [Int] = []
        var lengths: [UInt32] = []
        var ids: [String] = []
        var tokens: [String] = []
        var local: [Int32: Int] = [:]
        while let p = try next() {
            tokens.removeAll(keepingCapacity: true)
            terms(p.title, into: &tokens)
            terms(p.text, into: &tokens)
            ids.append(p.id)
            lengths.append(UInt32(tokens.count))
            local.removeAll(keepingCapacity: true)
            for t in tokens {
                let id: Int32
                if let known = termID[t] {
                    id = known
                } else {
                    id = Int32(vocab.count)
                    termID[t] = id
                    vocab.append(t)
                }
                local[id, default: 0] += 1
            }
            for (t, tf) in local {
                pairTerm.append(t)
                pairTF.append(UInt16(min(tf, Int(UInt16.max))))
            }
            pairEnd.append(pairTerm.count)
            if ids.count % 100_000 == 0 { progress(ids.count) }
        }
        progress(ids.count)
        // Invert: terms in sorted order, each term's postings in document order (counting sort).
        let order = vocab.indices.sorted { vocab[$0].utf8.lexicographicallyPrecedes(vocab[$1].utf8) }
        var rank = [Int](repeating: 0, count: vocab.count)
        for (r, t) in order.enumerated() { rank[t] = r }
        var starts = [UInt64](repeating: 0, count: vocab.count + 1)
        for t in pairTerm { starts[rank[Int(t)] + 1] += 1 }
        for i in 0..<vocab.count { starts[i + 1] += starts[i] }
        var fill = starts
        let docs = UnsafeMutableBufferPointer<UInt32>.allocate(capacity: pairTerm.count)
        let tfs = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: pairTerm.count)
        docs.initialize(repeating: 0)
        tfs.initialize(repeating: 0)
        var i = 0
        for (d, end) in pairEnd.enumerated() {
            while i < end {
                let r = rank[Int(pairTerm[i])]
                let at = Int(fill[r])
                docs[at] = UInt32(d)
                tfs[at] = pairTF[i]
                fill[r] += 1
                i += 1
            }
        }
        pairTerm = []
        pairTF = []
        pairEnd = []
        let owned = Owned(starts, docs: docs, tfs: tfs, lengths)
        let total = lengths.reduce(0) { $0 + Double($1) }
        return BM25Index(
            k1: k1, b: b, ids: ids, vocabulary: order.map { vocab[$0] }, averageLength: ids.isEmpty ? 0 : total / Double(ids.count),
            starts: UnsafeBufferPointer(owned.starts), docs: UnsafeBufferPointer(owned.docs),
            tfs: UnsafeBufferPointer(owned.tfs), lengths: UnsafeBufferPointer(owned.lengths), storage: owned)
    }

    private init(
        k1: Float, b: Float, ids: [String], vocabulary: [String], averageLength: Double, starts: UnsafeBufferPointer<UInt64>,
        docs: UnsafeBufferPointer<UInt32>, tfs: UnsafeBufferPointer<UInt16>, lengths: UnsafeBufferPointer<UInt32>, storage: AnyObject
    ) {
        (self.k1, self.b, self.ids, self.vocabulary, self.averageLength) = (k1, b, ids, vocabulary, averageLength)
        (postingStart, postingDocs, postingTF, self.lengths, self.storage) = (starts, docs, tfs, lengths, storage)
        documentCount = ids.count
    }

    /// Loads a saved index; postings and lengths stay in the mapping.
    public convenience init(path: String) throws {
        let r = try IndexFileReader(path: path, magic: Self.magic, version: Self.version)
        let k1 = try r.readFloat("k1"), b = try r.readFloat("b")
        let avg = try r.readDouble("average length")
        let n = try r.count("documents"), terms = try r.count("terms"), pairs = try r.count("postings")
        let lengths = try r.array(n, of: UInt32.self, "lengths")
        let starts = try r.array(terms + 1, of: UInt64.self, "posting offsets")
        let docs = try r.array(pairs, of: UInt32.self, "posting documents")
        let tfs = try r.array(pairs, of: UInt16.self, "posting frequencies")
        let vocab = try r.strings("vocabulary")
        let ids = try r.strings("ids")
        guard vocab.count == terms, ids.count == n, starts.last == UInt64(pairs) else {
            throw RetrievalError(file: path, field: "sections", expected: "\(terms) terms, \(n) ids, \(pairs) postings",
                                 found: "\(vocab.count) terms, \(ids.count) ids, \(starts.last ?? 0) postings")
        }
        // Each term's postings are the range starts[t]..<starts[t+1]: from 0, never decreasing.
        for t in 0..<terms where starts[t] > starts[t + 1] || (t == 0 && starts[0] != 0) {
            throw r.damaged("posting offsets", expected: "offsets from 0, never decreasing", found: "\(starts[t]) before \(starts[t + 1]) at term \(t)")
        }
        if let bad = docs.first(where: { Int($0) >= n }) {
            throw RetrievalError(file: path, field: "postings", expected: "documents below \(n)", found: "\(bad)")
        }
        self.init(k1: k1, b: b, ids: ids, vocabulary: vocab, averageLength: avg, starts: starts, docs: docs, tfs: tfs, lengths: lengths, storage: r)
    }

    public func save(to path: String) throws {
        let w = try IndexFileWriter(path: path, magic: Self.magic, version: Self.version)
        try w.append(k1)
        try w.append(b)
        try w.append(averageLength)
        try w.append(UInt64(documentCount))
        try w.append(UInt64(vocabulary.count))
        try w.append(UInt64(postingDocs.count))
        try w.append(array: lengths)
        try w.append(array: postingStart)
        try w.append(array: postingDocs)
        try w.append(array: postingTF)
        try w.append(strings: vocabulary)
        try w.append(strings: ids)
        try w.finish()
    }

    /// The vocabulary index of a term, by binary search.
    func lookup(_ term: String) -> Int? {
        var lo = 0, hi = vocabulary.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if vocabulary[mid].utf8.lexicographicallyPrecedes(term.utf8) { lo = mid + 1 } else { hi = mid }
        }
        return lo < vocabulary.count && vocabulary[lo].utf8.elementsEqual(term.utf8) ? lo : nil
    }

    /// Top `k` passages (rows in file order) per query, best first, ties by row; queries split
    /// over threads, each with one score accumulator of N floats.
    public func search(_ queries: [String], k: Int, threads: Int? = nil) -> [[Hit]] {
        var out = [[Hit]](repeating: [], count: queries.count)
        let n = documentCount
        out.withUnsafeMutableBufferPointer { out in
            parallelFor(queries.count, threads: threads) { range in
                let acc = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
                acc.initialize(repeating: 0, count: max(n, 1))
                var touched: [UInt32] = []
                defer { acc.deallocate() }
                for q in range {
                    for term in BM25Index.terms(queries[q]) {
                        guard let t = lookup(term) else { continue }
                        let lo = Int(postingStart[t]), hi = Int(postingStart[t + 1])
                        let df = Float(hi - lo)
                        let idf = log(1 + (Float(n) - df + 0.5) / (df + 0.5))
                        for i in lo..<hi {
                            let d = Int(postingDocs[i])
                            let tf = Float(postingTF[i])
                            let dl = Float(lengths[d])
                            if acc[d] == 0 { touched.append(UInt32(d)) }
                            acc[d] += idf * tf / (tf + k1 * (1 - b + b * dl / Float(averageLength)))
                        }
                    }
                    let heap = TopK(queries: 1, k: k)
                    touched.sort()
                    for d in touched {
                        let s = acc[Int(d)]
                        if s >= heap.threshold[0] { heap.push(0, score: s, row: Int(d)) }
                        acc[Int(d)] = 0
                    }
                    touched.removeAll(keepingCapacity: true)
                    out[q] = heap.sorted(0)
                }
            }
        }
        return out
    }
}
