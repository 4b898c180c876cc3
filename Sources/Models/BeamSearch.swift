// BeamSearch: transformers' beam search (`generate(num_beams=…, early_stopping=False,
// do_sample=False)`, transformers 4.5x `_beam_search`), step for step over a DecodingStepper.
import Tensor

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension Generation {
    /// Beam search with transformers' semantics (num_beams, length_penalty, early_stopping false,
    /// max_length); stepper.rows == questions·numBeams, row q·numBeams + b is beam b of question q.
    ///
    /// Per step, as transformers' `_beam_search` (one eos id, no logits processors):
    /// - scores: log-softmax of each row plus the beam's running score (Float32, as torch), beams
    ///   1… of a question starting at −1e9 so the first step expands beam 0 only;
    /// - the best 2·numBeams continuations of each question over its numBeams·V candidates;
    /// - a candidate "hits" when its token is `eos` or the sequence reaches `maxLength`; hits get
    ///   −1e9 and the best numBeams of the rest run on (their cache rows picked by `reorder`);
    /// - hits among the first numBeams candidates are finalised with score / n^lengthPenalty,
    ///   n the generated tokens (start excluded, eos included), and merged with the kept
    ///   hypotheses, the best numBeams kept; non-hits enter that merge at −1e9 as placeholders;
    /// - a question stops collecting once its best running score / n^lengthPenalty cannot beat
    ///   its worst kept hypothesis (all numBeams slots finished); the search ends when no
    ///   question can improve or every candidate hit. Like transformers, the beams of a question
    ///   that has stopped keep being stepped until the batch ends.
    ///
    /// Returns per question its best hypothesis, start token first, ending at its eos (or at
    /// `maxLength`): no padding, like `greedy`. transformers 4.x pads the batch's shorter rows
    /// with `pad_token_id or eos_token_id`, which for T5's pad id 0 (falsy) means eos; 3.0.2,
    /// which FiD ran, pads with 0. Callers pad with what they need. (`pad` is still what
    /// finished beams are fed while the batch runs on, as transformers feeds them.)
    public static func beamSearch<S: DecodingStepper>(
        _ stepper: inout S, questions: Int, numBeams: Int, start: Int32, eos: Int32, pad: Int32,
        maxLength: Int, lengthPenalty: Float = 1
    ) throws -> [[Int32]] {
        guard numBeams >= 1 else {
            throw GenerationError("beam search: num_beams \(numBeams), expected at least 1")
        }
        guard questions >= 0 else {
            throw GenerationError("beam search: \(questions) questions, expected at least 0")
        }
        let v = stepper.vocabSize
        try check(stepper, rows: questions * numBeams, "questions × num_beams", vocab: v, maxLength: maxLength)
        try checkToken(start, "start", vocab: v)
        try checkToken(eos, "eos", vocab: v)
        try checkToken(pad, "pad", vocab: v)
        guard lengthPenalty.isFinite else {
            throw GenerationError("beam search: length penalty \(lengthPenalty), expected a finite number")
        }
        if questions == 0 { return [] }
        var search = BeamState(
            questions: questions, beams: numBeams, vocab: v, maxLength: maxLength, start: start,
            fill: pad != 0 ? pad : eos)
        defer { search.deallocate() }
        while true {
            try search.step(&stepper, eos: eos, lengthPenalty: lengthPenalty)
            if search.finished { break }
        }
        return search.result()
    }
}

/// The buffers and bookkeeping of one beam search; all sizes fixed at the start.
///
/// Sequences are rows of `maxLength` ids, filled with `fill` past their length, as transformers'
/// `running_sequences` and `sequences`. `genLength` counts a kept hypothesis's generated tokens
/// (transformers' `beam_indices` entries that are not −1): it sets the returned length.
struct BeamState {
    let q: Int, nb: Int, v: Int, len: Int, fill: Int32
    /// Candidates per question: 2·numBeams, transformers' `beams_to_keep` with one eos id.
    let k: Int
    var curLen = 1
    /// Whether each question may still gain hypotheses (transformers' is_early_stop_heuristic_unsatisfied).
    var open: [Bool]
    var finished = false

    let logits: UnsafeMutablePointer<Float>  // (q·nb, V): log-probabilities plus running scores
    let tokens: UnsafeMutablePointer<Int32>  // (q·nb): the ids fed this step
    var runSeq: UnsafeMutablePointer<Int32>, nextRunSeq: UnsafeMutablePointer<Int32>  // (q·nb, len)
    let runScore: UnsafeMutablePointer<Float>  // (q·nb)
    var finSeq: UnsafeMutablePointer<Int32>, nextFinSeq: UnsafeMutablePointer<Int32>  // (q·nb, len)
    var finScore: UnsafeMutablePointer<Float>, nextFinScore: UnsafeMutablePointer<Float>  // (q·nb)
    var finDone: UnsafeMutablePointer<Bool>, nextFinDone: UnsafeMutablePointer<Bool>  // (q·nb)
    var genLength: UnsafeMutablePointer<Int>, nextGenLength: UnsafeMutablePointer<Int>  // (q·nb)
    let candValue: UnsafeMutablePointer<Float>, candIndex: UnsafeMutablePointer<Int32>  // (q, k)
    let candHit: UnsafeMutablePointer<Bool>  // (q, k)
    let merged: UnsafeMutablePointer<Float>  // nb + k: kept scores then candidate scores
    let pickValue: UnsafeMutablePointer<Float>, pickIndex: UnsafeMutablePointer<Int32>  // nb
    let source: UnsafeMutablePointer<Int32>  // (q·nb): old cache row of each new beam

    init(questions: Int, beams: Int, vocab: Int, maxLength: Int, start: Int32, fill: Int32) {
        q = questions; nb = beams; v = vocab; len = maxLength; self.fill = fill; k = 2 * beams
        let rows = q * nb
        open = [Bool](repeating: true, count: q)
        logits = .allocate(capacity: rows * v)
        tokens = .allocate(capacity: rows)
        runSeq = .allocate(capacity: rows * len); nextRunSeq = .allocate(capacity: rows * len)
        runScore = .allocate(capacity: rows)
        finSeq = .allocate(capacity: rows * len); nextFinSeq = .allocate(capacity: rows * len)
        finScore = .allocate(capacity: rows); nextFinScore = .allocate(capacity: rows)
        finDone = .allocate(capacity: rows); nextFinDone = .allocate(capacity: rows)
        genLength = .allocate(capacity: rows); nextGenLength = .allocate(capacity: rows)
        candValue = .allocate(capacity: q * k); candIndex = .allocate(capacity: q * k)
        candHit = .allocate(capacity: q * k)
        merged = .allocate(capacity: nb + k)
        pickValue = .allocate(capacity: nb); pickIndex = .allocate(capacity: nb)
        source = .allocate(capacity: rows)
        runSeq.initialize(repeating: fill, count: rows * len)
        for r in 0..<rows {
            runSeq[r * len] = start
            // Beams 1… start at −1e9, so the first step expands only beam 0 of each question.
            runScore[r] = r % nb == 0 ? 0 : -1e9
        }
        finSeq.initialize(from: runSeq, count: rows * len)
        finScore.initialize(repeating: -1e9, count: rows)
        finDone.initialize(repeating: false, count: rows)
        genLength.initialize(repeating: 0, count: rows)
    }

    func deallocate() {
        for p in [tokens, runSeq, nextRunSeq, finSeq, nextFinSeq, candIndex, pickIndex, source] { p.deallocate() }
        for p in [logits, runScore, finScore, nextFinScore, candValue, merged, pickValue] { p.deallocate() }
        finDone.deallocate(); nextFinDone.deallocate(); candHit.deallocate()
        genLength.deallocate(); nextGenLength.deallocate()
    }

    /// One decoding step: feed, score, select running beams, update kept hypotheses, reorder.
    mutating func step<S: DecodingStepper>(_ stepper: inout S, eos: Int32, lengthPenalty: Float) throws {
        let rows = q * nb
        for r in 0..<rows { tokens[r] = runSeq[r * len + curLen - 1] }
        try stepper.step(UnsafeBufferPointer(start: tokens, count: rows), logits: logits)
        VocabKernels.logSoftmax(logits, rows: rows, cols: v, ldx: v, into: logits, ldy: v)
        for r in 0..<rows {
            let row = logits + r * v, s = runScore[r]
            for j in 0..<v { row[j] += s }
        }
        // The 2·nb best continuations of each question over its nb·V scores (beam-major, as
        // transformers' reshape to (batch, num_beams·V)).
        VocabKernels.topK(logits, rows: q, cols: nb * v, ld: nb * v, k: k, values: candValue, indices: candIndex)
        let reachesMax = curLen + 1 >= len
        var allHit = true
        for c in 0..<(q * k) {
            candHit[c] = reachesMax || Int32(Int(candIndex[c]) % v) == eos
            allHit = allHit && candHit[c]
        }
        // Length penalty's divisor: n = cur_len + 1 − prompt length (1), in Double as Python's
        // int ** float, then applied as a Float32 division as torch does with a Python scalar.
        let divisor = Float(pow(Double(curLen), Double(lengthPenalty)))
        for qi in 0..<q {
            selectRunning(qi)
            updateKept(qi, divisor: divisor)
        }
        swap(&runSeq, &nextRunSeq)
        swap(&finSeq, &nextFinSeq); swap(&finScore, &nextFinScore)
        swap(&finDone, &nextFinDone); swap(&genLength, &nextGenLength)
        stepper.reorder(UnsafeBufferPointer(start: source, count: rows))
        curLen += 1
        // transformers' _check_early_stop_heuristic for early_stopping=False: n = cur_len − 1.
        let runDivisor = Float(pow(Double(curLen - 1), Double(lengthPenalty)))
        for qi in 0..<q where open[qi] {
            let best = runScore[qi * nb] / runDivisor
            var worst = Float.infinity
            for b in 0..<nb { worst = min(worst, finScore[qi * nb + b]) }
            var improvable = false
            for b in 0..<nb where best > (finDone[qi * nb + b] ? worst : -1e9) { improvable = true }
            open[qi] = improvable
        }
        finished = !open.contains(true) || allHit
    }

    /// transformers' _get_running_beams_for_next_iteration for question qi: hits sink by 1e9, the
    /// best nb candidates run on; writes their sequences, scores and cache sources.
    private func selectRunning(_ qi: Int) {
        let cv = candValue + qi * k, ci = candIndex + qi * k, hit = candHit + qi * k
        for c in 0..<k { merged[c] = hit[c] ? cv[c] + -1e9 : cv[c] }
        VocabKernels.topK(merged, rows: 1, cols: k, ld: k, k: nb, values: pickValue, indices: pickIndex)
        for b in 0..<nb {
            let c = Int(pickIndex[b])
            let r = qi * nb + b
            let parent = qi * nb + Int(ci[c]) / v
            (nextRunSeq + r * len).update(from: runSeq + parent * len, count: len)
            nextRunSeq[r * len + curLen] = Int32(Int(ci[c]) % v)
            runScore[r] = pickValue[b]
            source[r] = Int32(parent)
        }
    }

    /// transformers' _update_finished_beams for question qi (reads runSeq before it is replaced).
    private func updateKept(_ qi: Int, divisor: Float) {
        let cv = candValue + qi * k, ci = candIndex + qi * k, hit = candHit + qi * k
        let base = qi * nb
        for b in 0..<nb { merged[b] = finScore[base + b] }
        for c in 0..<k {
            // Separate Float32 additions, in transformers' order, so the sums round alike.
            var s = cv[c] / divisor
            if !open[qi] { s += -1e9 }
            if !(hit[c] && c < nb) { s += -1e9 }
            merged[nb + c] = s
        }
        VocabKernels.topK(merged, rows: 1, cols: nb + k, ld: nb + k, k: nb, values: pickValue, indices: pickIndex)
        for b in 0..<nb {
            let m = Int(pickIndex[b])
            let dst = base + b
            nextFinScore[dst] = pickValue[b]
            if m < nb {
                (nextFinSeq + dst * len).update(from: finSeq + (base + m) * len, count: len)
                nextFinDone[dst] = finDone[base + m]
                nextGenLength[dst] = genLength[base + m]
            } else {
                let c = m - nb
                let parent = base + Int(ci[c]) / v
                (nextFinSeq + dst * len).update(from: runSeq + parent * len, count: len)
                nextFinSeq[dst * len + curLen] = Int32(Int(ci[c]) % v)
                nextFinDone[dst] = hit[c] && c < nb
                nextGenLength[dst] = curLen
            }
        }
    }

    /// The best kept hypothesis of each question, cut to the batch's longest (start + generated).
    /// Each question's best hypothesis (slot 0 of its kept ones), start token first, unpadded.
    func result() -> [[Int32]] {
        (0..<q).map { qi in
            Array(UnsafeBufferPointer(start: finSeq + qi * nb * len, count: min(len, 1 + genLength[qi * nb])))
        }
    }
}
