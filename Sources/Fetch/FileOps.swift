// FileOps: the few file-system helpers every part of Fetch uses (write loop, atomic write, rename, remove).
import Foundation

/// Writes all of `bytes` to `fd`, retrying short writes and EINTR.
/// - Throws: `FetchError.io` naming `path` and `what`.
func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String, what: String) throws {
    var done = 0
    while done < bytes.count {
        let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
        if n < 0 {
            if errno == EINTR { continue }
            throw FetchError.posix(path, what)
        }
        done += n
    }
}

/// Writes `data` to a temporary name beside `url`, then renames it into place.
func writeAtomically(_ data: Data, to url: URL) throws {
    let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
    // A new file, never one reached through a symlink left at the temporary name.
    unlink(tmp.path)
    do { try data.write(to: tmp, options: .withoutOverwriting) } catch { throw FetchError.io(path: tmp.path, message: "\(error)") }
    guard rename(tmp.path, url.path) == 0 else { throw FetchError.posix(url.path, "cannot rename into place") }
}

/// Renames `src` to `dst` (same file system).
func rename(_ src: URL, to dst: URL) throws {
    guard rename(src.path, dst.path) == 0 else { throw FetchError.posix(dst.path, "cannot rename \(src.path)") }
}

/// Removes a file or folder tree without following symlinks; absent is fine.
func removeTree(_ url: URL) throws {
    var st = stat()
    guard lstat(url.path, &st) == 0 else { return }
    do { try FileManager.default.removeItem(atPath: url.path) } catch {
        throw FetchError.io(path: url.path, message: "cannot remove: \(error)")
    }
}

/// Hard-links `src` to `dst`, copying when the file system refuses links.
func linkOrCopy(_ src: URL, to dst: URL) throws {
    if link(src.path, dst.path) == 0 { return }
    do { try FileManager.default.copyItem(at: src, to: dst) } catch {
        throw FetchError.io(path: dst.path, message: "cannot place file: \(error)")
    }
}

/// Moves every entry of `folder` into `into` (refusing to overwrite), then removes `folder`.
func moveChildren(of folder: URL, into: URL) throws {
    for name in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [] {
        let dst = into.appendingPathComponent(name)
        var st = stat()
        if lstat(dst.path, &st) == 0 { throw FetchError.io(path: dst.path, message: "two downloads both produce '\(name)'") }
        try rename(folder.appendingPathComponent(name), to: dst)
    }
    try removeTree(folder)
}

/// Size of a regular file, or nil when absent.
func fileSize(_ url: URL) -> Int64? {
    var st = stat()
    return lstat(url.path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG ? Int64(st.st_size) : nil
}

/// Modification time of `url` (not following a final symlink), or nil when absent.
func modificationTime(_ url: URL) -> Double? {
    var st = stat()
    guard lstat(url.path, &st) == 0 else { return nil }
    return Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) * 1e-9
}

/// Regular files under `url` and their total bytes (symlinks not followed).
func treeSize(_ url: URL) -> (Int, Int64) {
    var files = 0
    var bytes: Int64 = 0
    guard let e = FileManager.default.enumerator(atPath: url.path) else { return (0, 0) }
    while let rel = e.nextObject() as? String {
        var st = stat()
        if lstat(url.path + "/" + rel, &st) == 0, st.st_mode & S_IFMT == S_IFREG, rel != Fetcher.markerName {
            files += 1
            bytes += Int64(st.st_size)
        }
    }
    return (files, bytes)
}

/// Lower-case hex of a digest.
func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
    let digits = Array("0123456789abcdef")
    var s = ""
    s.reserveCapacity(64)
    for b in digest {
        s.append(digits[Int(b >> 4)])
        s.append(digits[Int(b & 15)])
    }
    return s
}
