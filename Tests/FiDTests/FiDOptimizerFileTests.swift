// FiDOptimizerFileTests: FiD's optimizer.pth.tar read back through fidq's pickle reader: the
// moments at their parameters' indices, the schedule's position, the options as a Namespace.
// (ops/fixtures/fid302_check.py loads real exports with FiD's util.load under transformers 3.0.2.)
import Foundation
import Testing
@testable import FiD
import Models
import Tensor

/// `optimizer.pth.tar` as plain values: tensors as (storage key, shape), the Namespace as its dict.
struct ReadBack {
    final class Namespace: PickleObject {
        var state: PickleValue = .none
        var pickleKind: String { "argparse.Namespace" }
        func build(state: PickleValue) throws { self.state = state }
    }

    let root: PickleDict
    let archive: ZipArchive

    init(path: String) throws {
        archive = try ZipArchive(path: path)
        var w = PickleWhitelist()
        w.allowOrderedDict()
        w.values.insert("torch.FloatStorage")
        w.persistentLoad = { pid in pid.sequence![2] }  // ('storage', FloatStorage, key, 'cpu', numel)
        w.reduce["torch._utils._rebuild_tensor_v2"] = { args in .tuple([args[0], args[2]]) }
        w.newObject["argparse.Namespace"] = { _ in .object(Namespace()) }
        guard case let .dict(d) = try PickleReader.read(try archive.data("archive/data.pkl"), whitelist: w) else {
            throw PickleError(.malformed, offset: nil, "not a dict")
        }
        root = d
    }

    static func get(_ d: PickleDict, _ key: String) -> PickleValue? {
        d.keys.firstIndex { $0.stringValue == key }.map { d.values[$0] }
    }

    static func dict(_ v: PickleValue?) -> PickleDict? { if case let .dict(d)? = v { return d }; return nil }

    static func float(_ v: PickleValue?) -> Double? { if case let .float(f)? = v { return f }; return nil }

    /// A tensor's floats, read from its storage record.
    func floats(_ tensor: PickleValue?) throws -> [Float] {
        guard let t = tensor?.sequence, let key = t[0].stringValue else { return [] }
        let bytes = try archive.data("archive/data/" + key)
        return bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}

@Suite struct FiDOptimizerFileTests {
    /// Moments of a tiny T5 (no cross-attention bias: FiD's model has one that fidq never
    /// trained), 7 updates in, written and read back.
    @Test func momentsLandAtTheirParametersIndices() throws {
        let dir = TestData.scratch("fid-optimizer")
        let config = try T5Config.load(path: ReaderFixture.folder + "/config.json")
        let layout = config.layout()
        var adam = AdamState(count: layout.count)
        adam.step = 7
        var rng = RNG(seed: 3)
        for i in 0..<layout.count { (adam.m[i], adam.v[i]) = (rng.normal(mean: 0, std: 1), rng.normal(mean: 1, std: 0.1)) }
        try adam.save(to: dir + "/optimizer.safetensors", layout: layout)
        let order = try FiDLayout.parameterOrder(folder: ReaderFixture.folder, names: .reader)
        #expect(order.count == layout.entries.count + 1 && order.contains(T5Model.crossBiasName))

        let optim = OptimConfig(optim: .adamw, scheduler: .linear, lr: 1e-3, weightDecay: 0.01, warmupSteps: 2, totalSteps: 10)
        let file = FiDOptimizerFile(order: order, optim: optim, step: 14, optimizerSteps: 7, best: 0.5,
                                    options: [("name", .string("run")), ("scheduler_steps", .none), ("n_context", .int(3))])
        try file.write(moments: try SafeTensorsFile(path: dir + "/optimizer.safetensors"), to: dir + "/optimizer.pth.tar")
        let back = try ReadBack(path: dir + "/optimizer.pth.tar")
        #expect(ReadBack.get(back.root, "step")?.intValue == 14)
        #expect(ReadBack.float(ReadBack.get(back.root, "best_eval_metric")) == 0.5)

        let optimizer = try #require(ReadBack.dict(ReadBack.get(back.root, "optimizer")))
        let group = try #require(ReadBack.dict(ReadBack.get(optimizer, "param_groups")?.sequence?.first))
        #expect(ReadBack.get(group, "params")?.sequence?.compactMap(\.intValue) == Array(order.indices))
        let lr = optim.schedule.lr(base: 1e-3, afterSteps: 7)
        #expect(ReadBack.float(ReadBack.get(group, "lr")) == lr && ReadBack.float(ReadBack.get(group, "initial_lr")) == 1e-3)
        #expect(ReadBack.float(ReadBack.get(group, "weight_decay")) == 0.01)

        let state = try #require(ReadBack.dict(ReadBack.get(optimizer, "state")))
        #expect(state.count == layout.entries.count)
        for (index, name) in order.enumerated() {
            let slot = state.keys.firstIndex { $0.intValue == index }
            guard let e = layout.entry(name) else {
                #expect(slot == nil, "\(name) has no moments but got state")
                continue
            }
            let s = try #require(ReadBack.dict(slot.map { state.values[$0] }), "\(name) at \(index)")
            #expect(ReadBack.get(s, "step")?.intValue == 7)
            #expect(ReadBack.get(s, "exp_avg")?.sequence?[1].sequence?.compactMap(\.intValue) == e.shape)
            let m = try back.floats(ReadBack.get(s, "exp_avg")), v = try back.floats(ReadBack.get(s, "exp_avg_sq"))
            #expect(m.map(\.bitPattern) == adam.m[e.range].map(\.bitPattern), "\(name)")
            #expect(v.map(\.bitPattern) == adam.v[e.range].map(\.bitPattern), "\(name)")
        }

        let scheduler = try #require(ReadBack.dict(ReadBack.get(back.root, "scheduler")))
        #expect(ReadBack.get(scheduler, "last_epoch")?.intValue == 7 && ReadBack.get(scheduler, "_step_count")?.intValue == 8)
        #expect(ReadBack.get(scheduler, "warmup_steps")?.intValue == 2 && ReadBack.get(scheduler, "scheduler_steps")?.intValue == 10)
        #expect(ReadBack.get(scheduler, "_last_lr")?.sequence.map { $0.map(ReadBack.float) } == [lr])

        guard case let .object(o)? = ReadBack.get(back.root, "opt"), let ns = o as? ReadBack.Namespace,
              let options = ReadBack.dict(ns.state) else {
            Issue.record("opt is not a Namespace: \(String(describing: ReadBack.get(back.root, "opt")))")
            return
        }
        #expect(ReadBack.get(options, "name")?.stringValue == "run" && ReadBack.get(options, "n_context")?.intValue == 3)
        if case .none? = ReadBack.get(options, "scheduler_steps") {} else { Issue.record("scheduler_steps is not None") }
    }

    /// No moments (fidq's best_dev): no state, the schedule still placed.
    @Test func withoutMomentsTheStateIsEmpty() throws {
        let dir = TestData.scratch("fid-optimizer")
        let optim = OptimConfig(optim: .adam, scheduler: .fixed, lr: 5e-5)
        try FiDOptimizerFile(order: ["a", "b"], optim: optim, step: 3, optimizerSteps: 3, best: .infinity, options: [])
            .write(moments: nil, to: dir + "/optimizer.pth.tar")
        let back = try ReadBack(path: dir + "/optimizer.pth.tar")
        let optimizer = try #require(ReadBack.dict(ReadBack.get(back.root, "optimizer")))
        #expect(ReadBack.dict(ReadBack.get(optimizer, "state"))?.count == 0)
        let group = try #require(ReadBack.dict(ReadBack.get(optimizer, "param_groups")?.sequence?.first))
        #expect(ReadBack.float(ReadBack.get(group, "weight_decay")) == 0 && ReadBack.float(ReadBack.get(group, "lr")) == 5e-5)
        #expect(ReadBack.float(ReadBack.get(back.root, "best_eval_metric")) == .infinity)
        let scheduler = try #require(ReadBack.dict(ReadBack.get(back.root, "scheduler")))
        #expect(ReadBack.get(scheduler, "warmup_steps") == nil && ReadBack.get(scheduler, "last_epoch")?.intValue == 3)
    }

    /// A moment whose parameter FiD's model lacks is refused, not written at a wrong index.
    @Test func aStrayMomentIsRefused() throws {
        let dir = TestData.scratch("fid-optimizer")
        var layout = ParameterLayout()
        layout.add("a", [2])
        layout.add("bogus", [3])
        try AdamState(count: 5).save(to: dir + "/optimizer.safetensors", layout: layout)
        let file = FiDOptimizerFile(order: ["a", "b"], optim: OptimConfig(), step: 0, optimizerSteps: 0, best: 0, options: [])
        #expect { try file.write(moments: try SafeTensorsFile(path: dir + "/optimizer.safetensors"), to: dir + "/optimizer.pth.tar") }
            throws: { "\($0)".contains("m.bogus") }
        #expect(!FileManager.default.fileExists(atPath: dir + "/optimizer.pth.tar"))
    }

    /// The options keep FiD's types: integers as int, rates as float, an unset scheduler_steps
    /// None, and model_path 'none' when the run started from a config.
    @Test func optionsKeepFiDsTypes() throws {
        let json = #"{"train_data": "t.json", "model_config": "c.json", "tokenizer": "tok.json", "total_steps": 40, "lr": 0.003, "n_context": 5, "name": "run"}"#
        let p = try JSONDecoder().decode(TrainReaderParams.self, from: Data(json.utf8))
        let options = try FiDOptimizerFile.options(p, optim: p.trainer.optim)
        func value(_ k: String) -> TorchPickle? { options.first { $0.0 == k }?.1 }
        if case .int(40)? = value("total_steps") {} else { Issue.record("total_steps: \(String(describing: value("total_steps")))") }
        if case .int(5)? = value("n_context") {} else { Issue.record("n_context: \(String(describing: value("n_context")))") }
        if case .float(0.003)? = value("lr") {} else { Issue.record("lr: \(String(describing: value("lr")))") }
        if case .none? = value("scheduler_steps") {} else { Issue.record("scheduler_steps: \(String(describing: value("scheduler_steps")))") }
        if case .string("none")? = value("model_path") {} else { Issue.record("model_path: \(String(describing: value("model_path")))") }
        if case .string("run")? = value("name") {} else { Issue.record("name") }
        #expect(Set(options.map(\.0)).count == options.count, "a key twice: \(options.map(\.0))")
        // The params' own keys in sorted order: the same bytes in every process.
        let own = options.map(\.0).prefix { $0 != "optim" }
        #expect(own.count > 5 && Array(own) == own.sorted(), "\(own)")
    }
}

extension FiDOptimizerFileTests {
    /// FiD's Retriever: BERT's parameters in module order, its pooler (fidq never trains it) after
    /// the encoder, then the projection, as `Retriever.parameters()` lists them.
    @Test func retrieverOrderHasThePoolerBeforeTheProjection() throws {
        let dir = TestData.scratch("fid-optimizer")
        let config = #"{"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16, "vocab_size": 30, "max_position_embeddings": 16, "projection": true, "indexing_dimension": 4}"#
        try Data(config.utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let order = try FiDLayout.parameterOrder(folder: dir, names: .retriever)
        let layout = try BertConfig.load(path: dir + "/config.json").layout().entries.map(\.name)
        #expect(order.first == "embeddings.word_embeddings.weight" && order.count == layout.count + 2)
        #expect(Array(order.suffix(6)) == ["pooler.dense.weight", "pooler.dense.bias", "proj.weight", "proj.bias", "norm.weight", "norm.bias"])
        #expect(order.filter { !$0.hasPrefix("pooler.") } == layout)
    }
}
