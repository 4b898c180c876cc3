// TrainReaderCommand: `fidq train-reader --train_data … --n_context 10 …`: FiD's flags become the
// `train_reader` params and run through `fidq run`'s foreground path (the code a worker runs).
import ArgumentParser
import Foundation
import Jobs

struct TrainReaderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-reader",
        abstract: "Train a FiD reader (FiD's train_reader.py) in the foreground.",
        discussion: """
            Flags are FiD's option names, e.g. --train_data train.json --eval_data dev.json --model_path t5-small \
            --n_context 10 --per_gpu_batch_size 2 --total_steps 1000 --use_checkpoint. Value-less flags \
            (--use_checkpoint, --fixed_lr) mean true. They decode into the same params a queued train_reader job \
            has (README: train_reader); unknown names are refused. Checkpoints, log and result.json go into --out.
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
        let descriptor: JSONValue = .object(["kind": .string("train_reader"), "id": .string(name), "params": .object(params)])
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
            throw fail("train-reader: \(e.description)")
        }
    }
}

/// `--key value` pairs as a params object: integers, numbers and true/false by their look, a flag
/// followed by another flag (or nothing) as true, anything else a string.
enum FlagParams {
    static func parse(_ args: [String]) throws -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        var i = 0
        while i < args.count {
            let a = args[i]
            guard a.hasPrefix("--"), a.count > 2 else { throw ValidationError("expected --option, found '\(a)'") }
            var key = String(a.dropFirst(2))
            var value: String?
            if let eq = key.firstIndex(of: "=") {
                value = String(key[key.index(after: eq)...])
                key = String(key[..<eq])
            } else if i + 1 < args.count, !args[i + 1].hasPrefix("--") {
                value = args[i + 1]
                i += 1
            }
            guard out[key] == nil else { throw ValidationError("--\(key) given twice") }
            out[key] = value.map(scalar) ?? .bool(true)
            i += 1
        }
        return out
    }

    static func scalar(_ s: String) -> JSONValue {
        if s == "true" { return .bool(true) }
        if s == "false" { return .bool(false) }
        if let d = Double(s), s.first.map({ $0.isNumber || $0 == "-" || $0 == "." }) == true { return .number(d) }
        return .string(s)
    }
}
