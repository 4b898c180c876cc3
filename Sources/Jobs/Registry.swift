// KindRegistry: maps each job kind to its Codable params type and its handler.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A kind's params: the same Codable config its CLI subcommand builds from flags.
///
/// Decode strictly (`decoder.strictContainer(keyedBy:)`, defaults with `decode(_:default:)`) so
/// unknown keys and wrong types name the field. List the paths the job writes in `outputPaths` (each
/// is resolved and must stay inside the workspace or an allowed root) and the files it reads in
/// `inputPaths` (each must exist before the job starts; `job:` references, and at submit time any
/// input of a job with `after`, may appear once the dependencies are done).
public protocol JobParams: Codable, Sendable {
    /// Paths the job writes, with the params field that names each (`("dest", dest)`).
    var outputPaths: [(field: String, path: String)] { get }
    /// Paths the job reads, with their field; each must exist when the job starts.
    var inputPaths: [(field: String, path: String)] { get }
    /// The files or folders only this job may write, with their field: two queued jobs naming
    /// the same one would overwrite each other, so submit refuses the second. Defaults to
    /// `outputPaths`; a kind whose output path is a prefix or a parent (an embed shard's
    /// `output_path`, `checkpoint_dir`) names what it really writes there.
    var exclusiveOutputs: [(field: String, path: String)] { get }
    /// Range checks beyond types; throw `JobError.permanent(…, field: "params.x")`.
    func validate() throws
    /// Cheap checks of the input files' contents (a data file's first element, a model folder's
    /// files), so bad input is refused at submit; called once every input exists, with the
    /// resolver of params paths. Throw `JobError.permanent(…, field: "params.x")`.
    func validateInputs(resolve: (String) -> String) throws
    /// Params a run may change and still resume another's files in the same folder (a training
    /// run extended with a larger `total_steps`, as FiD resumes one); `threads` always may.
    static var resumableChanges: Set<String> { get }
    /// For `--help`: params whose default depends on others, by key (`"index": "flat; pq when
    /// n_subquantizers > 0"`), shown in place of the one value the catalog reads back.
    static var defaultNotes: [String: String] { get }
}

extension JobParams {
    public var outputPaths: [(field: String, path: String)] { [] }
    public var inputPaths: [(field: String, path: String)] { [] }
    public var exclusiveOutputs: [(field: String, path: String)] { outputPaths }
    public func validate() throws {}
    public static var defaultNotes: [String: String] { [:] }
    public func validateInputs(resolve: (String) -> String) throws {}
    public static var resumableChanges: Set<String> { [] }
}

/// A job kind: a name, a params type and a handler.
///
/// `run` is called on the worker's thread with a context that gives the job's folder and `out/`,
/// path resolution and output-root checks, progress, a log, the cancellation token (check it at
/// safe points with `context.checkCancelled()`) and the attempt number. Throw `JobError` (or any
/// `ClassifiedError`) to say whether a retry can help; other errors count as transient. The
/// returned value is written to `result.json`.
public protocol JobKind: Sendable {
    associatedtype Params: JobParams
    associatedtype Output: Encodable
    /// The `kind` string of descriptors this handler runs.
    var name: String { get }
    func run(_ params: Params, _ context: JobContext) throws -> Output
}

/// A descriptor whose params decoded and whose paths checked out, ready to run.
public struct PreparedJob: Sendable {
    public let descriptor: JobDescriptor
    /// The `threads` param every kind accepts (nil: absent).
    public var threads: Int?
    /// The kind's `JobParams.resumableChanges`.
    public var resumableChanges: Set<String> = []
    /// The params' `inputPaths`, resolved (`params.x`, path).
    public var inputs: [(field: String, path: String)] = []
    /// Params as the kind reads them, every default written out (`threads` left out), so two
    /// spellings of one setting compare equal (`clip` omitted and `1.0`); nil when they do not
    /// decode (a record of an older version's params).
    public var canonical: @Sendable (JSONValue) -> JSONValue? = { _ in nil }
    /// The registry's `willRun`, called with the context just before the handler.
    var willRun: (@Sendable (JobContext) -> Void)?
    let body: @Sendable (JobContext) throws -> JSONValue

    /// Runs the handler (with `context.threads` set from the `threads` param) and returns its
    /// output as JSON.
    public func run(_ context: JobContext) throws -> JSONValue {
        context.threads = min(threads ?? context.threadCap, context.threadCap)
        willRun?(context)
        return try body(context)
    }
}

/// The kinds a worker can run. Registering a name twice is a bug (trap).
public final class KindRegistry: @unchecked Sendable {
    private struct Entry {
        let prepare: (JobDescriptor, PathPolicy, FileSystem, Bool) throws -> PreparedJob
        /// Decodes params with the kind's type only, rethrowing its raw `DecodingError`; with
        /// `true`, also runs the params' `validate()`.
        let decode: (JSONValue, Bool) throws -> Void
        /// The params' `exclusiveOutputs`, resolved by the policy.
        let exclusive: (JSONValue, PathPolicy) throws -> [(field: String, path: String)]
        /// The params the kind's decoder takes (`ParamsCatalog`).
        let describe: () -> [ParamDescription]
    }

    private var entries: [String: Entry] = [:]

    /// Called before every handler runs, e.g. to apply `context.threads` to the compute pools
    /// (`fidq` sets it; `Jobs` knows no compute library).
    public var willRun: (@Sendable (JobContext) -> Void)?

    public init() {}

    /// Registers `kind` under `kind.name`.
    public func register<K: JobKind>(_ kind: K) {
        precondition(entries[kind.name] == nil, "job kind '\(kind.name)' registered twice")
        entries[kind.name] = Entry(prepare: { descriptor, policy, fs, checkJobInputs in
            let (rest, threads) = try ThreadsParam.split(descriptor.params)
            let params = try KindRegistry.decode(K.Params.self, rest)
            try params.validate()
            for (field, path) in params.outputPaths {
                _ = try policy.checkOutput(path, field: "params." + field, fs: fs)
            }
            for (field, path) in params.exclusiveOutputs {
                try policy.checkHoldsNoQueue(path, field: "params." + field, fs: fs)
            }
            // At submit time a job with dependencies (`after`, or a `job:` input) may read what they write (a fetched
            // folder, say), so its missing inputs are checked when it starts, not refused now.
            let deferMissing = !checkJobInputs && !descriptor.dependencies.isEmpty
            // Reads are confined like writes: a descriptor on a shared queue must not copy another
            // user's files into the workspace (`fidq fetch` and the other foreground commands
            // build no registry and read anywhere).
            // Inputs as the run will read them (`…/checkpoint/latest` is the folder it names).
            let resolveInput = { (path: String) in Checkpoints.followingLatest(policy.resolve(path), fs: fs) }
            for (field, path) in params.inputPaths {
                _ = try policy.checkInput(path, field: "params." + field, fs: fs)
                // What the run reads: a `latest` pointer's step folder, not the pointer.
                try policy.checkInputTree(resolveInput(path), field: "params." + field, fs: fs)
            }
            var allPresent = true
            for (field, path) in params.inputPaths {
                let resolved = resolveInput(path)
                if fs.exists(resolved) { continue }
                allPresent = false
                if (checkJobInputs || !path.hasPrefix("job:")) && !deferMissing {
                    throw JobError.missingInput("input '\(path)' does not exist (resolved to \(resolved))",
                                                field: "params." + field, hint: Self.missingReferenceHint(path, queue: policy.queue, fs: fs))
                }
            }
            if allPresent { try params.validateInputs(resolve: resolveInput) }
            var prepared = PreparedJob(descriptor: descriptor, threads: threads) { context in
                try JSONValue.from(try kind.run(params, context))
            }
            prepared.resumableChanges = K.Params.resumableChanges
            prepared.canonical = { params in
                guard let rest = try? ThreadsParam.split(params).0, let decoded = try? KindRegistry.decode(K.Params.self, rest),
                      let data = try? JSONEncoder().encode(decoded) else { return nil }
                return try? JSONDecoder().decode(JSONValue.self, from: data)
            }
            prepared.inputs = params.inputPaths.map { (field: "params." + $0.field, path: resolveInput($0.path)) }
            return prepared
        }, decode: { params, validating in
            let decoded = try KindRegistry.decode(K.Params.self, try ThreadsParam.split(params).0)
            if validating { try decoded.validate() }
        }, exclusive: { params, policy in
            try KindRegistry.decode(K.Params.self, try ThreadsParam.split(params).0).exclusiveOutputs.map {
                (field: "params." + $0.field, path: policy.resolve($0.path))
            }
        }, describe: { ParamsCatalog.describe(K.Params.self) })
    }

    /// Decodes `params` with `kind`'s params type, nothing more (no validation, no paths), and
    /// rethrows the decoder's own `DecodingError`: `FlagParams` reads its type mismatches to
    /// learn which flags are strings or lists.
    /// - Throws: `JobError` for an unknown kind; the raw `DecodingError`.
    public func decodeParams(kind: String, _ params: JSONValue) throws {
        guard let entry = entries[kind] else { throw JobError.permanent("unknown kind '\(kind)'", field: "kind") }
        try entry.decode(params, false)
    }

    /// Decodes and validates `params` as a job's would be before any file is looked at (what
    /// `--print-params` vouches for); a decoding error names the field and the value found.
    /// - Throws: `JobError`.
    public func checkParams(kind: String, _ params: JSONValue) throws {
        guard let entry = entries[kind] else { throw JobError.permanent("unknown kind '\(kind)'", field: "kind") }
        do { try entry.decode(params, true) } catch let e as DecodingError {
            throw JobError.describe(e, root: "params", document: params)
        } catch {
            throw JobError.classify(error)
        }
    }

    /// The params `kind` takes, required ones first, then by name; empty for an unknown kind.
    public func describeParams(kind: String) -> [ParamDescription] {
        entries[kind]?.describe() ?? []
    }

    /// The resolved paths only `descriptor`'s job may write (`JobParams.exclusiveOutputs`); empty
    /// for an unknown kind or params that do not decode (`prepare` names those).
    public func exclusiveOutputs(of descriptor: JobDescriptor, policy: PathPolicy) -> [(field: String, path: String)] {
        guard let entry = entries[descriptor.kind] else { return [] }
        return (try? entry.exclusive(descriptor.params, policy)) ?? []
    }

    /// Registered kind names, sorted.
    public var names: [String] { entries.keys.sorted() }

    public func has(_ name: String) -> Bool { entries[name] != nil }

    /// Decodes and checks a descriptor's params for its kind.
    ///
    /// - Parameter checkJobInputs: also require `job:` inputs, and every input of a job with
    ///   `after`, to exist (true once dependencies are done; false at submit time).
    /// - Throws: `JobError.permanent` naming the field for an unknown kind, bad params, an output
    ///   outside the allowed roots or a missing input.
    public func prepare(_ descriptor: JobDescriptor, policy: PathPolicy, fs: FileSystem,
                        checkJobInputs: Bool = true) throws -> PreparedJob {
        guard let entry = entries[descriptor.kind] else {
            var hint = "known kinds: \(names.joined(separator: ", "))"
            if let near = closest(descriptor.kind, in: names) { hint = "did you mean '\(near)'? " + hint }
            throw JobError.permanent("unknown kind '\(descriptor.kind)'", field: "kind", hint: hint)
        }
        do {
            var job = try entry.prepare(descriptor, policy, fs, checkJobInputs)
            job.willRun = willRun
            return job
        } catch let e as DecodingError {
            throw JobError.describe(e, root: "params", document: descriptor.params)
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ value: JSONValue) throws -> T {
        try JSONDecoder().decode(T.self, from: JSONEncoder().encode(value))
    }
}

extension KindRegistry {
    /// Why a `job:ID/…` input is missing: no queue there (a foreground run), the job not done,
    /// or done without writing the path. Nil for other paths.
    static func missingReferenceHint(_ path: String, queue: String, fs: FileSystem) -> String? {
        guard path.hasPrefix("job:") else { return nil }
        let id = path.dropFirst(4).prefix { $0 != "/" }
        if !fs.exists(queue) {
            return "job: paths name a queued job's outputs, and there is no queue at \(queue): pass --queue, or the output's own path"
        }
        if !fs.exists(queue + "/done/" + id) {
            return "job '\(id)' has not finished (it is not in \(queue)/done): job: paths name a queued job's outputs, so submit "
                + "the jobs together and run a worker; a foreground run's outputs (fidq run --out DIR) are named by their own path, DIR/out/…"
        }
        return "the dependency finished without writing it"
    }
}
