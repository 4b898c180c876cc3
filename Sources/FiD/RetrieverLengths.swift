// RetrieverLengths: token lengths a BERT retriever can embed (its position table), fitted before any work.
import Jobs
import Models

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
}

extension TrainRetrieverParams {
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
