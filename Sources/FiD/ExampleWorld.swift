// ExampleWorld: a seeded synthetic QA world (passages, questions, look-alike distractors) made by fidq itself.
//
// Public API (the reader, retriever and demo tests call it):
//
//     let world = try ExampleWorld(config: ExampleWorldConfig(seed: 7, train: 200, dev: 50))
//     world.passages                      // [ExampleWorld.Passage]: DPR rows (id "1"…"N", text, title)
//     world.train, world.dev              // [ExampleWorld.Question]: question, answer, gold passage index
//     world.examples(world.dev, .gold)    // [FiDExample], ctxs = gold + look-alikes shuffled (issue 11)
//     world.examples(world.dev, .empty)   // [FiDExample] with `ctxs: []`, filled by retrieval (issue 14)
//     world.examples(world.dev, .scored)  // ctxs with a reader-like `score` (issue 12's learning check)
//     world.chanceExactMatch(world.dev)   // exact match of guessing a value of the right class
//     try world.write(to: folder)         // passages.tsv, {train,dev}{,_gold,_scored}.json, configs
//
// How it is built. Each person (a name) has facts of six relations (the color of an object, the
// city, sport, food, job, instrument); each fact is one question. Its gold passage states the value
// with the question's person, object and verb but not its noun ("Anna keeps a red cat at home .");
// 1…6 lexical decoys repeat the question's words about the same person and state nothing ("Anna
// asked what color the cat should be ."). So word overlap (BM25) ranks decoys above the gold for most questions, while the
// gold still shares the rare name and lands in BM25's top 20 (the reader trains on those). What
// marks a gold passage is structural — the person next to a value of the question's class — which
// a bi-encoder learns from the reader's scores. Values of different relations are disjoint, and a
// decoy never holds a value of its relation, so only passages of another person can repeat the
// answer word by chance (those are never chosen as distractors of the question).
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Formats
import Tensor

/// Sizes and seed of an example world; the `example` job's params (FiD-style snake_case names).
public struct ExampleWorldConfig: Codable, Sendable, Equatable {
    /// Seeds everything: the same config gives the same bytes.
    public var seed: UInt64 = 0
    /// Training questions (one per fact).
    public var train = 600
    /// Dev questions (facts disjoint from train's; their people also have train facts).
    public var dev = 150
    /// Passages per question in the `.gold` and `.scored` data (the gold plus look-alikes; 1: the
    /// gold alone, what the demo's reader learns to read from).
    public var nContext = 10
    /// Lexical decoys per fact, drawn uniformly from `decoysMin…decoysMax`: word overlap ranks
    /// most of them above the gold, so they set how often BM25 finds it in its top 5.
    public var decoysMin = 1
    public var decoysMax = 6
    /// People in the world; 0 chooses one per 6 questions (each person then has about six of
    /// their eight facts asked, so same-person passages are look-alikes), capped at the name list.
    public var people = 0
    /// Reading exercises in `train_exercises.json` (`dev_exercises.json` holds `dev` of them when
    /// this is above 0): fresh facts for a reader trained from scratch to learn reading on
    /// (`ExampleExercises.swift`). 0 writes both files empty.
    public var exercises = 0

    enum CodingKeys: String, CodingKey, CaseIterable {
        case seed, train, dev, people, exercises
        case nContext = "n_context"
        case decoysMin = "decoys_min"
        case decoysMax = "decoys_max"
    }

    public init(seed: UInt64 = 0, train: Int = 600, dev: Int = 150, nContext: Int = 10,
                decoysMin: Int = 1, decoysMax: Int = 6, people: Int = 0, exercises: Int = 0) {
        self.seed = seed
        self.train = train
        self.dev = dev
        self.nContext = nContext
        self.decoysMin = decoysMin
        self.decoysMax = decoysMax
        self.people = people
        self.exercises = exercises
    }

    /// People actually used (resolves `people == 0`).
    public var resolvedPeople: Int {
        let n = people > 0 ? people : (train + dev + 5) / 6
        return min(ExampleVocabulary.names.count, max(2, n))
    }

    /// Colored objects per person (the other relations hold one fact per person).
    static let objectsPerPerson = 3

    /// Facts one person holds.
    static var factsPerPerson: Int { ExampleVocabulary.relations.reduce(0) { $0 + min($1.objects.count, objectsPerPerson) } }

    /// Facts the resolved people can hold.
    public var capacity: Int { resolvedPeople * Self.factsPerPerson }

    /// Most exercises one world writes: the job builds its files in memory (about 650 bytes each
    /// in `train_exercises.json`, a few times that while built), so 130 MB of JSON at most.
    static let maxExercises = 200_000

    /// FiD's largest `n_context` (its paper's 100 passages per question).
    static let maxNContext = 100

    /// Throws an `ExampleWorldError` naming the field when a value is out of range.
    public func validate() throws {
        func check(_ ok: Bool, _ field: String, _ expected: String, _ found: Any, _ hint: String? = nil) throws {
            if !ok { throw ExampleWorldError(field: field, expected: expected, found: "\(found)", hint: hint) }
        }
        // Each count alone first: their sum, and the people they ask for, must not overflow.
        let most = ExampleVocabulary.names.count * Self.factsPerPerson
        try check(train >= 1 && train <= most, "train", "1…\(most) questions (the facts of the largest world)", train)
        try check(dev >= 1 && dev <= most, "dev", "1…\(most) questions (the facts of the largest world)", dev)
        try check(nContext >= 1 && nContext <= Self.maxNContext, "n_context",
                  "1…\(Self.maxNContext) (the gold alone; more adds look-alike distractors)", nContext)
        try check(decoysMin >= 0, "decoys_min", "0 or more", decoysMin)
        try check(decoysMax >= decoysMin && decoysMax <= 16, "decoys_max", "decoys_min…16", decoysMax)
        try check(people == 0 || (people >= 2 && people <= ExampleVocabulary.names.count), "people",
                  "0 (one per 6 questions) or 2…\(ExampleVocabulary.names.count) (other people's facts are the look-alikes)", people)
        try check(exercises >= 0 && exercises <= Self.maxExercises, "exercises", "0…\(Self.maxExercises)", exercises)
        try check(exercises == 0 || resolvedPeople >= 3, "people", "3 or more for exercises (each names three people)",
                  resolvedPeople, "raise people, or ask for exercises: 0")
        try check(train + dev <= capacity, "train", "train + dev ≤ \(capacity) facts for \(resolvedPeople) people",
                  train + dev, "raise people (up to \(ExampleVocabulary.names.count)) or ask for fewer questions")
    }
}

/// A bad example-world setting: the field, what it must be and what was given.
public struct ExampleWorldError: Error, CustomStringConvertible, Sendable {
    public var field: String
    public var expected: String
    public var found: String
    public var hint: String?
    public var description: String {
        "example world: \(field): expected \(expected), found \(found)" + (hint.map { " (hint: \($0))" } ?? "")
    }
}

/// A deterministic synthetic world of people's facts, their passages and questions.
public struct ExampleWorld: Sendable {
    /// One row of `passages.tsv` (DPR: `id`, `text`, `title`).
    public struct Passage: Sendable, Equatable {
        public var id: String
        public var text: String
        public var title: String
    }

    /// One question with its answer and where it is stated.
    public struct Question: Sendable, Equatable {
        public var id: String
        public var question: String
        public var answer: String
        /// Index into `passages` of the one passage that states the answer.
        public var gold: Int
        /// Indices of this fact's lexical decoys (the question's words, no value).
        public var decoys: [Int]
        /// Indices of look-alike distractors for `.gold` data: the decoys, the person's other
        /// facts, and other people's facts of the same relation; none contains the answer word.
        public var distractors: [Int]
        /// The relation's name (`color`, `city`, …) and its number of values (for chance).
        public var relation: String
        public var valueCount: Int
        /// The person the question is about.
        public var person: String
    }

    /// How `examples` fills each example's `ctxs`.
    public enum Contexts: String, Sendable, CaseIterable {
        /// The gold among `nContext − 1` distractors, shuffled (reader training without retrieval).
        case gold
        /// No passages: the questions a `retrieve` job fills.
        case empty
        /// As `.gold`, each with a reader-like `score` favouring passages that share the hidden
        /// fact with the question: gold ≈ 3, same person ≈ 1, others ≈ 0, plus N(0, 0.7²) noise
        /// (so about one question in eight has a distractor on top, as a real reader would).
        case scored
    }

    public let config: ExampleWorldConfig
    public private(set) var passages: [Passage] = []
    public private(set) var train: [Question] = []
    public private(set) var dev: [Question] = []

    /// Generates the world of `config`.
    /// - Throws: `ExampleWorldError` for an out-of-range setting.
    public init(config: ExampleWorldConfig) throws {
        try config.validate()
        self.config = config
        var rng = RNG(seed: config.seed)
        let names = Array(ExampleVocabulary.names.prefix(config.resolvedPeople))
        let relations = ExampleVocabulary.relations

        // Every person's facts (three colored objects and one fact of each other relation, so no
        // relation dominates), then a seeded shuffle picks train + dev of them.
        struct Fact { var person: Int; var relation: Int; var object: String }
        var all: [Fact] = []
        for p in names.indices {
            for (r, rel) in relations.enumerated() {
                var objects = rel.objects
                Self.shuffle(&objects, &rng)
                for o in objects.prefix(ExampleWorldConfig.objectsPerPerson) { all.append(Fact(person: p, relation: r, object: o)) }
            }
        }
        Self.shuffle(&all, &rng)
        let facts = Array(all.prefix(config.train + config.dev))

        // Passages in generation order (shuffled and numbered afterwards).
        struct Draft { var text: String; var title: String; var person: Int; var relation: Int; var object: String; var value: String }
        var drafts: [Draft] = []
        var questions: [Question] = []
        for (i, f) in facts.enumerated() {
            let rel = relations[f.relation]
            let name = names[f.person]
            let value = rel.values[Self.index(rel.values.count, &rng)]
            let q = ExampleVocabulary.fill(rel.questions[Self.index(rel.questions.count, &rng)], name: name, object: f.object)
            let gold = drafts.count
            drafts.append(Draft(text: ExampleVocabulary.fill(rel.gold[Self.index(rel.gold.count, &rng)],
                                                             name: name, object: f.object, value: value),
                                title: name, person: f.person, relation: f.relation, object: f.object, value: value))
            var decoys: [Int] = []
            let count = config.decoysMin + Self.index(config.decoysMax - config.decoysMin + 1, &rng)
            var templates = rel.decoys  // without repeats while they last
            Self.shuffle(&templates, &rng)
            for k in 0..<count {
                decoys.append(drafts.count)
                drafts.append(Draft(text: ExampleVocabulary.fill(templates[k % templates.count],
                                                                 name: name, object: f.object),
                                    title: name, person: f.person, relation: f.relation, object: f.object, value: ""))
            }
            let split = i < config.train ? "train" : "dev"
            let n = i < config.train ? i : i - config.train
            questions.append(Question(id: "\(split)-\(n)", question: q, answer: value, gold: gold, decoys: decoys,
                                      distractors: [], relation: rel.name, valueCount: rel.values.count, person: name))
        }

        // Number the passages in a seeded order, so ids say nothing about which passage is gold.
        var order = Array(drafts.indices)
        Self.shuffle(&order, &rng)
        var position = [Int](repeating: 0, count: drafts.count)
        for (k, d) in order.enumerated() { position[d] = k }
        passages = order.enumerated().map { k, d in Passage(id: String(k + 1), text: drafts[d].text, title: drafts[d].title) }

        // Look-alike distractors of each question, from the drafts' metadata.
        var byPerson = [[Int]](repeating: [], count: names.count)
        var byRelation = [[Int]](repeating: [], count: relations.count)
        for (d, draft) in drafts.enumerated() where !draft.value.isEmpty {
            byPerson[draft.person].append(d)
            byRelation[draft.relation].append(d)
        }
        for qi in questions.indices {
            let q = questions[qi]
            let gold = drafts[q.gold]
            let answerWord = q.answer.lowercased()
            func holdsAnswer(_ d: Int) -> Bool {
                Self.words(drafts[d].text).contains(answerWord)
            }
            let want = config.nContext - 1
            var picked = q.decoys
            Self.shuffle(&picked, &rng)
            picked = Array(picked.prefix((want + 1) / 2))
            // Then up to half of the rest from the person's other facts, then other people's facts
            // of the same relation (the same object first for colors: its name is in the question).
            var mine = byPerson[gold.person].filter { $0 != q.gold && !holdsAnswer($0) }
            Self.shuffle(&mine, &rng)
            picked += mine.prefix((want - picked.count + 1) / 2)
            var theirs = byRelation[gold.relation].filter { $0 != q.gold && !picked.contains($0) && !holdsAnswer($0) }
            Self.shuffle(&theirs, &rng)
            let sameObject = theirs.filter { drafts[$0].object == gold.object }
            picked += (sameObject + theirs.filter { drafts[$0].object != gold.object }).prefix(want - picked.count)
            // Fill up with anything that does not hold the answer (tiny worlds).
            if picked.count < want {
                var rest = drafts.indices.filter { $0 != q.gold && !picked.contains($0) && !holdsAnswer($0) }
                Self.shuffle(&rest, &rng)
                picked += rest.prefix(want - picked.count)
            }
            questions[qi].gold = position[q.gold]
            questions[qi].decoys = q.decoys.map { position[$0] }
            questions[qi].distractors = picked.prefix(want).map { position[$0] }
            // A world too small for n_context would write fewer passages than asked, silently.
            if picked.count < want {
                throw ExampleWorldError(field: "n_context", expected: "at most \(picked.count + 1) for this world (question \(q.id) has "
                                            + "\(picked.count) passages without its answer besides the gold)",
                                        found: "\(config.nContext)", hint: "ask for more questions or people, or a smaller n_context")
            }
        }
        train = Array(questions.prefix(config.train))
        dev = Array(questions.suffix(config.dev))
    }

    /// Expected exact match of answering each question with a uniformly random value of its
    /// relation (the reader's chance baseline).
    public func chanceExactMatch(_ questions: [Question]) -> Double {
        guard !questions.isEmpty else { return 0 }
        return questions.reduce(0) { $0 + 1 / Double($1.valueCount) } / Double(questions.count)
    }

    /// The questions as FiD examples (`id`, `question`, `target`, `answers`, `ctxs`), their
    /// `ctxs` filled as `contexts` says, each passage `{id, title, text, score?, hasanswer}`.
    /// Deterministic: the shuffles and scores come from a generator seeded by the world's seed
    /// and the mode.
    public func examples(_ questions: [Question], _ contexts: Contexts) -> [FiDExample] {
        var rng = RNG(seed: config.seed ^ (contexts == .scored ? 0x5C0_4ED : 0x601D))
        return questions.enumerated().map { index, q in
            var ctxs: [FiDPassage] = []
            if contexts != .empty {
                var chosen = [q.gold] + q.distractors
                Self.shuffle(&chosen, &rng)
                ctxs = chosen.map { p in
                    let passage = passages[p]
                    var score: Double?
                    if contexts == .scored {
                        let base: Float = p == q.gold ? 3 : (passage.title == q.person ? 1 : 0)
                        let s = rng.normal(mean: base, std: 0.7)
                        score = (Double(s) * 10_000).rounded() / 10_000  // 4 decimals: the same bytes on any libm
                    }
                    var fields: [(String, JSONNode)] = [
                        ("id", .string(passage.id)), ("title", .string(passage.title)), ("text", .string(passage.text)),
                    ]
                    if let score { fields.append(("score", .double(score))) }
                    fields.append(("hasanswer", .bool(p == q.gold)))
                    return FiDPassage(title: passage.title, text: passage.text, score: score, raw: .object(fields))
                }
            }
            return FiDExample(index: index, id: .string(q.id), question: q.question, target: q.answer,
                              answers: [q.answer], ctxs: ctxs)
        }
    }

    /// Lowercased words of `text` (letters and digits), for answer checks.
    static func words(_ text: String) -> [String] {
        text.lowercased().split(whereSeparator: { !($0.isLetter || $0.isNumber) }).map(String.init)
    }

    /// A uniform index in 0..<n (n ≥ 1); a modulo keeps it the same on every Swift version.
    static func index(_ n: Int, _ rng: inout RNG) -> Int { Int(rng.next() % UInt64(n)) }

    /// Fisher–Yates with `index`, not the standard library's shuffle (whose algorithm may change).
    static func shuffle<T>(_ a: inout [T], _ rng: inout RNG) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) { a.swapAt(i, index(i + 1, &rng)) }
    }
}
