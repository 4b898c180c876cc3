// OptimConfigTests: FiD option names, defaults and validation errors of the optimisation config.
import Foundation
import Testing
@testable import Tensor

@Suite struct OptimConfigTests {
    static func decode(_ json: String) throws -> OptimConfig {
        try JSONDecoder().decode(OptimConfig.self, from: Data(json.utf8))
    }

    @Test func defaultsAreFiDs() throws {
        let c = try Self.decode("{}")
        #expect(c == OptimConfig())
        #expect(c.optim == .adam && c.scheduler == .fixed && c.lr == 1e-4 && c.weightDecay == 0.1)
        #expect(c.warmupSteps == 1000 && c.totalSteps == 1000 && c.schedulerSteps == nil && c.clip == 1 && !c.fixedLr)
    }

    @Test func readsFiDNamesAndIgnoresOtherParams() throws {
        let c = try Self.decode("""
            {"optim": "adamw", "scheduler": "linear", "lr": 5e-5, "weight_decay": 0.01, "warmup_steps": 1000,
             "total_steps": 15000, "scheduler_steps": 30000, "clip": 0.5, "fixed_lr": true,
             "train_data": "data/NQ/train.json", "n_context": 100}
            """)
        #expect(c == OptimConfig(optim: .adamw, scheduler: .linear, lr: 5e-5, weightDecay: 0.01, warmupSteps: 1000,
                                 totalSteps: 15000, schedulerSteps: 30000, clip: 0.5, fixedLr: true))
        let back = try JSONDecoder().decode(OptimConfig.self, from: JSONEncoder().encode(c))
        #expect(back == c)
        let keys = try #require(JSONSerialization.jsonObject(with: JSONEncoder().encode(c)) as? [String: Any]).keys
        #expect(Set(keys) == ["optim", "scheduler", "lr", "weight_decay", "warmup_steps", "total_steps", "scheduler_steps", "clip", "fixed_lr"])
    }

    @Test func unknownOptimizerNamesTheChoices() {
        #expect {
            try Self.decode(#"{"optim": "sgd"}"#)
        } throws: { error in
            let e = error as? OptimConfigError
            return e?.field == "optim" && e?.found == "\"sgd\"" && e!.description.contains("adam, adamw")
        }
    }

    @Test(arguments: [
        (#"{"lr": -1}"#, "lr"), (#"{"clip": 0}"#, "clip"), (#"{"warmup_steps": -5}"#, "warmup_steps"),
        (#"{"total_steps": 0}"#, "total_steps"), (#"{"scheduler_steps": 0}"#, "scheduler_steps"),
        (#"{"weight_decay": -0.1}"#, "weight_decay"), (#"{"scheduler": "cosine"}"#, "scheduler"),
    ])
    func rejectsBadValues(json: String, field: String) {
        #expect {
            try Self.decode(json)
        } throws: { error in
            (error as? OptimConfigError)?.field == field
        }
    }

    /// A count that is no integer names its field and the number (Foundation said only "The
    /// given data was not valid JSON").
    @Test(arguments: ["total_steps", "warmup_steps", "scheduler_steps"])
    func aStepCountThatIsNoIntegerNamesTheField(field: String) {
        #expect {
            try Self.decode(#"{"\#(field)": 2.5}"#)
        } throws: { error in
            let e = error as? OptimConfigError
            return e?.field == field && e?.expected == "an integer" && e?.found == "2.5"
        }
    }

    @Test func adamIgnoresWeightDecayLikeFiD() {
        let adam = OptimConfig(optim: .adam, weightDecay: 0.3).makeOptimizer(count: 3)
        #expect((adam as? Adam)?.weightDecay == 0)
        let adamw = OptimConfig(optim: .adamw, weightDecay: 0.3).makeOptimizer(count: 3)
        #expect((adamw as? AdamW)?.weightDecay == 0.3)
    }
}
