// RunMemory: what a train_reader, score or train_retriever job will hold (weights and optimizer
// state, the activation arena from the model's `plannedActivationBytes`, the decoding caches),
// checked before anything runs, so a shape that cannot fit is refused naming its params instead of aborting in
// an allocation mid-step (a worker dies with it, and its job goes stale).
import Jobs
import Models
import Tensor

struct RunMemory {
    /// Weights, and in training their gradients and AdamW's two moments.
    var parameters: Double
    /// The activation arena after the job's passes.
    var activations: Double
    /// Logits (and their gradient), the decoding step's caches.
    var other: Double
    var total: Double { parameters + activations + other }
    /// What the check compares with the limit: the plan counts the model's buffers, not the
    /// process around them (code, allocator arenas, thread stacks, tokenizer, data index: the
    /// measured peaks ran 5–10 % over the plan, and `ulimit -v` counts reserved address space).
    /// Under `ulimit -v` / `-d` the process is already counted (`AvailableMemory` subtracts its
    /// mappings): the 0.5 GiB allowance for it would count it twice.
    var withHeadroom: Double { total * 1.15 + (AvailableMemory.limitCountsProcess ? 0 : 512 * 1_048_576) }

    /// A train_reader run: training steps of `batch` questions, then greedy evaluation of
    /// `evalBatch` questions (its encoder pass and `T5Stepper`'s caches).
    static func training(_ model: T5Model, _ format: FiDFormat, batch: Int, evalBatch: Int) -> RunMemory {
        let c = model.config, P = format.nContext, L = format.textMaxLength
        // Answers FiD pads to answer_maxlength; without it, to the batch's longest: a typical 20.
        let T = format.answerMaxLength > 0 ? format.answerMaxLength : 20
        let generated = format.answerMaxLength > 0 ? format.answerMaxLength + 1 : ScoreParams.maxLength
        let passes = [
            T5PlannedPass(.train, questions: batch, passages: P, length: L, target: T),
            T5PlannedPass(.encode, questions: evalBatch, passages: P, length: L, target: 1),
        ]
        // Parameters, gradients, two moments, and the copy a checkpoint's save writes from.
        let parameters = 5 * 4 * Double(model.layout.count)
        // Logits, their gradient and the loss's softmax (T·V each, outside the arena).
        let logits = 3 * 4 * Double(batch * T) * Double(c.vocabSize)
        let decoding = T5Stepper.bytes(c, questions: evalBatch, passages: P, passageLength: L, beams: 1, maxLength: generated)
        return RunMemory(parameters: parameters, activations: model.plannedActivationBytes(passes), other: logits + decoding)
    }

    /// A score job: each batch's encoder pass, then decoding (`T5Stepper`, which also records
    /// the passage scores) with its caches.
    static func scoring(_ model: T5Model, _ p: ScoreParams) -> RunMemory {
        let c = model.config, B = p.perGpuBatchSize, P = p.nContext, L = p.textMaxlength
        let passes = [T5PlannedPass(.encode, questions: B, passages: P, length: L, target: 1)]
        let decoding = T5Stepper.bytes(c, questions: B, passages: P, passageLength: L, beams: p.numBeams, maxLength: ScoreParams.maxLength)
        return RunMemory(parameters: 4 * Double(model.layout.count), activations: model.plannedActivationBytes(passes), other: decoding)
    }

    /// A train_retriever run: training steps of `batch` questions with n_context passages each,
    /// then evaluation forwards of `evalBatch` questions; rows at the maximum lengths (batches
    /// pad to their longest row, at most those).
    static func retrieverTraining(_ model: BertRetriever, _ p: TrainRetrieverParams, batch: Int, evalBatch: Int) -> RunMemory {
        let passes = [
            BertPlannedPass(.train, questions: batch, passages: p.nContext, questionLength: p.questionMaxlength, passageLength: p.passageMaxlength),
            BertPlannedPass(.eval, questions: evalBatch, passages: p.nContext, questionLength: p.questionMaxlength, passageLength: p.passageMaxlength),
        ]
        return RunMemory(parameters: 5 * 4 * Double(model.layout.count), activations: model.plannedActivationBytes(passes), other: 0)
    }

    /// The evaluation batch of a training run: `wanted` questions, fewer (logged) when the run
    /// would not fit with them, down to `batch`; a run that does not fit even so is refused by
    /// `check` with `shape`. `need` gives the run's memory for an evaluation batch.
    static func evaluationBatch(wanted: Int, batch: Int, label: String, context: JobContext, available: Int,
                                need: (Int) -> RunMemory, refuse: (RunMemory) throws -> Void) throws -> Int {
        for size in stride(from: wanted, through: batch, by: -1) {
            let m = need(size)
            guard m.withHeadroom <= Double(available) else { continue }
            if size < wanted {
                context.log("\(label): evaluation batches of \(size) questions, not \(wanted): \(wanted) would need about "
                    + "\(AvailableMemory.gib(need(wanted).withHeadroom)) GiB with the process around the model's buffers, "
                    + "more than the \(AvailableMemory.gib(Double(available))) GiB this process may use")
            }
            context.log("\(label): " + m.note(available: available))
            return size
        }
        try refuse(need(batch))
        return batch
    }

    /// The log line of an accepted run: the estimate against the limit.
    func note(available: Int = AvailableMemory.bytes) -> String {
        let gib = AvailableMemory.gib
        return "memory: about \(gib(total)) GiB (parameters \(gib(parameters)), activations \(gib(activations))"
            + (other > 0 ? ", logits and decoding \(gib(other))" : "") + ") of the \(gib(Double(available))) GiB this process may use"
    }

    /// Refuses a job whose need exceeds `available`, naming the params that set the shape.
    func check(_ shape: String, available: Int = AvailableMemory.bytes, training: Bool,
               lengths: String = "text_maxlength", checkpointHint: Bool? = nil) throws {
        let checkpointHint = checkpointHint ?? training
        guard withHeadroom > Double(available) else { return }
        let gib = AvailableMemory.gib
        throw JobError.permanent(
            "\(shape) need about \(gib(total)) GiB (weights\(training ? ", gradients and optimizer state" : "") \(gib(parameters)), "
                + "activations \(gib(activations))" + (other > 0 ? ", logits and decoding \(gib(other))" : "")
                + "; \(gib(withHeadroom)) with the process around them), more than the \(gib(Double(available))) GiB this process may use",
            field: "params.n_context",
            hint: "lower n_context, \(lengths) or per_gpu_batch_size"
                + (checkpointHint ? "; use_checkpoint keeps one encoder block's activations instead of one per block" : "")
                + ", or run where more memory is allowed"
                + (AvailableMemory.limitCountsProcess ? " (under ulimit -v the process's mappings count, mapped data files included)" : ""))
    }
}
