// FetchErrorTests: which failures are permanent (fail the job) and which are retried, and what they say.
import Testing

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
        #expect("\(FetchError.limit(archive: "a.zip", entry: "b", what: "file count", limit: 5))".contains("raise max_files"))
        #expect("\(FetchError.timeout(url: "u", phase: "connect", seconds: 2))".contains("raise connect_timeout_s"))
        #expect("\(FetchError.destExists(path: "/w/d"))".contains("\"replace\": true"))
    }
}
