// TrainRetrieverCommand: `fidq train-retriever --train_data scored.json --n_context 20 …`: FiD's flags
// become the `train_retriever` params and run through `fidq run`'s foreground path (the code a worker runs).
import ArgumentParser
import Foundation
import Jobs

struct TrainRetrieverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-retriever",
        abstract: "Distil a reader's passage scores into a BERT retriever (FiD's train_retriever.py) in the foreground.",
        discussion: """
            Flags are FiD's option names, e.g. --train_data dataset_wscores.json --eval_data dev_wscores.json \
            --model_path minilm --n_context 20 --per_gpu_batch_size 4 --total_steps 1000 --no_projection. \
            Value-less flags (--no_projection, --extract_cls, --fixed_lr) mean true. They decode into the same \
            params a queued train_retriever job has (README: train_retriever); unknown names are refused. \
            Checkpoints, log and result.json go into --out.
            """)

    @Option(help: "Folder for log.txt, result.json and out/checkpoint (default: <name>.run in the workspace).")
    var out: String?

    @Option(help: "Relative paths resolve here (default: the current folder).")
    var workspace: String?

    @OptionGroup var compute: ComputeOptions

    @Argument(parsing: .allUnrecognized, help: "FiD options: --train_data FILE --n_context N …")
    var options: [String] = []

    func run() throws {
        compute.apply()
        let params = try FlagParams.parse(options)
        let workspace = workspace ?? FileManager.default.currentDirectoryPath
        var name = "experiment_name"
        if case .string(let n)? = params["name"] { name = n }
        let folder = out ?? workspace + "/" + name + ".run"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let descriptor: JSONValue = .object(["kind": .string("train_retriever"), "id": .string(name), "params": .object(params)])
        let file = folder + "/job.json"
        try jsonEncoder().encode(descriptor).write(to: URL(fileURLWithPath: file), options: .atomic)
        var job = ForegroundRun(file: file, workspace: workspace)
        job.outDir = folder
        job.allowedRoots = ["/"]  // the user's own command reads and writes wherever they can
        if let threads = compute.threads { job.threads = max(1, threads) }
        job.progressBar = isatty(2) != 0
        do {
            let value = try job.run(registry: Kinds.registry())
            print(String(decoding: try jsonEncoder().encode(value), as: UTF8.self))
        } catch let e as JobError {
            throw fail("train-retriever: \(e.description)")
        }
    }
}
