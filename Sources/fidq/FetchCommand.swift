// FetchCommand: `fidq fetch` — maps flags onto FetchParams and runs Fetcher (or lists the presets).
import ArgumentParser
import Fetch
import Foundation
import Jobs

struct FetchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fetch",
        abstract: "Download, verify and unpack a data set or model into a folder (resumable).",
        discussion: "Give --url or --source (a preset; see --list). Interrupted downloads resume from "
            + "'.<dest>.fetch/' beside dest on the next run. Archives are unpacked safely by content. "
            + "Each flag also takes the job param's name (--strip_components, --max_bytes, --max_files, "
            + "--connect_timeout_s, --idle_timeout_s).")

    @Option(help: "http, https or file URL.") var url: String?
    @Option(help: "A preset name (see --list).") var source: String?
    @Option(help: "Folder to produce, relative to --workspace.") var dest: String?
    @Option(help: "Expected sha256 of the download (64 hex digits).") var sha256: String?
    @Option(help: "auto (unpack archives and compressed files by content) or off.") var unpack: String = "auto"
    // Numbers take the next argument whatever it looks like: `--retries -1` read "-1" as an
    // option and said "Missing value"; now the range check names the field and the value.
    @Option(name: [.customLong("strip-components"), .customLong("strip_components")], parsing: .unconditional, help: "Leading path components to drop from archive entries.")
    var stripComponents: Int = 0
    @Option(name: [.customLong("max-bytes"), .customLong("max_bytes")], parsing: .unconditional, help: "Limit on bytes downloaded and on bytes unpacked.") var maxBytes: Int64?
    @Option(name: [.customLong("max-files"), .customLong("max_files")], parsing: .unconditional, help: "Limit on archive entries.") var maxFiles: Int?
    @Option(help: "Name of the kept file when not unpacked.") var filename: String?
    @Option(help: "Data presets: an existing psgs_w100.tsv to use instead of downloading it.") var passages: String?
    @Option(help: "Presets: base URL of a mirror replacing each URL's scheme and host.") var mirror: String?
    @Option(name: [.customLong("connect-timeout"), .customLong("connect_timeout_s")], parsing: .unconditional, help: "Seconds to wait for the first answer.") var connectTimeout: Double?
    @Option(name: [.customLong("idle-timeout"), .customLong("idle_timeout_s")], parsing: .unconditional, help: "Seconds without data before retrying.") var idleTimeout: Double?
    @Option(parsing: .unconditional, help: "Transient failures retried within this run.") var retries: Int?
    @Option(name: [.customLong("retry-backoff"), .customLong("retry_backoff_s")], parsing: .unconditional, help: "Seconds before the first retry, doubling after each (at most 60; longer when the server's Retry-After asks).")
    var retryBackoff: Double?
    @Flag(help: "Replace an existing dest.") var replace = false
    @Option(help: "Folder relative paths resolve against.") var workspace: String = "."
    @Flag(help: "List the presets with sizes and what each yields.") var list = false

    // Checked before run(), so a mistake prints fetch's usage line (not the root's).
    func validate() throws {
        if !list && dest == nil { throw ValidationError("--dest is required (or use --list)") }
        if FetchParams.Unpack(rawValue: unpack) == nil { throw ValidationError("--unpack must be auto or off") }
    }

    func run() throws {
        if list {
            print(Presets.listing())
            return
        }
        guard let dest else { throw ValidationError("--dest is required (or use --list)") }
        var p = FetchParams(url: url, source: source, dest: dest)
        p.sha256 = sha256
        guard let u = FetchParams.Unpack(rawValue: unpack) else { throw ValidationError("--unpack must be auto or off") }
        p.unpack = u
        p.stripComponents = stripComponents
        p.maxBytes = maxBytes ?? p.maxBytes
        p.maxFiles = maxFiles ?? p.maxFiles
        p.filename = filename
        p.passages = passages
        p.mirror = mirror
        p.connectTimeoutS = connectTimeout ?? p.connectTimeoutS
        p.idleTimeoutS = idleTimeout ?? p.idleTimeoutS
        p.retries = retries ?? p.retries
        p.retryBackoffS = retryBackoff ?? p.retryBackoffS
        p.replace = replace
        let interactive = isatty(2) != 0
        // Ctrl-C or SIGTERM stops at the next block; the partial download stays for the next run.
        let cancel = CancellationToken()
        StopSignals.install(cancelling: cancel, keeping: "the partial download, resumed by the same command")
        let lastLine = LastLine()
        do {
            let result = try Fetcher.run(
                p, workspace: URL(fileURLWithPath: workspace),
                progress: { pr in
                    let total = pr.total.map { String(format: " / %.1f MB", Double($0) / 1e6) } ?? ""
                    let line = String(format: "%@ %@: %.1f MB%@", pr.phase, pr.item, Double(pr.done) / 1e6, total)
                    if interactive {
                        FileHandle.standardError.write(("\r" + line + "   ").data(using: .utf8)!)
                    } else if lastLine.due(every: 30) {
                        // A log file (Slurm, nohup) gets a line every 30 s rather than a \r stream.
                        FileHandle.standardError.write(("fetch: " + line + "\n").data(using: .utf8)!)
                    }
                },
                isCancelled: { cancel.isCancelled },
                log: { line in FileHandle.standardError.write(((interactive ? "\r" : "") + line + "\n").data(using: .utf8)!) })
            print("\(result.dest): \(result.files) files, \(result.bytes) bytes"
                + (result.alreadyPresent ? " (already present)" : ""))
            for d in result.downloads { print("  \(d.url)  sha256 \(d.sha256)  \(d.bytes) bytes") }
        } catch let e as FetchError {
            FileHandle.standardError.write("fidq fetch: \(e)\n".data(using: .utf8)!)
            throw ExitCode(e.isPermanent ? 2 : 75)  // 75 = EX_TEMPFAIL: worth running again
        }
    }
}

/// When the last progress line went to a log, so a non-terminal gets one every so often.
private final class LastLine: @unchecked Sendable {
    private let lock = NSLock()
    private var at = Date()

    func due(every seconds: Double) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard Date().timeIntervalSince(at) >= seconds else { return false }
        at = Date()
        return true
    }
}
