// IndexBM25Kind: the `index_bm25` job: a BM25 inverted index over a passages TSV, built once and saved for `retrieve`.
import Foundation
import Jobs
import Retrieval
import Tensor

public struct IndexBM25Params: JobParams {
    public var passages = ""
    public var outputPath = "bm25.index"
    public var k1: Float = 0.9
    public var b: Float = 0.4

    enum CodingKeys: String, CodingKey, CaseIterable {
        case passages, k1, b
        case outputPath = "output_path"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        passages = try c.decode(String.self, forKey: .passages)
        outputPath = try c.decode(.outputPath, default: "bm25.index")
        k1 = try c.require(try c.decode(.k1, default: 0.9), .k1, "a number >= 0") { $0 >= 0 }
        b = try c.require(try c.decode(.b, default: 0.4), .b, "a number in 0…1") { (0...1).contains($0) }
    }

    public var outputPaths: [(field: String, path: String)] { [("output_path", outputPath)] }
    public var inputPaths: [(field: String, path: String)] { [("passages", passages)] }
}

public struct IndexBM25Output: Codable, Sendable {
    public var index: String
    public var documents: Int
    public var seconds: Double
}

/// `index_bm25`: reads the TSV once (strictly: a bad row names its line), builds, saves (temp name, rename).
public struct IndexBM25Kind: JobKind {
    public init() {}
    public var name: String { "index_bm25" }

    /// The build holds every passage's postings and id until it saves: about 1.1 KB a DPR passage
    /// of 100 words as measured (20 GB for psgs_w100's 21M passages, 13 GB of TSV), so about 1.8
    /// times the file. A corpus that cannot fit is refused before reading, not aborted in an
    /// allocation an hour in (the worker died with it, the job went stale).
    static func checkBuildMemory(fileBytes: Int, available: Int) throws -> Double {
        let need = 1.8 * Double(fileBytes)
        guard need > Double(available) else { return need }
        let gib = AvailableMemory.gib
        throw JobError.permanent("index_bm25 holds the whole index while it builds: about \(gib(need)) GiB for the \(gib(Double(fileBytes))) GiB "
                                     + "of passages (1.8 times the file, as DPR's measured), more than the \(gib(Double(available))) GiB this process may use",
                                 field: "params.passages", hint: "build it where more memory is allowed (the saved index is the same file)")
    }

    public func run(_ p: IndexBM25Params, _ context: JobContext) throws -> IndexBM25Output {
        let t0 = monotonicNow()
        let output = try context.output(p.outputPath, field: "params.output_path")
        try FileManager.default.createDirectory(atPath: (output as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        // The old record goes first: an index replaced without its new record is "unchecked",
        // never checked against another file's.
        try? FileManager.default.removeItem(atPath: BM25Source.path(beside: output))
        do {
            let reader = try PassageReader(path: context.resolve(p.passages))
            let stamp = try SavedIndexSource.File.stamp(reader.path)
            let total = reader.fileSize
            let available = AvailableMemory.bytes
            let need = try Self.checkBuildMemory(fileBytes: total, available: available)
            context.log("index_bm25: memory: about \(AvailableMemory.gib(need)) GiB while building, of the \(AvailableMemory.gib(Double(available))) GiB this process may use")
            var sampler = BM25Source.Sampler()
            let index = try BM25Index.build(
                passages: {
                    try context.checkCancelled()
                    let psg = try reader.next()
                    if let psg { sampler.add(psg) }
                    return psg
                }, k1: p.k1, b: p.b,
                progress: { n in
                    context.progress.update(step: reader.bytesRead >> 20, total: total >> 20, unit: "MiB")
                    context.log("index_bm25: \(n) passages")
                })
            if index.documentCount == 0 { throw PassageReader.noPassages(path: reader.path) }
            // retrieve looks passages up by id: a second row of one id would be returned with the
            // first row's text (and its hasanswer) without a word.
            if let (a, b, id) = firstDuplicate([index.ids]) {
                throw RetrievalError(file: reader.path, field: "id", expected: "each passage id once",
                                     found: "passage id \(id) in passages \(a.row + 1) and \(b.row + 1) (counted after the header)",
                                     hint: "DPR ids must be unique: renumber or drop the repeated rows")
            }
            try index.save(to: output)
            try BM25Source(passages: stamp, samples: sampler.samples).write(beside: output)
            return IndexBM25Output(index: output, documents: index.documentCount, seconds: monotonicNow() - t0)
        } catch let e as RetrievalError {
            throw JobError.permanent(e.message, field: "params.passages", hint: e.hint)
        }
    }
}
