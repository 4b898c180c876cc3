// ScoreJobTests: bad input refused at submit (naming the field), resume from finished batches,
// shards + merge equal to one unsharded run, beam search, and the `fidq score` command line.
import Formats
import Foundation
import Jobs
import Models
import Tensor
import Testing
@testable import FiD

@Suite(.serialized) struct ScoreJobTests {
    static func registry() -> KindRegistry {
        let r = KindRegistry()
        r.register(ScoreKind())
        r.register(MergeKind())
        return r
    }

    /// Prepares a descriptor as `fidq submit` does (inputs checked, nothing run); the error, if any.
    static func submitError(_ params: [String: JSONValue], kind: String = "score") -> JobError? {
        let ws = TestData.scratch("submit")
        let policy = PathPolicy(workspace: ws, queue: ws + "/queue", allowedRoots: ["/"])
        let d = JobDescriptor(kind: kind, id: "j", params: .object(params))
        do {
            _ = try registry().prepare(d, policy: policy, fs: PosixFileSystem(), checkJobInputs: false)
            return nil
        } catch { return error as? JobError }
    }

    static func dataFile(_ text: String, _ name: String = "eval.json") throws -> String {
        let p = TestData.scratch("bad") + "/" + name
        try TestData.write(text, to: p)
        return p
    }

    /// Unlabeled questions (no `answers`): predictions are written, `exact_match` is null in the
    /// result and in each prediction, and nothing is counted as wrong. A file mixing both counts
    /// only the labeled questions.
    @Test func questionsWithoutAnswersGetPredictionsOnly() throws {
        let labeled = try String(contentsOfFile: ReaderFixture.folder + "/eval.json", encoding: .utf8)
        let json = try JSONSerialization.jsonObject(with: Data(labeled.utf8)) as! [[String: Any]]
        var unlabeled = json
        for i in unlabeled.indices { unlabeled[i]["answers"] = nil; unlabeled[i]["target"] = nil }
        var mixed = json
        mixed[0]["answers"] = nil
        mixed[0]["target"] = nil
        for (name, data, count) in [("none", unlabeled, 0), ("mixed", mixed, json.count - 1)] {
            var params = try ReaderFixture.baseParams()
            params["eval_data"] = .string(try Self.dataFile(String(decoding: try JSONSerialization.data(withJSONObject: data), as: UTF8.self), name + ".json"))
            params["write_results"] = .bool(true)
            let (folder, value) = try ReaderFixture.runScore(params)
            guard case .object(let r) = value else { Issue.record("result \(value)"); continue }
            #expect(r["count"] == .number(Double(count)) && r["examples"] == .number(Double(json.count)), "\(name): \(r)")
            #expect((r["exact_match"] == .null) == (count == 0), "\(name): \(String(describing: r["exact_match"]))")
            let written = try String(contentsOfFile: folder + "/out/result.json", encoding: .utf8)
            #expect(written.contains(count == 0 ? "\"exact_match\" : null" : "\"exact_match\" : "), "\(written)")
            let predictions = try String(contentsOfFile: folder + "/out/predictions.jsonl", encoding: .utf8).split(separator: "\n")
            #expect(predictions.count == json.count && predictions[0].contains("\"exact_match\": null"), "\(predictions[0])")
            #expect(try String(contentsOfFile: folder + "/out/final_output.txt", encoding: .utf8).split(separator: "\n").count == json.count)
        }
    }

    /// A reader whose finite weights overflow float32 (values near its limit) computes NaN: the
    /// job fails naming the model, instead of writing `"score": NaN` into dataset_wscores.json
    /// (not JSON) and empty predictions, reported done.
    @Test func aReaderThatOverflowsFailsNamingTheModel() throws {
        let model = try ReaderFixture.overflowingModel()
        for beams in [1, 2] {
            var params = try ReaderFixture.baseParams()
            params["model_path"] = .string(model)
            params["write_crossattention_scores"] = .bool(true)
            params["num_beams"] = .number(Double(beams))
            do {
                _ = try ReaderFixture.runScore(params)
                Issue.record("scored with an overflowing reader (beams \(beams))")
            } catch let e as JobError {
                #expect(e.permanence == .permanent && e.field == "params.model_path" && e.message.contains("logits hold nan"), "\(e)")
            }
        }
    }

    @Test func badInputIsRefusedAtSubmitNamingTheField() throws {
        let good = try ReaderFixture.baseParams()
        #expect(Self.submitError(good) == nil)
        func with(_ key: String, _ value: JSONValue) -> [String: JSONValue] {
            var p = good
            p[key] = value
            return p
        }
        #expect(Self.submitError(with("n_context", .number(0)))?.field == "params.n_context")
        #expect(Self.submitError(with("per_gpu_batch_size", .number(0)))?.field == "params.per_gpu_batch_size")
        #expect(Self.submitError(with("num_beams", .number(0)))?.field == "params.num_beams")
        #expect(Self.submitError(with("shard_id", .number(4)).merging(["num_shards": .number(4)]) { $1 })?.field == "params.shard_id")
        #expect(Self.submitError(with("n_context", .string("ten")))?.field == "params.n_context")
        #expect(Self.submitError(with("bogus", .number(1)))?.message.contains("unknown key 'bogus'") == true)
        // A model folder without weights.
        let noWeights = TestData.scratch("noweights")
        try FileManager.default.copyItem(atPath: ReaderFixture.folder + "/config.json", toPath: noWeights + "/config.json")
        let e = Self.submitError(with("model_path", .string(noWeights)))
        #expect(e?.field == "params.model_path" && e?.message.contains("holds no weights") == true)
        #expect(e?.hint?.contains("model_config") == false, "score reads trained weights: no fresh start to hint at")
        // A BERT retriever's folder: named for its architecture at submit (it was refused at run
        // time for lacking a T5 tokenizer, with a hint to set one).
        let bert = TestData.scratch("bert") + "/model"
        try FileManager.default.copyItem(atPath: ReaderFixture.folder, toPath: bert)
        try TestData.write(#"{"model_type": "bert", "hidden_size": 8}"#, to: bert + "/config.json")
        let wrong = Self.submitError(with("model_path", .string(bert)))
        #expect(wrong?.field == "params.model_path" && wrong?.message.contains("field model_type is 'bert', expected 't5'") == true, "\(String(describing: wrong))")
        // Data that is not FiD data, an example without question, no answers, an empty set.
        let notFiD = Self.submitError(with("eval_data", .string(try Self.dataFile(#"{"Data": []}"#))))
        #expect(notFiD?.field == "params.eval_data" && notFiD?.message.contains("line 1") == true)
        let noQuestion = Self.submitError(with("eval_data", .string(try Self.dataFile(#"[{"answers": ["a"], "ctxs": []}]"#))))
        #expect(noQuestion?.field == "params.eval_data" && noQuestion?.message.contains("[0].question: missing") == true)
        // Questions without answers are accepted (score answers them; exact match needs answers).
        #expect(Self.submitError(with("eval_data", .string(try Self.dataFile(#"[{"question": "q", "ctxs": []}]"#)))) == nil)
        #expect(Self.submitError(with("eval_data", .string(try Self.dataFile("[]"))))?.message.contains("holds no examples") == true)
        #expect(Self.submitError(with("eval_data", .string("/nonexistent/eval.json")))?.field == "params.eval_data")
        // A bad example later in the file is found when the job runs: failed with the field and index.
        var late = good
        late["eval_data"] = .string(try Self.dataFile(#"[{"question": "q", "answers": ["a"], "ctxs": []}, {"answers": ["b"]}]"#))
        #expect(throws: JobError.self) { _ = try ReaderFixture.runScore(late) }
        do { _ = try ReaderFixture.runScore(late) } catch let e as JobError {
            #expect(e.field == "params.eval_data" && e.message.contains("[1].question: missing"))
            // The hint once, not once from the data error's text and again as the job error's own.
            #expect(e.description.components(separatedBy: "every FiD example needs a question").count == 2, "\(e)")
        }
    }

    /// An attempt killed after result.json was published, before its parts were removed and its
    /// outputs copied to checkpoint_dir/name/: the next attempt finishes both (it returned at
    /// once, and the copies were lost), and removes a killed copy's temporary file.
    @Test func aKillAfterTheResultStillCopiesToCheckpointDir() throws {
        let registry = KindRegistry()
        registry.register(ScoreKind())
        var params = try ReaderFixture.baseParams()
        params["checkpoint_dir"] = .string("checkpoint")
        params["name"] = .string("my_test")
        params["write_results"] = .bool(true)
        let dir = TestData.scratch("score")
        let job = ReaderFixture.foreground(dir)
        let d = JobDescriptor(kind: "score", id: "score", maxAttempts: 1, params: .object(params))
        _ = try job.run(d, registry: registry)
        let run = dir + "/checkpoint/my_test", fm = FileManager.default
        let expected = try Data(contentsOf: URL(fileURLWithPath: run + "/final_output.txt"))
        // What the kill leaves: no copy but a half-written one, and the parts.
        try fm.removeItem(atPath: run + "/final_output.txt")
        try Data("half".utf8).write(to: URL(fileURLWithPath: run + "/.final_output.txt.dead-token.tmp"))
        try fm.createDirectory(atPath: dir + "/run/out/parts", withIntermediateDirectories: true)
        try Data("{}\n".utf8).write(to: URL(fileURLWithPath: dir + "/run/out/parts/00000000.jsonl"))
        _ = try job.run(d, registry: registry)
        #expect(try Data(contentsOf: URL(fileURLWithPath: run + "/final_output.txt")) == expected)
        let left = try fm.contentsOfDirectory(atPath: run)
        #expect(left == ["final_output.txt"], "\(left)")
        #expect(!fm.fileExists(atPath: dir + "/run/out/parts"))
    }

    /// A training run's `checkpoint/latest` (a file naming its step folder, where FiD's is a
    /// symlink) is a model path: submit accepts it and the run loads the step it names, with the
    /// same exact match as the folder itself.
    /// FiD's README test command (`--name my_test --checkpoint_dir checkpoint`, which fidq
    /// refused) runs: the outputs also land in `checkpoint_dir/name/`, where test_reader.py
    /// writes them, and test_reader's options without effect are accepted and named in the log.
    @Test func fidsTestCommandWritesToCheckpointDirName() throws {
        let flags = ["--model_path", ReaderFixture.folder, "--eval_data", ReaderFixture.folder + "/eval.json",
                     "--tokenizer", try TestData.t5TokenizerPath(), "--text_maxlength", "24",
                     "--per_gpu_batch_size", "1", "--n_context", "3", "--name", "my_test", "--checkpoint_dir", "checkpoint",
                     "--write_results", "--write_crossattention_scores", "--use_checkpoint", "--model_size", "base"]
        let registry = KindRegistry()
        registry.register(ScoreKind())
        guard case .object(let params) = try FlagParams.build(flags, decode: { try registry.decodeParams(kind: "score", $0) }) else {
            Issue.record("not an object")
            return
        }
        let (folder, _) = try ReaderFixture.runScore(params)
        let run = (folder as NSString).deletingLastPathComponent + "/checkpoint/my_test"
        for f in ["final_output.txt", "dataset_wscores.json"] {
            let copy = try Data(contentsOf: URL(fileURLWithPath: run + "/" + f)), original = try Data(contentsOf: URL(fileURLWithPath: folder + "/out/" + f))
            #expect(copy == original && !copy.isEmpty, "\(f)")
        }
        let log = try String(contentsOfFile: folder + "/log.txt", encoding: .utf8)
        #expect(log.contains("score: FiD options without effect here: use_checkpoint (checkpointing saves memory in training only); "
                             + "model_size (the reader is model_path)"), "\(log)")
        // One folder for several shards would be written by each: refused, naming the param.
        var sharded = params
        sharded["num_shards"] = .number(2)
        #expect(throws: DecodingError.self) { _ = try registry.decodeParams(kind: "score", .object(sharded)) }
        // Confined to its workspace (a queued job's policy), `checkpoint_dir/name` is checked with
        // its links followed: a `name` linking outside is refused before anything is copied there.
        let ws = TestData.scratch("confined-score"), victim = TestData.scratch("confined-victim")
        try FileManager.default.copyItem(atPath: ReaderFixture.folder, toPath: ws + "/model")
        try FileManager.default.copyItem(atPath: try TestData.t5TokenizerPath(), toPath: ws + "/tokenizer.json")
        try FileManager.default.createDirectory(atPath: ws + "/checkpoint", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: ws + "/checkpoint/my_test", withDestinationPath: victim)
        var confined = params
        (confined["model_path"], confined["eval_data"], confined["tokenizer"]) = (.string("model"), .string("model/eval.json"), .string("tokenizer.json"))
        var job = ForegroundRun(file: ws + "/score.json", workspace: ws)
        job.outDir = ws + "/run"
        let e = #expect(throws: JobError.self) {
            try job.run(JobDescriptor(kind: "score", id: "score", maxAttempts: 1, params: .object(confined)), registry: Self.registry())
        }
        #expect(e?.field == "params.checkpoint_dir" && e?.message.contains("outside the workspace") == true, "\(String(describing: e))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: victim).isEmpty)
    }

    /// `legacyInputsRecord` is the form of `out/.score-inputs.txt` fidq 9a00807 wrote (the model's
    /// real path, each weight, config and text file's path, size, time and inode, the data
    /// file's), so a run an earlier version finished or left half done is still found unchanged.
    @Test func theResumeRecordKeepsItsEarlierForm() throws {
        let folder = TestData.scratch("record-form") + "/model"
        try FileManager.default.copyItem(atPath: ReaderFixture.folder, toPath: folder)
        try Data("notes".utf8).write(to: URL(fileURLWithPath: folder + "/notes.txt"))
        try Data(count: 8).write(to: URL(fileURLWithPath: folder + "/optimizer.safetensors"))
        func stamp(_ path: String) throws -> String {
            let a = try FileManager.default.attributesOfItem(atPath: path)
            var st = stat()
            _ = stat(path, &st)
            return "\(path) \(a[.size] as! Int) bytes, modified \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec), inode \(st.st_ino)"
        }
        let data = folder + "/eval.json"
        let names = try FileManager.default.contentsOfDirectory(atPath: folder).sorted().filter {
            !$0.hasPrefix(".") && [".safetensors", ".bin", ".json", ".model", ".txt"].contains(where: $0.hasSuffix)
        }
        let earlier = (["model " + folder] + (try names.map { "model file " + (try stamp(folder + "/" + $0)) }) + ["data " + (try stamp(data))])
            .joined(separator: "\n") + "\n"
        #expect(names.contains("notes.txt") && names.contains("optimizer.safetensors"))
        #expect(ScoreKind.legacyInputsRecord(model: folder, data: data) == earlier)
        // Today's form names no path: the same files seen through another path (hard links, as a
        // host that mounts the storage elsewhere sees them) give the same record.
        let view = TestData.scratch("record-form") + "/elsewhere"
        try FileManager.default.createDirectory(atPath: view, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: folder) {
            try FileManager.default.linkItem(atPath: folder + "/" + name, toPath: view + "/" + name)
        }
        #expect(ScoreKind.inputsRecord(model: view, data: view + "/eval.json") == ScoreKind.inputsRecord(model: folder, data: data))
        #expect(!ScoreKind.inputsRecord(model: folder, data: data).contains(folder))
        // A checkpoint's optimizer or trainer state, rewritten by a resumed training run (an owed
        // eval), changes no output: the record stays, so a finished score is kept.
        let before = ScoreKind.inputsRecord(model: folder, data: data)
        try FileManager.default.removeItem(atPath: folder + "/optimizer.safetensors")
        try Data(count: 16).write(to: URL(fileURLWithPath: folder + "/optimizer.safetensors"))
        try Data("{}".utf8).write(to: URL(fileURLWithPath: folder + "/trainer_state.json"))
        #expect(ScoreKind.inputsRecord(model: folder, data: data) == before)
    }

    @Test func modelPathMayNameACheckpointsLatest() throws {
        let ckpt = TestData.scratch("ckpt") + "/checkpoint"
        try FileManager.default.createDirectory(atPath: ckpt, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: ReaderFixture.folder, toPath: ckpt + "/step-3")
        try TestData.write("step-3\n", to: ckpt + "/latest")
        var params = try ReaderFixture.baseParams()
        let direct = try ReaderFixture.runScore(params).result
        params["model_path"] = .string(ckpt + "/latest")
        #expect(Self.submitError(params) == nil)
        let (folder, viaLatest) = try ReaderFixture.runScore(params)
        guard case .object(var a) = viaLatest, case .object(var b) = direct else { Issue.record("results"); return }
        #expect(a["model"] == .string(ckpt + "/step-3") && b["model"] == .string(ReaderFixture.folder), "result.json names the folder read")
        // The copy's files are other files (their inodes): the inputs records differ there only.
        #expect(a["inputs"] != b["inputs"])
        for k in ["model", "inputs"] { (a[k], b[k]) = (nil, nil) }
        #expect(a == b, "\(viaLatest) vs \(direct)")
        let log = try String(contentsOfFile: folder + "/log.txt", encoding: .utf8)
        #expect(log.contains(ckpt + "/step-3"), "the log names the folder read: \(log)")
        // A pointer to a step that is gone is refused at submit, naming the field.
        try TestData.write("step-9\n", to: ckpt + "/latest")
        #expect(Self.submitError(params)?.field == "params.model_path")
    }

    /// A model folder's damaged config.json is the model's fault even when a tokenizer is
    /// given (it was blamed on `params.tokenizer`); a bad tokenizer file is the tokenizer's.
    @Test func aLoadErrorNamesTheParamItComesFrom() throws {
        let broken = TestData.scratch("broken") + "/model"
        try FileManager.default.copyItem(atPath: ReaderFixture.folder, toPath: broken)
        try TestData.write("{\"d_model\": ", to: broken + "/config.json")
        var params = try ReaderFixture.baseParams()
        params["model_path"] = .string(broken)
        do { _ = try ReaderFixture.runScore(params); Issue.record("a damaged config.json was read") } catch let e as JobError {
            #expect(e.field == "params.model_path" && e.message.contains(broken + "/config.json"), "\(e)")
        }
        params = try ReaderFixture.baseParams()
        params["tokenizer"] = .string(try Self.dataFile("not a tokenizer", "tokenizer.json"))
        do { _ = try ReaderFixture.runScore(params); Issue.record("a damaged tokenizer was read") } catch let e as JobError {
            #expect(e.field == "params.tokenizer", "\(e)")
        }
    }

    /// A length whose attention alone cannot fit in memory is refused naming it (the allocation
    /// stopped the process); the bound is T5's attention buffers, exactly.
    @Test func aShapeWhoseAttentionCannotFitIsRefused() throws {
        var params = try ReaderFixture.baseParams()
        params["text_maxlength"] = .number(1_000_000)
        do { _ = try ReaderFixture.runScore(params); Issue.record("text_maxlength 1e6 was run") } catch let e as JobError {
            #expect(e.field == "params.text_maxlength" && e.message.contains("text_maxlength 1000000") && e.message.contains("GiB")
                    && e.hint?.contains("pads every passage") == true, "\(e)")
        }
        // score generates at most 50 tokens whatever answer_maxlength says (as FiD): not refused.
        params = try ReaderFixture.baseParams()
        params["answer_maxlength"] = .number(10_000_000)
        _ = try ReaderFixture.runScore(params)
        var c = T5Config()
        c.numHeads = 2
        let (B, P, L, T) = (3, 4, 5, 6)
        let bytes = c.attentionBytes(batch: B, passages: P, length: L, targetLength: T)
        #expect(bytes.encoder == Double(4 * (2 * L * L + B * P * 2 * L * L)))
        #expect(bytes.decoder == Double(4 * (2 * T * T + B * 2 * T * T + B * 2 * T * P * L)))
        let format = FiDFormat(nContext: P, textMaxLength: L, answerMaxLength: T - 1)
        let need = Int(bytes.encoder + bytes.decoder)
        try format.checkMemory(c, batchSize: B, available: need)
        #expect(throws: JobError.self) { try format.checkMemory(c, batchSize: B, available: need - 1) }
        do { try FiDFormat(nContext: 1, textMaxLength: 8, answerMaxLength: 4096).checkMemory(c, batchSize: 1, available: 1 << 20) } catch let e as JobError {
            #expect(e.field == "params.answer_maxlength" && e.message.contains("answer_maxlength 4096"), "\(e)")
        }
        // A beam count whose decoding state cannot fit (one cache row per beam) is refused before
        // the allocation would stop the process; beams that fit run (beamSearchOfOneBeamIsGreedy).
        var beams = try ReaderFixture.baseParams()
        beams["num_beams"] = .number(1_000_000_000)
        do {
            _ = try ReaderFixture.runScore(beams)
            Issue.record("num_beams 1e9 accepted")
        } catch let e as JobError {
            #expect(e.field == "params.num_beams" && e.message.contains("GiB to decode"), "\(e)")
        }
        let small = try T5Config.load(path: ReaderFixture.folder + "/config.json")
        let fits = T5Stepper.bytes(small, questions: 2, passages: 3, passageLength: 8, beams: 4, maxLength: 50)
        #expect(fits > 0 && fits < 64 * 1_048_576, "\(fits)")
        // A length so absurd its GiB pass an Int is refused with the figure, not a trap.
        do {
            try FiDFormat(nContext: 1, textMaxLength: 8, answerMaxLength: 10_000_000_000_000).checkMemory(c, batchSize: 1, available: 1 << 30)
            Issue.record("answer_maxlength 1e13 accepted")
        } catch let e as JobError {
            #expect(e.field == "params.answer_maxlength" && e.message.contains(" GiB for T5's attention alone")
                    && e.message.contains("e+"), "\(e)")  // need at least X.XXe+NN GiB
        }
    }

    /// Asking for more passages than the examples hold is not an error (they are padded, where
    /// FiD fails), but the log says how many examples fell short.
    @Test func examplesWithFewerPassagesThanNContextAreLogged() throws {
        let examples = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: ReaderFixture.folder + "/eval.json"))) as! [[String: Any]]
        let counts = examples.map { ($0["ctxs"] as? [Any])?.count ?? 0 }
        var params = try ReaderFixture.baseParams()
        for n in Set([1, counts.max()!, counts.max()! + 1]).sorted() {
            params["n_context"] = .number(Double(n))
            let (folder, _) = try ReaderFixture.runScore(params)
            let log = try String(contentsOfFile: folder + "/log.txt", encoding: .utf8)
            let short = counts.filter { $0 < n }
            if short.isEmpty {
                #expect(!log.contains("fewer than n_context"), "n_context \(n): \(log)")
            } else {
                #expect(log.contains("eval_data: \(short.count) of \(counts.count) examples have fewer than n_context \(n) passages (fewest \(short.min()!))"),
                        "n_context \(n): \(log)")
            }
        }
    }

    @Test func resumesFromTheBatchesAnEarlierAttemptFinished() throws {
        var params = try ReaderFixture.baseParams()
        params["per_gpu_batch_size"] = .number(1)
        let (ref, _) = try ReaderFixture.runScore(params)
        let reference = try String(contentsOfFile: ref + "/out/predictions.jsonl", encoding: .utf8)
        // An attempt killed after batches 0 and 2: their parts are in out/parts/ (batch 0's marked).
        let dir = TestData.scratch("resume")
        try FileManager.default.createDirectory(atPath: dir + "/run/out/parts", withIntermediateDirectories: true)
        var lines = reference.split(separator: "\n").map(String.init)
        lines[0] = lines[0].replacingOccurrences(of: "\"prediction\": \"", with: "\"prediction\": \"EARLIER ATTEMPT ")
        try TestData.write(#"{"p": \#(lines[0])}"# + "\n", to: dir + "/run/out/parts/00000000.jsonl")
        try TestData.write(#"{"p": \#(lines[2])}"# + "\n", to: dir + "/run/out/parts/00000002.jsonl")
        // A half-written part of the killed attempt is not a part.
        try TestData.write("{\"p\": ", to: dir + "/run/out/parts/.00000001.jsonl.dead.part")
        // The record of what the earlier attempt read: the same model folder and data file, seen by
        // a host that mounts them at another path (hard links: same files, other paths).
        let view = TestData.scratch("resume-view")
        try FileManager.default.createDirectory(atPath: view, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: ReaderFixture.folder) where !name.hasPrefix(".") {
            try FileManager.default.linkItem(atPath: ReaderFixture.folder + "/" + name, toPath: view + "/" + name)
        }
        try TestData.write(ScoreKind.inputsRecord(model: view, data: view + "/eval.json"),
                           to: dir + "/run/out/" + ScoreKind.inputsFile)
        let parts = try FileManager.default.contentsOfDirectory(atPath: dir + "/run/out/parts")
        try FileManager.default.copyItem(atPath: dir + "/run/out/parts", toPath: dir + "/parts-kept")
        // The earlier attempt ran on another CPU's kernels: the result lists both sets.
        let elsewhere = "OpenBLAS 0.3.21 Zen, cross-attention swift, bfloat16 off, 8-bit avx2"
        try TestData.write(elsewhere + "\n", to: dir + "/run/out/" + ScoreKind.kernelsFile)
        var job = ForegroundRun(file: dir + "/score.json", workspace: dir)
        job.outDir = dir + "/run"
        job.allowedRoots = ["/"]
        let result = try job.run(JobDescriptor(kind: "score", id: "score", maxAttempts: 1, params: .object(params)), registry: Self.registry())
        guard case .object(let r) = result else { Issue.record("result \(result)"); return }
        #expect(r["kernels"] == .array([.string(elsewhere), .string(KernelSwitch.summary)]), "\(r)")
        let resumed = try String(contentsOfFile: dir + "/run/out/predictions.jsonl", encoding: .utf8)
        lines = resumed.split(separator: "\n").map(String.init)
        let refLines = reference.split(separator: "\n").map(String.init)
        #expect(lines.count == refLines.count)
        #expect(lines[0].contains("EARLIER ATTEMPT"), "batch 0 was taken from its part, not recomputed")
        #expect(Array(lines[1...]) == Array(refLines[1...]))
        let log = try String(contentsOfFile: dir + "/run/log.txt", encoding: .utf8)
        #expect(log.contains("2 batches done by an earlier attempt"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/run/out/parts"), "parts are removed once joined")
        // Parts scored with another model folder (a `latest` that moved on between attempts) are
        // discarded, not mixed in: every batch is scored again.
        #expect(parts.count == 3)
        let other = TestData.scratch("resume-other")
        try FileManager.default.createDirectory(atPath: other + "/run/out", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: dir + "/parts-kept", toPath: other + "/run/out/parts")
        let step400 = TestData.scratch("resume-other-model") + "/checkpoint/step-400"  // the same bytes, other files
        try FileManager.default.createDirectory(atPath: step400, withIntermediateDirectories: true)
        try FileManager.default.removeItem(atPath: step400)
        try FileManager.default.copyItem(atPath: ReaderFixture.folder, toPath: step400)
        try TestData.write(ScoreKind.inputsRecord(model: step400, data: ReaderFixture.folder + "/eval.json"),
                           to: other + "/run/out/" + ScoreKind.inputsFile)
        var again = ForegroundRun(file: other + "/score.json", workspace: other)
        again.outDir = other + "/run"
        again.allowedRoots = ["/"]
        _ = try again.run(JobDescriptor(kind: "score", id: "score", maxAttempts: 1, params: .object(params)), registry: Self.registry())
        #expect(try String(contentsOfFile: other + "/run/out/predictions.jsonl", encoding: .utf8) == reference)
        let otherLog = try String(contentsOfFile: other + "/run/log.txt", encoding: .utf8)
        #expect(otherLog.contains("discarding the earlier attempt's batches: the model or data changed (was: model file "), "\(otherLog)")
    }

    /// A data file changed between attempts (or after the run finished, with the same out folder)
    /// is never answered partly from the old file: parts and result are discarded and computed
    /// again from the new one.
    @Test func aChangedDataFileIsNotMixedIntoAResumedRun() throws {
        var params = try ReaderFixture.baseParams()
        params["per_gpu_batch_size"] = .number(1)
        let dir = TestData.scratch("resume-data")
        let data = dir + "/eval.json"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: ReaderFixture.folder + "/eval.json", toPath: data)
        params["eval_data"] = .string(data)
        func run() throws -> (predictions: [Substring], log: String) {
            var job = ForegroundRun(file: dir + "/score.json", workspace: dir)
            job.outDir = dir + "/run"
            job.allowedRoots = ["/"]
            _ = try job.run(JobDescriptor(kind: "score", id: "score", maxAttempts: 1, params: .object(params)), registry: Self.registry())
            return (try String(contentsOfFile: dir + "/run/out/predictions.jsonl", encoding: .utf8).split(separator: "\n"),
                    try String(contentsOfFile: dir + "/run/log.txt", encoding: .utf8))
        }
        let first = try run()
        let examples = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: data))) as! [Any]
        #expect(first.predictions.count == examples.count && examples.count >= 2)
        // The finished run again, unchanged: its result is kept.
        #expect(try run().log.contains("already finished"))
        // So it is under an earlier version's record (paths in it), which is rewritten in today's form.
        let record = dir + "/run/out/" + ScoreKind.inputsFile
        let model = ReaderFixture.folder
        try TestData.write(ScoreKind.legacyInputsRecord(model: model, data: data), to: record)
        func count(_ text: String, _ line: String) -> Int { text.components(separatedBy: line).count - 1 }
        let before = try String(contentsOfFile: dir + "/run/log.txt", encoding: .utf8)  // every attempt's lines
        let legacy = try run().log
        #expect(count(legacy, "already finished") == count(before, "already finished") + 1, "\(legacy)")
        #expect(count(legacy, "discarding") == 0, "\(legacy)")
        #expect(try String(contentsOfFile: record, encoding: .utf8) == ScoreKind.inputsRecord(model: model, data: data))
        // The file loses its last example: the finished result is not returned for it.
        try JSONSerialization.data(withJSONObject: Array(examples.dropLast())).write(to: URL(fileURLWithPath: data))
        let second = try run()
        #expect(second.predictions.count == examples.count - 1)
        #expect(second.log.contains("discarding the earlier result: the model or data changed (was: data: a file of "), "\(second.log)")
        // Parts of a killed attempt over the old file are discarded too.
        try FileManager.default.createDirectory(atPath: dir + "/run/out/parts", withIntermediateDirectories: true)
        try TestData.write(#"{"p": {"id": "stale", "prediction": "STALE"}}"# + "\n", to: dir + "/run/out/parts/00000000.jsonl")
        try FileManager.default.removeItem(atPath: dir + "/run/out/result.json")
        try JSONSerialization.data(withJSONObject: examples).write(to: URL(fileURLWithPath: data))
        let third = try run()
        #expect(third.predictions.count == examples.count && !third.predictions.contains { $0.contains("STALE") })
        #expect(third.log.contains("discarding the earlier attempt's batches"), "\(third.log)")
    }

    @Test func shardsThenMergeEqualOneRun() throws {
        var params = try ReaderFixture.baseParams()
        params["write_results"] = .bool(true)
        params["write_crossattention_scores"] = .bool(true)
        let (whole, wholeResult) = try ReaderFixture.runScore(params)
        var shardDirs: [String] = []
        for s in 0..<4 {
            var p = params
            p["shard_id"] = .number(Double(s))
            p["num_shards"] = .number(4)
            shardDirs.append(try ReaderFixture.runScore(p).folder + "/out")
        }
        let dir = TestData.scratch("merge")
        var job = ForegroundRun(file: dir + "/merge.json", workspace: dir)
        job.outDir = dir + "/run"
        job.allowedRoots = ["/"]
        let merged = try job.run(JobDescriptor(kind: "merge", id: "merge", params: .object(["shards": .array(shardDirs.map(JSONValue.string))])),
                                 registry: Self.registry())
        for name in ["predictions.jsonl", "final_output.txt", "dataset_wscores.json"] {
            let a = try Data(contentsOf: URL(fileURLWithPath: whole + "/out/" + name))
            let b = try Data(contentsOf: URL(fileURLWithPath: dir + "/run/out/" + name))
            #expect(a == b, "\(name) merged from 4 shards differs from the unsharded run")
        }
        guard case .object(let w) = wholeResult, case .object(let m) = merged else { Issue.record("results"); return }
        #expect(w["exact_match"] == m["exact_match"] && w["count"] == m["count"])
        // Every shard ran here: one set of kernels, and the merge says nothing of them.
        #expect(w["kernels"] == .array([.string(KernelSwitch.summary)]) && m["kernels"] == w["kernels"], "\(w) \(m)")
        #expect(try !String(contentsOfFile: dir + "/run/log.txt", encoding: .utf8).contains("sets of kernels"))
        // The shards' run folders (`--out`, around out/) name them as well.
        job.outDir = dir + "/runs"
        let fromRuns = try job.run(JobDescriptor(kind: "merge", id: "merge", params: .object(["shards": .array(shardDirs.map {
            JSONValue.string(String($0.dropLast("/out".count)))
        })])), registry: Self.registry())
        #expect(fromRuns == merged)
        for name in ["predictions.jsonl", "final_output.txt", "dataset_wscores.json"] {
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/runs/out/" + name)) == Data(contentsOf: URL(fileURLWithPath: dir + "/run/out/" + name)))
        }
        /// Merges `shards` into `dir/<folder>`: the refusal, or nil.
        func merge(_ shards: [String], into folder: String, extra: [String: JSONValue] = [:]) -> JobError? {
            job.outDir = dir + "/" + folder
            var params = extra
            params["shards"] = .array(shards.map(JSONValue.string))
            do {
                _ = try job.run(JobDescriptor(kind: "merge", id: "merge", params: .object(params)), registry: Self.registry())
                return nil
            } catch { return JobError.classify(error) }
        }
        /// Shard 2 scored again with `change` made to its params.
        func rescored(_ change: (inout [String: JSONValue]) throws -> Void) throws -> [String] {
            var p = params
            p["shard_id"] = .number(2)
            p["num_shards"] = .number(4)
            try change(&p)
            var dirs = shardDirs
            dirs[2] = try ReaderFixture.runScore(p).folder + "/out"
            return dirs
        }
        // Shard 2 re-scored with another n_context, another copy of the reader, or a copy of the
        // data file (a rewrite of it): refused, naming what differs.
        let fm = FileManager.default
        let elsewhere = TestData.scratch("merge-copies")
        try fm.copyItem(atPath: ReaderFixture.folder, toPath: elsewhere + "/reader")
        for (change, what) in [({ (p: inout [String: JSONValue]) in p["n_context"] = .number(2) }, "settings: n_context 2"),
                               ({ p in p["model_path"] = .string(elsewhere + "/reader") }, "model file "),
                               ({ p in p["eval_data"] = .string(elsewhere + "/reader/eval.json") }, "data: a file of")] as [((inout [String: JSONValue]) -> Void, String)] {
            let e = merge(try rescored(change), into: "mixed-\(what.prefix(5))")
            #expect(e?.field == "params.shards[2]" && e?.message.contains("was scored from other inputs than") == true
                    && e?.message.contains(what) == true, "\(what): \(String(describing: e))")
        }
        // The same reader and data through a symlink (a host mounting the storage elsewhere): merged as one run.
        try fm.createSymbolicLink(atPath: elsewhere + "/link", withDestinationPath: ReaderFixture.folder)
        let linked = try rescored { p in
            p["model_path"] = .string(elsewhere + "/link")
            p["eval_data"] = .string(elsewhere + "/link/eval.json")
        }
        #expect(merge(linked, into: "linked") == nil)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/linked/out/predictions.jsonl")) == Data(contentsOf: URL(fileURLWithPath: dir + "/run/out/predictions.jsonl")))
        // Files the reader does not load (a checkpoint's optimizer state, notes) appearing in the
        // model folder between shards change nothing: merged.
        try fm.copyItem(atPath: ReaderFixture.folder, toPath: elsewhere + "/reader2")
        var fromCopy: [String] = []
        for s in 0..<4 {
            if s == 2 {
                try Data("notes".utf8).write(to: URL(fileURLWithPath: elsewhere + "/reader2/notes.txt"))
                try Data(count: 64).write(to: URL(fileURLWithPath: elsewhere + "/reader2/optimizer.safetensors"))
            }
            var p = params
            (p["shard_id"], p["num_shards"], p["model_path"]) = (.number(Double(s)), .number(4), .string(elsewhere + "/reader2"))
            fromCopy.append(try ReaderFixture.runScore(p).folder + "/out")
        }
        #expect(merge(fromCopy, into: "unrelated") == nil)
        // A shard of an older fidq (no inputs record) among recorded ones is refused; running its
        // score command again adds the record (its inputs unchanged), and the merge goes through.
        let old = fromCopy[1] + "/result.json"
        var oldRecord = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: old))) as! [String: Any]
        oldRecord.removeValue(forKey: "inputs")
        try JSONSerialization.data(withJSONObject: oldRecord).write(to: URL(fileURLWithPath: old))
        #expect(merge(fromCopy, into: "older")?.message.contains("older fidq") == true)
        var p1 = params
        (p1["shard_id"], p1["num_shards"], p1["model_path"]) = (.number(1), .number(4), .string(elsewhere + "/reader2"))
        let shardRun = String(fromCopy[1].dropLast("/run/out".count))
        _ = try ReaderFixture.foreground(shardRun).run(JobDescriptor(kind: "score", id: "score", maxAttempts: 1, params: .object(p1)),
                                                       registry: Self.registry())
        #expect(merge(fromCopy, into: "older-again") == nil)
        // An --out inside a shard (or holding one in its out/) is refused; the shard's result stays.
        let shardResult = try Data(contentsOf: URL(fileURLWithPath: shardDirs[0] + "/result.json"))
        let inside = merge(shardDirs, into: "../" + String(shardDirs[0].dropFirst(NSString(string: dir).deletingLastPathComponent.count + 1)))
        #expect(inside?.field == "--out" && inside?.message.contains("overlaps the input") == true, "\(String(describing: inside))")
        #expect(try Data(contentsOf: URL(fileURLWithPath: shardDirs[0] + "/result.json")) == shardResult)
        // A merge again in the same folder from shards without final_output.txt leaves no stale
        // copy of it; with checkpoint_dir, FiD's layout gets the merged files.
        let copies = try shardDirs.indices.map { s -> String in
            try fm.copyItem(atPath: shardDirs[s], toPath: elsewhere + "/s\(s)")
            return elsewhere + "/s\(s)"
        }
        let layout: [String: JSONValue] = ["checkpoint_dir": .string(elsewhere + "/checkpoint"), "name": .string("my_test")]
        #expect(merge(copies, into: "again", extra: layout) == nil)
        #expect(try Data(contentsOf: URL(fileURLWithPath: elsewhere + "/checkpoint/my_test/final_output.txt"))
                == Data(contentsOf: URL(fileURLWithPath: dir + "/run/out/final_output.txt")))
        #expect(fm.fileExists(atPath: elsewhere + "/checkpoint/my_test/dataset_wscores.json"))
        for c in copies { try fm.removeItem(atPath: c + "/final_output.txt") }
        #expect(merge(copies, into: "again", extra: layout) == nil)
        #expect(!fm.fileExists(atPath: dir + "/again/out/final_output.txt") && fm.fileExists(atPath: dir + "/again/out/predictions.jsonl"))
        // A shard computed on another CPU's kernels merges, and the merge lists and logs both sets.
        let zen3 = "OpenBLAS 0.3.21 Zen, cross-attention swift, bfloat16 off, 8-bit avx2"
        var shard3 = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: copies[3] + "/result.json"))) as! [String: Any]
        shard3["kernels"] = [zen3]
        try JSONSerialization.data(withJSONObject: shard3).write(to: URL(fileURLWithPath: copies[3] + "/result.json"))
        #expect(merge(copies, into: "mixed-cpus") == nil)
        let mixed = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/mixed-cpus/out/result.json"))) as! [String: Any]
        #expect(mixed["kernels"] as? [String] == [KernelSwitch.summary, zen3], "\(mixed)")
        let mixedLog = try String(contentsOfFile: dir + "/mixed-cpus/log.txt", encoding: .utf8)
        #expect(mixedLog.contains("merge: the shards were computed with 2 sets of kernels"), "\(mixedLog)")
        // Shards out of order are refused, naming the position.
        job.outDir = dir + "/reversed"
        do {
            _ = try job.run(JobDescriptor(kind: "merge", id: "merge", params: .object(["shards": .array(shardDirs.reversed().map(JSONValue.string))])),
                            registry: Self.registry())
            Issue.record("shards out of order were merged")
        } catch let e as JobError {
            #expect(e.field == "params.shards[0]" && e.message.contains("expected shard 0 of 4"), "\(e)")
        }
    }

    /// Shards whose files do not hold their share of one data file (a shard re-scored after the
    /// file changed, files edited after the run) are refused naming the shard; merge used to
    /// interleave them, or drop examples from dataset_wscores.json, without a word.
    @Test func mergeRefusesShardsThatDoNotHoldTheirShare() throws {
        var params = try ReaderFixture.baseParams()
        params["write_results"] = .bool(true)
        params["write_crossattention_scores"] = .bool(true)
        var shardDirs: [String] = []
        for s in 0..<4 {  // 6 examples: 2, 2, 1, 1
            var p = params
            p["shard_id"] = .number(Double(s))
            p["num_shards"] = .number(4)
            shardDirs.append(try ReaderFixture.runScore(p).folder + "/out")
        }
        let fm = FileManager.default
        /// Merges copies of the shards after `edit`; the refusal, or nil and the run's folder.
        func merge(_ edit: ([String]) throws -> Void) throws -> (JobError?, String) {
            let dir = TestData.scratch("merge-bad")
            let copies = try shardDirs.indices.map { s -> String in
                try fm.copyItem(atPath: shardDirs[s], toPath: dir + "/s\(s)")
                return dir + "/s\(s)"
            }
            try edit(copies)
            var job = ForegroundRun(file: dir + "/merge.json", workspace: dir)
            job.outDir = dir + "/run"
            job.allowedRoots = ["/"]
            do {
                _ = try job.run(JobDescriptor(kind: "merge", id: "merge", maxAttempts: 1, params: .object(["shards": .array(copies.map(JSONValue.string))])),
                                registry: Self.registry())
                return (nil, dir + "/run")
            } catch let e as JobError { return (e, dir + "/run") }
        }
        func edit(_ path: String, _ change: (inout [String]) -> Void) throws {
            var lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            change(&lines)
            try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        }
        func editResult(_ dir: String, _ change: (inout [String: Any]) -> Void) throws {
            var record = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/result.json"))) as! [String: Any]
            change(&record)
            try JSONSerialization.data(withJSONObject: record).write(to: URL(fileURLWithPath: dir + "/result.json"))
        }
        // An extra line in shard 0 (only the shards after one that ran out were compared).
        var (e, _) = try merge { try edit($0[0] + "/predictions.jsonl") { $0.insert($0[0], at: 1) } }
        #expect(e?.field == "params.shards[0]" && e?.message.contains("holds 3 predictions, but its result.json counts 2 examples") == true, "\(String(describing: e))")
        // A line that is not JSON.
        (e, _) = try merge { try edit($0[1] + "/predictions.jsonl") { $0[1] = "not json at all" } }
        #expect(e?.field == "params.shards[1]" && e?.message.contains("predictions.jsonl: line 2: not a prediction") == true, "\(String(describing: e))")
        // Shard 3 scored after the data file changed: another size.
        (e, _) = try merge { try editResult($0[3]) { $0["data_examples"] = 7 } }
        #expect(e?.field == "params.shards[3]" && e?.message.contains("scored a data file of 7 examples, but") == true, "\(String(describing: e))")
        // A shard holding fewer examples than its share of the file.
        (e, _) = try merge { dirs in
            try editResult(dirs[1]) { $0["examples"] = 1 }
            try edit(dirs[1] + "/predictions.jsonl") { $0.remove(at: 1) }
        }
        #expect(e?.field == "params.shards[1]" && e?.message.contains("holds 1 examples, but shard 1 of 4 of 6 examples holds 2") == true,
                "\(String(describing: e))")
        // dataset_wscores.json one example short (it was dropped from the merged list).
        (e, _) = try merge { dirs in
            let path = dirs[2] + "/dataset_wscores.json"
            try Data("[]".utf8).write(to: URL(fileURLWithPath: path))
        }
        #expect(e?.field == "params.shards[2]" && e?.message.contains("dataset_wscores.json holds 0 examples, but its result.json counts 1") == true,
                "\(String(describing: e))")
        // Results of an older fidq (no inputs record), shard 0 without a reader: the others'
        // paths are still compared with each other.
        (e, _) = try merge { dirs in
            for d in dirs { try editResult(d) { $0.removeValue(forKey: "inputs") } }
            try editResult(dirs[0]) { $0.removeValue(forKey: "model") }
            try editResult(dirs[2]) { $0["model"] = "/other/model" }
        }
        #expect(e?.field == "params.shards[2]" && e?.message.contains("scored reader /other/model, but") == true, "\(String(describing: e))")
        // One older shard among recorded ones cannot be compared: refused.
        (e, _) = try merge { try editResult($0[1]) { $0.removeValue(forKey: "inputs") } }
        #expect(e?.field == "params.shards[1]" && e?.message.contains("older fidq") == true, "\(String(describing: e))")
        // A shard without predictions.jsonl is named.
        (e, _) = try merge { try fm.removeItem(atPath: $0[1] + "/predictions.jsonl") }
        #expect(e?.field == "params.shards[1]" && e?.message.contains("predictions.jsonl") == true, "\(String(describing: e))")
        // A file only some shards have is left out, saying so.
        let (none, run) = try merge { try fm.removeItem(atPath: $0[3] + "/final_output.txt") }
        #expect(none == nil && !fm.fileExists(atPath: run + "/out/final_output.txt"))
        let log = try String(contentsOfFile: run + "/log.txt", encoding: .utf8)
        #expect(log.contains("merge: final_output.txt not merged: shard 3 has none (score them with write_results)"), "\(log)")
    }

    @Test func beamSearchOfOneBeamIsGreedy() throws {
        var params = try ReaderFixture.baseParams()
        let (greedy, _) = try ReaderFixture.runScore(params)
        params["num_beams"] = .number(1)
        let (again, _) = try ReaderFixture.runScore(params)
        params["num_beams"] = .number(3)
        let (beams, _) = try ReaderFixture.runScore(params)
        let g = try String(contentsOfFile: greedy + "/out/predictions.jsonl", encoding: .utf8)
        #expect(g == (try String(contentsOfFile: again + "/out/predictions.jsonl", encoding: .utf8)))
        var n = 0
        try JSONStream(path: beams + "/out/predictions.jsonl").forEachLine { e in
            #expect(e.value["prediction"]?.stringValue != nil)
            n += 1
        }
        #expect(n == 6)
    }
}

@Suite struct ScoreExampleTests {
    /// queue/examples/score-shards parse, and their params decode as score and merge params.
    @Test func shardedScoringExampleIsValid() throws {
        let dir = TestData.root.appendingPathComponent("queue/examples/score-shards").path
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".json") }.sorted()
        #expect(files.count == 5)
        let registry = ScoreJobTests.registry()
        for f in files {
            let d = try JobDescriptor.parse(Data(contentsOf: URL(fileURLWithPath: dir + "/" + f)), fileName: f)
            try registry.decodeParams(kind: d.kind, d.params)
            if d.kind == "merge" {
                #expect(d.dependencies == (0..<4).map { "score-shard-\($0)" })
            }
        }
    }
}
