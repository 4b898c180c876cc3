// KindCommand: every job kind as a foreground subcommand with FiD's flag names
// (`fidq score --model_path M --eval_data D --n_context 10`): the flags become the same params
// JSON a descriptor carries, run through the registry's foreground path.
import ArgumentParser
import Foundation
import Jobs

/// A kind offered as a subcommand. Adding one is one line: `enum ScoreCLI: KindCLI { … }` (name
/// and abstract) and `KindCommand<ScoreCLI>.self` in `Fidq`'s subcommands.
protocol KindCLI {
    /// The registered kind (`score`); the subcommand is its name with `-` for `_` (`train-reader`).
    static var kind: String { get }
    static var abstract: String { get }
}

struct KindCommand<K: KindCLI>: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: K.kind.replacingOccurrences(of: "_", with: "-"),
            abstract: K.abstract,
            discussion: """
                Every other flag is a param of the '\(K.kind)' job, named as in FiD (--n_context 10, \
                --write_results): the same params a queued job carries (see README). A flag without a value is \
                true; a value is typed by the params (numbers, strings, lists for repeated or several values). \
                The run writes log.txt, progress.json, result.json (or error.json) and out/ into --out.

                PARAMS (README's section on '\(K.kind)' says what each does):
                """ + "\n" + paramLines.joined(separator: "\n"),
            // The kind's own name too (`fidq train_reader`, as the descriptors spell it): it was an
            // unknown option of `fidq` itself, with no hint.
            aliases: K.kind.contains("_") ? [K.kind] : [])
    }

    /// The kind's params as its decoder takes them, computed once (`configuration` is read often).
    static var paramLines: [String] {
        paramLinesLock.lock()
        defer { paramLinesLock.unlock() }
        if let lines = paramLinesCache[K.kind] { return lines }
        let lines = ParamsCatalog.helpLines(Kinds.registry().describeParams(kind: K.kind))
        paramLinesCache[K.kind] = lines
        return lines
    }

    @Option(help: "Folder for the job's log, result and out/ (default: ./<subcommand>.run, e.g. ./train-reader.run; ./<subcommand>-<shard_id>.run for one of several shards).")
    var out: String?

    @Option(help: "Relative paths resolve here (default: the current folder).")
    var workspace: String?

    @OptionGroup var compute: ComputeOptions

    @Flag(help: "Print the params JSON the flags make (a descriptor's params) and exit.")
    var printParams = false

    @Argument(parsing: .allUnrecognized, help: "The job's params as --flag value pairs.")
    var flags: [String] = []

    func run() throws {
        compute.apply()
        let registry = Kinds.registry()
        let params: JSONValue
        do {
            params = try FlagParams.build(flags) { try registry.decodeParams(kind: K.kind, $0) }
        } catch let e as FlagParams.Failure {
            throw Self.usageError(e.description)
        }
        if printParams {
            // Printed only when they decode and pass the kind's checks, as a job's would (a typo,
            // and lr 0, were printed with exit 0 and refused at submit).
            do { try registry.checkParams(kind: K.kind, params) } catch let e as JobError {
                throw fail(Self.asFlags(e).description)
            }
            print(String(decoding: try jsonEncoder().encode(params), as: UTF8.self))
            return
        }
        let cwd = FileManager.default.currentDirectoryPath
        var id = K.kind.replacingOccurrences(of: "_", with: "-")
        // Shards run side by side (FiD's --shard_id, one process each): each its own default folder.
        if case .object(let o) = params, case .number(let shard)? = o["shard_id"], case .number(let shards)? = o["num_shards"], shards > 1 {
            id += "-\(Int(shard))"
        }
        let descriptor = JobDescriptor(kind: K.kind, id: id, maxAttempts: 1, params: params)
        var job = ForegroundRun(file: cwd + "/\(descriptor.id).json", workspace: workspace ?? cwd)
        job.outDir = out ?? cwd + "/\(descriptor.id).run"
        // The foreground reads and writes wherever its user can (DESIGN §3); only queued jobs are confined.
        job.allowedRoots = ["/"]
        job.reproduce = "fidq " + ([Self.configuration.commandName!] + CommandLine.arguments.dropFirst(2)).map(shellQuoted).joined(separator: " ")
        job.threads = compute.resolved
        job.progressBar = isatty(2) != 0
        do {
            let cancel = CancellationToken()
            StopSignals.install(cancelling: cancel)
            let value = try job.run(descriptor, registry: registry, cancel: cancel)
            print(String(decoding: try jsonEncoder().encode(value), as: UTF8.self))
        } catch let e as JobError {
            throw fail("\(Self.configuration.commandName!): \(Self.asFlags(e).description)")  // "fidq: train-reader: --x: …"
        }
    }

    /// A usage error under this subcommand's usage line (a `ValidationError` thrown from `run`
    /// is printed under the root command's).
    static func usageError(_ message: String) -> ExitCode {
        let name = configuration.commandName!
        FileHandle.standardError.write(Data(("Error: \(message)\nUsage: \(Fidq.usageString(for: Self.self))\n"
                                             + "  See 'fidq \(name) --help' for more information.\n").utf8))
        return ExitCode.validationFailure
    }

    /// `e` with a params field named as the flag that sets it (`params.train_data` → `--train_data`).
    static func asFlags(_ e: JobError) -> JobError {
        var e = e
        if let field = e.field, field.hasPrefix("params.") {
            let key = field.dropFirst(7)
            // `shards[1]`: the flag's second value.
            if let name = key.split(separator: "[").first, !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }),
               key.dropFirst(name.count).allSatisfy({ $0.isNumber || $0 == "[" || $0 == "]" }) {
                e.field = "--" + key
            }
        }
        return e
    }
}

/// Generic types hold no stored statics: one cache for every kind's help lines.
private nonisolated(unsafe) var paramLinesCache: [String: [String]] = [:]
private let paramLinesLock = NSLock()

enum ScoreCLI: KindCLI {
    static let kind = "score", abstract = "Answer a data set with a reader: exact match, predictions, passage scores (FiD's test_reader.py)."
}

enum MergeCLI: KindCLI {
    static let kind = "merge", abstract = "Join the outputs of score shards in the data set's order (--shards DIR DIR …)."
}

enum TrainReaderCLI: KindCLI {
    static let kind = "train_reader", abstract = "Train a FiD reader with checkpoints and exact-match eval (FiD's train_reader.py)."
}

enum TrainRetrieverCLI: KindCLI {
    static let kind = "train_retriever", abstract = "Distil a reader's passage scores into a BERT retriever (FiD's train_retriever.py)."
}

enum ExampleCLI: KindCLI {
    static let kind = "example", abstract = "Write the embedded example world (passages, questions, small model configs)."
}
