// Presets: FiD's published data and models (get-data.sh, get-model.sh) as named fetch sources.
import Foundation

/// A named source: its URLs, what it costs to download, and what it leaves in `dest`.
public struct Preset: Sendable {
    /// How the downloads become `dest`.
    public enum Recipe: Sendable, Equatable {
        /// Each download unpacked (or decompressed) by content, all into `dest`.
        case files
        /// One archive holding a released checkpoint; `dest` gets `config.json` and the weights at its top.
        case model
        /// get-data.sh: `psgs_w100.tsv` plus FiD JSON `NQ/{train,dev,test}.json` and/or `TQA/…`.
        case fidData(nq: Bool, tqa: Bool)
    }

    public let name: String
    public let summary: String
    /// Download size as published or estimated (approximate).
    public let size: String
    /// What `dest` holds afterwards.
    public let yields: String
    public let urls: [String]
    public let recipe: Recipe
    /// `.files`: per URL, the paths its unpacked download must hold (FiD's preprocess.py reads
    /// them), so a mirror serving something else fails naming it instead of leaving it in dest.
    public var contents: [[String]] = []

    /// Whether the `passages` param (an existing psgs_w100.tsv) applies.
    public var usesPassages: Bool {
        if case .fidData = recipe { return true }
        return false
    }
}

/// The table of presets (URLs from FiD's get-data.sh and get-model.sh, ref/fid-spec.md §1.8–§1.9).
public enum Presets {
    static let fb = "https://dl.fbaipublicfiles.com"
    static let psgs = "\(fb)/dpr/wikipedia_split/psgs_w100.tsv.gz"
    static let nqOpen = "https://raw.githubusercontent.com/google-research-datasets/natural-questions/master/nq_open"
    static let nqDev = "\(nqOpen)/NQ-open.dev.jsonl"
    static let nqTrain = "\(nqOpen)/NQ-open.train.jsonl"
    static let tqa = "http://nlp.cs.washington.edu/triviaqa/data/triviaqa-unfiltered.tar.gz"
    static let dataIndex = "\(fb)/FiD/data/dataindex.tar.gz"
    static let nqPassages = "\(fb)/FiD/data/nq_passages.tar.gz"
    static let tqaPassages = "\(fb)/FiD/data/tqa_passages.tar.gz"

    static let splits = ["train", "dev", "test"]

    static func model(_ name: String, _ size: String, _ what: String) -> Preset {
        Preset(name: name, summary: "FiD's released \(what)", size: size,
               yields: "config.json + pytorch_model.bin at the top of dest",
               urls: ["\(fb)/FiD/pretrained_models/\(name).tar.gz"], recipe: .model)
    }

    /// Every preset, in `--list` order. Sizes marked ≈ are estimates from the parameter count or
    /// from DPR's and TriviaQA's pages, not measured here (no internet on this machine).
    public static let all: [Preset] = [
        Preset(name: "fid_data", summary: "everything get-data.sh makes", size: "≈ 5.2 GB",
               yields: "psgs_w100.tsv, NQ/{train,dev,test}.json, TQA/{train,dev,test}.json",
               urls: [psgs, nqDev, nqTrain, tqa, dataIndex, nqPassages, tqaPassages], recipe: .fidData(nq: true, tqa: true)),
        Preset(name: "nq_data", summary: "NQ in FiD JSON with FiD's top-100 passages", size: "≈ 4.5 GB",
               yields: "psgs_w100.tsv (unless 'passages' names one), NQ/{train,dev,test}.json",
               urls: [psgs, nqDev, nqTrain, dataIndex, nqPassages], recipe: .fidData(nq: true, tqa: false)),
        Preset(name: "tqa_data", summary: "TriviaQA in FiD JSON with FiD's top-100 passages", size: "≈ 5.1 GB",
               yields: "psgs_w100.tsv (unless 'passages' names one), TQA/{train,dev,test}.json",
               urls: [psgs, tqa, dataIndex, tqaPassages], recipe: .fidData(nq: false, tqa: true)),
        Preset(name: "psgs_w100", summary: "DPR's Wikipedia passages (21M × 100 words)", size: "≈ 4.4 GB (13 GB unpacked)",
               yields: "psgs_w100.tsv (id, text, title)", urls: [psgs], recipe: .files, contents: [["psgs_w100.tsv"]]),
        Preset(name: "nq_open", summary: "NQ-open questions and answers (raw jsonl)", size: "≈ 9 MB",
               yields: "NQ-open.train.jsonl, NQ-open.dev.jsonl", urls: [nqDev, nqTrain], recipe: .files,
               contents: [["NQ-open.dev.jsonl"], ["NQ-open.train.jsonl"]]),
        Preset(name: "triviaqa_unfiltered", summary: "TriviaQA unfiltered (raw)", size: "≈ 0.6 GB",
               yields: "triviaqa-unfiltered/unfiltered-web-{train,dev}.json, …", urls: [tqa], recipe: .files,
               contents: [["triviaqa-unfiltered/unfiltered-web-train.json", "triviaqa-unfiltered/unfiltered-web-dev.json"]]),
        Preset(name: "fid_dataindex", summary: "FiD's question index lists", size: "small",
               yields: "{NQ,TQA}.{train,dev,test}.idx.json", urls: [dataIndex], recipe: .files,
               contents: [["NQ", "TQA"].flatMap { set in splits.map { "\(set).\($0).idx.json" } }]),
        Preset(name: "fid_nq_passages", summary: "FiD's top-100 passage ids per NQ question", size: "not published",
               yields: "nq_passages/{train,dev,test}.json", urls: [nqPassages], recipe: .files,
               contents: [splits.map { "nq_passages/\($0).json" }]),
        Preset(name: "fid_tqa_passages", summary: "FiD's top-100 passage ids per TriviaQA question", size: "not published",
               yields: "tqa_passages/{train,dev,test}.json", urls: [tqaPassages], recipe: .files,
               contents: [splits.map { "tqa_passages/\($0).json" }]),
        model("nq_reader_base", "≈ 0.9 GB", "NQ reader (T5-base)"),
        model("nq_reader_large", "≈ 3.0 GB", "NQ reader (T5-large)"),
        model("nq_retriever", "≈ 0.4 GB", "NQ retriever (BERT-base, distilled)"),
        model("tqa_reader_base", "≈ 0.9 GB", "TriviaQA reader (T5-base)"),
        model("tqa_reader_large", "≈ 3.0 GB", "TriviaQA reader (T5-large)"),
        model("tqa_retriever", "≈ 0.4 GB", "TriviaQA retriever (BERT-base, distilled)"),
    ]

    /// The preset called `name`, if any.
    public static func named(_ name: String) -> Preset? { all.first { $0.name == name } }

    /// A plain-text table for `fidq fetch --list`.
    public static func listing() -> String {
        let w0 = all.map(\.name.count).max()!, w1 = all.map(\.size.count).max()!
        func pad(_ s: String, _ w: Int) -> String { s + String(repeating: " ", count: max(0, w - s.count)) }
        var lines = ["\(pad("source", w0))  \(pad("download", w1))  yields"]
        for p in all {
            lines.append("\(pad(p.name, w0))  \(pad(p.size, w1))  \(p.yields)")
            lines.append("\(pad("", w0))  \(pad("", w1))  \(p.summary); \(p.urls.count == 1 ? p.urls[0] : "\(p.urls.count) downloads")")
        }
        return lines.joined(separator: "\n")
    }
}

extension Preset {
    /// What an unpacked download holds, for an error: up to 8 paths (files below folders).
    static func summary(of folder: URL) -> String {
        let found = (FileManager.default.enumerator(atPath: folder.path)?.allObjects as? [String] ?? []).sorted()
        if found.isEmpty { return "nothing" }
        return found.prefix(8).joined(separator: ", ") + (found.count > 8 ? ", … (\(found.count) in all)" : "")
    }

    /// The URL actually fetched: `mirror` (if set) replaces the scheme and host.
    func resolve(_ url: String, mirror: String?) -> URL {
        guard let mirror, let path = URL(string: url)?.path else { return URL(string: url)! }
        let base = mirror.hasSuffix("/") ? String(mirror.dropLast()) : mirror
        return URL(string: base + path)!
    }

    /// Downloads this preset's URLs and builds `stage` from them.
    func build(
        params: FetchParams, workspace: URL, work: URL, stage: URL, downloader: Downloader, readCheck: ReadCheck?,
        record: (DownloadResult, URL) -> Void, progress: @escaping (FetchProgress) -> Void,
        isCancelled: @escaping () -> Bool, log: @escaping (String) -> Void
    ) throws {
        // Keys follow the fixed URL table, so a restarted job finds its earlier part files.
        func fetch(_ url: String) throws -> (file: URL, name: String) {
            let resolved = resolve(url, mirror: params.mirror)
            let key = "d\(urls.firstIndex(of: url)!)"
            log("fetch: \(name): \(resolved.absoluteString)")
            let got = try downloader.download(resolved, key: key, in: work, sha256: nil, field: params.mirror != nil ? "mirror" : "source")
            record(got, resolved)
            return (got.file, Fetcher.defaultName(resolved))
        }
        func unpack(_ d: (file: URL, name: String), into folder: URL) throws {
            try removeTree(folder)
            try Fetcher.unpack(d.file, name: d.name, params: params, into: folder,
                               progress: progress, isCancelled: isCancelled, log: log)
        }
        switch recipe {
        case .files:
            guard mkdir(stage.path, 0o777) == 0 else { throw FetchError.posix(stage.path, "cannot create staging folder") }
            for (i, url) in urls.enumerated() {
                let folder = work.appendingPathComponent("x\(i)")
                try unpack(try fetch(url), into: folder)
                // Kept as downloaded (`unpack: off`) or stripped (`strip_components`), the layout is
                // the user's, not what preprocess.py reads.
                if params.unpack != .off, params.stripComponents == 0, i < contents.count {
                    let missing = contents[i].filter { !FileManager.default.fileExists(atPath: folder.appendingPathComponent($0).path) }
                    if !missing.isEmpty {
                        throw FetchError.format(file: resolve(url, mirror: params.mirror).absoluteString, field: "contents",
                                                expected: contents[i].joined(separator: ", "),
                                                found: "no " + missing.joined(separator: ", ") + "; it holds " + Self.summary(of: folder))
                    }
                }
                try moveChildren(of: folder, into: stage)
            }
        case .model:
            let folder = work.appendingPathComponent("x0")
            try unpack(try fetch(urls[0]), into: folder)
            try rename(modelRoot(folder), to: stage)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: stage.path)) ?? []
            guard names.contains("config.json"), names.contains("pytorch_model.bin") || names.contains("model.safetensors") else {
                throw FetchError.format(file: resolve(urls[0], mirror: params.mirror).absoluteString, field: "contents", expected: "config.json and pytorch_model.bin",
                                        found: names.sorted().joined(separator: ", "))
            }
        case .fidData(let nq, let tqa):
            guard mkdir(stage.path, 0o777) == 0 else { throw FetchError.posix(stage.path, "cannot create staging folder") }
            let inputs = work.appendingPathComponent("inputs")
            try removeTree(inputs)
            guard mkdir(inputs.path, 0o777) == 0 else { throw FetchError.posix(inputs.path, "cannot create inputs folder") }
            var passages: URL
            if let given = params.passages {
                passages = given.hasPrefix("/") ? URL(fileURLWithPath: given) : workspace.appendingPathComponent(given)
                try readCheck?(passages.path, "passages")
                guard FileManager.default.isReadableFile(atPath: passages.path) else {
                    let reason = FileManager.default.fileExists(atPath: passages.path) ? "not readable" : "no such file"
                    throw FetchError.localFile(path: passages.path, field: "passages", reason: reason)
                }
            } else {
                let folder = work.appendingPathComponent("x0")
                try unpack(try fetch(Presets.psgs), into: folder)
                try moveChildren(of: folder, into: stage)
                passages = stage.appendingPathComponent("psgs_w100.tsv")
                // What the source unpacked to is fixed: a missing file is not worth a retry.
                guard FileManager.default.fileExists(atPath: passages.path) else {
                    let found = ((try? FileManager.default.contentsOfDirectory(atPath: stage.path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
                    throw FetchError.format(file: Presets.psgs, field: params.mirror != nil ? "mirror" : "source",
                                            expected: "an archive or file that unpacks to psgs_w100.tsv",
                                            found: found.isEmpty ? "nothing" : found.prefix(5).joined(separator: ", "))
                }
            }
            for (i, url) in urls.enumerated() where url != Presets.psgs {
                try unpack(try fetch(url), into: inputs.appendingPathComponent("x\(i)"))
            }
            let located = try FiDPreprocess.locate(in: inputs, passages: passages, nq: nq, tqa: tqa)
            try FiDPreprocess.run(located, out: stage, progress: progress, isCancelled: isCancelled, log: log)
        }
    }

    /// The folder holding `config.json`: the unpacked folder itself or its single top-level folder.
    private func modelRoot(_ folder: URL) throws -> URL {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { !$0.hasPrefix(".") }
        if names.contains("config.json") { return folder }
        if names.count == 1 {
            let inner = folder.appendingPathComponent(names[0])
            if FileManager.default.fileExists(atPath: inner.appendingPathComponent("config.json").path) { return inner }
        }
        throw FetchError.format(file: urls[0], field: "layout", expected: "config.json at the top or in one top-level folder",
                                found: names.sorted().joined(separator: ", "))
    }
}
