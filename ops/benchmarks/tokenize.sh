#!/usr/bin/env bash
# Tokenizer benchmark: fidq vs Hugging Face tokenizers vs sentencepiece, passages/s and ids/s, same threads.
# Env: N passages (default 100000), THREADS (default: 1 and all cores), PYTHON (default $BENCH_VENV/bin/python; `ops/bench tokenize` prepares it),
# PEER_RUNS timed runs per peer (default 3; fidq always takes the best of 3).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-${BENCH_VENV:-.venv-bench}/bin/python}
N=${N:-100000}
THREADS=${THREADS:-"1 $(nproc)"}
DIR=${FIDQ_ASSETS:-.assets}/bench
ops/assets >/dev/null
mkdir -p "$DIR"
[ -s "$DIR/passages.tsv" ] || "$PY" ops/benchmarks/passages.py "$DIR/passages.tsv"
[ -s "$DIR/t5-spm.json" ] || "$PY" ops/benchmarks/tokenize_peers.py prepare "$DIR"
swift build -c release --product tokenize-bench >&2
BIN=$(swift build -c release --show-bin-path)/tokenize-bench
A=${FIDQ_ASSETS:-.assets}
out="$DIR/results.jsonl"
: >"$out"
for t in $THREADS; do
  "$BIN" "$DIR/passages.tsv" "$N" "$t" "t5-json=$A/t5/tokenizer.json" "t5-spm=$DIR/t5-spiece.model:nospecial" \
    "minilm=$A/minilm/tokenizer.json" | tee -a "$out" >&2
  "$PY" ops/benchmarks/tokenize_peers.py run "$DIR/passages.tsv" "$N" "$t" | tee -a "$out" >&2
done
echo "tokenize: $N DPR-style passages (gensim enwiki, 100 words, \"title: … context: …\"); best of ${PEER_RUNS:-3} peer runs, 3 fidq runs"
"$PY" ops/benchmarks/tokenize_peers.py report "$out"
