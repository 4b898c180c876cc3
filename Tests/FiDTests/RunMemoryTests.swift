// RunMemoryTests: train_reader and score size their runs before running them: evaluation
// batches shrink to what fits (logged), and a run that cannot fit is refused naming its params.
import Foundation
import Testing
@testable import FiD
@testable import Jobs
import Models
import Tensor

struct RunMemoryTests {
    let config = T5Config(vocabSize: 64, dModel: 32, dKV: 8, dFF: 64, numLayers: 2, numDecoderLayers: 2, numHeads: 4,
                          numBuckets: 8, maxDistance: 20)
    let format = FiDFormat(nContext: 6, textMaxLength: 40, answerMaxLength: 8)

    func params(_ extra: String = "") throws -> TrainReaderParams {
        try JSONDecoder().decode(TrainReaderParams.self, from: Data(
            #"{"train_data": "t.json", "eval_data": "d.json", "model_config": "c.json", "tokenizer": "t.json", "n_context": 6\#(extra)}"#.utf8))
    }

    func context(_ lines: LogLines) -> JobContext {
        let dir = NSTemporaryDirectory() + "fidq-readermemory-\(UUID().uuidString)"
        return JobContext(id: "x", kind: "train_reader", attempt: 1, maxAttempts: 1, folder: dir,
                          paths: PathPolicy(workspace: dir, queue: dir + "/queue"), fs: PosixFileSystem(), cancellation: CancellationToken(),
                          progress: ProgressReporter(path: nil, fs: PosixFileSystem(), bar: false, label: "x", line: nil),
                          log: JobLog(path: nil, fs: PosixFileSystem(), echo: { lines.add($0) }), threads: 1)
    }

    final class LogLines: @unchecked Sendable {
        private let lock = NSLock()
        private var items: [String] = []
        func add(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
    }

    /// The need grows with the evaluation batch (its encoder pass and decoding caches); with
    /// room for 8 questions the run keeps 8, with less it takes the most that fits and says so,
    /// and with too little for per_gpu_batch_size itself it is refused before anything runs.
    @Test func evaluationBatchesShrinkToFitAndARunThatCannotFitIsRefused() throws {
        let model = T5Model(config: config)
        let p = try params()
        let need = (1...8).map { RunMemory.training(model, format, batch: 1, evalBatch: $0).withHeadroom }
        #expect(zip(need, need.dropFirst()).allSatisfy { $0 < $1 }, "\(need)")
        let plenty = context(LogLines())
        #expect(try TrainReaderKind.evalBatchSize(model, format, p, plenty, available: Int(need[7]) + 1) == 8)
        let lines = LogLines()
        #expect(try TrainReaderKind.evalBatchSize(model, format, p, context(lines), available: Int(need[4]) + 1) == 5)
        #expect(lines.all.contains { $0.contains("evaluation batches of 5 questions, not 8") }, "\(lines.all)")
        #expect(lines.all.contains { $0.contains("memory: about") }, "\(lines.all)")
        let e = #expect(throws: JobError.self) { try TrainReaderKind.evalBatchSize(model, format, p, plenty, available: Int(need[0]) - 1) }
        #expect(e?.field == "params.n_context" && e?.message.contains("n_context 6 passages of text_maxlength 40") == true
                && e?.message.contains("weights, gradients and optimizer state") == true, "\(String(describing: e))")
        // Training state is four copies of the weights and a fifth for saving; scoring holds one.
        let s = try JSONDecoder().decode(ScoreParams.self, from: Data(#"{"model_path": "m", "eval_data": "d.json", "n_context": 6}"#.utf8))
        #expect(RunMemory.training(model, format, batch: 1, evalBatch: 1).parameters == 5 * RunMemory.scoring(model, s).parameters)
        // use_checkpoint keeps one encoder block's activations: less need.
        model.useCheckpoint = true
        #expect(RunMemory.training(model, format, batch: 1, evalBatch: 1).withHeadroom < need[0])
    }

    /// train_retriever the same: evaluation batches shrink to what fits, and a training batch
    /// that cannot fit is refused naming n_context (only one BERT layer's attention was checked:
    /// about 2.5 MB a passage where a bert-base step holds about 190 MB).
    @Test func retrieverEvaluationBatchesShrinkAndARunThatCannotFitIsRefused() throws {
        let model = BertRetriever(config: BertConfig(vocabSize: 30, hiddenSize: 16, layers: 2, heads: 2, intermediateSize: 24, maxPositions: 64))
        let p = try JSONDecoder().decode(TrainRetrieverParams.self, from: Data(
            #"{"train_data": "t.json", "eval_data": "d.json", "model_path": "m", "n_context": 5, "question_maxlength": 8, "passage_maxlength": 20}"#.utf8))
        let need = (1...8).map { RunMemory.retrieverTraining(model, p, batch: 1, evalBatch: $0).withHeadroom }
        #expect(zip(need, need.dropFirst()).allSatisfy { $0 < $1 }, "\(need)")
        let lines = LogLines()
        #expect(try TrainRetrieverKind.evalBatchSize(model, p, context(lines), available: Int(need[2]) + 1) == 3)
        #expect(lines.all.contains { $0.contains("evaluation batches of 3 questions, not 8") }, "\(lines.all)")
        let e = #expect(throws: JobError.self) { try TrainRetrieverKind.evalBatchSize(model, p, context(LogLines()), available: Int(need[0]) - 1) }
        #expect(e?.field == "params.n_context" && e?.message.contains("(1 + n_context 5) rows") == true
                && e?.hint?.contains("passage_maxlength") == true && e?.hint?.contains("use_checkpoint") == false, "\(String(describing: e))")
    }
}
