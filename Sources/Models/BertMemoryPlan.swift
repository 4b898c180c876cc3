// BertMemoryPlan: the activation arena a retriever pass will hold, computed before running it
// (as T5MemoryPlan for the reader), so train_retriever can refuse a shape that cannot fit.

/// One pass of the retriever: a training step (forward with dropout and backward) or an eval
/// forward over `questions` questions of `questionLength` tokens with `passages` passages each
/// of `passageLength` tokens, or `embed` of `questions` rows of `questionLength` tokens.
public struct BertPlannedPass: Sendable {
    public enum Mode: Sendable { case train, eval, embed }
    public var mode: Mode
    public var questions: Int, passages: Int, questionLength: Int, passageLength: Int

    public init(_ mode: Mode, questions: Int, passages: Int = 0, questionLength: Int, passageLength: Int = 0) {
        self.mode = mode
        self.questions = questions
        self.passages = passages
        self.questionLength = questionLength
        self.passageLength = passageLength
    }
}

extension BertRetriever {
    /// The bytes `activationBytes` reports after running `passes` in order on a fresh model: the
    /// arena's buffers replayed by name and size as `forward`, `backward` and `embed` take them.
    /// In Double. The (rows, E) embeddings, scores and loss outside the arena are not counted.
    /// Its twin test (`BertMemoryPlanTests`) runs the passes and compares.
    public func plannedActivationBytes(_ passes: [BertPlannedPass]) -> Double {
        var slots: [String: Double] = [:]
        func A(_ name: String, _ count: Double) { slots[name] = max(slots[name] ?? 0, max(count, 1)) }
        let D = Double(config.D), F = Double(config.intermediateSize), H = Double(config.numAttentionHeads)
        let E = Double(embeddingWidth), layers = config.numHiddenLayers
        func layerNorm(_ pre: String, _ rows: Double) { A(pre + ".mean", rows); A(pre + ".rstd", rows) }

        func encoder(_ pre: String, n: Double, L: Double, training: Bool, keep: Bool) {
            let N = n * L
            let hidden = training ? Double(config.hiddenDropoutProb) : 0, attention = training ? Double(config.attentionProbsDropoutProb) : 0
            A(pre + ".mask", N); A(pre + ".emb", N * D); A(pre + ".x0", N * D); layerNorm(pre + ".embln", N)
            if hidden > 0 { A(pre + ".embdrop", N * D) }
            for l in 0..<layers {
                let lp = keep ? "\(pre).\(l)" : "\(pre).inf"
                A(keep ? "\(pre).x\(l + 1)" : "\(pre).inf\((l + 1) % 2).x", N * D)
                A(lp + ".q", N * D); A(lp + ".k", N * D); A(lp + ".v", N * D)
                A(lp + ".ctx", N * D)
                if keep { A(lp + ".probs", n * H * L * L) }
                if attention > 0 { A(lp + ".pmask", n * H * L * L) }
                A(lp + ".a", N * D)
                if hidden > 0 { A(lp + ".adrop", N * D) }
                A(lp + ".h1", N * D); layerNorm(lp + ".ln1", N)
                A(lp + ".i", N * F)
                if keep { A(lp + ".g", N * F) }
                A(lp + ".o", N * D)
                if hidden > 0 { A(lp + ".odrop", N * D) }
                layerNorm(lp + ".ln2", N)
            }
        }
        func head(_ pre: String, N: Double) {
            if config.projection { A(pre + ".proj", N * E); A(pre + ".pnorm", N * E); layerNorm(pre + ".pln", N) }
        }
        func backward(_ pre: String, N: Double) {
            A(pre + ".dhidden", N * D)
            if config.projection { A("grad.proj", N * E) }
            for l in stride(from: layers - 1, through: 0, by: -1) {
                A(pre + ".dx\(l % 2)", N * D)
                A("grad.o", N * D); A("grad.h1", N * D); A("grad.g", N * F); A("grad.i", N * F); A("grad.a", N * D)
                A("grad.ctx", N * D); A("grad.q", N * D); A("grad.k", N * D); A("grad.v", N * D)
            }
            A("grad.emb", N * D)
        }

        for pass in passes {
            let B = Double(pass.questions), P = Double(pass.passages)
            let Lq = Double(pass.questionLength), Lp = Double(pass.passageLength)
            switch pass.mode {
            case .embed:
                encoder("e", n: B, L: Lq, training: false, keep: false)
                head("e", N: B * Lq)
            case .train, .eval:
                let training = pass.mode == .train
                encoder("q", n: B, L: Lq, training: training, keep: true); head("q", N: B * Lq)
                encoder("p", n: B * P, L: Lp, training: training, keep: true); head("p", N: B * P * Lp)
                if training {
                    backward("p", N: B * P * Lp)
                    backward("q", N: B * Lq)
                }
            }
        }
        return 4 * slots.values.reduce(0, +)
    }
}
