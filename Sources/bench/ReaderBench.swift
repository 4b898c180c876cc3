// ReaderBench: `bench reader`, the FiD reader (a t5-small-shaped T5, random weights) against
// transformers on the CPU: forward, train step, greedy decoding per token, memory.
import Foundation
import Models
import Tensor

/// One question with P passages of L = 200 tokens and an answer of T = 20 tokens, as issue 10's
/// proof asks: ours (`T5Model`, `T5Stepper`) and transformers' T5ForConditionalGeneration run the
/// same way (encoder per passage, joined memory, decoder), sampled in interleaved rounds.
enum ReaderBench {
    static let L = 200, T = 20
    /// Goals (issue 10): forward ≥ 1.3× and train step ≥ 1.6× torch's speed; decoding ≤ 0.4× its time per token.
    static let goals = (forward: 1.3, train: 1.6, token: 0.4)

    /// Tokens of passage p in the padded rows ("fwd pad", "train pad"): 140 to 200 of L = 200, mean
    /// about 170, as FiD's `question: … title: … context: …` strings of 100-word Wikipedia passages
    /// run under T5's tokenizer; FiD pads every passage to `text_maxlength`. torch_reader.py's
    /// `fid_length` is the same formula.
    static func paddedLength(_ p: Int) -> Int { L - (p * 23) % (L * 3 / 10 + 1) }

    /// `BENCH_READER_STEPS_ONLY`: the profile of greedy steps alone (absorbed plan, five runs of
    /// \(T) steps), no timed rows, no memory or score: for A/B runs of threading settings.
    static var stepsOnly: Bool { ProcessInfo.processInfo.environment["BENCH_READER_STEPS_ONLY"] != nil }

    static func passageCounts() -> [Int] {
        let text = ProcessInfo.processInfo.environment["BENCH_READER_P"] ?? "10,25"
        return text.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }

    /// Where the time of a train step, an eval forward and a greedy step goes, by `T5Profile`
    /// phase (one train step, one forward and \(T) greedy steps after a warm-up of each), and the
    /// decoding step's memory rate: the bytes it must read (decoder weights, lm head, memory or
    /// cross keys/values, self cache) per second, under both cross-attention plans.
    static func profile(_ model: T5Model, train: () -> Void, forward: () -> Void, batch: (P: Int, ids: [Int32], mask: [Float]), threads: Int) {
        let c = model.config, prof = T5Profile()
        func line(_ what: String, _ wall: Double, per: Double, faults: Int? = nil) -> String {
            let phases = T5Profile.Phase.allCases.compactMap { ph -> (String, Double)? in
                prof.seconds[ph].map { (ph.rawValue, $0) }
            }.sorted { $0.1 > $1.1 }
            let other = wall - prof.total
            return "profile P=\(batch.P) \(threads)t \(what) \(fixed(wall / per * 1000, 2)) ms: "
                + (phases + [("untimed", other)]).map { "\($0.0) \(fixed($0.1 / per * 1000, 2)) (\(Int(($0.1 / wall * 100).rounded()))%)" }
                .joined(separator: ", ")
                + (faults.map { "; \($0) page faults" } ?? "")
        }
        if !stepsOnly {
            train()
            model.profile = prof
            var f0 = minorFaults()
            var t0 = monotonicSeconds()
            train()
            print(line("train step", monotonicSeconds() - t0, per: 1, faults: minorFaults() - f0))
            forward()
            prof.reset()
            f0 = minorFaults()
            t0 = monotonicSeconds()
            forward()
            print(line("eval forward", monotonicSeconds() - t0, per: 1, faults: minorFaults() - f0))
        }
        model.profile = nil
        // Both cross-attention plans: the chosen one for 20 greedy tokens (absorbed) and the other.
        // BENCH_READER_STEPS_ONLY: the chosen plan alone, five timed runs after the warm one.
        for plan in stepsOnly ? [T5CrossAttentionPlan.absorbed] : [.absorbed, .cachedKeys] {
            for warm in [true] + Array(repeating: false, count: stepsOnly ? 5 : 1) {
                let tInit = monotonicSeconds()
                let s = T5Stepper(model: model, questions: 1, passages: batch.P, passageLength: L, inputIds: batch.ids,
                                  attentionMask: batch.mask, maxLength: T, crossPlan: plan)
                var logits = [Float](repeating: 0, count: c.vocabSize)
                var tok: [Int32] = [0]
                prof.reset()
                if !warm { model.profile = prof }
                let t0 = monotonicSeconds()
                for _ in 0..<T {
                    try! tok.withUnsafeBufferPointer { try s.step($0, logits: &logits) }
                    VocabKernels.argmax(logits, rows: 1, cols: c.vocabSize, ld: c.vocabSize, into: &tok)
                }
                let wall = monotonicSeconds() - t0
                model.profile = nil
                if warm { continue }
                let name = plan == .absorbed ? "absorbed" : "cached keys"
                print("profile P=\(batch.P) \(threads)t \(name): stepper init (encoder\(plan == .absorbed ? "" : ", cross keys/values")) "
                      + "\(fixed((t0 - tInit) * 1000, 1)) ms")
                print(line("\(name): greedy step", wall, per: Double(T)))
                // Floats each step reads at least once: decoder weights (less the tiny bias tables),
                // the lm head, the memory once per layer (absorbed) or every layer's cross keys and
                // values, and on average half the self cache.
                let dec = model.layout.entries.filter { $0.name.hasPrefix("decoder.") }.reduce(0) { $0 + $1.shape.reduce(1, *) }
                let M = batch.P * L, Ld = c.decoderLayers
                let cross = plan == .absorbed ? Ld * M * c.dModel : 2 * Ld * M * c.innerDim
                let floats = dec + c.vocabSize * c.dModel + cross + Ld * T * c.innerDim
                let perStep = wall / Double(T)
                print("profile P=\(batch.P) \(threads)t \(name): greedy step reads ≥ \((floats * 4) >> 20) MiB: \(fixed(Double(floats * 4) / perStep / 1e9, 2)) GB/s")
            }
        }
        if !stepsOnly { overMemoryAlone(P: batch.P, D: c.dModel, H: c.numHeads, threads: threads) }
    }

    /// The absorbed plan's kernel alone at a step's shape (H queries over P·L memory rows of D):
    /// with the memory in cache (the same call repeated) and out of it (a 256 MiB sweep between
    /// calls, as a step's weights and lm head sweep between layers).
    static func overMemoryAlone(P: Int, D: Int, H: Int, threads: Int) {
        let M = P * L
        var rng = RNG(seed: 5)
        let memory = (0..<(M * D)).map { _ in rng.normal(mean: 0, std: 1) }
        let q = (0..<(H * D)).map { _ in rng.normal(mean: 0, std: 0.05) }
        let mask = [Float](repeating: 1, count: M), bias = [Float](repeating: 0, count: H * M)
        var out = [Float](repeating: 0, count: H * D), probs = [Float](repeating: 0, count: H * M)
        var scratch = [Float](repeating: 0, count: Attention.overMemoryScratchCount(batch: 1, queries: H, keys: M, width: D))
        var sweep = [Float](repeating: 1, count: 64 << 20)
        func call() {
            out.withUnsafeMutableBufferPointer { o in probs.withUnsafeMutableBufferPointer { p in scratch.withUnsafeMutableBufferPointer { s in
                Attention.overMemory(out: o.baseAddress!, probs: p.baseAddress!, logits: nil, q: q, memory: memory, bias: bias, keyMask: mask,
                                     scale: 1, batch: 1, queries: H, keys: M, width: D, scratch: s.baseAddress!, threads: threads)
            } } }
        }
        let flops = 4.0 * Double(H * M * D)
        var hot = Double.infinity, cold = Double.infinity
        let reps = Int(ProcessInfo.processInfo.environment["BENCH_KERNEL_REPS"] ?? "") ?? 10
        for _ in 0..<reps {
            var t0 = monotonicSeconds()
            call()
            hot = min(hot, monotonicSeconds() - t0)
            sweep.withUnsafeMutableBufferPointer { s in for i in stride(from: 0, to: s.count, by: 16) { s[i] += 1 } }
            t0 = monotonicSeconds()
            call()
            cold = min(cold, monotonicSeconds() - t0)
        }
        print("profile P=\(P) \(threads)t overMemory alone (\(H) queries × \(M) rows of \(D)): in cache \(fixed(hot * 1000, 2)) ms "
              + "(\(fixed(flops / hot / 1e9, 1)) GFLOP/s), after a sweep \(fixed(cold * 1000, 2)) ms (\(fixed(flops / cold / 1e9, 1)) GFLOP/s, "
              + "\(fixed(Double(M * D * 4) / cold / 1e9, 1)) GB/s of memory rows)")
    }

    static func run(_ settings: TimingSettings) throws {
        print("## reader: t5-small shape (d 512, 6+6 layers, 8 heads, d_ff 2048, vocab 32128), 1 question × P passages × L \(L), answer \(T)")
        print("fwd: eval forward with loss; train: forward (dropout 0.1), backward, AdamW; token: greedy step time,")
        print("(greedy \(T) tokens − encoder) / \(T), all the decoding's work included (ours: the absorbed plan). ratio: torch time / ours (> 1: ours faster),")
        print("token ratio: ours / torch. Goals: fwd ≥ \(goals.forward), train ≥ \(goals.train), token ≤ \(goals.token). \(LoadMeter.legend)")
        let c = T5Config(vocabSize: 32128, dModel: 512, dKV: 64, dFF: 2048, numLayers: 6, numDecoderLayers: 6, numHeads: 8)
        for threads in settings.threads {
            Threads.set(threads)
            let peer = try Peer.torch(script: "torch_reader.py", threads: threads, first: threads == settings.threads.first,
                                      bench: "reader")
            defer { peer?.close() }
            print("### \(threads) thread\(threads == 1 ? "" : "s")")
            // BENCH_READER_P=none runs only the score job.
            if passageCounts().isEmpty {
                try ScoreBench.run(threads: threads, peer: peer)
                continue
            }
            let table = Table(["P", "what", "ours ms", "torch ms", "ratio", "goal", "spread", "other+steal"], widths: [3, 9])
            for P in passageCounts() {
                // BENCH_READER_KERNEL_ONLY: just the cross-attention kernel alone (kernel work, seconds a run).
                if ProcessInfo.processInfo.environment["BENCH_READER_KERNEL_ONLY"] != nil {
                    overMemoryAlone(P: P, D: c.dModel, H: c.numHeads, threads: threads)
                    continue
                }
                let model = T5Model(config: c)
                model.initialize(seed: 1)
                let grads = ParameterSlab(layout: model.layout)
                var opt = AdamW(count: model.layout.count)
                var rng = RNG(seed: 2)
                let ids = (0..<(P * L)).map { _ in Int32(2 + rng.next() % 32000) }
                let labels = (0..<T).map { _ in Int32(2 + rng.next() % 32000) }
                let mask = [Float](repeating: 1, count: ids.count)
                let batch = T5Batch(questions: 1, passages: P, passageLength: L, inputIds: ids, attentionMask: mask,
                                    decoderInputIds: T5Batch.shiftRight(labels, rows: 1, start: 0, pad: 0), labels: labels)
                // The same passages cut to FiD-like lengths and padded (pad id 0, mask 0).
                let paddedMask = (0..<(P * L)).map { i in Float(i % L < paddedLength(i / L) ? 1 : 0) }
                let paddedBatch = T5Batch(questions: 1, passages: P, passageLength: L,
                                          inputIds: zip(ids, paddedMask).map { $1 == 0 ? 0 : $0 }, attentionMask: paddedMask,
                                          decoderInputIds: batch.decoderInputIds, labels: labels)
                func peerSample(_ kind: String) throws -> Double {
                    guard let peer else { return .nan }
                    return try peer.sample("reader \(kind) \(P) \(L) \(T) \(threads) \(settings.minTime)")
                }
                func train() { train(batch) }
                func train(_ batch: T5Batch) {
                    var r = RNG(seed: 3)
                    _ = model.forward(batch, training: true, rng: &r)
                    grads.zero()
                    model.backward(into: grads)
                    opt.update(params: model.params.buffer, grads: UnsafeBufferPointer(grads.buffer), lr: 1e-4)
                }
                func greedy() {
                    let s = T5Stepper(model: model, questions: 1, passages: P, passageLength: L, inputIds: ids, attentionMask: mask, maxLength: T)
                    var logits = [Float](repeating: 0, count: c.vocabSize)
                    var tok: [Int32] = [0]
                    for _ in 0..<T {
                        try! tok.withUnsafeBufferPointer { try s.step($0, logits: &logits) }
                        VocabKernels.argmax(logits, rows: 1, cols: c.vocabSize, ld: c.vocabSize, into: &tok)
                    }
                }
                var rows: [(String, [Contender])] = [
                    ("fwd", [Contender(name: "ours", sample: { Timing.sample(minTime: settings.minTime) { _ = model.forward(batch) } }),
                             Contender(name: "torch", sample: { try peerSample("fwd") })]),
                    ("train", [Contender(name: "ours", sample: { Timing.sample(minTime: settings.minTime, train) }),
                               Contender(name: "torch", sample: { try peerSample("train") })]),
                    ("enc", [Contender(name: "ours", sample: {
                                 Timing.sample(minTime: settings.minTime) { _ = model.encode(inputIds: ids, attentionMask: mask, rows: P, L: L) } }),
                             Contender(name: "torch", sample: { try peerSample("enc") })]),
                    ("gen", [Contender(name: "ours", sample: { Timing.sample(minTime: settings.minTime, greedy) }),
                             Contender(name: "torch", sample: { try peerSample("gen") })]),
                ]
                // FiD-like padding, at the largest P only (it lengthens the run): the goals are the
                // full-length rows'; these show what padding costs each (ours computes no padded row).
                if P == passageCounts().max() {
                    rows += [
                        ("fwd pad", [Contender(name: "ours", sample: { Timing.sample(minTime: settings.minTime) { _ = model.forward(paddedBatch) } }),
                                     Contender(name: "torch", sample: { try peerSample("fwdpad") })]),
                        ("train pad", [Contender(name: "ours", sample: { Timing.sample(minTime: settings.minTime) { train(paddedBatch) } }),
                                       Contender(name: "torch", sample: { try peerSample("trainpad") })]),
                    ]
                }
                var medians: [String: (Double, Double)] = [:]
                // BENCH_READER_PROFILE_ONLY: just the phase profile and memory (quick iterations).
                let profileOnly = ProcessInfo.processInfo.environment["BENCH_READER_PROFILE_ONLY"] != nil || stepsOnly
                for (what, contenders) in rows where !profileOnly {
                    try Machine.waitForQuiet(settings)
                    let meter = LoadMeter(peers: peer.map { [$0.pid] } ?? [])
                    let stats = try Timing.interleaved(contenders, settings)
                    let ours = stats[0].median, torch = peer == nil ? Double.nan : stats[1].median
                    medians[what] = (ours, torch)
                    let spread = max(stats[0].spread, peer == nil ? 0 : stats[1].spread)
                    let goal = what == "fwd" ? "≥ \(goals.forward)" : what == "train" ? "≥ \(goals.train)" : ""
                    table.add(["\(P)", what, fixed(ours * 1000), torch.isNaN ? "-" : fixed(torch * 1000),
                               torch.isNaN ? "-" : ratio(torch / ours), goal, percent(spread), meter.summary()])
                }
                if let (og, tg) = medians["gen"], let (oe, te) = medians["enc"] {
                    let ot = (og - oe) / Double(T), tt = (tg - te) / Double(T)
                    table.add(["\(P)", "token", fixed(ot * 1000, 2), tt.isNaN ? "-" : fixed(tt * 1000, 2),
                               tt.isNaN ? "-" : ratio(ot / tt), "≤ \(goals.token)", "", ""])
                }
                // BENCH_READER_PROFILE_PADDED: profile the padded batch instead.
                if ProcessInfo.processInfo.environment["BENCH_READER_PROFILE_PADDED"] != nil {
                    profile(model, train: { train(paddedBatch) }, forward: { _ = model.forward(paddedBatch) },
                            batch: (P, paddedBatch.inputIds, paddedMask), threads: threads)
                } else {
                    profile(model, train: train, forward: { _ = model.forward(batch) }, batch: (P, ids, mask), threads: threads)
                }
                if stepsOnly { continue }
                let plain = model.activationBytes
                model.useCheckpoint = true
                train()
                let checkpointed = model.activationBytes
                let slabs = 4 * model.layout.count * 4  // parameters, gradients, two moments
                let rss = try peer.map { try $0.request("rss") } ?? "-"
                print("memory P=\(P): ours activations \(plain >> 20) MiB, with use_checkpoint \(checkpointed >> 20) MiB; "
                      + "parameters + gradients + moments \(slabs >> 20) MiB; torch peer peak RSS so far \(Int(rss).map { "\($0 >> 20) MiB" } ?? rss)")
            }
            if stepsOnly { continue }
            try Machine.waitForQuiet(settings)
            try ScoreBench.run(threads: threads, peer: peer)
        }
    }
}
