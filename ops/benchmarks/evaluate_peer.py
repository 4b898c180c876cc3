#!/usr/bin/env python3
"""Peer of the `evaluate` benchmark: FiD's evaluate_retrieved_passages.py against `fidq evaluate-retrieval`.

  evaluate_peer.py prepare PASSAGES_TSV OUT_JSON QUESTIONS DOCS   FiD JSON: QUESTIONS questions, DOCS passages each
  evaluate_peer.py run DATA WORKERS                                FiD's flow; prints top_k_hits as JSON
  evaluate_peer.py bench FIDQ DATA THREADS RUNS                    both whole processes, interleaved, best of RUNS;
                                                                   prints a Markdown table and checks the hits agree
The matching is DPR's own SimpleTokenizer and has_answer, imported from ops/fixtures/dpr_has_answer.py
(the file the has_answer fixtures come from), run as FiD's src/evaluation.calculate_matches runs it:
json.load of the whole file, a process pool of WORKERS (FiD's --validation_workers) mapping each
example to its passages' flags, then the rank of each question's first hit. Needs `regex`.
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from functools import partial
from multiprocessing import Pool

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))


def prepare(tsv, out, questions, docs):
    """Questions whose answer is a 1-3 word span of one passage of the corpus; each question gets
    DOCS passages drawn at random, the answer's passage among them at a random rank for about
    60 % of them (the rest may still hit by chance, as retrieval does)."""
    rng = random.Random(0)
    psgs = []
    with open(tsv) as f:
        for i, line in enumerate(f):
            text, title = line.rstrip("\n").split("\t")
            psgs.append({"id": str(i + 1), "title": title, "text": text})
    data = []
    for q in range(questions):
        gold = rng.randrange(len(psgs))
        words = psgs[gold]["text"].split()
        n = rng.randint(1, 3)
        start = rng.randrange(max(1, len(words) - n))
        ctxs = [dict(psgs[rng.randrange(len(psgs))], score=str(100.0 - j)) for j in range(docs)]
        if rng.random() < 0.6:
            ctxs[rng.randrange(docs)] = dict(psgs[gold], score=ctxs[0]["score"])
        data.append({"id": str(q), "question": f"question {q}?", "answers": [" ".join(words[start:start + n])], "ctxs": ctxs})
    with open(out + ".tmp", "w") as f:
        json.dump(data, f, indent=4)
    os.replace(out + ".tmp", out)
    print(f"evaluate: wrote {questions} questions x {docs} passages to {out}", file=sys.stderr)


def check_answer(example, tokenizer):
    from dpr_has_answer import has_answer
    return [False if c["text"] is None else has_answer(example["answers"], c["text"], tokenizer) for c in example["ctxs"]]


def run(path, workers):
    """FiD's evaluate_retrieved_passages.py main and calculate_matches."""
    from dpr_has_answer import SimpleTokenizer
    with open(path) as f:
        data = json.load(f)
    with Pool(processes=workers) as pool:
        scores = pool.map(partial(check_answer, tokenizer=SimpleTokenizer()), data)
    top_k_hits = [0] * len(data[0]["ctxs"])
    for question_hits in scores:
        best = next((i for i, x in enumerate(question_hits) if x), None)
        if best is not None:
            top_k_hits[best:] = [v + 1 for v in top_k_hits[best:]]
    print(json.dumps(top_k_hits))


def bench(fidq, data, threads, runs):
    questions = None
    rows = []
    for t in threads:
        ours, peer, hits_ours, hits_peer = [], [], None, None
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as out:
                t0 = time.perf_counter()
                subprocess.run([fidq, "evaluate-retrieval", "--threads", str(t), "--out", out + "/run", "--data", data],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                ours.append(time.perf_counter() - t0)
                with open(out + "/run/result.json") as f:
                    r = json.load(f)["result"]
            questions = r["questions"]
            hits_ours = [round(a * questions) for a in r["top_k_accuracy"]]
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, __file__, "run", data, str(t)], check=True, capture_output=True, text=True)
            peer.append(time.perf_counter() - t0)
            hits_peer = json.loads(p.stdout)
        rows.append((t, min(ours), min(peer), hits_ours == hits_peer, hits_ours[:1] + hits_ours[4:5] + hits_ours[-1:]))
    print(f"evaluate: {questions} questions x {len(hits_peer)} passages ({os.path.getsize(data) >> 20} MiB of FiD JSON), "
          f"whole processes, best of {runs}; FiD = evaluate_retrieved_passages.py's flow with DPR's matching")
    print()
    print("| threads | fidq s | FiD s | FiD/fidq |")
    print("|---|---|---|---|")
    for t, o, p, agree, h in rows:
        print(f"| {t} | {o:.2f} | {p:.2f} | {p / o:.1f} |")
    print()
    for t, o, p, agree, h in rows:
        print(f"threads {t}: hits at 1, 5 and {len(hits_peer)} {', '.join(map(str, h))}; "
              + ("the same as FiD's at every depth" if agree else "NOT the same as FiD's"))
    if not all(r[3] for r in rows):
        sys.exit("evaluate: fidq's hits differ from DPR's has_answer as FiD counts them")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "prepare":
        prepare(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "run":
        run(sys.argv[2], int(sys.argv[3]))
    elif cmd == "bench":
        bench(sys.argv[2], sys.argv[3], [int(x) for x in sys.argv[4].split()], int(sys.argv[5]))
    else:
        sys.exit(__doc__)
