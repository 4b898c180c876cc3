#!/usr/bin/env bash
# evaluate_retrieval benchmark: `fidq evaluate-retrieval` vs FiD's evaluate_retrieved_passages.py (DPR's
# has_answer in a process pool), both whole processes on the same FiD JSON, same threads/workers; the
# hits must agree. Env: BENCH_EVAL_QUESTIONS (3610, NQ test's size), BENCH_EVAL_DOCS (100), THREADS
# (default: 1 and all cores), BENCH_EVAL_RUNS (3), PYTHON (default $BENCH_VENV/bin/python; `ops/bench
# evaluate` prepares it with gensim and regex).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-${BENCH_VENV:-.venv-bench}/bin/python}
Q=${BENCH_EVAL_QUESTIONS:-3610}
D=${BENCH_EVAL_DOCS:-100}
THREADS=${THREADS:-"1 $(nproc)"}
DIR=${FIDQ_ASSETS:-.assets}/bench
ops/assets >/dev/null
mkdir -p "$DIR"
[ -s "$DIR/passages.tsv" ] || "$PY" ops/benchmarks/passages.py "$DIR/passages.tsv"
data="$DIR/evaluate-$Q-$D.json"
[ -s "$data" ] || "$PY" ops/benchmarks/evaluate_peer.py prepare "$DIR/passages.tsv" "$data" "$Q" "$D"
swift build -c release --product fidq >&2
"$PY" ops/benchmarks/evaluate_peer.py bench "$(swift build -c release --show-bin-path)/fidq" "$data" "$THREADS" "${BENCH_EVAL_RUNS:-3}"
