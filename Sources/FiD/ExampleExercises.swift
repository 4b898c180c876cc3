// ExampleExercises: reading exercises for the demo's reader — fresh facts, drawn independently of the world's.
//
// FiD starts from a pretrained T5 that already reads; the demo's T5 starts from nothing, and the
// world's few hundred questions only teach it to memorise them (dev exact match stays at chance,
// 2026-12-03). What a reader must learn there is to take the value stated next to the question's
// person, not the value stated next to another person, and of the question's kind. Each exercise
// asks that of fresh facts: the same vocabulary, the world's people, values drawn uniformly (so an
// exercise says nothing about any answer of the world), and these four passages:
//
//     ctxs[0…1]  the gold and one look-alike, in random order: another person's fact of the same
//                kind (two times in three) or the person's fact of another kind
//     ctxs[2…3]  the other of those two, and a third person's fact of the same kind, in random order
//
// FiD's model does not see passage order (each passage is encoded alone, and T5's cross-attention
// has no position bias), so `n_context: 2` reads an easier exercise of the same file: the demo
// trains on those first (the person-matching, learnt in about 1,500 steps of 32 at lr 3e-4; at lr
// 1e-3 and above it is never learnt), then on all four.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Formats
import Tensor

extension ExampleWorld {
    /// Passages per exercise (see the file comment).
    public static let exercisePassages = 4

    /// `count` reading exercises as FiD examples (`id` `<split>-exercise-<n>`, `question`, `target`,
    /// `answers`, `ctxs` of `exercisePassages` `{id, title, text, hasanswer}`), seeded by the
    /// world's seed and `split`, so `train` and `dev` draw different ones.
    public func exercises(_ count: Int, split: String) -> [FiDExample] {
        guard count > 0 else { return [] }
        var rng = RNG(seed: config.seed ^ (split == "train" ? 0xE8E7_C15E : 0xDE5E_7C15))
        let names = Array(ExampleVocabulary.names.prefix(config.resolvedPeople))
        let relations = ExampleVocabulary.relations
        precondition(names.count >= 3 && relations.count >= 2, "validate() keeps exercises to worlds of three people or more")
        func pick<T>(_ a: [T]) -> T { a[Self.index(a.count, &rng)] }
        /// `k` distinct indices below `n` (k ≤ n), in draw order.
        func distinct(_ k: Int, below n: Int) -> [Int] {
            var out: [Int] = []
            while out.count < k {
                let i = Self.index(n, &rng)
                if !out.contains(i) { out.append(i) }
            }
            return out
        }
        return (0..<count).map { n in
            let r = Self.index(relations.count, &rng)
            let rel = relations[r]
            let object = pick(rel.objects)
            let people = distinct(3, below: names.count).map { names[$0] }
            let values = distinct(3, below: rel.values.count).map { rel.values[$0] }
            let question = ExampleVocabulary.fill(pick(rel.questions), name: people[0], object: object)
            func stated(_ person: String, _ value: String) -> (title: String, text: String) {
                (person, ExampleVocabulary.fill(pick(rel.gold), name: person, object: object, value: value))
            }
            let gold = stated(people[0], values[0])
            let other = stated(people[1], values[1])
            let third = stated(people[2], values[2])
            var r2 = Self.index(relations.count - 1, &rng)
            if r2 >= r { r2 += 1 }
            let rel2 = relations[r2]
            let own = (title: people[0], text: ExampleVocabulary.fill(pick(rel2.gold), name: people[0], object: pick(rel2.objects),
                                                         value: pick(rel2.values)))
            let otherFirst = Self.index(3, &rng) < 2
            var first = [(gold, true), (otherFirst ? other : own, false)]
            var rest = [(otherFirst ? own : other, false), (third, false)]
            Self.shuffle(&first, &rng)
            Self.shuffle(&rest, &rng)
            let id = "\(split)-exercise-\(n)"
            let ctxs = (first + rest).enumerated().map { k, c in
                let raw = JSONNode.object([
                    ("id", .string("\(id)-\(k)")), ("title", .string(c.0.title)), ("text", .string(c.0.text)),
                    ("hasanswer", .bool(c.1)),
                ])
                return FiDPassage(title: c.0.title, text: c.0.text, raw: raw)
            }
            return FiDExample(index: n, id: .string(id), question: question, target: values[0], answers: [values[0]], ctxs: ctxs)
        }
    }
}
