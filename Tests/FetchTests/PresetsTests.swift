// PresetsTests: FiD's URLs, and the data and model presets end to end against a loopback mirror.
import Foundation
import Testing

@testable import Fetch

@Suite struct PresetsTests {
    typealias E = ArchiveBuilder.Entry

    @Test func urlsAreFiDs() {
        let models = ["nq_reader_base", "nq_reader_large", "nq_retriever", "tqa_reader_base", "tqa_reader_large", "tqa_retriever"]
        for m in models {
            #expect(Presets.named(m)?.urls == ["https://dl.fbaipublicfiles.com/FiD/pretrained_models/\(m).tar.gz"])
            #expect(Presets.named(m)?.recipe == .model)
        }
        #expect(Presets.named("psgs_w100")?.urls == ["https://dl.fbaipublicfiles.com/dpr/wikipedia_split/psgs_w100.tsv.gz"])
        #expect(Presets.named("fid_data")?.urls.count == 7)
        #expect(Presets.named("fid_data")?.urls.contains("http://nlp.cs.washington.edu/triviaqa/data/triviaqa-unfiltered.tar.gz") == true)
        let listing = Presets.listing()
        for p in Presets.all { #expect(listing.contains(p.name) && listing.contains(p.size)) }
        #expect(Set(Presets.all.map(\.name)).count == Presets.all.count)
    }

    /// A mirror of every URL fid_data fetches, built from the upstream-format fixtures.
    static func mirror(_ box: Sandbox) throws -> LoopbackServer {
        let dl = FiDFixtures.download
        func file(_ rel: String) throws -> Data { try Data(contentsOf: dl.appendingPathComponent(rel)) }
        func tarball(_ name: String, _ rels: [String]) throws -> Data {
            let url = box.src.appendingPathComponent(name)
            try ArchiveBuilder.write(try rels.map { E($0, .file(try file($0))) }, to: url, filter: .gzip)
            return try Data(contentsOf: url)
        }
        let psgs = box.src.appendingPathComponent("psgs_w100.tsv.gz")
        try ArchiveBuilder.compress(try Data(contentsOf: FiDFixtures.passages), to: psgs, filter: .gzip)
        let splits = ["train", "dev", "test"]
        return try LoopbackServer([
            "/dpr/wikipedia_split/psgs_w100.tsv.gz": .ok(try Data(contentsOf: psgs)),
            "/google-research-datasets/natural-questions/master/nq_open/NQ-open.dev.jsonl": .ok(try file("NQ-open.dev.jsonl")),
            "/google-research-datasets/natural-questions/master/nq_open/NQ-open.train.jsonl": .ok(try file("NQ-open.train.jsonl")),
            "/triviaqa/data/triviaqa-unfiltered.tar.gz": .ok(try tarball("t.tgz", ["triviaqa-unfiltered/unfiltered-web-train.json",
                                                                                  "triviaqa-unfiltered/unfiltered-web-dev.json"])),
            "/FiD/data/dataindex.tar.gz": .ok(try tarball("i.tgz", ["NQ", "TQA"].flatMap { s in splits.map { "\(s).\($0).idx.json" } })),
            "/FiD/data/nq_passages.tar.gz": .ok(try tarball("n.tgz", splits.map { "nq_passages/\($0).json" })),
            "/FiD/data/tqa_passages.tar.gz": .ok(try tarball("q.tgz", splits.map { "tqa_passages/\($0).json" })),
        ])
    }

    @Test func fidDataMakesFiDJSONThroughAMirror() throws {
        let box = try Sandbox()
        let server = try Self.mirror(box)
        defer { server.stop() }
        var p = FetchParams(source: "fid_data", dest: "data")
        p.mirror = server.base
        let r = try Fetcher.run(p, workspace: box.ws)
        #expect(r.downloads.count == 7)
        let out = box.ws.appendingPathComponent("data")
        #expect(try Data(contentsOf: out.appendingPathComponent("psgs_w100.tsv")) == Data(contentsOf: FiDFixtures.passages))
        for name in FiDFixtures.outputs {
            #expect(try Data(contentsOf: out.appendingPathComponent(name + ".json"))
                == Data(contentsOf: FiDFixtures.expected.appendingPathComponent(name + ".json")), "\(name)")
        }
        #expect(box.snapshot(box.ws).filter { !$0.hasPrefix("data") }.isEmpty, "work folder removed")
        // Running the same job again (a retried attempt after publishing) does nothing.
        let again = try Fetcher.run(p, workspace: box.ws)
        #expect(again.alreadyPresent && again.downloads.isEmpty)
        #expect(server.requests.count == 7)
    }

    /// A mirror that serves psgs_w100.tsv.gz under Content-Encoding: gzip (decoded by the client)
    /// still yields psgs_w100.tsv; one whose file unpacks to something else fails permanently,
    /// naming what it found, instead of a retried "cannot open passages".
    @Test func passagesFromAMirrorThatEncodesOrMisnamesThem() throws {
        let box = try Sandbox()
        let server = try Self.mirror(box)
        defer { server.stop() }
        let gz = try Data(contentsOf: box.src.appendingPathComponent("psgs_w100.tsv.gz"))
        server.set("/dpr/wikipedia_split/psgs_w100.tsv.gz", .encoded(gz, encoding: "gzip"))
        var p = FetchParams(source: "tqa_data", dest: "data")
        p.mirror = server.base
        _ = try Fetcher.run(p, workspace: box.ws)
        #expect(try Data(contentsOf: box.ws.appendingPathComponent("data/psgs_w100.tsv")) == Data(contentsOf: FiDFixtures.passages))
        let wrong = box.src.appendingPathComponent("wrong.tgz")
        try ArchiveBuilder.write([E("other.tsv", .file(Data("id\ttext\ttitle\n".utf8)))], to: wrong, filter: .gzip)
        server.set("/dpr/wikipedia_split/psgs_w100.tsv.gz", .ok(try Data(contentsOf: wrong)))
        var q = FetchParams(source: "tqa_data", dest: "data2")
        q.mirror = server.base
        var thrown: FetchError?
        do { _ = try Fetcher.run(q, workspace: box.ws) } catch let e as FetchError { thrown = e }
        #expect(thrown.map { $0.isPermanent && "\($0)".contains("other.tsv") && "\($0)".contains("'mirror'") } == true,
                "\(String(describing: thrown))")
    }

    @Test func nqDataWithExistingPassagesSkipsTheirDownload() throws {
        let box = try Sandbox()
        let server = try Self.mirror(box)
        defer { server.stop() }
        try FileManager.default.copyItem(at: FiDFixtures.passages, to: box.ws.appendingPathComponent("psgs.tsv"))
        var p = FetchParams(source: "nq_data", dest: "nq")
        p.mirror = server.base
        p.passages = "psgs.tsv"
        _ = try Fetcher.run(p, workspace: box.ws)
        #expect(!server.requests.contains { $0.path.contains("psgs") })
        #expect(!server.requests.contains { $0.path.contains("tqa") || $0.path.contains("triviaqa") })
        let out = box.ws.appendingPathComponent("nq")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted() == [".fidq-fetch.json", "NQ"])
        #expect(try Data(contentsOf: out.appendingPathComponent("NQ/train.json"))
            == Data(contentsOf: FiDFixtures.expected.appendingPathComponent("NQ/train.json")))
    }

    @Test func modelPresetLeavesALoadableFolder() throws {
        let box = try Sandbox()
        let good = box.src.appendingPathComponent("good.tgz"), bad = box.src.appendingPathComponent("bad.tgz")
        try ArchiveBuilder.write([E("nq_reader_base", .dir), E("nq_reader_base/config.json", .file(Data("{}".utf8))),
                                  E("nq_reader_base/pytorch_model.bin", .file(testBytes(1000)))], to: good, filter: .gzip)
        try ArchiveBuilder.write([E("nq_retriever/config.json", .file(Data("{}".utf8)))], to: bad, filter: .gzip)
        let server = try LoopbackServer([
            "/FiD/pretrained_models/nq_reader_base.tar.gz": .ok(try Data(contentsOf: good)),
            "/FiD/pretrained_models/nq_retriever.tar.gz": .ok(try Data(contentsOf: bad)),
        ])
        defer { server.stop() }
        var p = FetchParams(source: "nq_reader_base", dest: "models/nq_reader_base")
        p.mirror = server.base
        _ = try Fetcher.run(p, workspace: box.ws)
        let names = try FileManager.default.contentsOfDirectory(atPath: box.ws.appendingPathComponent("models/nq_reader_base").path)
        #expect(names.sorted() == [".fidq-fetch.json", "config.json", "pytorch_model.bin"])

        var q = FetchParams(source: "nq_retriever", dest: "models/nq_retriever")
        q.mirror = server.base
        #expect {
            try Fetcher.run(q, workspace: box.ws)
        } throws: { e in
            // Named by the URL fetched (the mirror's), not FiD's.
            guard let e = e as? FetchError, case .format = e else { return false }
            return e.isPermanent && "\(e)".contains(server.base + "/FiD/pretrained_models/nq_retriever.tar.gz") && !"\(e)".contains("dl.fbaipublicfiles")
        }
        #expect(!FileManager.default.fileExists(atPath: box.ws.appendingPathComponent("models/nq_retriever").path))
    }

    /// A file preset whose download lacks what FiD's preprocess.py reads (a mirror serving
    /// another archive, or a page) fails naming the mirror's URL, what is missing and what it
    /// holds; dest is not made. It was published as whatever came.
    @Test func aFilePresetChecksItsDownloadsContents() throws {
        let box = try Sandbox()
        let server = try Self.mirror(box)
        defer { server.stop() }
        let wrong = box.src.appendingPathComponent("wrong.tgz")
        try ArchiveBuilder.write([E("NQ.train.idx.json", .file(Data("[]".utf8))), E("README", .file(Data("x".utf8)))], to: wrong, filter: .gzip)
        for (source, path, body) in [("fid_dataindex", "/FiD/data/dataindex.tar.gz", try Data(contentsOf: wrong)),
                                     ("fid_nq_passages", "/FiD/data/nq_passages.tar.gz", Data("<html>not found</html>".utf8))] {
            server.set(path, .ok(body))
            var p = FetchParams(source: source, dest: source)
            p.mirror = server.base
            var thrown: FetchError?
            do { _ = try Fetcher.run(p, workspace: box.ws) } catch let e as FetchError { thrown = e }
            let text = thrown.map { "\($0)" } ?? "nothing thrown"
            #expect(thrown?.isPermanent == true && text.contains(server.base + path) && text.contains("contents"), "\(source): \(text)")
            #expect(source != "fid_dataindex" || (text.contains("no NQ.dev.idx.json") && text.contains("README") && !text.contains("no NQ.train")), "\(text)")
            #expect(!FileManager.default.fileExists(atPath: box.ws.appendingPathComponent(source).path), "\(source) was published")
        }
        // The real layouts pass; a stripped one is the user's layout, not checked.
        let fine = try Self.mirror(box)
        defer { fine.stop() }
        var stripped = FetchParams(source: "fid_nq_passages", dest: "stripped")
        (stripped.mirror, stripped.stripComponents) = (fine.base, 1)
        _ = try Fetcher.run(stripped, workspace: box.ws)
        #expect(FileManager.default.fileExists(atPath: box.ws.appendingPathComponent("stripped/train.json").path))
        for source in ["fid_dataindex", "fid_nq_passages", "fid_tqa_passages", "nq_open", "triviaqa_unfiltered", "psgs_w100"] {
            var p = FetchParams(source: source, dest: "ok-" + source)
            p.mirror = fine.base
            _ = try Fetcher.run(p, workspace: box.ws)
            for rel in Presets.named(source)!.contents.joined() {
                #expect(FileManager.default.fileExists(atPath: box.ws.appendingPathComponent("ok-\(source)/" + rel).path), "\(source): \(rel)")
            }
        }
    }
}
