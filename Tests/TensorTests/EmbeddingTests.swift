// EmbeddingTests: lookup and scatter-add backward with repeated ids, against a naive twin (within
// the derived Float32 bound) and PyTorch; the backward is bit-identical on any thread count.
import Foundation
import Testing
import TestSupport
@testable import Tensor

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

@Suite struct EmbeddingTests {
    // (2000, 50, 64) splits both the lookup rows and the backward column blocks over threads.
    @Test(arguments: [(1, 1, 1), (5, 3, 7), (300, 17, 33), (2000, 50, 64)])
    func matchesNaive(shape: (Int, Int, Int)) {
        let (N, V, D) = shape
        var rng = RNG(seed: UInt64(N + V + D))
        let table = Tensor(shape: [V, D], data: rng.normalArray(V * D))
        // Few distinct ids among many tokens: heavy repetition.
        let ids = (0..<N).map { _ in Int32(rng.next() % UInt64(V)) }
        let dOut = Tensor(shape: [N, D], data: rng.normalArray(N * D))
        let out = Embedding.forward(ids, table: table)
        var expected = [Float](repeating: 0, count: N * D)
        for n in 0..<N { for j in 0..<D { expected[n * D + j] = table.data[Int(ids[n]) * D + j] } }
        #expect(out.data == expected)
        #expect(out.shape == [N, D])

        let start = rng.normalArray(V * D)
        var dTable = Tensor(shape: [V, D], data: start)
        Embedding.backward(dOut: dOut, ids: ids, dTable: &dTable)
        let (sums, magnitude, terms) = naiveBackward(dOut: dOut.data, ids: ids, start: start, V: V, D: D)
        let r = compareReduction("dTable \(shape)", dTable.data, sums, magnitude: magnitude, terms: terms)
        #expect(r.ok, "\(r)")
    }

    /// The scatter-add in Double: each table element is a reduction over the tokens with its id
    /// (plus the start value), so its bound has that many terms and their Σ|·| as magnitude.
    private func naiveBackward(dOut: [Float], ids: [Int32], start: [Float], V: Int, D: Int) -> ([Float], [Double], [Int]) {
        var sums = start.map(Double.init), magnitude = start.map { abs(Double($0)) }
        var terms = [Int](repeating: 1, count: V * D)
        for n in 0..<ids.count {
            for j in 0..<D {
                let e = Int(ids[n]) * D + j
                sums[e] += Double(dOut[n * D + j])
                magnitude[e] += abs(Double(dOut[n * D + j]))
                terms[e] += 1
            }
        }
        return (sums.map { Float($0) }, magnitude, terms)
    }

    /// Threads split the columns and every element sums its tokens in order, so dTable must be
    /// the same to the bit on any thread count.
    @Test func backwardDoesNotDependOnThreadCount() {
        let (N, V, D) = (3000, 40, 100)
        var rng = RNG(seed: 61)
        let ids = (0..<N).map { _ in Int32(rng.next() % UInt64(V)) }
        let dOut = Tensor(shape: [N, D], data: rng.normalArray(N * D))
        let start = rng.normalArray(V * D)
        var results: [[Float]] = []
        for threads in [1, 2, 3, 4, nil] {
            var dTable = Tensor(shape: [V, D], data: start)
            Embedding.backward(dOut: dOut, ids: ids, dTable: &dTable, threads: threads)
            results.append(dTable.data)
        }
        for (k, r) in results.enumerated().dropFirst() {
            #expect(r == results[0], "dTable differs between 1 and \([2, 3, 4, -1][k - 1]) threads (-1: the global setting)")
        }
    }

    @Test func gradientMatchesFiniteDifferences() {
        let (V, D) = (6, 5)
        let ids: [Int32] = [2, 0, 2, 5, 2, 0]
        var rng = RNG(seed: 9)
        let table = rng.normalArray(V * D)
        let dOut = Tensor(shape: [ids.count, D], data: rng.normalArray(ids.count * D))
        var dTable = Tensor.zeros([V, D])
        Embedding.backward(dOut: dOut, ids: ids, dTable: &dTable)
        let r = gradCheck("embedding dTable", input: table, analytic: dTable.data) {
            dotDouble(Embedding.forward(ids, table: Tensor(shape: [V, D], data: $0)).data, dOut.data)
        }
        print(r)
        #expect(r.ok, "\(r)")
    }

    @Test func matchesPyTorch() throws {
        let f = try Fixture("embedding.json", in: fixtures)
        let table = try f.tensor("table")
        let ids = try f.tensor("ids").data.map { Int32($0) }
        let out = Embedding.forward(ids, table: table)
        var dTable = Tensor.zeros(table.shape)
        Embedding.backward(dOut: try f.tensor("dy"), ids: ids, dTable: &dTable)
        // The lookup copies: exact. dtable: PyTorch sums repeated ids in its own order (.float32).
        let dy = try f.tensor("dy").data
        let (_, magnitude, terms) = naiveBackward(dOut: dy, ids: ids, start: [Float](repeating: 0, count: table.count), V: table.shape[0], D: table.shape[1])
        let want = try f.tensor("out")
        #expect(out == want, "embedding lookup differs from PyTorch's")
        let reports = [compareReduction("dtable", dTable.data, try f.tensor("dtable").data, magnitude: magnitude, terms: terms, reference: .float32)]
        for r in reports {
            print(r)
            #expect(r.ok, "\(r)")
        }
    }
}
