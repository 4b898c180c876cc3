// EvaluateRetrievalKindTests: `evaluate_retrieval` counts recall@k as retrieve does, by file order
// or by score, names what it could not count, and refuses what it cannot rank.
import Foundation
import Jobs
import Testing
@testable import FiD

@Suite struct EvaluateRetrievalKindTests {
    static func psg(_ title: String, _ text: String, score: Double? = nil, flag: (String, Bool)? = nil) -> String {
        var fields = [#""title": "\#(title)""#, #""text": "\#(text)""#]
        if let score { fields.append(#""score": \#(score)"#) }
        if let (key, value) = flag { fields.append(#""\#(key)": \#(value)"#) }
        return "{" + fields.joined(separator: ", ") + "}"
    }
    static let paris = "Paris is the capital of France.", berlin = "Berlin is the capital of Germany."
    static let nile = "The Nile is a river in Africa.", everest = "Mount Everest is the highest mountain."

    /// q1: the answer second in file order, first by score. q2: first, its stored flag wrong. q3:
    /// no answers, one passage. q4: the answer fourth either way, flagged DPR's way.
    static let data = "[" + [
        #"{"id": "q1", "question": "capital of Germany?", "answers": ["Berlin"], "ctxs": ["#
            + [psg("Paris", paris, score: 1, flag: ("hasanswer", false)), psg("Berlin", berlin, score: 3, flag: ("hasanswer", true)),
               psg("Nile", nile, score: 2, flag: ("hasanswer", false))].joined(separator: ", ") + "]}",
        #"{"id": "q2", "question": "highest mountain?", "answers": ["Mount Everest"], "ctxs": ["#
            + [psg("Everest", everest, score: 5, flag: ("hasanswer", false)), psg("Paris", paris, score: 1, flag: ("hasanswer", false))]
            .joined(separator: ", ") + "]}",
        #"{"id": "q3", "question": "unlabelled?", "ctxs": ["# + psg("Paris", paris, score: 0) + "]}",
        #"{"id": "q4", "question": "river in Africa?", "answers": ["nile"], "ctxs": ["#
            + [psg("Berlin", berlin, score: 4), psg("Paris", paris, score: 3), psg("Everest", everest, score: 2),
               psg("Nile", nile, score: 1, flag: ("has_answer", true))].joined(separator: ", ") + "]}",
    ].joined(separator: ",\n") + "]"

    static func evaluate(_ params: [String: JSONValue], data: String = Self.data, name: String = #function) throws -> [String: JSONValue] {
        let dir = TestData.scratch(String(name.prefix { $0 != "(" }))
        try TestData.write(data, to: dir + "/data.json")
        var p = params
        p["data"] = .string("data.json")
        let r = try RetrievalJobs.run("evaluate_retrieval", p, workspace: dir)
        // Progress has a total (the file's examples, counted first), and ends at it.
        let progress = try JSONDecoder().decode(ProgressReporter.Snapshot.self,
                                                from: Data(contentsOf: URL(fileURLWithPath: dir + "/evaluate_retrieval.run/progress.json")))
        #expect(progress.total != nil && progress.step == progress.total && RetrievalJobs.number(r["questions"]) == progress.total.map(Double.init),
                "\(progress)")
        return r
    }

    static func numbers(_ v: JSONValue?) -> [Double]? {
        guard case .array(let items)? = v else { return nil }
        return items.compactMap(RetrievalJobs.number)
    }

    @Test func recallCountsTheFirstPassageHoldingAnAnswer() throws {
        // (params, top-k accuracy, depth, stored flags, questions with fewer passages than the depth)
        let cases: [([String: JSONValue], [Double], Int, Int, Int?)] = [
            ([:], [0.25, 0.5, 0.5, 0.75], 4, 6, 3),
            (["sort_by_score": .bool(true)], [0.5, 0.5, 0.5, 0.75], 4, 6, 3),
            (["n_docs": .number(2)], [0.25, 0.5], 2, 4, 1),
            (["n_docs": .number(1)], [0.25], 1, 2, nil),
        ]
        for (params, accuracy, depth, stored, short) in cases {
            let r = try Self.evaluate(params)
            #expect(Self.numbers(r["top_k_accuracy"]) == accuracy, "\(params): \(String(describing: r["top_k_accuracy"]))")
            #expect(RetrievalJobs.number(r["n_docs"]) == Double(depth) && RetrievalJobs.number(r["questions"]) == 4, "\(params)")
            guard case .object(let recall)? = r["recall"] else { Issue.record("no recall"); continue }
            #expect(Set(recall.keys) == Set(RetrieveKind.recallDepths(returned: depth).map(String.init)), "\(recall.keys.sorted())")
            #expect(RetrievalJobs.number(recall["1"]) == accuracy[0] && RetrievalJobs.number(recall[String(depth)]) == accuracy.last)
            #expect(RetrievalJobs.number(r["questions_without_answers"]) == 1)
            #expect(RetrievalJobs.number(r["stored_flags"]) == Double(stored), "\(params)")
            // q2's Everest passage is flagged false and holds the answer: counted, and named.
            #expect(RetrievalJobs.number(r["stored_flags_disagreeing"]) == 1, "\(params)")
            #expect(RetrievalJobs.number(r["short_questions"]) == short.map(Double.init), "\(params)")
            guard case .string(let note)? = r["note"] else { Issue.record("no note"); continue }
            #expect(note.contains("example q2, passage 0") && note.contains("stored false, recomputed true"), "\(note)")
            #expect(note.contains("1 of 4 questions have no answers"), "\(note)")
            #expect(note.contains("question q3") == (short != nil), "\(note)")
        }
    }

    /// FiD's evaluation reads a passage's text alone: no title (or a null one) is counted, and a
    /// null text ("no doc in db") is a passage without the answer, even for the answer "" that
    /// matches any text. Both were refused, failing the job.
    @Test func passagesWithoutTitleOrWithANullTextAreCountedAsFiDsEvaluationDoes() throws {
        let data = "[" + [
            #"{"id": "a", "question": "capital of Germany?", "answers": ["Berlin"], "ctxs": [{"text": "\#(Self.paris)"}, {"title": null, "text": "\#(Self.berlin)"}]}"#,
            #"{"id": "b", "question": "anything?", "answers": [""], "ctxs": [{"title": "x", "text": null}, {"title": 7, "text": "\#(Self.nile)"}]}"#,
        ].joined(separator: ",\n") + "]"
        let r = try Self.evaluate([:], data: data)
        #expect(Self.numbers(r["top_k_accuracy"]) == [0, 1], "\(String(describing: r["top_k_accuracy"]))")
    }

    /// score read only the first passages (its n_context below the file's): those carry the
    /// reader's numbers, the rest the retrieval's strings, another scale. The reader's are ranked,
    /// the rest follow in file order, however high their strings.
    @Test func passagesTheReaderDidNotScoreFollowInFileOrder() throws {
        let data = "[" + #"{"id": "q1", "question": "river in Africa?", "answers": ["Nile"], "ctxs": ["#
            + [Self.psg("Berlin", Self.berlin, score: 0.5), Self.psg("Nile", Self.nile, score: 2.5),
               #"{"title": "Paris", "text": "\#(Self.paris)", "score": "90.5"}"#, #"{"title": "Nile", "text": "\#(Self.nile)", "score": "80"}"#,
               #"{"title": "Everest", "text": "\#(Self.everest)"}"#].joined(separator: ", ") + "]}]"
        let r = try Self.evaluate(["sort_by_score": .bool(true)], data: data)
        // Nile (2.5) first, Berlin, then Paris, Nile, Everest as in the file: hits from rank 1.
        #expect(Self.numbers(r["top_k_accuracy"]) == [1, 1, 1, 1, 1], "\(String(describing: r["top_k_accuracy"]))")
        #expect(RetrievalJobs.number(r["unranked_passages"]) == 3)
        guard case .string(let note)? = r["note"] else { Issue.record("no note"); return }
        #expect(note.contains("in 1 of 1 questions the reader scored only some passages") && note.contains("3 others"), "\(note)")
        // Unsorted, the file's order: the answer second.
        #expect(Self.numbers(try Self.evaluate([:], data: data)["top_k_accuracy"]) == [0, 1, 1, 1, 1])
    }

    /// The same output `retrieve` wrote and counted: the same recall.
    @Test func agreesWithRetrievesOwnCount() throws {
        let dir = TestData.scratch("evalretrieve")
        try TestData.write(RetrievalKindsTests.passages, to: dir + "/psgs.tsv")
        try TestData.write(#"[{"question": "What is the capital of Germany?", "answers": ["Berlin"]}, {"question": "Where is the Eiffel Tower?", "answers": ["Paris"]}, {"question": "Which river flows north in Africa?", "answers": ["Nile"]}]"#,
                           to: dir + "/q.json")
        _ = try RetrievalJobs.run("index_bm25", ["passages": .string("psgs.tsv"), "output_path": .string("bm25.index")], workspace: dir)
        let retrieved = try RetrievalJobs.run(
            "retrieve", ["method": .string("bm25"), "bm25_index": .string("bm25.index"), "passages": .string("psgs.tsv"),
                         "data": .string("q.json"), "output_path": .string("out.json"), "n_docs": .number(5)], workspace: dir)
        let evaluated = try RetrievalJobs.run("evaluate_retrieval", ["data": .string("out.json")], workspace: dir)
        #expect(evaluated["recall"] != nil && evaluated["recall"] == retrieved["recall"], "\(String(describing: evaluated["recall"]))")
        // Every passage retrieve wrote carries its flag, and each is DPR's has_answer.
        let out = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/out.json"))) as! [[String: Any]]
        let written = out.map { ($0["ctxs"] as! [Any]).count }.reduce(0, +)
        #expect(written > 3 && RetrievalJobs.number(evaluated["stored_flags"]) == Double(written))
        #expect(RetrievalJobs.number(evaluated["stored_flags_disagreeing"]) == 0)
    }

    /// A rerun in the same folder under another `n_docs`, the earlier run having given an option
    /// that changes nothing (FiD's `validation_workers`), is refused naming `n_docs` alone.
    @Test func aRerunOfOtherSettingsNamesOnlyWhatDiffers() throws {
        let dir = TestData.scratch("evaluate-rerun")
        try TestData.write(Self.data, to: dir + "/data.json")
        _ = try RetrievalJobs.run("evaluate_retrieval", ["data": .string("data.json"), "validation_workers": .number(7)], workspace: dir)
        do {
            _ = try RetrievalJobs.run("evaluate_retrieval", ["data": .string("data.json"), "n_docs": .number(3)], workspace: dir)
            Issue.record("a rerun of other settings was accepted")
        } catch let e as JobError {
            #expect(e.message.contains("(n_docs: unset there, 3 here)"), "\(e)")
        }
    }

    @Test func whatCannotBeCountedIsRefused() throws {
        func refusal(_ params: [String: JSONValue], data: String = Self.data, name: String = #function) -> JobError? {
            do { _ = try Self.evaluate(params, data: data, name: name) } catch let e as JobError { return e } catch {
                Issue.record("not a JobError: \(error)")
            }
            return nil
        }
        let unscored = #"[{"id": "q5", "question": "q?", "answers": ["a"], "ctxs": [{"title": "t", "text": "a", "score": "2"}, {"title": "t", "text": "b"}]}]"#
        let e1 = refusal(["sort_by_score": .bool(true)], data: unscored)
        #expect(e1?.field == "params.data" && e1?.message.contains("example q5, passage 1 has no score") == true, "\(String(describing: e1))")
        let nan = #"[{"id": "q6", "question": "q?", "answers": ["a"], "ctxs": [{"title": "t", "text": "a", "score": "nan"}]}]"#
        let e2 = refusal(["sort_by_score": .bool(true)], data: nan)
        #expect(e2?.message.contains("example q6, passage 0 has the score nan") == true, "\(String(describing: e2))")
        // Unranked, the same files count.
        #expect(refusal([:], data: unscored) == nil && refusal([:], data: nan) == nil)
        let e3 = refusal([:], data: #"[{"question": "q?", "answers": ["a"]}, {"question": "r?", "answers": ["b"], "ctxs": []}]"#)
        #expect(e3?.field == "params.data" && e3?.message.contains("none of its 2 questions has passages") == true && e3?.hint?.contains("retrieve") == true,
                "\(String(describing: e3))")
        // A data error found as the job runs (the first example is checked at submit): its hint
        // once (it was given twice, in the text and as the job error's own).
        let e5 = refusal([:], data: #"[{"question": "q?", "answers": ["a"], "ctxs": [{"title": "t", "text": "a"}]}, {"answers": ["b"]}]"#)
        #expect(e5?.field == "params.data" && e5?.message.contains("[1].question: missing") == true
                && e5?.description.components(separatedBy: "every FiD example needs a question").count == 2, "\(String(describing: e5))")
        let e4 = refusal(["n_docs": .number(0)])
        #expect(e4?.field == "params.n_docs", "\(String(describing: e4))")
    }
}
