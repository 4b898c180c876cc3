// EmbeddingTests: lookup and scatter-add backward with repeated ids, against a naive twin and PyTorch.
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
        var sums = start.map(Double.init)
        for n in 0..<N { for j in 0..<D { sums[Int(ids[n]) * D + j] += Double(dOut.data[n * D + j]) } }
        let r = compare("dTable \(shape)", dTable.data, sums.map { Float($0) }, atol: 1e-5)
        #expect(r.ok, "\(r)")
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
        let reports = [compare("out", out, try f.tensor("out")), compare("dtable", dTable, try f.tensor("dtable"))]
        for r in reports {
            print(r)
            #expect(r.ok, "\(r)")
        }
    }
}
