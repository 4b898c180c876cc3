"""Peer of `ops/bench search`: faiss IndexFlatIP / IndexScalarQuantizer and bm25s on the files the Swift bench wrote.

Usage: search_peer.py DIR THREADS... ; prints one JSON object on stdout.
DIR holds corpus_00.npy (N, E) float32, queries_00.npy (B, E) float32, ours_flat.i32 (B, K) int32 rows
of our exact search (for the agreement check), passages.tsv and bm25_queries.txt for BM25.
BENCH_SEARCH_ONLY=flat: the exact search alone.
"""
import json
import os
import sys
import time

import numpy as np


# BENCH_CLOCK=cpu: the q/s timings on process CPU time, as the Swift side then does.
clock = time.process_time if os.environ.get("BENCH_CLOCK") == "cpu" else time.perf_counter


def main():
    d = sys.argv[1]
    threads = [int(t) for t in sys.argv[2:]]
    sq_queries = int(os.environ.get("BENCH_SQ_QUERIES", "100"))
    k = int(os.environ.get("BENCH_K", "100"))
    import faiss
    import bm25s

    out = {"faiss": faiss.__version__, "numpy": np.__version__, "bm25s": getattr(bm25s, "__version__", "?")}
    xb = np.load(os.path.join(d, "corpus_00.npy"), mmap_mode="r")
    xq = np.ascontiguousarray(np.load(os.path.join(d, "queries_00.npy")))
    n, e = xb.shape
    ours = np.fromfile(os.path.join(d, "ours_flat.i32"), dtype=np.int32).reshape(len(xq), k)

    # Exact: one IndexFlatIP (faiss copies the rows in; the mapping's pages stay in the cache).
    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(e)
    for lo in range(0, n, 100000):
        flat.add(np.ascontiguousarray(xb[lo:lo + 100000]))
    out["flat_add_s"] = time.perf_counter() - t0
    for t in threads:
        faiss.omp_set_num_threads(t)
        t0 = clock()
        _, I = flat.search(xq, k)
        dt = clock() - t0
        out[f"flat_qps_{t}"] = len(xq) / dt
    agree = np.mean([len(set(I[i]) & set(ours[i])) / k for i in range(len(xq))])
    out["flat_agreement_with_ours"] = float(agree)
    exact = I
    del flat
    if os.environ.get("BENCH_SEARCH_ONLY") == "flat":  # the exact search alone (quick iteration)
        print(json.dumps(out))
        return

    # sq8: IndexScalarQuantizer QT_8bit, inner product; fewer queries (it scans without BLAS).
    t0 = time.perf_counter()
    sq = faiss.IndexScalarQuantizer(e, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    faiss.omp_set_num_threads(max(threads))
    sq.train(np.ascontiguousarray(xb[:min(n, 200000)]))
    for lo in range(0, n, 100000):
        sq.add(np.ascontiguousarray(xb[lo:lo + 100000]))
    out["sq_build_s"] = time.perf_counter() - t0
    sub = xq[:sq_queries]
    for t in threads:
        faiss.omp_set_num_threads(t)
        t0 = clock()
        _, S = sq.search(sub, k)
        out[f"sq_qps_{t}"] = len(sub) / (clock() - t0)
    out["sq_recall_at_k"] = float(np.mean([len(set(S[i]) & set(exact[i])) / k for i in range(len(sub))]))
    out["sq_queries"] = len(sub)
    del sq

    # BM25: bm25s with Lucene's idf, k1 0.9, b 0.4, on the same passages (title + text).
    texts = []
    with open(os.path.join(d, "passages.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            _, text, title = line.rstrip("\n").split("\t")
            texts.append(title + " " + text)
    queries = open(os.path.join(d, "bm25_queries.txt"), encoding="utf-8").read().splitlines()
    t0 = time.perf_counter()
    tokens = bm25s.tokenize(texts, stopwords=None, show_progress=False)
    model = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    model.index(tokens, show_progress=False)
    out["bm25_index_s"] = time.perf_counter() - t0
    for t in threads:
        t0 = time.perf_counter()
        qt = bm25s.tokenize(queries, stopwords=None, show_progress=False)
        docs, _ = model.retrieve(qt, k=k, n_threads=t, show_progress=False)
        out[f"bm25_qps_{t}"] = len(queries) / (time.perf_counter() - t0)
    ours_bm25 = np.fromfile(os.path.join(d, "ours_bm25.i32"), dtype=np.int32).reshape(len(queries), -1)
    kk = ours_bm25.shape[1]
    out["bm25_top10_agreement"] = float(np.mean([len(set(docs[i][:10]) & set(ours_bm25[i][:10])) / 10 for i in range(len(queries))]))
    out["bm25_docs"] = len(texts)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
