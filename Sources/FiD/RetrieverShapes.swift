// RetrieverShapes: token lengths a BERT retriever can embed (its position table) and batches that fit in memory, checked before any work.
import Jobs
import Models
import Tensor

extension BertConfig {
    /// The length to use for the length param `name`: `value` when the position table holds it.
    /// Beyond `max_position_embeddings` BERT has no position embedding, and the first row that
    /// long would stop the process (a queue worker with it): a default (FiD's, or the model's own
    /// when unset) is lowered to the table with a note for the log; a value the user set is refused.
    /// - Throws: `JobError.permanent` naming `params.<name>`, the limit, the config and the value.
    func fitLength(_ name: String, _ value: Int, isDefault: Bool, configFile: String) throws -> (length: Int, note: String?) {
        guard value > maxPositionEmbeddings else { return (value, nil) }
        if isDefault {
            return (maxPositionEmbeddings, "\(name) \(value) (the default) exceeds max_position_embeddings \(maxPositionEmbeddings) "
                        + "in \(configFile): rows are truncated to \(maxPositionEmbeddings) tokens")
        }
        throw JobError.permanent(
            "expected at most \(maxPositionEmbeddings) tokens (max_position_embeddings in \(configFile)), found \(value)",
            field: "params." + name, hint: "set \(name) to \(maxPositionEmbeddings) or less; longer rows are truncated to it")
    }

    /// A lower bound of the bytes one pass over `sequences` rows of `length` tokens holds at once:
    /// one layer's attention scores (S, H, L, L) and its hidden states (S, L, D). In Double, as an
    /// absurd setting overflows Int.
    func passBytes(sequences: Double, length: Int) -> Double {
        let S = sequences, L = Double(length)
        return 4 * (S * Double(numAttentionHeads) * L * L + S * L * Double(hiddenSize))
    }

    /// Refuses a batch whose pass alone (`passBytes`) exceeds the memory this process may use:
    /// the allocation would stop the process (a queue worker with it).
    /// - Throws: `JobError.permanent` naming `params.per_gpu_batch_size`, the shape and both figures.
    /// `perQuestion`: rows per batch item (`1 + n_context` in training, whose product with the
    /// batch is taken in Double: absurd settings overflowed Int and stopped the worker); the field
    /// named is the larger factor's.
    func checkMemory(sequences: Int, perQuestion: Double = 1, length: Int, shape: String, available: Int = AvailableMemory.bytes) throws {
        let rows = Double(sequences) * perQuestion
        let need = passBytes(sequences: rows, length: length)
        guard need > Double(available) else { return }
        let gib = AvailableMemory.gib
        let byContext = perQuestion > Double(sequences)
        throw JobError.permanent(
            "\(shape): \(rows < 1e15 ? String(Int(rows)) : String(format: "%.2e", rows)) sequences of \(length) tokens need at least \(gib(need)) GiB "
                + "for one BERT layer's attention alone, more than the \(gib(Double(available))) GiB this process may use",
            field: byContext ? "params.n_context" : "params.per_gpu_batch_size", hint: byContext ? "lower n_context" : "lower per_gpu_batch_size")
    }
}

extension TrainRetrieverParams {
    /// Refuses an `indexing_dimension` given with `no_projection` that is not the model's width:
    /// without a projection the embeddings are the hidden states (FiD asserts the same, for its
    /// 768-wide BERT), and the value would be dropped without a word.
    func checkHead(_ config: BertConfig, configFile: String) throws {
        guard noProjection, indexingDimensionGiven, indexingDimension != config.hiddenSize else { return }
        throw JobError.permanent(
            "with no_projection the embeddings are the model's hidden states, \(config.hiddenSize) wide (hidden_size in \(configFile)); "
                + "found indexing_dimension \(indexingDimension)",
            field: "params.indexing_dimension",
            hint: "leave indexing_dimension out (or give \(config.hiddenSize)), or drop no_projection to learn a projection to \(indexingDimension)")
    }

    /// These params with both lengths fitted to the start model's position table (`fitLength`);
    /// each lowered default is passed to `log`.
    func fittingLengths(_ config: BertConfig, configFile: String, log: (String) -> Void = { _ in }) throws -> TrainRetrieverParams {
        var p = self
        let q = try config.fitLength("question_maxlength", questionMaxlength, isDefault: questionMaxlength == Self.defaultQuestionMaxlength,
                                     configFile: configFile)
        let s = try config.fitLength("passage_maxlength", passageMaxlength, isDefault: passageMaxlength == Self.defaultPassageMaxlength,
                                     configFile: configFile)
        (p.questionMaxlength, p.passageMaxlength) = (q.length, s.length)
        for note in [q.note, s.note].compactMap({ $0 }) { log("train_retriever: " + note) }
        return p
    }
}
