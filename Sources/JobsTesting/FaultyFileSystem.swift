// FaultyFileSystem: wraps a FileSystem and injects errno faults, including NFS's lies.
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Jobs

/// A file system that fails chosen calls, for tests of the queue's error handling.
///
/// Each `Fault` names the operation, an optional path fragment, the errno, how often it fires and
/// whether the call is performed first (`afterSuccess`: NFS's retransmitted `rename` that says
/// `ENOENT` although it worked, or `mkdir` that says `EEXIST`).
public final class FaultyFileSystem: FileSystem, @unchecked Sendable {
    public enum Op: String, Sendable, CaseIterable {
        case mkdir, rename, link, unlink, rmdir, list, info, read, write, append, touch, realpath
    }

    public struct Fault: Sendable {
        public var op: Op
        public var pathContains: String?
        public var code: Int32
        /// Probability that a matching call fails (drawn from the seeded generator).
        public var probability: Double
        /// Perform the call, then report the error anyway.
        public var afterSuccess: Bool
        /// Stop firing after this many injections (nil: never stop).
        public var limit: Int?

        public init(_ op: Op, _ code: Int32, pathContains: String? = nil, probability: Double = 1,
                    afterSuccess: Bool = false, limit: Int? = nil) {
            self.op = op
            self.code = code
            self.pathContains = pathContains
            self.probability = probability
            self.afterSuccess = afterSuccess
            self.limit = limit
        }

        /// NFS's cached negative lookup: `lstat` of a path containing `fragment` says `ENOENT`
        /// the first `times` times although the file is there (a peer's rename already landed).
        public static func cachedNotFound(_ fragment: String, times: Int) -> Fault {
            Fault(.info, ENOENT, pathContains: fragment, limit: times)
        }

        /// `lstat` fails with `EIO` (says nothing about existence) the first `times` times.
        public static func statIOError(_ fragment: String, times: Int) -> Fault {
            Fault(.info, EIO, pathContains: fragment, limit: times)
        }
    }

    private let base: FileSystem
    private let lock = NSLockLite()
    private var faults: [Fault]
    private var fired: [Int]
    private var state: UInt64
    /// Calls made, by operation (read under the lock with `counts`).
    private var callCounts: [Op: Int] = [:]
    /// Folders listed, with how often (to prove `done/` is never scanned).
    private var listed: [String: Int] = [:]
    /// Injections performed, by errno.
    public private(set) var injected: [Int32: Int] = [:]

    public init(base: FileSystem = PosixFileSystem(), faults: [Fault] = [], seed: UInt64 = 1) {
        self.base = base
        self.faults = faults
        self.fired = Array(repeating: 0, count: faults.count)
        self.state = seed | 1
    }

    public func setFaults(_ faults: [Fault]) {
        lock.withLock {
            self.faults = faults
            self.fired = Array(repeating: 0, count: faults.count)
        }
    }

    public var counts: [Op: Int] { lock.withLock { callCounts } }
    public var listings: [String: Int] { lock.withLock { listed } }
    public var injections: Int { lock.withLock { injected.values.reduce(0, +) } }

    /// The fault to inject for this call, if any (xorshift draw under the lock).
    private func pick(_ op: Op, _ path: String) -> Fault? {
        lock.withLock {
            callCounts[op, default: 0] += 1
            if op == .list { listed[path, default: 0] += 1 }
            for (i, f) in faults.enumerated() where f.op == op {
                if let frag = f.pathContains, !path.contains(frag) { continue }
                if let limit = f.limit, fired[i] >= limit { continue }
                state ^= state << 13
                state ^= state >> 7
                state ^= state << 17
                let u = Double(state >> 11) / Double(1 << 53)
                if u < f.probability {
                    fired[i] += 1
                    injected[f.code, default: 0] += 1
                    return f
                }
            }
            return nil
        }
    }

    private func run<T>(_ op: Op, _ path: String, _ body: () throws -> T) throws -> T {
        guard let f = pick(op, path) else { return try body() }
        if f.afterSuccess { _ = try body() }
        throw FSError(op.rawValue + " (injected)", path, f.code)
    }

    public func mkdir(_ path: String) throws { try run(.mkdir, path) { try base.mkdir(path) } }
    public func rename(_ from: String, _ to: String) throws {
        try run(.rename, from + " -> " + to) { try base.rename(from, to) }
    }
    public func link(_ from: String, _ to: String) throws {
        try run(.link, from + " -> " + to) { try base.link(from, to) }
    }
    public func unlink(_ path: String) throws { try run(.unlink, path) { try base.unlink(path) } }
    public func rmdir(_ path: String) throws { try run(.rmdir, path) { try base.rmdir(path) } }
    public func list(_ path: String) throws -> [String] { try run(.list, path) { try base.list(path) } }
    public func info(_ path: String) throws -> FileInfo { try run(.info, path) { try base.info(path) } }
    public func read(_ path: String, limit: Int) throws -> Data {
        try run(.read, path) { try base.read(path, limit: limit) }
    }
    public func write(_ path: String, _ data: Data, sync: Bool) throws {
        try run(.write, path) { try base.write(path, data, sync: sync) }
    }
    public func append(_ path: String, _ data: Data) throws { try run(.append, path) { try base.append(path, data) } }
    public func touch(_ path: String) throws { try run(.touch, path) { try base.touch(path) } }
    public func realpath(_ path: String) throws -> String { try run(.realpath, path) { try base.realpath(path) } }
}
