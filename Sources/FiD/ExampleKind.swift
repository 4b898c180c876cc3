// ExampleKind: the `example` job kind (and `fidq example`): writes an example world's files.
import Foundation
import Jobs

/// `example` params: where to write and the world's seed and sizes (`ExampleWorldConfig`).
///
///     {"kind": "example", "id": "world", "params": {"seed": 1, "train": 600, "dev": 150}}
///
/// Without `output` the files go into the job's `out/`, where later jobs name them
/// `job:world/passages.tsv`, `job:world/train.json`, `job:world/reader/config.json`, ….
public struct ExampleParams: JobParams, Equatable {
    /// Folder to write into (workspace-relative or absolute); nil: the job's `out/`.
    public var output: String?
    public var world = ExampleWorldConfig()

    enum CodingKeys: String, CodingKey, CaseIterable {
        case output, seed, train, dev, people, exercises
        case nContext = "n_context"
        case decoysMin = "decoys_min"
        case decoysMax = "decoys_max"
    }

    public init(output: String? = nil, world: ExampleWorldConfig = ExampleWorldConfig()) {
        self.output = output
        self.world = world
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        let d = ExampleWorldConfig()
        output = try c.decodeIfPresent(String.self, forKey: .output)
        world = ExampleWorldConfig(
            seed: try c.decode(.seed, default: d.seed), train: try c.decode(.train, default: d.train),
            dev: try c.decode(.dev, default: d.dev), nContext: try c.decode(.nContext, default: d.nContext),
            decoysMin: try c.decode(.decoysMin, default: d.decoysMin),
            decoysMax: try c.decode(.decoysMax, default: d.decoysMax), people: try c.decode(.people, default: d.people),
            exercises: try c.decode(.exercises, default: d.exercises))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(output, forKey: .output)
        try c.encode(world.seed, forKey: .seed)
        try c.encode(world.train, forKey: .train)
        try c.encode(world.dev, forKey: .dev)
        try c.encode(world.people, forKey: .people)
        try c.encode(world.nContext, forKey: .nContext)
        try c.encode(world.decoysMin, forKey: .decoysMin)
        try c.encode(world.decoysMax, forKey: .decoysMax)
        try c.encode(world.exercises, forKey: .exercises)
    }

    public var outputPaths: [(field: String, path: String)] { output.map { [("output", $0)] } ?? [] }
    /// The named files it writes into `output`, not the folder (`.` is a fine output).
    public var exclusiveOutputs: [(field: String, path: String)] {
        guard let output else { return [] }
        return ExampleWorld.fileNames.map { ("output", output + "/" + $0) }
    }

    public func validate() throws {
        do { try world.validate() } catch let e as ExampleWorldError {
            throw JobError.permanent("expected \(e.expected), found \(e.found)", field: "params." + e.field, hint: e.hint)
        }
    }
}

/// The `example` kind's `result.json`: the world's summary and where its files are.
public struct ExampleOutput: Codable, Sendable {
    public var folder: String
    public var summary: ExampleWorld.Summary
}

/// `example`: generates the world (a second or two for the demo's size) and publishes its files.
public struct ExampleKind: JobKind {
    public init() {}
    public var name: String { "example" }

    public func run(_ p: ExampleParams, _ context: JobContext) throws -> ExampleOutput {
        let c = p.world
        context.log("example: seed \(c.seed), \(c.train) train + \(c.dev) dev questions, \(c.resolvedPeople) people, "
                    + "\(c.decoysMin)…\(c.decoysMax) decoys per fact, n_context \(c.nContext), \(c.exercises) reading exercises")
        let world: ExampleWorld
        do { world = try ExampleWorld(config: c) } catch let e as ExampleWorldError {
            throw JobError.permanent("expected \(e.expected), found \(e.found)", field: "params." + e.field, hint: e.hint)
        }
        try context.checkCancelled()
        let files = try world.files()
        let folder: String
        if let output = p.output {
            folder = try context.output(output, field: "params.output")
            if let info = try? context.fs.info(folder), info.kind != .directory {
                throw JobError.permanent("\(folder) is a file, expected a folder (created if missing) for the world's files", field: "params.output")
            }
            // Each file's place, symlinks inside the folder followed (`reader/` linking elsewhere).
            for (name, _) in files { _ = try context.output(folder + "/" + name, field: "params.output") }
            try world.write(to: folder)
        } else {
            folder = context.out
            for (i, (name, data)) in files.enumerated() {
                try context.publish(name, data)
                context.progress.update(step: i + 1, total: files.count)
            }
        }
        let s = world.summary
        context.log("example: \(s.passages) passages, \(s.train) train and \(s.dev) dev questions in \(folder); "
                    + "dev chance exact match \(String(format: "%.4f", s.chanceExactMatch))")
        return ExampleOutput(folder: folder, summary: s)
    }
}
