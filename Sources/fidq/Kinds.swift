// Kinds: the one place that wires job kinds into the registry every command uses.
import FiD
import Foundation
import Jobs
import JobsTesting
import Tensor

enum Kinds {
    /// The kinds that run models or products: their logs name the kernels.
    static let computeKinds: Set<String> = [
        ScoreKind().name, TrainReaderKind().name, TrainRetrieverKind().name, EmbedKind().name, RetrieveKind().name,
    ]

    /// Every kind this build of fidq runs. The queue's own test kind (`test.record`) is only
    /// registered when `FIDQ_TEST_KINDS=1`, so users never meet it; that variable also arms the
    /// crash points of `FIDQ_TEST_CRASH`. Both live in the JobsTesting module, out of `Jobs`.
    static func registry() -> KindRegistry {
        let registry = KindRegistry()
        // A job's `threads` param (capped by --threads) sizes BLAS and the kernels while it runs.
        // Kinds that compute also log the kernels they compute with (their bits depend on them).
        registry.willRun = { context in
            Threads.set(context.threads)
            if computeKinds.contains(context.kind) { context.log("kernels: " + KernelSwitch.summary) }
        }
        TextKinds.register(into: registry)
        registry.register(FetchKind())
        registry.register(ExampleKind())
        registry.register(ScoreKind())
        registry.register(MergeKind())
        registry.register(TrainReaderKind())
        registry.register(TrainRetrieverKind())
        registry.register(EmbedKind())
        registry.register(RetrieveKind())
        registry.register(IndexBM25Kind())
        registry.register(EvaluateRetrievalKind())
        if ProcessInfo.processInfo.environment["FIDQ_TEST_KINDS"] == "1" {
            registry.register(TrainTestKind())  // test.train: checkpoint resume under kill -9
            TestKinds.register(into: registry)
            CrashPoints.armFromEnvironment()
        }
        return registry
    }
}
