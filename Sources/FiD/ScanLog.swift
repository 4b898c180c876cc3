// ScanLog: log lines and stop checks while a job indexes a data file before its first step.
import Foundation
import Jobs

/// Indexing NQ's 10 GB training set takes minutes, during which a job used to log nothing and
/// could not be stopped. Handed to `FiDData.index(progress:)`, this checks for a stop at each
/// call and logs "label: reading field, 12% of 9.8 GB, 130000 examples" at most every
/// `interval` seconds, then how long the whole scan took.
final class ScanLog {
    let context: JobContext, label: String, field: String, interval: Double
    private let start = monotonicNow()
    private var last: Double
    private var logged = false

    init(_ context: JobContext, label: String, field: String, interval: Double = 30) {
        (self.context, self.label, self.field, self.interval) = (context, label, field, interval)
        last = start
    }

    func tick(bytes: Int, totalBytes: Int, elements: Int) throws {
        try context.checkCancelled()
        let now = monotonicNow()
        guard now - last >= interval else { return }
        last = now
        logged = true
        let percent = totalBytes > 0 ? 100 * Double(bytes) / Double(totalBytes) : 100
        context.log("\(label): reading \(field), \(String(format: "%.0f", percent))% of \(Self.size(totalBytes)), \(elements) examples")
    }

    /// After the scan: the total, when the scan was long enough to have logged.
    func finish(examples: Int) {
        guard logged else { return }
        context.log("\(label): read \(field), \(examples) examples in \(String(format: "%.0f", monotonicNow() - start)) s")
    }

    static func size(_ bytes: Int) -> String {
        bytes >= 1 << 30 ? String(format: "%.1f GB", Double(bytes) / Double(1 << 30)) : String(format: "%.1f MB", Double(bytes) / Double(1 << 20))
    }
}

extension FiDData {
    /// `index(check:)` with a `ScanLog` reporting it.
    func index(logging log: ScanLog, check: @escaping (FiDExample) throws -> Void) throws -> IndexedFiDData {
        let data = try index(check: check, progress: { try log.tick(bytes: $0, totalBytes: $1, elements: $2) })
        log.finish(examples: data.count)
        return data
    }
}
