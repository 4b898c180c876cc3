// ExampleWorldTests: the example world is deterministic, answerable, and hard for word overlap.
import Foundation
import Testing
import Formats
import Models
import Tokenizers

@testable import FiD

struct ExampleWorldTests {
    static let small = ExampleWorldConfig(seed: 11, train: 240, dev: 60)

    @Test func sameSeedSameBytesOtherSeedOtherBytes() throws {
        let a = try ExampleWorld(config: Self.small).files()
        let b = try ExampleWorld(config: Self.small).files()
        #expect(a.map(\.name) == ExampleWorld.fileNames)
        #expect(a.map(\.name) == b.map(\.name))
        for (x, y) in zip(a, b) { #expect(x.data == y.data, "\(x.name) differs between two runs with one seed") }
        var other = Self.small
        other.seed = 12
        let c = try ExampleWorld(config: other).files()
        #expect(a[0].data != c[0].data, "passages.tsv is the same for seeds 11 and 12")
        #expect(a[3].data != c[3].data, "train_gold.json is the same for seeds 11 and 12")
    }

    @Test func sizesAndIds() throws {
        let w = try ExampleWorld(config: Self.small)
        #expect(w.train.count == 240 && w.dev.count == 60)
        #expect(w.passages.map(\.id) == (1...w.passages.count).map(String.init))
        // One gold per question plus 1…6 decoys each.
        let n = w.train.count + w.dev.count
        #expect(w.passages.count >= 2 * n && w.passages.count <= 7 * n, "\(w.passages.count) passages for \(n) facts")
        #expect(Set((w.train + w.dev).map(\.id)).count == n)
        #expect(Set((w.train + w.dev).map(\.gold)).count == n, "two questions share a gold passage")
    }

    @Test func goldHoldsTheAnswerAndDistractorsDoNot() throws {
        let w = try ExampleWorld(config: Self.small)
        for q in w.train + w.dev {
            let answer = q.answer.lowercased()
            #expect(ExampleWorld.words(w.passages[q.gold].text).contains(answer), "\(q.id): gold '\(w.passages[q.gold].text)' lacks '\(q.answer)'")
            #expect(w.passages[q.gold].title == q.person)
            #expect(q.distractors.count == Self.small.nContext - 1, "\(q.id): \(q.distractors.count) distractors")
            #expect(!q.distractors.contains(q.gold))
            for d in q.distractors + q.decoys {
                #expect(!ExampleWorld.words(w.passages[d].text).contains(answer), "\(q.id): distractor '\(w.passages[d].text)' holds '\(q.answer)'")
            }
            // Look-alikes: at least one decoy (the question's own words) and another passage about the person.
            #expect(q.distractors.contains { q.decoys.contains($0) }, "\(q.id): no decoy among the distractors")
            #expect(q.distractors.filter { w.passages[$0].title == q.person }.count >= 2, "\(q.id): too few same-person distractors")
        }
    }

    /// A passage's field from its JSON (`raw`), as a file reader sees it.
    static func field(_ p: FiDPassage, _ key: String) -> JSONNode? {
        guard case .object(let fields) = p.raw else { return nil }
        return fields.first { $0.0 == key }?.1
    }

    @Test func contextModes() throws {
        let w = try ExampleWorld(config: Self.small)
        let empty = w.examples(w.dev, .empty)
        #expect(empty.allSatisfy { $0.ctxs.isEmpty })
        #expect(empty.map(\.answers) == w.dev.map { [$0.answer] })
        #expect(empty.map(\.target) == w.dev.map(\.answer))
        #expect(empty.map(\.idText) == w.dev.map(\.id))
        let gold = w.examples(w.dev, .gold)
        var goldFirst = 0
        for (e, q) in zip(gold, w.dev) {
            #expect(e.ctxs.count == Self.small.nContext)
            let marked = e.ctxs.filter { Self.field($0, "hasanswer") == .bool(true) }
            #expect(marked.map { Self.field($0, "id") } == [.string(w.passages[q.gold].id)])
            #expect(e.ctxs.allSatisfy { $0.score == nil && Self.field($0, "score") == nil })
            if Self.field(e.ctxs[0], "hasanswer") == .bool(true) { goldFirst += 1 }
        }
        // Shuffled: the gold is first about once in n_context, not always.
        #expect(goldFirst < w.dev.count / 3, "gold first in \(goldFirst) of \(w.dev.count)")
        // Scored: the reader-like score puts the gold on top for most questions, but not all
        // (noise), and never only by position.
        let scored = w.examples(w.dev, .scored)
        var top = 0
        for (e, q) in zip(scored, w.dev) {
            let scores = e.ctxs.map { $0.score ?? -.infinity }
            #expect(e.ctxs.allSatisfy { $0.score != nil })
            let best = e.ctxs[scores.firstIndex(of: scores.max()!)!]
            if Self.field(best, "id") == .string(w.passages[q.gold].id) { top += 1 }
        }
        #expect(top > w.dev.count * 7 / 10 && top < w.dev.count, "gold scored highest in \(top) of \(w.dev.count)")
    }

    /// The files read back through FiD's own data reader, scores and all.
    @Test func filesReadBackAsFiDData() throws {
        let w = try ExampleWorld(config: Self.small)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fidq-world-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try w.write(to: dir)
        let read = try FiDData(path: dir + "/dev_scored.json").load()
        let made = w.examples(w.dev, .scored)
        #expect(read.map(\.idText) == made.map(\.idText))
        #expect(read.map(\.question) == made.map(\.question))
        #expect(read.map { $0.ctxs.map(\.score) } == made.map { $0.ctxs.map(\.score) })
        // The exercises too.
        var c = Self.small
        c.exercises = 30
        let x = try ExampleWorld(config: c)
        try x.write(to: dir)
        for (file, made) in [("train_exercises.json", x.exercises(30, split: "train")), ("dev_exercises.json", x.exercises(c.dev, split: "dev"))] {
            let read = try FiDData(path: dir + "/" + file).load()
            #expect(read.map(\.idText) == made.map(\.idText), "\(file)")
            #expect(read.map { $0.ctxs.map(\.text) } == made.map { $0.ctxs.map(\.text) }, "\(file)")
            #expect(read.map(\.target) == made.map(\.target), "\(file)")
        }
    }

    /// Word overlap alone (BM25, k1 0.9, b 0.4 as Pyserini) rarely ranks the gold first, but keeps
    /// it in its top 20 (where the reader trains); a scorer that knows the structure — the person
    /// next to a value of the question's class — ranks it first almost always, so the pattern is
    /// there for a learned retriever.
    @Test func wordOverlapMissesTheGoldAStructuralScorerFindsIt() throws {
        let w = try ExampleWorld(config: ExampleWorldConfig(seed: 3, train: 600, dev: 150))
        let bm25 = TinyBM25(w.passages.map { ExampleWorld.words($0.text + " " + $0.title) })
        var first = 0, top5 = 0, top20 = 0, structural = 0
        let values = Dictionary(uniqueKeysWithValues: ExampleVocabulary.relations.map { ($0.name, Set($0.values.map { $0.lowercased() })) })
        for q in w.dev {
            let scores = bm25.scores(ExampleWorld.words(q.question))
            let rank = scores.filter { $0 > scores[q.gold] }.count  // ties count in the gold's favour
            if rank == 0 { first += 1 }
            if rank < 5 { top5 += 1 }
            if rank < 20 { top20 += 1 }
            // The structure: same person, and a value of the question's relation (and its object).
            let qWords = Set(ExampleWorld.words(q.question))
            let s = w.passages.map { p -> Double in
                let pw = ExampleWorld.words(p.text)
                var v = p.title == q.person ? 2.0 : 0
                if pw.contains(where: { values[q.relation]!.contains($0) }) { v += 1 }
                if pw.contains(where: { qWords.contains($0) && ExampleVocabulary.relations[0].objects.contains($0) }) { v += 0.5 }
                return v
            }
            if s.filter({ $0 >= s[q.gold] }).count == 1 { structural += 1 }
        }
        let n = Double(w.dev.count)
        print("example world: BM25 gold first \(first), top-5 \(top5), top-20 \(top20); structural first \(structural); of \(w.dev.count)")
        #expect(Double(first) < 0.35 * n, "BM25 ranks the gold first for \(first) of \(w.dev.count)")
        #expect(Double(top5) < 0.75 * n, "BM25 has the gold in its top 5 for \(top5) of \(w.dev.count)")
        #expect(Double(top20) > 0.9 * n, "BM25 has the gold in its top 20 for only \(top20) of \(w.dev.count)")
        #expect(Double(structural) > 0.9 * n, "the structural scorer ranks the gold alone first for only \(structural)")
    }

    /// The words are real ones both demo vocabularies know: about one piece per word.
    @Test func fewPiecesPerWordInBothVocabularies() throws {
        let w = try ExampleWorld(config: Self.small)
        let texts = w.passages.map { $0.title + " " + $0.text } + (w.train + w.dev).map(\.question)
        let wordCount = texts.reduce(0) { $0 + $1.split(separator: " ").count }
        for (name, path) in [("t5", "t5/tokenizer.json"), ("minilm", "minilm/tokenizer.json")] {
            let tok = try TokenizerLoader.load(try Self.asset(path))
            let ws = Workspace()
            var pieces = 0, unknown = 0
            for t in texts {
                let ids = tok.encode(t, addSpecialTokens: false, workspace: ws)
                pieces += ids.count
                unknown += ids.filter { tok.piece(for: $0) == "<unk>" || tok.piece(for: $0) == "[UNK]" }.count
            }
            let ratio = Double(pieces) / Double(wordCount)
            #expect(unknown == 0, "\(name): \(unknown) unknown pieces")
            // T5 splits off "a" and the sentence's punctuation, and cuts "cello" and "harp" in two
            // or three; nothing else splits.
            #expect(ratio < 1.35, "\(name): \(pieces) pieces for \(wordCount) words")
        }
    }

    /// The world's own vocabularies, read back through fidq's loader from the written files: every
    /// word of every FiD encoder string is one piece (BERT also cuts punctuation off, as its
    /// pre-tokenizer does), nothing is unknown, the reader's text decodes back unchanged, and each
    /// size is the model config's `vocab_size`.
    @Test func ownVocabulariesOnePiecePerWord() throws {
        let w = try ExampleWorld(config: Self.small)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("world-tok-\(getpid())")
        defer { try? FileManager.default.removeItem(at: dir) }
        try w.write(to: dir.path)
        let reader = try TokenizerLoader.load(dir.appendingPathComponent("reader/tokenizer.json").path)
        let bert = try TokenizerLoader.load(dir.appendingPathComponent("retriever/vocab.txt").path)
        #expect(reader.vocabSize == ExampleWorld.readerConfig.vocab_size)
        #expect(bert.vocabSize == ExampleWorld.retrieverConfig.vocab_size)
        let ws = Workspace()
        let texts = w.examples(w.train + w.dev, .gold).flatMap { ex in
            ex.ctxs.map { "question: \(ex.question) title: \($0.title) context: \($0.text)" } + [ex.target ?? ""]
        }
        for t in texts {
            let words = t.split(separator: " ")
            let ids = reader.encode(t, addSpecialTokens: true, workspace: ws)
            #expect(ids.count == words.count + 1 && ids.last == 1, "reader: '\(t)' → \(ids.count) ids for \(words.count) words + </s>")
            #expect(!ids.contains(2), "reader: <unk> in '\(t)'")
            #expect(reader.decode(ids, skipSpecialTokens: true) == t)
            let pieces = bert.encode(t, addSpecialTokens: false, workspace: ws)
            let cut = words.reduce(0) { n, word in n + word.split(whereSeparator: { $0 == ":" }).count + (word.contains(":") ? 1 : 0) }
            #expect(pieces.count == cut, "bert: '\(t)' → \(pieces.count) pieces for \(cut) words and colons")
            #expect(!pieces.contains(1), "bert: [UNK] in '\(t)'")
        }
        // A word outside the world still tokenises, piece by piece, without unknowns.
        let other = reader.encode("Zygmunt", addSpecialTokens: false, workspace: ws)
        #expect(other.count > 1 && !other.contains(2))
        #expect(reader.decode(other, skipSpecialTokens: true) == "Zygmunt")
    }

    @Test func tsvQuotesAsPythonCSV() {
        #expect(ExampleWorld.tsvField("plain text") == "plain text")
        #expect(ExampleWorld.tsvField("a\tb") == "\"a\tb\"")
        #expect(ExampleWorld.tsvField("say \"hi\"") == "\"say \"\"hi\"\"\"")
        #expect(ExampleWorld.tsvField("two\nlines") == "\"two\nlines\"")
    }

    @Test func tsvRows() throws {
        let w = try ExampleWorld(config: ExampleWorldConfig(seed: 1, train: 12, dev: 4, nContext: 4))
        let lines = String(decoding: w.tsv(), as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.first == "id\ttext\ttitle")
        #expect(lines.last == "")
        #expect(lines.count == w.passages.count + 2)
        let row = lines[1].split(separator: "\t").map(String.init)
        #expect(row == [w.passages[0].id, w.passages[0].text, w.passages[0].title])
    }

    @Test func badSizesNameTheField() {
        func field(_ c: ExampleWorldConfig) -> String? {
            do { _ = try ExampleWorld(config: c); return nil } catch let e as ExampleWorldError { return e.field } catch { return "?" }
        }
        #expect(field(ExampleWorldConfig(train: 0)) == "train")
        #expect(field(ExampleWorldConfig(dev: 0)) == "dev")
        #expect(field(ExampleWorldConfig(nContext: 0)) == "n_context")
        #expect(field(ExampleWorldConfig(decoysMin: 3, decoysMax: 2)) == "decoys_max")
        #expect(field(ExampleWorldConfig(people: 10_000)) == "people")
        #expect(field(ExampleWorldConfig(train: 5000, dev: 5000)) == "train")
        #expect(field(ExampleWorldConfig(train: 3, dev: 1, nContext: 3)) == nil)
        #expect(field(ExampleWorldConfig(train: 1 << 62, dev: 1 << 62)) == "train")
        #expect(field(ExampleWorldConfig(people: 1)) == "people")
        #expect(field(ExampleWorldConfig(nContext: 101)) == "n_context")
        #expect(field(ExampleWorldConfig(train: 1, dev: 1, nContext: 10, decoysMin: 0, decoysMax: 0)) == "n_context")
        #expect(field(ExampleWorldConfig(train: 1, dev: 1, nContext: 2, decoysMin: 0, decoysMax: 0)) == nil)
        #expect(field(ExampleWorldConfig(exercises: -1)) == "exercises")
        #expect(field(ExampleWorldConfig(exercises: 2_000_000)) == "exercises")
        #expect(field(ExampleWorldConfig(train: 4, dev: 2, people: 2, exercises: 5)) == "people")
        #expect(field(ExampleWorldConfig(train: 4, dev: 2, people: 2)) == nil)
        #expect(field(ExampleWorldConfig(train: 4, dev: 2, people: 3, exercises: 5)) == nil)
    }

    /// Each exercise: the gold (the question's person, the answer) and a look-alike first, then the
    /// other two; look-alikes are other people's facts of the question's kind or the person's fact of
    /// another kind, and none holds the answer.
    @Test func exercisesPairTheGoldWithLookAlikes() throws {
        var c = Self.small
        c.exercises = 600
        let w = try ExampleWorld(config: c)
        let train = w.exercises(600, split: "train"), dev = w.exercises(60, split: "dev")
        #expect(train.count == 600 && dev.count == 60)
        let distinct = Set((train + dev).map { $0.question + " " + ($0.target ?? "") }).count
        #expect(distinct > 600, "only \(distinct) distinct exercises of 660")
        let people = Set(ExampleVocabulary.names.prefix(c.resolvedPeople))
        func kind(_ text: String) -> Int? {
            let words = Set(ExampleWorld.words(text))
            return ExampleVocabulary.relations.firstIndex { r in r.values.contains { words.contains($0.lowercased()) } }
        }
        var goldFirst = 0, otherPersonSecond = 0
        for e in train + dev {
            let answer = try #require(e.target)
            #expect(e.answers == [answer] && e.ctxs.count == ExampleWorld.exercisePassages)
            let person = try #require(e.question.split(separator: " ").map(String.init).first { people.contains($0) }, "\(e.question)")
            let golds = e.ctxs.indices.filter { ExampleWorld.words(e.ctxs[$0].text).contains(answer.lowercased()) }
            #expect(golds.count == 1 && golds[0] < 2, "\(e.idText): the answer in passages \(golds)")
            guard golds.count == 1 else { continue }
            let g = golds[0]
            goldFirst += g == 0 ? 1 : 0
            #expect(e.ctxs[g].title == person && Self.field(e.ctxs[g], "hasanswer") == .bool(true))
            let k = try #require(kind(e.ctxs[g].text), "\(e.ctxs[g].text)")
            var others = 0, own = 0
            for (i, p) in e.ctxs.enumerated() where i != g {
                #expect(Self.field(p, "hasanswer") == .bool(false))
                #expect(p.text.hasPrefix(p.title) || p.text.contains(" \(p.title) "), "\(p.text): not about \(p.title)")
                if p.title == person {
                    #expect(kind(p.text) != k, "\(e.idText): the person's look-alike '\(p.text)' is of the question's kind")
                    own += 1
                } else {
                    #expect(kind(p.text) == k, "\(e.idText): another person's look-alike '\(p.text)' is of another kind")
                    others += 1
                    if i == 1 - g { otherPersonSecond += 1 }
                }
            }
            #expect(own == 1 && others == 2, "\(e.idText): \(own) of the person's own, \(others) of others")
        }
        // The first pair: the gold first about half the time, another person's fact beside it about
        // two times in three (binomial, n 660: 5 standard deviations).
        #expect(abs(Double(goldFirst) / 660 - 0.5) < 0.1, "gold first in \(goldFirst) of 660")
        #expect(abs(Double(otherPersonSecond) / 660 - 2.0 / 3) < 0.1, "another person beside the gold in \(otherPersonSecond) of 660")
        // Values uniform: every value shows up as an answer (cities: 24 values, about 1,000 draws).
        let answers = Set(w.exercises(6000, split: "train").compactMap(\.target))
        let cities = try #require(ExampleVocabulary.relations.first { $0.name == "city" }).values
        #expect(cities.filter { !answers.contains($0) }.isEmpty, "cities never asked: \(cities.filter { !answers.contains($0) })")
        // Train and dev draw different exercises; no exercises, empty files.
        #expect(train.prefix(60).map(\.question) != dev.map(\.question))
        let files = try ExampleWorld(config: Self.small).files()
        let empty = try #require(files.first { $0.name == "dev_exercises.json" })
        #expect(String(decoding: empty.data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "[]")
    }

    @Test func chanceIsOneOverTheValueCount() throws {
        let w = try ExampleWorld(config: Self.small)
        let chance = w.chanceExactMatch(w.dev)
        var expected = 0.0
        for q in w.dev {
            let relation = try #require(ExampleVocabulary.relations.first { $0.name == q.relation })
            expected += 1 / Double(relation.values.count)
        }
        expected /= Double(w.dev.count)
        #expect(abs(chance - expected) < 1e-12)
        #expect(chance > 1.0 / 25 && chance < 1.0 / 8)
    }

    /// The world's reader vocabulary has no T5 sentinels: its folder, and a reader saved with it,
    /// carry a tokenizer_config.json saying so (transformers' AutoTokenizer added 100 ids past the
    /// model's rows, and named no pad token). A real T5 tokenizer.json, which has them, gets none.
    @Test func readerFoldersTellTransformersTheirSpecialTokens() throws {
        let files = Dictionary(uniqueKeysWithValues: try ExampleWorld(config: Self.small).files())
        let config = try #require(files["reader/tokenizer_config.json"])
        let o = try #require(try JSONSerialization.jsonObject(with: config) as? [String: Any])
        #expect(o["extra_ids"] as? Int == 0 && o["pad_token"] as? String == "<pad>" && o["eos_token"] as? String == "</s>"
                && o["tokenizer_class"] as? String == "T5Tokenizer", "\(o)")
        let dir = NSTemporaryDirectory() + "fidq-world-tok-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try files["reader/tokenizer.json"]!.write(to: URL(fileURLWithPath: dir + "/tokenizer.json"))
        try files["reader/config.json"]!.write(to: URL(fileURLWithPath: dir + "/config.json"))
        let model = T5Model(config: try T5Config.load(path: dir + "/config.json"))
        try T5Saver.save(model, to: dir + "/saved", tokenizer: dir + "/tokenizer.json")
        #expect(FileManager.default.contents(atPath: dir + "/saved/tokenizer_config.json") == config)
        try T5Saver.save(model, to: dir + "/saved-t5", tokenizer: try Self.asset("t5/tokenizer.json"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/saved-t5/tokenizer_config.json"))
    }

    static func asset(_ relative: String) throws -> String {
        var root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".assets")
        if let env = ProcessInfo.processInfo.environment["FIDQ_ASSETS"], !env.isEmpty { root = URL(fileURLWithPath: env) }
        let p = root.appendingPathComponent(relative).path
        guard FileManager.default.fileExists(atPath: p) else {
            throw ExampleWorldError(field: "assets", expected: "\(p) (run ops/assets)", found: "nothing")
        }
        return p
    }
}

/// Okapi BM25 over word lists (k1 0.9, b 0.4), the test's lexical baseline.
struct TinyBM25 {
    let docs: [[String: Int]]
    let lengths: [Double]
    let df: [String: Int]
    let avgLength: Double

    init(_ texts: [[String]]) {
        var docs: [[String: Int]] = []
        var df: [String: Int] = [:]
        for t in texts {
            var tf: [String: Int] = [:]
            for w in t { tf[w, default: 0] += 1 }
            for w in tf.keys { df[w, default: 0] += 1 }
            docs.append(tf)
        }
        self.docs = docs
        self.df = df
        lengths = texts.map { Double($0.count) }
        avgLength = lengths.reduce(0, +) / Double(max(1, texts.count))
    }

    func scores(_ query: [String]) -> [Double] {
        let n = Double(docs.count), k1 = 0.9, b = 0.4
        return docs.indices.map { d in
            var s = 0.0
            for w in query {
                guard let f = docs[d][w].map(Double.init), let m = df[w] else { continue }
                let idf = log(1 + (n - Double(m) + 0.5) / (Double(m) + 0.5))
                s += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * lengths[d] / avgLength))
            }
            return s
        }
    }
}/// A killed writer's temporary file (another pid) is removed when the world is written again.
@Test func exampleWorldWriteRemovesAKilledWritersTemporaryFiles() throws {
    let dir = TestData.scratch("world-tmp")
    _ = FileManager.default.createFile(atPath: dir + "/.passages.tsv.4415.tmp", contents: Data("half".utf8))
    let world = try ExampleWorld(config: ExampleWorldConfig(seed: 1, train: 12, dev: 4, nContext: 1))
    try world.write(to: dir)
    let left = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".tmp") }
    #expect(left.isEmpty, "\(left)")
}


