// ScanLogTests: indexing a data file reports its progress (bytes, elements) in every reading mode,
// a job logs it, and a stop asked for during the scan ends it there.
import Foundation
import Testing
@testable import FiD
import Jobs

@Suite struct ScanLogTests {
    static let n = 3000

    static func item(_ k: Int) -> String {
        #"{"id": \#(k), "question": "q\#(k)", "answers": ["a"], "ctxs": [{"title": "t", "text": "x", "score": 1.0}]}"#
    }

    /// `n` one-passage examples as a JSON list or JSON Lines.
    static func write(_ dir: String, jsonLines: Bool) throws -> String {
        let items = (0..<n).map(item)
        let path = dir + (jsonLines ? "/data.jsonl" : "/data.json")
        try Data((jsonLines ? items.joined(separator: "\n") + "\n" : "[" + items.joined(separator: ",\n") + "]").utf8)
            .write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Where the first `k` elements end: past "[" and the ",\n"s of a list, or at the k-th newline.
    static func end(of k: Int, jsonLines: Bool) -> Int {
        let bytes = (0..<k).reduce(0) { $0 + item($1).utf8.count }
        return jsonLines ? bytes + k - 1 : 1 + bytes + 2 * (k - 1)
    }

    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func progressCountsElementsAndBytes(jsonLines: Bool, checked: Bool) throws {
        let path = try Self.write(scratch(), jsonLines: jsonLines)
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int
        var calls: [(Int, Int, Int)] = []
        var checks = 0
        let data = try FiDData(path: path).index(check: checked ? { _ in checks += 1 } : nil, progress: { calls.append(($0, $1, $2)) })
        #expect(data.count == Self.n && checks == (checked ? Self.n : 0))
        let every = FiDData.progressEvery
        #expect(calls.map(\.2) == Array(stride(from: every, through: Self.n, by: every)), "\(calls.map(\.2))")
        #expect(calls.allSatisfy { $0.1 == size }, "total bytes")
        #expect(calls.map(\.0) == calls.map { Self.end(of: $0.2, jsonLines: jsonLines) }, "bytes scanned")
    }

    /// `scan.test`: indexes `params.path` with a ScanLog of interval 0; `stopAt` cancels the job
    /// from inside the scan at that example.
    struct ScanKind: JobKind {
        struct Params: JobParams { var path: String; var stopAt: Int? }
        struct Output: Encodable { var count: Int }
        let cancel: CancellationToken
        let seen: Counter
        var name: String { "scan.test" }
        func run(_ p: Params, _ context: JobContext) throws -> Output {
            let data = try FiDData(path: p.path).index(logging: ScanLog(context, label: "scan", field: "train_data", interval: 0)) { e in
                seen.add()
                if e.index == p.stopAt { cancel.cancel(.cancelled) }
            }
            return Output(count: data.count)
        }
    }

    final class Counter: @unchecked Sendable {
        private(set) var value = 0
        func add() { value += 1 }
    }

    func run(_ dir: String, stopAt: Int?) throws -> (Result<JSONValue, Error>, log: String, seen: Int) {
        let path = try Self.write(dir, jsonLines: false)
        let cancel = CancellationToken(), seen = Counter()
        let registry = KindRegistry()
        registry.register(ScanKind(cancel: cancel, seen: seen))
        let job = dir + "/scan.json"
        let stop = stopAt.map { #", "stopAt": \#($0)"# } ?? ""
        try Data(#"{"kind": "scan.test", "id": "scan", "params": {"path": "\#(path)"\#(stop)}}"#.utf8).write(to: URL(fileURLWithPath: job))
        var fg = ForegroundRun(file: job, workspace: dir)
        fg.outDir = dir + "/scan.run"
        let result = Result { try fg.run(registry: registry, cancel: cancel) }
        return (result, (try? String(contentsOfFile: dir + "/scan.run/log.txt", encoding: .utf8)) ?? "", seen.value)
    }

    @Test func aJobLogsTheScanAndItsEnd() throws {
        let (result, log, seen) = try run(scratch(), stopAt: nil)
        _ = try result.get()
        #expect(seen == Self.n)
        #expect(log.contains("scan: reading train_data, 34% of ") && log.contains(" MB, 1024 examples"), "\(log)")
        #expect(log.contains("scan: reading train_data, 68% of ") && log.contains(" MB, 2048 examples"), "\(log)")
        #expect(log.contains("scan: read train_data, \(Self.n) examples in "), "\(log)")
    }

    @Test func aStopDuringTheScanEndsItAtTheNextReport() throws {
        let (result, log, seen) = try run(scratch(), stopAt: 10)
        #expect(throws: (any Error).self) { try result.get() }
        // Checked each `progressEvery` elements, before the element is handed over: the stop
        // lands at the first report after it.
        #expect(seen == FiDData.progressEvery - 1, "scanned \(seen) of \(Self.n)")
        #expect(!log.contains("scan: reading train_data"), "\(log)")
    }
}
