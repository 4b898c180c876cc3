// FetchErrorTests: which failures are permanent (fail the job) and which are retried, and what they say.
import Testing
#if canImport(Glibc)
import Glibc
#endif

@testable import Fetch

@Suite struct FetchErrorTests {
    @Test func permanenceOfEachError() {
        #expect(FetchError.http(url: "u", status: 404).isPermanent)
        #expect(!FetchError.http(url: "u", status: 503).isPermanent)
        #expect(!FetchError.http(url: "u", status: 429).isPermanent)
        #expect(!FetchError.network(url: "u", reason: "r").isPermanent)
        #expect(!FetchError.timeout(url: "u", phase: "idle", seconds: 1).isPermanent)
        #expect(FetchError.checksum(url: "u", expected: "a", found: "b").isPermanent)
        #expect(FetchError.refused(archive: "a", entry: "e", reason: "r").isPermanent)
        #expect(!FetchError.cancelled.isPermanent)
    }

    @Test func messagesNameTheThingAndTheFix() {
        #expect("\(FetchError.refused(archive: "a.tar", entry: "../x", reason: "'..' in the path"))" == "a.tar: entry '../x' refused: '..' in the path")
        // Both count checks (entries, and folders made for deep paths) name max_files.
        #expect("\(FetchError.limit(archive: "a.zip", entry: "b", what: "file and folder count", limit: 5))".contains("raise max_files"))
        #expect("\(FetchError.limit(archive: "a.zip", entry: "b", what: "unpacked size", limit: 5))".contains("raise max_bytes"))
        #expect("\(FetchError.timeout(url: "u", phase: "connect", seconds: 2))".contains("raise connect_timeout_s"))
        #expect("\(FetchError.destExists(path: "/w/d"))".contains("\"replace\": true; fidq fetch --replace"))
    }

    /// A permission error is permanent, with the shared-folder hint: it was retried as a passing
    /// I/O error, to max_attempts, and the foreground exited 75 ("try again").
    @Test func aPermissionErrorIsPermanent() {
        let e = FetchError.posix("/shared/data/.x.fetch", "cannot create attempt folder", EACCES)
        #expect(e.isPermanent && "\(e)".contains("umask 002"), "\(e)")
        #expect(!FetchError.posix("/d", "cannot write", ENOSPC).isPermanent)
    }
}
