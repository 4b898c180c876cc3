// FileBytes: a regular file's bytes in memory, mapped or read once; shared by the weight and data readers.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The whole of one regular file, owned until deinit: mapped read-only (`mmap`) when it is at
/// least `mapThreshold` bytes, else read once into an aligned buffer. The safetensors and
/// `pytorch_model.bin` readers and the JSON stream stand on it, so a multi-GB file is never copied whole.
public final class FileBytes: @unchecked Sendable {
    /// Why a file could not be opened; the caller wraps it in its own error, naming the path.
    public enum Failure: Error, CustomStringConvertible {
        /// A system call failed: what was tried, with `strerror(errno)`.
        case io(String)
        case notRegular
        /// The file got shorter while it was being read.
        case shrank(to: Int)
        /// mmap refused for lack of address space (ENOMEM: `ulimit -v`), not for the file.
        case addressSpace(bytes: Int)

        public var description: String {
            switch self {
            case .io(let what): return what
            case .notRegular: return "is not a regular file"
            case .shrank(let n): return "shrank to \(n) bytes while being read"
            case .addressSpace(let n): return "cannot map its \(n) bytes: no address space left (hint: \(Failure.addressSpaceHint))"
            }
        }

        /// What to do about `.addressSpace`: the format hints callers add misled (a 1.9 GB data
        /// file under `ulimit -v 2000000` read as malformed).
        public static let addressSpaceHint = "mapped files count against this process's address-space limit (ulimit -v, a batch system's h_vmem): raise it by the file's size"
    }

    public let base: UnsafeRawPointer
    public let count: Int
    public let isMapped: Bool

    public var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// - Parameter tooShort: the caller's error for a file under `minSize` bytes, thrown before
    ///   any mapping (a zero-length mapping is an error), so it can say what it expected.
    public init(path: String, mapThreshold: Int, minSize: Int, tooShort: (Int) -> Error) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure.io("cannot open: " + FileBytes.lastError()) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Failure.io("cannot stat: " + FileBytes.lastError()) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw Failure.notRegular }
        let size = Int(st.st_size)
        guard size >= minSize else { throw tooShort(size) }
        count = size
        if size >= mapThreshold {
            guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
                if errno == ENOMEM { throw Failure.addressSpace(bytes: size) }
                throw Failure.io("cannot mmap \(size) bytes: " + FileBytes.lastError())
            }
            base = UnsafeRawPointer(p)
            isMapped = true
            return
        }
        let p = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(size, 1), alignment: 64)
        var done = 0
        while done < size {
            let n = pread(fd, p + done, size - done, off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let why = FileBytes.lastError()
                p.deallocate()
                if n == 0 { throw Failure.shrank(to: done) }
                throw Failure.io("cannot read: " + why)
            }
            done += n
        }
        base = UnsafeRawPointer(p)
        isMapped = false
    }

    deinit {
        if isMapped { munmap(UnsafeMutableRawPointer(mutating: base), count) } else { base.deallocate() }
    }

    private static func lastError() -> String { String(cString: strerror(errno)) }
}
