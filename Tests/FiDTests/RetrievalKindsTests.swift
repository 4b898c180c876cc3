// RetrievalKindsTests: the embed, retrieve and index_bm25 jobs end to end, and the real-retrieval check:
// MiniLM over passages of the gensim Wikipedia excerpt (two embed shards, dense and BM25 recall@5/@20).
import Formats
import Foundation
import Jobs
import Retrieval
import Testing
import TestSupport
import Models
import Tensor
@testable import FiD

enum RetrievalJobs {
    static func registry() -> KindRegistry {
        let r = KindRegistry()
        r.register(EmbedKind())
        r.register(RetrieveKind())
        r.register(IndexBM25Kind())
        r.register(TrainRetrieverKind())
        r.register(EvaluateRetrievalKind())
        return r
    }

    /// Runs one job in the foreground in `workspace`; returns its result.
    static func run(_ kind: String, _ params: [String: JSONValue], workspace: String, id: String? = nil,
                    allowedRoots: [String] = ["/"]) throws -> [String: JSONValue] {
        let name = id ?? kind
        var job = ForegroundRun(file: workspace + "/\(name).json", workspace: workspace)
        job.outDir = workspace + "/\(name).run"
        job.allowedRoots = allowedRoots
        job.threads = 2
        let value = try job.run(JobDescriptor(kind: kind, id: name, maxAttempts: 1, params: .object(params)), registry: registry())
        guard case .object(let o) = value else { throw JobError.permanent("result of \(kind) is not an object") }
        return o
    }

    /// Runs `d` in the foreground in `dir` (folder `embed.run`) and stops it once its first
    /// checkpoint exists; expects the stop, and returns the run to go on with.
    static func stopAfterFirstCheckpoint(_ d: JobDescriptor, in dir: String) throws -> ForegroundRun {
        var job = ForegroundRun(file: dir + "/embed.json", workspace: dir)
        job.outDir = dir + "/embed.run"
        job.allowedRoots = ["/"]
        job.threads = 2
        let cancel = CancellationToken()
        let latest = dir + "/embed.run/out/checkpoint/latest"
        let watcher = Thread {
            while !FileManager.default.fileExists(atPath: latest) { usleep(2000) }
            cancel.cancel(.shutdown)
        }
        watcher.start()
        #expect(throws: (any Error).self) { try job.run(d, registry: registry(), cancel: cancel) }
        return job
    }

    static func number(_ v: JSONValue?) -> Double? { if case .number(let d)? = v { return d }; return nil }

    static func minilm() throws -> String {
        let env = ProcessInfo.processInfo.environment["FIDQ_ASSETS"]
        let base = (env?.isEmpty == false) ? env! : TestData.root.appendingPathComponent(".assets").path
        let folder = base + "/minilm"
        guard FileManager.default.fileExists(atPath: folder + "/model.safetensors") else { throw TestData.MissingAsset(path: folder + "/model.safetensors") }
        return folder
    }

    static let fixtures = TestData.fixtures + "/retrieval"
}

@Suite struct RetrievalKindsTests {
    static let passages = """
        id\ttext\ttitle
        1\tParis is the capital and largest city of France.\tParis
        2\tBerlin is the capital of Germany.\tBerlin
        3\t"The Eiffel Tower, built in 1889, stands in Paris."\tEiffel Tower
        4\tMount Everest is Earth's highest mountain above sea level.\tMount Everest
        5\tThe Nile is a major north-flowing river in Africa.\tNile

        """

    /// sq8's codes live in memory: a corpus whose codes cannot fit is refused naming index, with
    /// the figures (FiD's 21M × 768 needs about 16 GiB; it aborted in the build's allocation).
    @Test func sq8RefusesACorpusWhoseCodesCannotFit() throws {
        try RetrieveKind.checkSQ8Memory(rows: 1_000_000, dim: 768, available: 1 << 30)
        do {
            try RetrieveKind.checkSQ8Memory(rows: 21_015_324, dim: 768, available: 12 << 30)
            Issue.record("21M × 768 codes accepted in 12 GiB")
        } catch let e as JobError {
            #expect(e.field == "params.index" && e.message.contains("need about 16.3 GiB") && e.message.contains("the 12.0 GiB"), "\(e)")
        }
    }

    /// index_bm25 holds the whole index while it builds: DPR's 13 GB of passages (about 20 GB)
    /// is refused where 16 GiB are allowed, before reading, naming passages.
    @Test func bm25RefusesACorpusWhoseIndexCannotFitWhileBuilding() throws {
        #expect(try IndexBM25Kind.checkBuildMemory(fileBytes: 100 << 20, available: 1 << 30) < Double(1 << 30))
        do {
            _ = try IndexBM25Kind.checkBuildMemory(fileBytes: 13_000_000_000, available: 16 << 30)
            Issue.record("13 GB of passages accepted in 16 GiB")
        } catch let e as JobError {
            #expect(e.field == "params.passages" && e.message.contains("about 21.8 GiB") && e.message.contains("the 16.0 GiB"), "\(e)")
        }
    }

    @Test func recallIsReportedOnlyAtDepthsTheOutputReaches() {
        #expect(RetrieveKind.recallDepths(returned: 100) == [1, 5, 20, 100])
        #expect(RetrieveKind.recallDepths(returned: 500) == [1, 5, 20, 100])
        #expect(RetrieveKind.recallDepths(returned: 20) == [1, 5, 20])
        #expect(RetrieveKind.recallDepths(returned: 10) == [1, 5, 10])
        #expect(RetrieveKind.recallDepths(returned: 3) == [1, 3])
        #expect(RetrieveKind.recallDepths(returned: 1) == [1])
        #expect(RetrieveKind.recallDepths(returned: 0) == [])
    }

    @Test func bm25JobsWriteFiDJsonAndRecall() throws {
        let dir = TestData.scratch("bm25")
        try TestData.write(Self.passages, to: dir + "/psgs.tsv")
        try TestData.write(#"[{"id": "q1", "question": "What is the capital of Germany?", "answers": ["Berlin"], "extra": 7}, {"question": "Highest mountain above sea level?", "answers": ["K2"]}]"#, to: dir + "/q.json")
        let built = try RetrievalJobs.run("index_bm25", ["passages": .string("psgs.tsv"), "output_path": .string("bm25.index")], workspace: dir)
        #expect(RetrievalJobs.number(built["documents"]) == 5)
        let result = try RetrievalJobs.run(
            "retrieve",
            ["method": .string("bm25"), "bm25_index": .string("bm25.index"), "passages": .string("psgs.tsv"), "data": .string("q.json"),
             "output_path": .string("out.json"), "n_docs": .number(50)], workspace: dir)
        // n_docs beyond the corpus: all of it, and said so.
        #expect(RetrievalJobs.number(result["n_docs_returned"]) == 5)
        if case .string(let note)? = result["note"] { #expect(note.contains("exceeds")) } else { Issue.record("no note for n_docs > corpus") }
        guard case .object(let recall)? = result["recall"] else { Issue.record("no recall"); return }
        #expect(RetrievalJobs.number(recall["1"]) == 0.5)  // Berlin first; "K2" nowhere
        // Five passages came back: recall at 1 and 5 only, never a "recall@20" that is recall@5.
        #expect(Set(recall.keys) == ["1", "5"], "\(recall.keys.sorted())")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/out.json"))
        let out = try bytes.withUnsafeBytes { b in
            var parser = JSONParser(bytes: b)
            return try parser.parseDocument()
        }
        guard case .array(let examples) = out, examples.count == 2, case .array(let ctxs)? = examples[0]["ctxs"] else {
            Issue.record("bad output \(out)")
            return
        }
        #expect(examples[0]["extra"] == .integer(7))
        #expect(ctxs.count == 5)
        #expect(ctxs[0]["id"] == .string("2") && ctxs[0]["title"] == .string("Berlin") && ctxs[0]["hasanswer"] == .bool(true))
        if case .string(let s)? = ctxs[0]["score"] { #expect(Double(s) != nil) } else { Issue.record("score is not a string as FiD writes it") }
    }

    /// Questions are searched a block at a time: progress is logged between blocks, every
    /// question is written, and a stop is honoured between blocks (a 20k-question search over
    /// 1M passages ran 6 minutes without a word and ran on after SIGTERM). The data file is read
    /// twice, streaming, rather than held whole.
    @Test func retrieveSearchesInBlocksWithProgressAndStops() throws {
        let dir = TestData.scratch("retrieve-blocks")
        try TestData.write(Self.passages, to: dir + "/psgs.tsv")
        let n = QuestionBlocks.size + 1
        let questions = (0..<n).map { i in #"{"id": "q\#(i)", "question": "capital of France \#(i % 7)?", "answers": ["Paris"], "ctxs": [{"id": "9", "title": "x", "text": "old"}]}"# }
        try TestData.write("[" + questions.joined(separator: ",\n") + "]", to: dir + "/q.json")
        _ = try RetrievalJobs.run("index_bm25", ["passages": .string("psgs.tsv"), "output_path": .string("bm25.index")], workspace: dir)
        let params: [String: JSONValue] = ["method": .string("bm25"), "bm25_index": .string("bm25.index"), "passages": .string("psgs.tsv"),
                                           "data": .string("q.json"), "output_path": .string("out.json"), "n_docs": .number(2)]
        let result = try RetrievalJobs.run("retrieve", params, workspace: dir)
        #expect(RetrievalJobs.number(result["questions"]) == Double(n))
        let log = try String(contentsOfFile: dir + "/retrieve.run/log.txt", encoding: .utf8)
        #expect(log.contains("searched \(QuestionBlocks.size)/\(n) questions") && log.contains("searched \(n)/\(n) questions"), "\(log.suffix(600))")
        let out = try FiDData(path: dir + "/out.json").index()
        #expect(out.count == n)
        let last = try out.example(at: n - 1)
        #expect(last.idText == "q\(n - 1)" && last.ctxs.count == 2 && last.ctxs.first?.title == "Paris")
        // Asked to stop before it starts searching: it stops, and writes nothing.
        var job = ForegroundRun(file: dir + "/stopped.json", workspace: dir)
        job.outDir = dir + "/stopped.run"
        job.allowedRoots = ["/"]
        let cancel = CancellationToken()
        cancel.cancel(.shutdown)
        var stopped = params
        stopped["output_path"] = .string("stopped.json")
        #expect(throws: (any Error).self) {
            try job.run(JobDescriptor(kind: "retrieve", id: "stopped", maxAttempts: 1, params: .object(stopped)), registry: RetrievalJobs.registry(), cancel: cancel)
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/stopped.json"))
    }

    /// BM25 returns only passages sharing a word with the question: shorter lists are counted,
    /// the depth reported is what the output reaches, and a question of unindexed words gets none.
    @Test func bm25ListsShortOfNDocsAreCounted() throws {
        let dir = TestData.scratch("bm25short")
        try TestData.write(Self.passages, to: dir + "/psgs.tsv")
        let q1 = #"{"id": "q1", "question": "What is the capital of Germany?", "answers": ["Berlin"]}"#
        let q2 = #"{"id": "q2", "question": "Highest mountain above sea level?", "answers": ["Everest"]}"#
        let q3 = #"{"id": "q3", "question": "zyzzyva quux?", "answers": ["x"]}"#
        try TestData.write("[\(q1), \(q2), \(q3)]", to: dir + "/q.json")
        try TestData.write("[\(q2), \(q3)]", to: dir + "/q23.json")
        _ = try RetrievalJobs.run("index_bm25", ["passages": .string("psgs.tsv"), "output_path": .string("bm25.index")], workspace: dir)
        // (n_docs, data, list lengths, recall@1): q1 shares "is", "the" with every passage, q2
        // only Everest's words, q3 no indexed word.
        for (n, (nDocs, data, lengths, first)) in [(3, "q.json", [3, 1, 0], 2.0 / 3), (50, "q.json", [5, 1, 0], 2.0 / 3),
                                                   (50, "q23.json", [1, 0], 0.5)].enumerated() {
            let result = try RetrievalJobs.run(
                "retrieve",
                ["method": .string("bm25"), "bm25_index": .string("bm25.index"), "passages": .string("psgs.tsv"), "data": .string(data),
                 "output_path": .string("out\(n).json"), "n_docs": .number(Double(nDocs))], workspace: dir, id: "retrieve\(n)")
            let out = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/out\(n).json"))) as! [[String: Any]]
            #expect(out.map { ($0["ctxs"] as! [Any]).count } == lengths)
            // The depth the output reaches, not n_docs or the corpus.
            #expect(RetrievalJobs.number(result["n_docs_returned"]) == Double(lengths.max()!))
            #expect(RetrievalJobs.number(result["short_questions"]) == Double(lengths.filter { $0 < min(nDocs, 5) }.count))
            #expect(RetrievalJobs.number(result["fewest_docs"]) == 0)
            guard case .string(let note)? = result["note"] else { Issue.record("no note for short lists"); continue }
            #expect(note.contains("question q3") && note.contains("share a word"), "\(note)")
            #expect(note.contains("exceeds") == (nDocs > 5), "\(note)")
            guard case .object(let recall)? = result["recall"] else { Issue.record("no recall"); continue }
            #expect(Set(recall.keys) == Set(RetrieveKind.recallDepths(returned: lengths.max()!).map(String.init)), "\(recall.keys.sorted())")
            #expect(RetrievalJobs.number(recall["1"]).map { abs($0 - first) < 1e-9 } == true, "\(recall)")
        }
    }

    /// The error `index_bm25` refuses `tsv` with, or nil when it builds an index.
    static func indexBM25Error(_ tsv: String, name: String = #function) throws -> JobError? {
        let dir = TestData.scratch(String(name.prefix { $0 != "(" }))
        try TestData.write(tsv, to: dir + "/psgs.tsv")
        do { _ = try RetrievalJobs.run("index_bm25", ["passages": .string("psgs.tsv")], workspace: dir) } catch let e as JobError { return e }
        return nil
    }

    /// A passages file with one id twice: retrieve looks texts up by id, so the second row came
    /// back with the first row's text and hasanswer. index_bm25 refuses it naming both rows.
    /// retrieve returns each hit's text from `passages`: an id twice there (an index built from
    /// another file) is refused; the later row's text was returned.
    @Test func retrieveRefusesAPassageIdTwice() throws {
        let dir = TestData.scratch("bm25-dup")
        try TestData.write(Self.passages, to: dir + "/psgs.tsv")
        try TestData.write(#"[{"question": "What is the capital of Germany?", "answers": ["Berlin"]}]"#, to: dir + "/q.json")
        _ = try RetrievalJobs.run("index_bm25", ["passages": .string("psgs.tsv"), "output_path": .string("bm25.index")], workspace: dir)
        // Right after the first: the rows below are still needed, so the scan reads on.
        try TestData.write(Self.passages.replacingOccurrences(of: "Germany.\tBerlin\n", with: "Germany.\tBerlin\n2\tthe weather was mild .\tWeather\n"),
                           to: dir + "/dup.tsv")
        do {
            _ = try RetrievalJobs.run("retrieve", ["method": .string("bm25"), "bm25_index": .string("bm25.index"), "passages": .string("dup.tsv"),
                                                   "data": .string("q.json"), "output_path": .string("out.json"), "n_docs": .number(5)], workspace: dir)
            Issue.record("retrieved with passage id 2 twice")
        } catch let e as JobError {
            #expect(e.field == "params.passages" && e.message.contains("passage id 2 appears twice in dup.tsv"), "\(e)")
        }
    }

    /// index_bm25 records the passages file it read and a sample of its rows: retrieve refuses a
    /// sampled row whose text changed (the old ranking came back with the new texts), warns when
    /// the file's size changed (rows added are not searched), and says when an index has no record.
    @Test func bm25RetrieveChecksThePassagesItIndexed() throws {
        let dir = TestData.scratch("bm25-source")
        try TestData.write(Self.passages, to: dir + "/psgs.tsv")
        try TestData.write(#"[{"question": "What is the capital of Germany?", "answers": ["Berlin"]}]"#, to: dir + "/q.json")
        _ = try RetrievalJobs.run("index_bm25", ["passages": .string("psgs.tsv"), "output_path": .string("bm25.index")], workspace: dir)
        let source = try #require(BM25Source.read(beside: dir + "/bm25.index"))
        #expect(source.samples.count == 5 && source.passages.bytes == Int64(Self.passages.utf8.count), "\(source)")
        func retrieve(_ passages: String, id: String) throws -> String {
            _ = try RetrievalJobs.run("retrieve", ["method": .string("bm25"), "bm25_index": .string("bm25.index"), "passages": .string(passages),
                                                   "data": .string("q.json"), "output_path": .string(id + ".json"), "n_docs": .number(5)],
                                      workspace: dir, id: id)
            return try String(contentsOfFile: dir + "/\(id).run/log.txt", encoding: .utf8)
        }
        let same = try retrieve("psgs.tsv", id: "same")
        #expect(!same.contains("warning") && same.contains("5 passages sampled by bm25.index's record read as indexed"), "\(same)")
        // Row 2's text edited (same length, so only the sample can tell).
        try TestData.write(Self.passages.replacingOccurrences(of: "Berlin is", with: "Bonn is  "), to: dir + "/edited.tsv")
        do {
            _ = try retrieve("edited.tsv", id: "edited")
            Issue.record("retrieved from an edited passages file")
        } catch let e as JobError {
            #expect(e.field == "params.passages" && e.message.contains("is not the passage \(dir)/bm25.index indexed under that id")
                    && e.hint?.contains("index_bm25") == true, "\(e)")
        }
        try TestData.write(Self.passages + "9\tBerlin again .\tBerlin\n", to: dir + "/added.tsv")
        #expect(try retrieve("added.tsv", id: "added").contains("passages added since are not searched"))
        try FileManager.default.removeItem(atPath: BM25Source.path(beside: dir + "/bm25.index"))
        #expect(try retrieve("psgs.tsv", id: "unrecorded").contains("no record of the passages file bm25.index was built from"))
    }

    @Test func duplicatePassageIdsAreRefused() throws {
        let e = try #require(try Self.indexBM25Error("id\ttext\ttitle\n1\tParis is in France.\tParis\n2\tRome\tRome\n1\tBerlin is in Germany.\tBerlin\n"),
                             "an index of a file with id 1 twice was built")
        #expect(e.field == "params.passages" && e.message.contains("passage id 1 in passages 1 and 3") && e.hint?.contains("unique") == true,
                "\(e)")
    }

    @Test func questionFileWithoutQuestionIsRefused() throws {
        let dir = TestData.scratch("noq")
        try TestData.write(Self.passages, to: dir + "/psgs.tsv")
        try TestData.write(#"[{"answers": ["x"]}]"#, to: dir + "/q.json")
        _ = try RetrievalJobs.run("index_bm25", ["passages": .string("psgs.tsv")], workspace: dir)
        #expect(throws: JobError.self) {
            try RetrievalJobs.run(
                "retrieve", ["method": .string("bm25"), "bm25_index": .string("bm25.index"), "passages": .string("psgs.tsv"), "data": .string("q.json")],
                workspace: dir)
        }
    }

    /// Each method's required params, and a param of the other method, which would be ignored
    /// (a user who set `index: sq8` on a BM25 job believes it searched sq8): refused, naming it.
    @Test(arguments: [
        (#"{"method": "bm25"}"#, "params.bm25_index", "method bm25 needs bm25_index"),
        (#"{"method": "bm25", "bm25_index": "bm25.index", "index": "sq8"}"#, "params.index",
         "index is a param of method dense, and this job's method is bm25"),
        (#"{"method": "bm25", "bm25_index": "bm25.index", "model_path": "m"}"#, "params.model_path", "model_path is a param of method dense"),
        (#"{"method": "bm25", "bm25_index": "bm25.index", "save_or_load_index": true}"#, "params.save_or_load_index", "of method dense"),
        (#"{"method": "bm25", "bm25_index": "bm25.index", "question_maxlength": 10}"#, "params.question_maxlength", "of method dense"),
        (#"{"method": "bm25", "bm25_index": "bm25.index", "per_gpu_batch_size": 8}"#, "params.per_gpu_batch_size", "of method dense"),
        (#"{"bm25_index": "bm25.index"}"#, "params.bm25_index", "bm25_index is a param of method bm25, and this job's method is dense"),
        (#"{"model_path": "m"}"#, "params.passages_embeddings", "method dense needs passages_embeddings"),
        (#"{"passages_embeddings": "emb/*"}"#, "params.model_path", "method dense needs model_path"),
        (#"{"model_path": "m", "passages_embeddings": "emb/*", "index": "pq"}"#, "params.n_subquantizers", "index pq needs n_subquantizers > 0"),
        // Another index's settings were ignored without a word.
        (#"{"model_path": "m", "passages_embeddings": "emb/*", "index": "flat", "n_subquantizers": 48}"#, "params.n_subquantizers",
         "n_subquantizers 48 is a setting of index pq, and this job's index is flat"),
        (#"{"model_path": "m", "passages_embeddings": "emb/*", "index": "sq8", "n_subquantizers": 48}"#, "params.n_subquantizers", "index is sq8"),
        (#"{"model_path": "m", "passages_embeddings": "emb/*", "rerank": 50}"#, "params.rerank", "rerank is a setting of index sq8"),
        (#"{"model_path": "m", "passages_embeddings": "emb/*", "n_subquantizers": 8, "rerank": 2}"#, "params.rerank", "this job's index is pq"),
    ])
    func retrieveParamsFitTheMethod(json: String, field: String, message: String) throws {
        var params = try JSONDecoder().decode([String: JSONValue].self, from: Data(json.utf8))
        params["passages"] = .string("psgs.tsv")
        params["data"] = .string("q.json")
        do {
            _ = try JSONDecoder().decode(RetrieveParams.self, from: JSONEncoder().encode(JSONValue.object(params)))
            Issue.record("accepted \(json)")
        } catch let e as JobError {
            #expect(e.field == field && e.message.contains(message), "\(e)")
        }
    }

    @Test func badTSVNamesItsLine() throws {
        let e = try #require(try Self.indexBM25Error("id\ttext\ttitle\n1\tok\tA\n2\tno title\n"), "a row without a title was accepted")
        #expect(e.description.contains("line 3"), "\(e)")
    }

    /// A passages file without a passage (empty, or a header only) is refused by both indexing
    /// kinds, naming the param and what was found; BM25 wrote an empty index, embed hinted "use
    /// at most 0 shards".
    @Test func passagesWithoutAPassageAreRefused() throws {
        let dir = TestData.scratch("nopassages")
        let model = try RetrievalJobs.minilm()
        for (content, found) in [("", "an empty file"), ("id\ttext\ttitle\n\n", "a header or blank lines only")] {
            try TestData.write(content, to: dir + "/psgs.tsv")
            for (kind, params) in [("index_bm25", ["passages": JSONValue.string("psgs.tsv")]),
                                   ("embed", ["model_path": .string(model), "passages": .string("psgs.tsv"), "output_path": .string("emb/p")])] {
                do {
                    _ = try RetrievalJobs.run(kind, params, workspace: dir)
                    Issue.record("\(kind) accepted \(found)")
                } catch let e as JobError {
                    #expect(e.field == "params.passages" && e.message.contains(found) && e.message.contains("psgs.tsv"), "\(kind): \(e)")
                }
            }
            #expect(!FileManager.default.fileExists(atPath: dir + "/bm25.index"), "no index of nothing")
        }
    }

    /// What submit compares to refuse two writers of one output: an embed job owns its shard's
    /// file (shards of one output_path are separate jobs), a train_reader its checkpoint_dir/name.
    @Test func exclusiveOutputsNameWhatAJobOwns() throws {
        let r = RetrievalJobs.registry()
        r.register(TrainReaderKind())
        let policy = PathPolicy(workspace: "/ws", queue: "/ws/queue")
        func owned(_ kind: String, _ params: String) throws -> [String] {
            let d = try JobDescriptor.parse(Data(#"{"kind": "\#(kind)", "params": \#(params)}"#.utf8), fileName: "x.json")
            return r.exclusiveOutputs(of: d, policy: policy).map(\.path)
        }
        let embed = #"{"model_path": "m", "passages": "p.tsv", "output_path": "emb/passages", "shard_id": 3, "num_shards": 8}"#
        // Its shard's three files: another job writing the .ids beside it replaced its ids.
        #expect(try owned("embed", embed) == ["/ws/emb/passages_03.npy", "/ws/emb/passages_03.ids", "/ws/emb/passages_03.meta.json"])
        #expect(try owned("retrieve", #"{"model_path": "m", "passages": "p.tsv", "passages_embeddings": "e_*", "data": "q.json", "output_path": "out/r.json"}"#)
                == ["/ws/out/r.json"])
        #expect(try owned("train_reader", #"{"train_data": "t.json", "model_path": "m", "checkpoint_dir": "ck", "name": "run1"}"#) == ["/ws/ck/run1"])
        #expect(try owned("train_reader", #"{"train_data": "t.json", "model_path": "m"}"#).isEmpty)
        r.register(ScoreKind())
        #expect(try owned("train_retriever", #"{"train_data": "t.json", "model_path": "m", "checkpoint_dir": "ck", "name": "r1"}"#) == ["/ws/ck/r1"])
        #expect(try owned("score", #"{"eval_data": "d.json", "model_path": "m", "checkpoint_dir": "ck", "name": "my_test"}"#) == ["/ws/ck/my_test"])
    }

    @Test func shardCountBeyondThePassagesIsRefused() throws {
        let dir = TestData.scratch("shards")
        try TestData.write(Self.passages, to: dir + "/psgs.tsv")
        let model = try RetrievalJobs.minilm()
        #expect(throws: JobError.self) {
            try RetrievalJobs.run(
                "embed", ["model_path": .string(model), "passages": .string("psgs.tsv"), "output_path": .string("emb/p"),
                          "num_shards": .number(6), "shard_id": .number(5)], workspace: dir)
        }
        #expect(throws: Error.self) {
            try RetrievalJobs.run("embed", ["model_path": .string(model), "passages": .string("psgs.tsv"), "num_shards": .number(2), "shard_id": .number(2)], workspace: dir)
        }
        #expect(EmbedParams.shardRange(total: 10, shard: 0, of: 3) == 0..<3)
        #expect(EmbedParams.shardRange(total: 10, shard: 2, of: 3) == 6..<10)
    }

    /// The CI real-retrieval check: 368 passages of the gensim Wikipedia excerpt
    /// (ops/fixtures/wiki_passages.py), 39 questions written for them, MiniLM, two embed shards.
    ///
    /// Floors: every answer occurs in some passage, and each question names its article's subject
    /// in other words, so a working retriever finds most; a broken one (shuffled ids, wrong rows,
    /// a bad index) lands near chance: with ~4 passages per article out of 368, random top-5 recall
    /// is about 5/368 per answer-bearing passage, under 0.1. Floors are set well above chance and
    /// below what the check printed when written (dense @5 / @20 and BM25 @5 / @20 are printed).
    @Test func realRetrievalRecall() throws {
        let dir = TestData.scratch("wiki")
        let model = try RetrievalJobs.minilm()
        let fm = FileManager.default
        try fm.copyItem(atPath: RetrievalJobs.fixtures + "/passages.tsv", toPath: dir + "/psgs.tsv")
        try fm.copyItem(atPath: RetrievalJobs.fixtures + "/questions.json", toPath: dir + "/q.json")
        var rows = 0
        for shard in 0..<2 {
            let r = try RetrievalJobs.run(
                "embed", ["model_path": .string(model), "passages": .string("psgs.tsv"), "output_path": .string("emb/passages"),
                          "shard_id": .number(Double(shard)), "num_shards": .number(2), "per_gpu_batch_size": .number(32),
                          "passage_maxlength": .number(128), "block_size": .number(100)],
                workspace: dir, id: "embed-\(shard)")
            rows += Int(RetrievalJobs.number(r["rows"]) ?? 0)
        }
        #expect(rows == 368)
        #expect(fm.fileExists(atPath: dir + "/emb/passages_00.npy") && fm.fileExists(atPath: dir + "/emb/passages_01.ids"))
        var recall: [String: [String: Double]] = [:]
        let dense: [String: JSONValue] = ["model_path": .string(model), "passages_embeddings": .string("emb/passages_*")]
        for (name, method, extra) in [("dense", "dense", dense), ("sq8", "dense", dense.merging(["index": .string("sq8")]) { a, _ in a }),
                                      ("bm25", "bm25", ["bm25_index": JSONValue.string("bm25.index")])] {
            if method == "bm25" { _ = try RetrievalJobs.run("index_bm25", ["passages": .string("psgs.tsv")], workspace: dir) }
            var params: [String: JSONValue] = ["method": .string(method), "passages": .string("psgs.tsv"), "data": .string("q.json"),
                                               "output_path": .string("\(name).json"), "n_docs": .number(20)]
            params.merge(extra) { a, _ in a }
            let r = try RetrievalJobs.run("retrieve", params, workspace: dir, id: "retrieve-\(name)")
            guard case .object(let at)? = r["recall"] else { Issue.record("no recall for \(name)"); continue }
            recall[name] = ["5": RetrievalJobs.number(at["5"]) ?? 0, "20": RetrievalJobs.number(at["20"]) ?? 0]
        }
        print("real retrieval (39 questions, 368 passages): dense recall@5 \(recall["dense"]?["5"] ?? 0) @20 \(recall["dense"]?["20"] ?? 0); sq8 @5 \(recall["sq8"]?["5"] ?? 0) @20 \(recall["sq8"]?["20"] ?? 0); bm25 recall@5 \(recall["bm25"]?["5"] ?? 0) @20 \(recall["bm25"]?["20"] ?? 0)")
        #expect((recall["dense"]?["5"] ?? 0) >= 0.6)
        #expect((recall["dense"]?["20"] ?? 0) >= 0.75)
        // sq8 re-ranks 4 × 20 candidates of 368 passages: it must find what exact search finds
        // (one question's worth of slack).
        for at in ["5", "20"] {
            #expect((recall["sq8"]?[at] ?? 0) >= (recall["dense"]?[at] ?? 1) - 1.0 / 39, "sq8 recall@\(at) \(recall["sq8"]?[at] ?? 0)")
        }
        #expect((recall["bm25"]?["5"] ?? 0) >= 0.5)
        #expect((recall["bm25"]?["20"] ?? 0) >= 0.7)
        // Shards another retriever embedded (8 wide; MiniLM embeds 384): refused, naming a shard
        // file and the model, with what to do.
        try fm.createDirectory(atPath: dir + "/other", withIntermediateDirectories: true)
        let w = try ShardWriter(stem: dir + "/other/passages_00", rows: 2, dim: 8, storage: .float32)
        try w.append(ids: ["1", "2"], embeddings: [Float](repeating: 0.5, count: 16))
        try w.finish()
        do {
            _ = try RetrievalJobs.run("retrieve", dense.merging(["passages_embeddings": .string("other/passages_*"), "passages": .string("psgs.tsv"),
                                                                 "data": .string("q.json"), "output_path": .string("other.json")]) { $1 },
                                      workspace: dir, id: "retrieve-other")
            Issue.record("searched shards of another width")
        } catch let e as JobError {
            #expect(e.field == "params.passages_embeddings" && e.message.contains("other/passages_00.npy") && e.message.contains(model)
                    && e.message.contains("embeds 384") && e.hint?.contains("embed the passages with this retriever") == true, "\(e)")
        }
    }
}

/// `save_or_load_index` loads a saved `sq8`/`pq` index only when it was built from these very
/// shards with these settings: the loop's next round re-embeds the corpus into the same shard
/// names, and a stale index would be searched with the new questions without a word.
@Suite struct SavedIndexTests {
    /// A seeded random retriever over the example world's vocabulary (64 wide).
    /// A retriever of seed 1 in `dir`, from the example world's config, written under `dir`.
    static func worldRetriever(_ dir: String) throws -> String {
        let world = dir + "/world"
        _ = try ExampleWorld(config: ExampleWorldConfig(seed: 3, train: 40, dev: 30)).write(to: world)
        return try retriever(dir, world: world, seed: 1)
    }

    static func retriever(_ dir: String, world: String, seed: UInt64) throws -> String {
        let folder = dir + "/retriever-\(seed)"
        let model = BertRetriever(config: try BertConfig.load(path: world + "/retriever/config.json"))
        model.initialize(seed: seed)
        try model.save(folder: folder, tokenizer: world + "/retriever/vocab.txt")
        return folder
    }

    /// Embeddings float16 cannot hold (they become inf, a row no query ever retrieves) are refused,
    /// naming the passage, with the hint no_fp16; with no_fp16 the same shard is written.
    @Test func embeddingsFloat16CannotHoldAreRefused() throws {
        let dir = TestData.scratch("embed-overflow")
        let world = dir + "/world"
        _ = try ExampleWorld(config: ExampleWorldConfig(seed: 3, train: 40, dev: 30)).write(to: world)
        let model = BertRetriever(config: try BertConfig.load(path: world + "/retriever/config.json"))
        model.initialize(seed: 1)
        for e in model.params.layout.entries where e.name.hasSuffix("LayerNorm.weight") || e.name.hasSuffix("norm.weight") {
            for i in model.params.buffer(e.name).indices { model.params.buffer(e.name)[i] *= 1e6 }
        }
        try model.save(folder: dir + "/loud", tokenizer: world + "/retriever/vocab.txt")
        func embed(_ extra: [String: JSONValue], id: String) throws {
            _ = try RetrievalJobs.run("embed", ["model_path": .string("loud"), "passages": .string("world/passages.tsv"),
                                                "output_path": .string("emb-\(id)/passages"), "passage_maxlength": .number(24)]
                                          .merging(extra) { $1 }, workspace: dir, id: id)
        }
        do {
            try embed([:], id: "f16")
            Issue.record("float16 shard of embeddings past 65504 written")
        } catch let e as JobError {
            #expect(e.field == "params.model_path" && e.message.contains("float16 storage cannot hold") && e.hint?.contains("no_fp16") == true, "\(e)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/emb-f16/passages_00.npy"))
        // Nor are its staging files left: a partial shard's size, on a disk that may be full.
        let left = try FileManager.default.contentsOfDirectory(atPath: dir + "/emb-f16")
        #expect(!left.contains { $0.contains(".tmp") }, "\(left)")
        try embed(["no_fp16": .bool(true)], id: "f32")
        #expect(try EmbeddingShard(path: dir + "/emb-f32/passages_00.npy").storage == .float32)
    }

    /// A shard's .ids file keeps one id a line: an id with a line break (Python's csv reads one
    /// from a quoted field) is refused naming the passage, not written and misread.
    @Test(arguments: ["\"a\nb\"", "\"a\rb\"", "\"a\r\nb\""])
    func idsWithLineBreaksAreRefused(id: String) throws {
        let dir = TestData.scratch("embed-id-break")
        let model = try Self.worldRetriever(dir)
        try "id\ttext\ttitle\n1\tviolin text\tT\n\(id)\tcello text\tT\n".write(toFile: dir + "/p.tsv", atomically: true, encoding: .utf8)
        do {
            _ = try RetrievalJobs.run("embed", ["model_path": .string(model), "passages": .string("p.tsv"),
                                                "output_path": .string("emb/passages"), "passage_maxlength": .number(24)], workspace: dir)
            Issue.record("a shard with the id \(id.debugDescription) written")
        } catch let e as JobError {
            #expect(e.permanence == .permanent && e.field == "params.passages" && e.message.contains("passage 2 ") && e.message.contains("line break"), "\(e)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/emb/passages_00.npy"))
    }

    /// retrieve refuses shards that hold an id twice, after every shard was embedded: each
    /// shard's embed job refuses the passages file first, naming the id and both rows, and
    /// writes nothing. A shard whose own rows hold no repeat is refused too (the other shard's
    /// rows repeat the id).
    @Test(arguments: [0, 1])
    func aPassagesFileWithAnIdTwiceIsRefusedByEveryShard(shard: Int) throws {
        let dir = TestData.scratch("embed-id-twice")
        let model = try Self.worldRetriever(dir)
        try "id\ttext\ttitle\n1\tviolin text\tT\n2\tcello text\tT\n3\tviola text\tT\n1\tharp text\tT\n"
            .write(toFile: dir + "/p.tsv", atomically: true, encoding: .utf8)
        do {
            _ = try RetrievalJobs.run("embed", ["model_path": .string(model), "passages": .string("p.tsv"), "output_path": .string("emb/passages"),
                                                "passage_maxlength": .number(24), "num_shards": .number(2), "shard_id": .number(Double(shard))],
                                      workspace: dir)
            Issue.record("shard \(shard) of a passages file with id 1 twice written")
        } catch let e as JobError {
            #expect(e.permanence == .permanent && e.field == "params.passages"
                    && e.message.contains("passage id 1 appears twice in p.tsv: in passages 1 and 4") && e.hint?.contains("unique") == true, "\(e)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/emb/passages_0\(shard).npy"))
    }

    @Test(arguments: ["sq8", "pq"])
    func aSavedIndexIsLoadedOnlyForTheShardsItWasBuiltFrom(index: String) throws {
        let dir = TestData.scratch("saved-index")
        let world = dir + "/world"
        _ = try ExampleWorld(config: ExampleWorldConfig(seed: 3, train: 40, dev: 30)).write(to: world)
        let models = [try Self.retriever(dir, world: world, seed: 1), try Self.retriever(dir, world: world, seed: 2)]
        var runs = 0
        func embed(_ model: String) throws {
            runs += 1
            _ = try RetrievalJobs.run("embed", ["model_path": .string(model), "passages": .string("world/passages.tsv"),
                                                "output_path": .string("emb/passages"), "passage_maxlength": .number(24)],
                                      workspace: dir, id: "embed-\(runs)")
        }
        /// The retrieved ids of every question, and the run's log.
        func retrieve(_ model: String, save: Bool, m: Int = 4) throws -> (ids: [[String]], log: String) {
            runs += 1
            let id = "retrieve-\(runs)"
            var params: [String: JSONValue] = [
                "model_path": .string(model), "passages": .string("world/passages.tsv"), "passages_embeddings": .string("emb/passages_*"),
                "data": .string("world/dev.json"), "output_path": .string("\(id).json"), "n_docs": .number(10), "index": .string(index),
                "save_or_load_index": .bool(save)]
            if index == "pq" { params["n_subquantizers"] = .number(Double(m)) }
            _ = try RetrievalJobs.run("retrieve", params, workspace: dir, id: id)
            let examples = try FiDData(path: dir + "/\(id).json").load()
            // Progress counts the questions' embedding and their search, so it ends at twice them.
            let progress = try JSONDecoder().decode(ProgressReporter.Snapshot.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/\(id).run/progress.json")))
            #expect(progress.step == 2 * examples.count && progress.total == 2 * examples.count, "\(progress)")
            let ids = examples.map { $0.ctxs.map { p -> String in
                if case .object(let fields) = p.raw, case .string(let s)? = fields.first(where: { $0.0 == "id" })?.1 { return s }
                return "?"
            } }
            return (ids, (try? String(contentsOfFile: dir + "/\(id).run/log.txt", encoding: .utf8)) ?? "")
        }
        let saved = dir + "/emb/index." + index
        try embed(models[0])
        let first = try retrieve(models[0], save: true)
        #expect(first.log.contains("saved \(saved)") && FileManager.default.fileExists(atPath: saved + ".source.json"), "\(first.log)")
        if index == "pq" {
            #expect(first.log.contains("centroids (n_bits 8) per sub-quantizer from ") && first.log.contains("fewer than the 9984 faiss asks for"),
                    "\(first.log)")
        }
        let again = try retrieve(models[0], save: true)
        #expect(again.log.contains("loading \(saved)") && again.ids == first.ids, "\(again.log)")
        // The next round: another retriever re-embeds into the same shard names.
        try embed(models[1])
        let fresh = try retrieve(models[1], save: false)
        let next = try retrieve(models[1], save: true)
        #expect(next.log.contains("not loading \(saved): passages_00.") && next.log.contains("changed since it was built"), "\(next.log)")
        #expect(next.ids == fresh.ids, "the rebuilt index finds what a fresh one finds")
        #expect(fresh.ids != first.ids, "the two retrievers rank differently (else this test proves nothing)")
        #expect(try retrieve(models[1], save: true).log.contains("loading \(saved)"))
        if index == "pq" {
            // Other settings change the codes: built again, not loaded.
            let wider = try retrieve(models[1], save: true, m: 8)
            #expect(wider.log.contains("n_subquantizers 4 there, 8 here"), "\(wider.log)")
            #expect(wider.ids == (try retrieve(models[1], save: false, m: 8)).ids)
        }
        // An index saved without its source (older fidq, or FiD's habit of copying) is rebuilt too.
        try FileManager.default.removeItem(atPath: saved + ".source.json")
        #expect(try retrieve(models[1], save: true).log.contains("no record of the shards it was built from"))
        // A glob over the whole folder skips the saved index and its source.
        #expect(EmbeddingShard.glob(dir + "/emb/*").map { ($0 as NSString).lastPathComponent } == ["passages_00.npy"])
        // Confined to the workspace (a queued job's policy): shards a glob names outside it are
        // refused before they are read, and so is saving an index beside them (both were done).
        let outside = TestData.scratch("saved-index-outside")
        try FileManager.default.copyItem(atPath: dir + "/emb", toPath: outside + "/emb")
        var params: [String: JSONValue] = [
            "model_path": .string(models[1]), "passages": .string("world/passages.tsv"), "passages_embeddings": .string(outside + "/emb/passages_*"),
            "data": .string("world/dev.json"), "output_path": .string("confined.json"), "n_docs": .number(10), "index": .string(index),
            "save_or_load_index": .bool(true)]
        if index == "pq" { params["n_subquantizers"] = .number(4) }
        let before = try FileManager.default.contentsOfDirectory(atPath: outside + "/emb").sorted()
        do {
            _ = try RetrievalJobs.run("retrieve", params, workspace: dir, id: "confined", allowedRoots: [])
            Issue.record("shards outside the workspace were read")
        } catch let e as JobError {
            #expect(e.field == "params.passages_embeddings" && e.message.contains("outside the workspace"), "\(e)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside + "/emb").sorted() == before)
    }
}

/// `embed` records which retriever embedded each shard (its embedding of a fixed probe passage);
/// `retrieve` refuses shards another retriever embedded, which would return unrelated passages.
@Suite struct ShardRecordTests {
    @Test func retrieveRefusesShardsAnotherRetrieverEmbedded() throws {
        let dir = TestData.scratch("shard-record")
        let world = dir + "/world"
        let fm = FileManager.default
        _ = try ExampleWorld(config: ExampleWorldConfig(seed: 3, train: 40, dev: 30)).write(to: world)
        let a = try SavedIndexTests.retriever(dir, world: world, seed: 1), b = try SavedIndexTests.retriever(dir, world: world, seed: 2)
        func embed(_ model: String, shard: Int, id: String) throws {
            _ = try RetrievalJobs.run("embed", ["model_path": .string(model), "passages": .string("world/passages.tsv"),
                                                "output_path": .string("emb/passages"), "shard_id": .number(Double(shard)),
                                                "num_shards": .number(2), "passage_maxlength": .number(24)],
                                      workspace: dir, id: id)
        }
        /// The run's log, or the job's error.
        func retrieve(_ model: String, id: String) -> Result<String, JobError> {
            do {
                _ = try RetrievalJobs.run("retrieve", ["model_path": .string(model), "passages": .string("world/passages.tsv"),
                                                       "passages_embeddings": .string("emb/passages_*"), "data": .string("world/dev.json"),
                                                       "output_path": .string("\(id).json"), "n_docs": .number(5)],
                                          workspace: dir, id: id)
                return .success((try? String(contentsOfFile: dir + "/\(id).run/log.txt", encoding: .utf8)) ?? "")
            } catch { return .failure(error as? JobError ?? JobError.permanent("\(error)")) }
        }
        try embed(a, shard: 0, id: "embed-0")
        try embed(a, shard: 1, id: "embed-1")
        #expect(fm.fileExists(atPath: dir + "/emb/passages_00.meta.json") && fm.fileExists(atPath: dir + "/emb/passages_01.meta.json"))
        let same = retrieve(a, id: "same")
        guard case .success(let log) = same else { Issue.record("refused its own retriever's shards: \(same)"); return }
        #expect(log.contains("shards embedded by this retriever: 2 of 2"), "\(log)")
        // Another retriever's questions against a's passages: same width, unrelated ranking.
        guard case .failure(let wrong) = retrieve(b, id: "wrong") else { Issue.record("searched a's shards with b"); return }
        #expect(wrong.field == "params.passages_embeddings" && wrong.message.contains("/emb/passages_00.npy was embedded by another retriever (\(a))")
                && wrong.message.contains("than model_path \(b)") && wrong.hint?.contains("re-run this shard's embed job") == true, "\(wrong)")
        // One shard re-embedded by b (half of a round): the mixed set is refused, naming it.
        try embed(b, shard: 1, id: "embed-1b")
        guard case .failure(let mixed) = retrieve(a, id: "mixed") else { Issue.record("searched a mixed set of shards"); return }
        #expect(mixed.message.contains("passages_01.npy was embedded by another retriever (\(b))"), "\(mixed)")
        // A shard without a record (FiD's, an older fidq's) is searched unchecked, and the log says so.
        try embed(a, shard: 1, id: "embed-1c")
        try fm.removeItem(atPath: dir + "/emb/passages_01.meta.json")
        guard case .success(let partial) = retrieve(a, id: "partial") else { Issue.record("refused a shard without a record"); return }
        #expect(partial.contains("shards embedded by this retriever: 1 of 2")
                && partial.contains("no record of the retriever that embedded 1 of 2 shards"), "\(partial)")
        // The passages file must hold the texts embedded: a sampled passage whose text changed
        // (a corpus regenerated under the same ids) is refused, naming it.
        #expect(partial.contains("passages sampled by the shards' records read as embedded"), "\(partial)")
        let record = try #require(try ShardRecord.read(forShard: dir + "/emb/passages_00.npy"))
        let sampled = try #require(record.samples?.keys.sorted().last)
        let tsv = dir + "/world/passages.tsv", original = try String(contentsOfFile: tsv, encoding: .utf8)
        let edited = original.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            line.hasPrefix(sampled + "\t") ? sampled + "\tan edited text\t" + (line.split(separator: "\t").last.map(String.init) ?? "") : String(line)
        }.joined(separator: "\n")
        #expect(edited != original)
        try edited.write(toFile: tsv, atomically: true, encoding: .utf8)
        guard case .failure(let changed) = retrieve(a, id: "changed") else { Issue.record("returned texts other than those embedded"); return }
        #expect(changed.field == "params.passages" && changed.message.contains("passage \(sampled) in world/passages.tsv is not the passage")
                && changed.message.contains("passages_00.npy embedded"), "\(changed)")
        try original.write(toFile: tsv, atomically: true, encoding: .utf8)
        // A damaged record is an error naming it, not a silent pass.
        try "{".write(toFile: dir + "/emb/passages_01.meta.json", atomically: true, encoding: .utf8)
        guard case .failure(let damaged) = retrieve(a, id: "damaged") else { Issue.record("read a damaged record"); return }
        #expect(damaged.message.contains("passages_01.meta.json"), "\(damaged)")
        // Rows of NaN (shards without records, as FiD's): no score beats the running k-th, so every
        // list came back empty and the job ended done; it is refused, naming the shards.
        let width = try EmbeddingShard(path: dir + "/emb/passages_00.npy").dim
        for i in 0..<2 {
            let npy = dir + "/emb/passages_0\(i).npy"
            try? fm.removeItem(atPath: dir + "/emb/passages_0\(i).meta.json")
            var bytes = try Data(contentsOf: URL(fileURLWithPath: npy))
            let rows = try EmbeddingShard(path: npy).count
            let start = bytes.count - rows * width * 2  // float16 rows
            for j in stride(from: start, to: bytes.count, by: 2) { bytes[j] = 0x00; bytes[j + 1] = 0x7E }  // f16 NaN
            try bytes.write(to: URL(fileURLWithPath: npy))
        }
        guard case .failure(let nan) = retrieve(a, id: "nan") else { Issue.record("NaN shards gave an empty retrieval"); return }
        #expect(nan.field == "params.passages_embeddings" && nan.message.contains("were not numbers"), "\(nan)")
        // Shards of no rows: refused, where every question got no passage.
        for i in 0..<2 {
            var header = "{'descr': '<f2', 'fortran_order': False, 'shape': (0, \(width)), }"
            header += String(repeating: " ", count: 127 - 10 - header.utf8.count) + "\n"
            try (Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count), 0]) + Data(header.utf8))
                .write(to: URL(fileURLWithPath: dir + "/emb/passages_0\(i).npy"))
            try "".write(toFile: dir + "/emb/passages_0\(i).ids", atomically: true, encoding: .utf8)
        }
        guard case .failure(let empty) = retrieve(a, id: "empty") else { Issue.record("searched an empty index"); return }
        #expect(empty.field == "params.passages_embeddings" && empty.message.contains("holds no passages"), "\(empty)")
    }
}

@Suite struct RetrievalExamplesTests {
    /// FiD's passage_retrieval.py command line, with its options that change nothing here (they
    /// were refused as unknown): accepted, and named with why in the run's log.
    @Test func fidsRetrievalCommandLineDecodes() throws {
        let r = RetrievalJobs.registry()
        let flags = ["--model_path", "m", "--passages", "psgs_w100.tsv", "--data", "data.json", "--passages_embeddings", "wiki_*",
                     "--output_path", "retrieved.json", "--n-docs", "100", "--no_fp16", "--validation_workers", "32",
                     "--indexing_batch_size", "50000", "--passage_maxlength", "200", "--per_gpu_batch_size", "64", "--save_or_load_index"]
        let params = try FlagParams.build(flags) { try r.decodeParams(kind: "retrieve", $0) }
        let p = try JSONDecoder().decode(RetrieveParams.self, from: JSONEncoder().encode(params))
        let names = p.ignored.given.map { String($0.split(separator: " ")[0]) }
        // save_or_load_index too: the flat index is the shards, searched in place (FiD saves a faiss copy).
        #expect(p.nDocs == 100 && p.saveOrLoadIndex
                && names == ["no_fp16", "validation_workers", "indexing_batch_size", "passage_maxlength", "save_or_load_index"],
                "\(p.ignored)")
        // With an index it builds, the option saves it and is not named.
        let sq8 = try FlagParams.build(flags + ["--index", "sq8"]) { try r.decodeParams(kind: "retrieve", $0) }
        let q = try JSONDecoder().decode(RetrieveParams.self, from: JSONEncoder().encode(sq8))
        #expect(q.saveOrLoadIndex && !q.ignored.given.contains { $0.hasPrefix("save_or_load_index") }, "\(q.ignored)")
        // What a descriptor carries leaves them out.
        guard case .object(let encoded) = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(p)) else { return }
        #expect(encoded["no_fp16"] == nil && encoded["n_docs"] == .number(100))
    }

    /// FiD's evaluate_retrieved_passages.py and train/test scripts' command lines: the options
    /// that change nothing here are accepted and named (they were refused as unknown keys).
    @Test func fidsScriptOptionsWithoutEffectAreAcceptedAndNamed() throws {
        func given<P: Decodable>(_ type: P.Type, kind: String, _ flags: [String], _ ignored: (P) -> FiDIgnoredOptions) throws -> [String] {
            let registry = RetrievalJobs.registry()
            registry.register(TrainReaderKind())
            registry.register(ScoreKind())
            let params = try FlagParams.build(flags) { try registry.decodeParams(kind: kind, $0) }
            return ignored(try JSONDecoder().decode(P.self, from: JSONEncoder().encode(params))).given.map { String($0.split(separator: " ")[0]) }
        }
        let base = ["--maxload", "-1", "--local_rank", "0", "--main_port", "10001"]
        #expect(try given(EvaluateRetrievalParams.self, kind: "evaluate_retrieval", ["--data", "d.json", "--validation_workers", "16"], \.ignored)
                == ["validation_workers"])
        #expect(try given(TrainReaderParams.self, kind: "train_reader", ["--train_data", "t.json", "--model_path", "m"] + base, \.ignored)
                == ["maxload", "local_rank", "main_port"])
        // train_reader.py's --dropout (an optim option it never reads: the config's dropout_rate applies).
        #expect(try given(TrainReaderParams.self, kind: "train_reader", ["--train_data", "t.json", "--model_path", "m", "--dropout", "0.1"], \.ignored)
                == ["dropout"])
        #expect(try given(TrainRetrieverParams.self, kind: "train_retriever", ["--train_data", "t.json", "--model_path", "m"] + base, \.ignored)
                == ["maxload", "local_rank", "main_port"])
        #expect(try given(ScoreParams.self, kind: "score", ["--model_path", "m", "--eval_data", "d.json"] + base, \.ignored)
                == ["maxload", "local_rank", "main_port"])
        // test_reader.py's parser has the training options too, and reads none of them.
        #expect(try given(ScoreParams.self, kind: "score", ["--model_path", "m", "--eval_data", "d.json", "--train_data", "none",
                                                            "--eval_freq", "500", "--save_freq", "5000"], \.ignored)
                == ["train_data", "eval_freq", "save_freq"])
    }

    /// `--help` gives a default that depends on other params in words, not the one value the
    /// catalog reads back (`index` said `default flat`, and is pq with n_subquantizers > 0).
    @Test func helpNamesDefaultsThatDependOnOtherParams() throws {
        let lines = ParamsCatalog.helpLines(ParamsCatalog.describe(RetrieveParams.self))
        #expect(lines.contains { $0.contains("--index <string>") && $0.contains("default flat; pq when n_subquantizers > 0") }, "\(lines)")
        // Wrapped lines joined back into one text.
        let train = ParamsCatalog.helpLines(ParamsCatalog.describe(TrainRetrieverParams.self)).joined(separator: " ")
            .split(whereSeparator: { $0 == " " || $0 == "\n" }).joined(separator: " ")
        #expect(train.contains("a model_path start keeps its config's") && train.contains("with no_projection the model's hidden size"), "\(train)")
    }

    /// Every job of queue/examples/retrieval decodes strictly with the kind's params.
    @Test func examplesDecode() throws {
        let dir = TestData.root.appendingPathComponent("queue/examples/retrieval").path
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".json") }.sorted()
        #expect(files.count == 11)
        let registry = RetrievalJobs.registry()
        var embeds = 0
        for f in files {
            let d = try JobDescriptor.parse(Data(contentsOf: URL(fileURLWithPath: dir + "/" + f)), fileName: f)
            try registry.decodeParams(kind: d.kind, d.params)
            if d.kind == "embed" { embeds += 1 }
        }
        #expect(embeds == 8)
    }
}

@Suite struct EmbedResumeTests {
    /// With the next block tokenised while the model embeds this one, the shard still holds
    /// every passage once, in file order: row i equals the model's own embedding of passage i
    /// (passages of different lengths, blocks of 7 in batches of 3, so blocks and length-sorted
    /// batches cut the file differently; a swapped block or row fails).
    @Test func pipelinedBlocksKeepFileOrder() throws {
        let folder = try RetrievalJobs.minilm()
        var tsv = "id\ttext\ttitle\n"
        var titles: [String] = [], texts: [String] = []
        for i in 1...23 {
            let text = "passage \(i) " + Array(repeating: "word\(i % 5) about topic \(i)", count: 1 + (i * 7) % 11).joined(separator: " ")
            tsv += "p\(i)\t\(text)\tTitle \(i)\n"
            titles.append("Title \(i)")
            texts.append(text)
        }
        let dir = TestData.scratch("embed-order")
        try TestData.write(tsv, to: dir + "/psgs.tsv")
        let r = try RetrievalJobs.run(
            "embed", ["model_path": .string(folder), "passages": .string("psgs.tsv"), "output_path": .string("emb/p"), "block_size": .number(7),
                      "no_fp16": .bool(true), "per_gpu_batch_size": .number(3), "passage_maxlength": .number(48)], workspace: dir)
        #expect(RetrievalJobs.number(r["rows"]) == 23)
        let shard = try EmbeddingShard(path: dir + "/emb/p_00.npy")
        #expect(shard.ids == (1...23).map { "p\($0)" })
        let E = shard.dim
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 23 * E)
        defer { scratch.deallocate() }
        let got = Array(UnsafeBufferPointer(start: shard.rows(0, 23, scratch: scratch), count: 23 * E))
        let model = try RetrieverModel.load(folder: folder)
        let want = model.embedPassages(titles: titles, texts: texts, maxLength: 48, batchSize: 64)
        for i in 0..<23 {
            let c = compare("row \(i)", Array(got[(i * E)..<((i + 1) * E)]), Array(want[(i * E)..<((i + 1) * E)]), rtol: 1e-4, atol: 1e-5)
            #expect(c.ok, "\(c)")
        }
    }

    /// FiD's default precision: without `no_fp16` the job embeds at half precision where the CPU
    /// has AVX-512 BF16 (float32 elsewhere) and stores float16; with it, float32 throughout. Each
    /// shard equals the model's own embedding at that precision, within float16's rounding.
    @Test(arguments: [false, true])
    func embedRunsAtFiDsPrecision(noFp16: Bool) throws {
        let folder = try RetrievalJobs.minilm()
        var tsv = "id\ttext\ttitle\n"
        var titles: [String] = [], texts: [String] = []
        for i in 1...9 {
            let text = "passage \(i) on " + Array(repeating: "river \(i) and castle \(i % 4)", count: 2 + i % 5).joined(separator: " ")
            tsv += "\(i)\t\(text)\tTitle \(i)\n"
            titles.append("Title \(i)")
            texts.append(text)
        }
        let dir = TestData.scratch("embed-precision-\(noFp16)")
        try TestData.write(tsv, to: dir + "/psgs.tsv")
        var params: [String: JSONValue] = ["model_path": .string(folder), "passages": .string("psgs.tsv"), "output_path": .string("emb/p"),
                                           "passage_maxlength": .number(40)]
        if noFp16 { params["no_fp16"] = .bool(true) }
        let result = try RetrievalJobs.run("embed", params, workspace: dir)
        let shard = try EmbeddingShard(path: dir + "/emb/p_00.npy")
        let E = shard.dim, n = 9
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: n * E)
        defer { scratch.deallocate() }
        let got = Array(UnsafeBufferPointer(start: shard.rows(0, n, scratch: scratch), count: n * E))
        var model = try RetrieverModel.load(folder: folder)
        let exact = model.embedPassages(titles: titles, texts: texts, maxLength: 40)
        model.halfPrecision = noFp16 ? nil : Gemm.BF16Kernel.fast
        let want = model.embedPassages(titles: titles, texts: texts, maxLength: 40)
        let log = try String(contentsOfFile: dir + "/embed.run/log.txt", encoding: .utf8)
        #expect(result["products"] == .string(model.halfPrecision != nil ? "bfloat16" : "float32"))
        if model.halfPrecision != nil {
            #expect(log.contains("products in bfloat16"), "\(log)")
            #expect(want != exact, "half precision gave float32's embeddings")
        } else {
            #expect(log.contains("products in float32"), "\(log)")
            if !noFp16 { print("⚠︎ embedRunsAtFiDsPrecision: this CPU has no AVX-512 BF16; the default ran (and is checked) in float32") }
        }
        // float16 storage rounds to 11 significant bits (relative 2⁻¹¹); float32 storage is exact.
        let rtol: Float = noFp16 ? 0 : 0x1p-11
        for i in 0..<(n * E) {
            #expect(abs(got[i] - want[i]) <= rtol * abs(want[i]) + (noFp16 ? 0 : 0x1p-24), "element \(i): \(got[i]) vs \(want[i])")
        }
    }

    /// A stop lands after the batch in progress, not at the end of the block (8192 passages by
    /// default: most of an hour on a CPU, and a shard of one block finished and reported done).
    @Test func aStopInsideABlockTakesEffectAfterTheBatch() throws {
        let model = try RetrievalJobs.minilm()
        var tsv = "id\ttext\ttitle\n"
        for i in 1...200 { tsv += "\(i)\tpassage number \(i) talks about topic \(i % 7) and more words \(i * 3)\tTitle \(i)\n" }
        let dir = TestData.scratch("embed-stop")
        try TestData.write(tsv, to: dir + "/psgs.tsv")
        let d = JobDescriptor(kind: "embed", id: "embed", maxAttempts: 1, params: .object([
            "model_path": .string(model), "passages": .string("psgs.tsv"), "output_path": .string("emb/p"),
            "no_fp16": .bool(true), "per_gpu_batch_size": .number(2), "passage_maxlength": .number(32)]))
        var job = ForegroundRun(file: dir + "/embed.json", workspace: dir)
        job.outDir = dir + "/embed.run"
        job.allowedRoots = ["/"]
        job.threads = 2
        let cancel = CancellationToken()
        @Sendable func step() -> Int {
            guard let data = FileManager.default.contents(atPath: dir + "/embed.run/progress.json"),
                  let o = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return 0 }
            return (o["step"] as? NSNumber)?.intValue ?? 0
        }
        let watcher = Thread {
            // Gives up after a minute (an embed that failed early never reaches step 2).
            var waited = 0
            while step() < 2 && waited < 60_000 {
                usleep(1000)
                waited += 1
            }
            cancel.cancel(.shutdown)
        }
        watcher.start()
        #expect(throws: (any Error).self) { try job.run(d, registry: RetrievalJobs.registry(), cancel: cancel) }
        #expect(step() < 200, "the block ran to its end after the stop")
        #expect(!FileManager.default.fileExists(atPath: dir + "/emb/p_00.npy"), "a stopped embed published its shard")
    }

    /// A run stopped after its first checkpointed block resumes there: no row embedded twice, the
    /// shard equal (bits) to an uninterrupted run's, ids in file order.
    @Test func stoppedEmbedResumesAfterItsLastBlock() throws {
        let model = try RetrievalJobs.minilm()
        var tsv = "id\ttext\ttitle\n"
        for i in 1...30 { tsv += "\(i)\tpassage number \(i) talks about topic \(i % 7) and more words \(i * 3)\tTitle \(i)\n" }
        func params() -> [String: JSONValue] {
            ["model_path": .string(model), "passages": .string("psgs.tsv"), "output_path": .string("emb/p"), "block_size": .number(8),
             "no_fp16": .bool(true), "per_gpu_batch_size": .number(4), "passage_maxlength": .number(32)]
        }
        // Uninterrupted.
        let whole = TestData.scratch("embed-whole")
        try TestData.write(tsv, to: whole + "/psgs.tsv")
        _ = try RetrievalJobs.run("embed", params(), workspace: whole)
        // Stopped once the first checkpoint exists, then run again in the same folder.
        let dir = TestData.scratch("embed-resume")
        try TestData.write(tsv, to: dir + "/psgs.tsv")
        let d = JobDescriptor(kind: "embed", id: "embed", maxAttempts: 1, params: .object(params()))
        let job = try RetrievalJobs.stopAfterFirstCheckpoint(d, in: dir)
        #expect(!FileManager.default.fileExists(atPath: dir + "/emb/p_00.npy"), "a stopped embed published its shard")
        // Taken over on a host that mounts the storage elsewhere: the checkpoint's paths are the
        // first host's, its files' stamps the same; it resumes.
        let checkpoints = dir + "/embed.run/out/checkpoint"
        for step in try FileManager.default.contentsOfDirectory(atPath: checkpoints) where step.hasPrefix("step-") {
            let rows = URL(fileURLWithPath: checkpoints + "/" + step + "/rows.json")
            var saved = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: rows)) as? [String: Any])
            for key in ["passages", "model"] { saved[key] = "/mnt/first-host" + (try #require(saved[key] as? String)) }
            var file = try #require(saved["file"] as? [String: Any])
            file["path"] = "/mnt/first-host" + (try #require(file["path"] as? String))
            saved["file"] = file
            #expect((saved["model_files"] as? [Any])?.isEmpty == false)
            try JSONSerialization.data(withJSONObject: saved).write(to: rows)
        }
        let again = try job.run(d, registry: RetrievalJobs.registry())
        guard case .object(let r) = again else { Issue.record("no result"); return }
        let resumed = RetrievalJobs.number(r["resumed_from"]) ?? 0
        #expect(resumed >= 8 && resumed < 30, "resumed_from \(resumed)")
        let a = try EmbeddingShard(path: whole + "/emb/p_00.npy"), b = try EmbeddingShard(path: dir + "/emb/p_00.npy")
        #expect(b.ids == (1...30).map(String.init) && a.ids == b.ids)
        let sa = UnsafeMutablePointer<Float>.allocate(capacity: 30 * a.dim), sb = UnsafeMutablePointer<Float>.allocate(capacity: 30 * a.dim)
        defer { sa.deallocate(); sb.deallocate() }
        #expect(Array(UnsafeBufferPointer(start: a.rows(0, 30, scratch: sa), count: 30 * a.dim))
            == Array(UnsafeBufferPointer(start: b.rows(0, 30, scratch: sb), count: 30 * b.dim)))
    }

    /// A `model_path` naming a checkpoint's `latest` that moved on between attempts (training went
    /// on): the earlier attempt's blocks came from another retriever, so the shard starts over
    /// rather than holding two retrievers' rows.
    @Test func aResumeWithAnotherModelFolderStartsOver() throws {
        let base = TestData.scratch("embed-model")
        _ = try ExampleWorld(config: ExampleWorldConfig(seed: 3, train: 40, dev: 30)).write(to: base + "/world")
        let a = try SavedIndexTests.retriever(base, world: base + "/world", seed: 1)
        let b = try SavedIndexTests.retriever(base, world: base + "/world", seed: 2)
        func params(_ model: String) -> [String: JSONValue] {
            ["model_path": .string(model), "passages": .string(base + "/world/passages.tsv"), "output_path": .string("emb/p"),
             "block_size": .number(16), "no_fp16": .bool(true), "per_gpu_batch_size": .number(8), "passage_maxlength": .number(24)]
        }
        let whole = TestData.scratch("embed-model-whole")
        _ = try RetrievalJobs.run("embed", params(b), workspace: whole)
        let dir = TestData.scratch("embed-model-resume"), fm = FileManager.default
        try fm.createDirectory(atPath: dir + "/ckpt", withIntermediateDirectories: true)
        try fm.copyItem(atPath: a, toPath: dir + "/ckpt/step-1")
        try fm.copyItem(atPath: b, toPath: dir + "/ckpt/step-2")
        try TestData.write("step-1\n", to: dir + "/ckpt/latest")
        let d = JobDescriptor(kind: "embed", id: "embed", maxAttempts: 1, params: .object(params("ckpt/latest")))
        let job = try RetrievalJobs.stopAfterFirstCheckpoint(d, in: dir)
        try TestData.write("step-2\n", to: dir + "/ckpt/latest")
        guard case .object(let r) = try job.run(d, registry: RetrievalJobs.registry()) else { Issue.record("no result"); return }
        #expect(RetrievalJobs.number(r["resumed_from"]) == 0)
        let log = try String(contentsOfFile: dir + "/embed.run/log.txt", encoding: .utf8)
        #expect(log.contains("its rows were embedded by \(dir)/ckpt/step-1, this attempt reads \(dir)/ckpt/step-2"), "\(log)")
        let x = try EmbeddingShard(path: whole + "/emb/p_00.npy"), y = try EmbeddingShard(path: dir + "/emb/p_00.npy")
        #expect(x.ids == y.ids && x.count == y.count)
        let sx = UnsafeMutablePointer<Float>.allocate(capacity: x.count * x.dim), sy = UnsafeMutablePointer<Float>.allocate(capacity: y.count * y.dim)
        defer { sx.deallocate(); sy.deallocate() }
        #expect(Array(UnsafeBufferPointer(start: x.rows(0, x.count, scratch: sx), count: x.count * x.dim))
            == Array(UnsafeBufferPointer(start: y.rows(0, y.count, scratch: sy), count: y.count * y.dim)), "every row is step-2's")
    }

    /// The passages file edited in place between two attempts: the checkpoint's rows embedded the
    /// old texts, so the shard is embedded again from its start (it resumed, and its record's
    /// samples, read from the new file, hid the mix from retrieve).
    @Test func aResumeAfterThePassagesFileChangedStartsOver() throws {
        let base = TestData.scratch("embed-edited")
        _ = try ExampleWorld(config: ExampleWorldConfig(seed: 3, train: 40, dev: 30)).write(to: base + "/world")
        let model = try SavedIndexTests.retriever(base, world: base + "/world", seed: 1)
        let tsv = base + "/world/passages.tsv"
        let d = JobDescriptor(kind: "embed", id: "embed", maxAttempts: 1, params: .object([
            "model_path": .string(model), "passages": .string(tsv), "output_path": .string("emb/p"), "block_size": .number(16),
            "no_fp16": .bool(true), "per_gpu_batch_size": .number(8), "passage_maxlength": .number(24)]))
        let dir = TestData.scratch("embed-edited-run")
        let job = try RetrievalJobs.stopAfterFirstCheckpoint(d, in: dir)
        var lines = try String(contentsOfFile: tsv, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let cells = lines[1].split(separator: "\t", omittingEmptySubsequences: false)
        lines[1] = cells[0] + "\tthe weather was mild all week .\t" + cells[2]
        try lines.joined(separator: "\n").write(toFile: tsv, atomically: true, encoding: .utf8)
        guard case .object(let r) = try job.run(d, registry: RetrievalJobs.registry()) else { Issue.record("no result"); return }
        #expect(RetrievalJobs.number(r["resumed_from"]) == 0)
        let log = try String(contentsOfFile: dir + "/embed.run/log.txt", encoding: .utf8)
        // The stop lands after the first block or a later one (the watcher polls).
        #expect(log.contains("not resuming the checkpoint after ") && log.contains(" rows: \(tsv) changed since its rows were embedded"), "\(log)")
    }

    /// A folder's checkpoint is resumed only by the shard it belongs to, and only while its blocks
    /// exist: another shard in the same folder (a stopped shard 0 there) is refused by the
    /// foreground, and where nothing recorded the run, starts from its own first row; a finished
    /// shard run again (its blocks joined and removed) embeds it again.
    @Test func embedResumesOnlyItsOwnShardsBlocks() throws {
        let model = try RetrievalJobs.minilm()
        var tsv = "id\ttext\ttitle\n"
        for i in 1...30 { tsv += "\(i)\tpassage number \(i) talks about topic \(i % 7) and more words \(i * 3)\tTitle \(i)\n" }
        func params(shard: Int) -> [String: JSONValue] {
            ["model_path": .string(model), "passages": .string("psgs.tsv"), "output_path": .string("emb/p"), "block_size": .number(4),
             "no_fp16": .bool(true), "per_gpu_batch_size": .number(4), "passage_maxlength": .number(32),
             "shard_id": .number(Double(shard)), "num_shards": .number(2)]
        }
        let whole = TestData.scratch("embed-shard1-whole")
        try TestData.write(tsv, to: whole + "/psgs.tsv")
        _ = try RetrievalJobs.run("embed", params(shard: 1), workspace: whole)
        let dir = TestData.scratch("embed-shared-folder")
        try TestData.write(tsv, to: dir + "/psgs.tsv")
        let d0 = JobDescriptor(kind: "embed", id: "embed", maxAttempts: 1, params: .object(params(shard: 0)))
        let d1 = JobDescriptor(kind: "embed", id: "embed", maxAttempts: 1, params: .object(params(shard: 1)))
        let job = try RetrievalJobs.stopAfterFirstCheckpoint(d0, in: dir)
        // The foreground refuses another shard in the folder (its run.json names shard 0)...
        do {
            _ = try job.run(d1, registry: RetrievalJobs.registry())
            Issue.record("shard 1 ran in shard 0's folder")
        } catch let e as JobError {
            #expect(e.field == "--out" && e.message.contains("shard_id: 0 there, 1 here"), "\(e)")
        }
        // ...and without that record (a folder of an earlier fidq) the kind's own check holds.
        try FileManager.default.removeItem(atPath: dir + "/embed.run/run.json")
        for round in 0..<2 {  // beside shard 0's stopped blocks, then after its own finished run
            guard case .object(let r) = try job.run(d1, registry: RetrievalJobs.registry()) else { Issue.record("no result"); return }
            #expect(RetrievalJobs.number(r["resumed_from"]) == 0 && RetrievalJobs.number(r["rows"]) == 15, "round \(round): \(r)")
            let a = try EmbeddingShard(path: whole + "/emb/p_01.npy"), b = try EmbeddingShard(path: dir + "/emb/p_01.npy")
            #expect(b.ids == (16...30).map(String.init) && a.ids == b.ids, "round \(round): \(b.ids)")
            let sa = UnsafeMutablePointer<Float>.allocate(capacity: 15 * a.dim), sb = UnsafeMutablePointer<Float>.allocate(capacity: 15 * a.dim)
            defer { sa.deallocate(); sb.deallocate() }
            #expect(Array(UnsafeBufferPointer(start: a.rows(0, 15, scratch: sa), count: 15 * a.dim))
                == Array(UnsafeBufferPointer(start: b.rows(0, 15, scratch: sb), count: 15 * b.dim)), "round \(round)")
        }
        let log = try String(contentsOfFile: dir + "/embed.run/log.txt", encoding: .utf8)
        #expect(log.contains("this shard is 15..<30") && log.contains("is gone"), "\(log.suffix(2000))")
    }
}

/// A length param beyond the retriever's position table is refused (by `validateInputs`, which
/// submit and every run call), naming the param, the limit and the config: the first row that
/// long trapped in the encoder and took the process (a queue worker with it) down.
@Suite struct RetrieverLengthTests {
    @Test func setLengthsBeyondThePositionTableAreRefusedAndDefaultsLowered() throws {
        let dir = TestData.scratch("lengths")
        let world = dir + "/world"
        _ = try ExampleWorld(config: ExampleWorldConfig(seed: 3, train: 40, dev: 30)).write(to: world)
        let model = try SavedIndexTests.retriever(dir, world: world, seed: 1)
        let limit = try BertConfig.load(path: model + "/config.json").maxPositionEmbeddings
        // One passage longer than the table, so the run would reach it.
        let long = (0..<(limit + 50)).map { _ in "anna" }.joined(separator: " ")
        try TestData.write("id\ttext\ttitle\n1\t\(long)\tAnna\n2\tshort\tBob\n", to: dir + "/long.tsv")
        try TestData.write(#"[{"id": "q1", "question": "\#(long)", "answers": ["x"]}]"#, to: dir + "/q.json")
        _ = try RetrievalJobs.run("embed", ["model_path": .string(model), "passages": .string("long.tsv"), "output_path": .string("emb/p"),
                                            "passage_maxlength": .number(Double(limit))], workspace: dir, id: "embed-ok")
        let jobs: [(kind: String, field: String, params: [String: JSONValue])] = [
            ("embed", "passage_maxlength", ["model_path": .string(model), "passages": .string("long.tsv"), "output_path": .string("emb/q"),
                                            "passage_maxlength": .number(Double(limit + 1))]),
            ("retrieve", "question_maxlength", ["model_path": .string(model), "passages": .string("long.tsv"), "data": .string("q.json"),
                                                "passages_embeddings": .string("emb/p_*"), "output_path": .string("r.json"),
                                                "question_maxlength": .number(Double(limit + 1))]),
            ("train_retriever", "passage_maxlength", ["model_path": .string(model), "train_data": .string("world/train_scored.json"),
                                                      "passage_maxlength": .number(Double(limit + 1)), "total_steps": .number(1)]),
            ("train_retriever", "question_maxlength", ["model_config": .string("world/retriever/config.json"),
                                                       "tokenizer": .string("world/retriever/vocab.txt"),
                                                       "train_data": .string("world/train_scored.json"),
                                                       "question_maxlength": .number(Double(limit + 1)), "total_steps": .number(1)]),
        ]
        for (n, job) in jobs.enumerated() {
            func check(_ e: JobError, _ when: String) {
                #expect(e.field == "params." + job.field && e.message.contains("at most \(limit) tokens") && e.message.contains("config.json")
                        && e.message.contains("found \(limit + 1)") && e.hint?.contains("\(limit) or less") == true, "\(when) \(job.kind): \(e)")
            }
            do {
                _ = try RetrievalJobs.run(job.kind, job.params, workspace: dir, id: "run-\(n)")
                Issue.record("\(job.kind) ran with \(job.field) \(limit + 1)")
            } catch let e as JobError { check(e, "run") }
        }

        // A default beyond a smaller table (FiD's 200 and 40 here) is lowered to it, and said.
        var small = try BertConfig.load(path: world + "/retriever/config.json")
        small.maxPositionEmbeddings = 16
        let tiny = BertRetriever(config: small)
        tiny.initialize(seed: 1)
        try tiny.save(folder: dir + "/tiny", tokenizer: world + "/retriever/vocab.txt")
        for (kind, params) in [("embed", ["model_path": JSONValue.string("tiny"), "passages": .string("long.tsv"), "output_path": .string("emb/t")]),
                               ("retrieve", ["model_path": .string("tiny"), "passages": .string("long.tsv"), "data": .string("q.json"),
                                             "passages_embeddings": .string("emb/t_*"), "output_path": .string("t.json")]),
                               ("train_retriever", ["model_path": .string("tiny"), "train_data": .string("world/train_scored.json"),
                                                    "total_steps": .number(1), "n_context": .number(2)])] {
            _ = try RetrievalJobs.run(kind, params, workspace: dir, id: "tiny-" + kind)
            let log = try String(contentsOfFile: dir + "/tiny-\(kind).run/log.txt", encoding: .utf8)
            #expect(log.contains("exceeds max_position_embeddings 16") && log.contains("rows are truncated to 16 tokens"), "\(kind): \(log)")
        }
    }

    /// A batch whose pass alone cannot fit in memory is refused naming per_gpu_batch_size (the
    /// allocation stopped the process); the bound is one BERT layer's scores and hidden states.
    @Test func aBatchWhosePassCannotFitIsRefused() throws {
        var c = BertConfig(vocabSize: 10, hiddenSize: 8, layers: 1, heads: 2, intermediateSize: 16)
        c.numAttentionHeads = 2
        #expect(c.passBytes(sequences: 3, length: 5) == Double(4 * (3 * 2 * 5 * 5 + 3 * 5 * 8)))
        let need = Int(c.passBytes(sequences: 3, length: 5))
        try c.checkMemory(sequences: 3, length: 5, shape: "x", available: need)
        #expect(throws: JobError.self) { try c.checkMemory(sequences: 3, length: 5, shape: "x", available: need - 1) }
        // Training's batch × (1 + n_context) rows past Int (it trapped, taking the worker down),
        // naming the larger factor.
        let huge = #expect(throws: JobError.self) {
            try c.checkMemory(sequences: 8, perQuestion: 1 + Double(Int.max), length: 5, shape: "x", available: need)
        }
        #expect(huge?.field == "params.n_context", "\(String(describing: huge))")
        let wide = #expect(throws: JobError.self) { try c.checkMemory(sequences: 1 << 40, perQuestion: 2, length: 5, shape: "x", available: need) }
        #expect(wide?.field == "params.per_gpu_batch_size", "\(String(describing: wide))")

        let dir = TestData.scratch("hugebatch")
        _ = try ExampleWorld(config: ExampleWorldConfig(seed: 3, train: 40, dev: 30)).write(to: dir + "/world")
        do {
            _ = try RetrievalJobs.run("train_retriever", ["model_config": .string("world/retriever/config.json"), "tokenizer": .string("world/retriever/vocab.txt"),
                                                          "train_data": .string("world/train_scored.json"), "per_gpu_batch_size": .number(1e9)],
                                      workspace: dir)
            Issue.record("a batch of 1e9 questions was run")
        } catch let e as JobError {
            #expect(e.field == "params.per_gpu_batch_size" && e.message.contains("GiB") && e.message.contains("per_gpu_batch_size 1000000000"), "\(e)")
        }
    }
}
