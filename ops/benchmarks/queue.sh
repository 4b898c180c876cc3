#!/usr/bin/env bash
# Queue benchmark: jobs/s claimed and committed by 1, 2 and 8 workers over N trivial jobs, and the
# time from a drop to its start with an idle worker. Release build, local disk (temp folder).
#   ops/benchmarks/queue.sh [JOBS=10000] [WORKERS="1 2 8"]   (SKIP_THROUGHPUT=1: only the done/ and latency parts)
# Also: claiming with 100,000 jobs in done/ vs none, 1 worker over 2,000 jobs.
# Sizes from the environment too (`ops/bench` passes no arguments): BENCH_QUEUE_JOBS, BENCH_QUEUE_WORKERS,
# BENCH_QUEUE_DONE (finished jobs in done/, 100000), BENCH_QUEUE_CLAIM_JOBS (2000), BENCH_QUEUE_DROPS (20).
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs="${1:-${BENCH_QUEUE_JOBS:-10000}}"
workers="${2:-${BENCH_QUEUE_WORKERS:-1 2 8}}"
done_jobs="${BENCH_QUEUE_DONE:-100000}"
claim_jobs="${BENCH_QUEUE_CLAIM_JOBS:-2000}"
drops="${BENCH_QUEUE_DROPS:-20}"
skip_throughput="${SKIP_THROUGHPUT:-0}"
swift build -c release --product fidq >/dev/null
bin="$(swift build -c release --show-bin-path)/fidq"
root="$(mktemp -d /tmp/fidq-bench-queue.XXXXXX)"
trap 'rm -rf "$root"' EXIT
export FIDQ_TEST_KINDS=1

echo "queue bench: $jobs trivial test.record jobs, release build, $(nproc) cores, $root"
printf "%-8s %10s %10s %12s\n" workers seconds "jobs/s" "executions"
[ "$skip_throughput" = 1 ] && workers=""
for n in $workers; do
  ws="$root/w$n"
  mkdir -p "$ws/queue/pending"
  python3 - "$ws/queue/pending" "$jobs" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, f"j{i:06d}.json"), "w") as f:
        f.write('{"kind": "test.record"}')
PY
  start=$(date +%s.%N)
  pids=()
  for i in $(seq "$n"); do
    "$bin" worker --queue "$ws/queue" --drain --poll 0.05 --lease 30 2>"$ws/worker-$i.log" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  end=$(date +%s.%N)
  done_count=$(ls "$ws/queue/done" | wc -l)
  execs=$(cat "$ws"/ledger/*.log | wc -l)
  if [ "$done_count" -ne "$jobs" ]; then echo "queue bench: only $done_count of $jobs done with $n workers" >&2; exit 1; fi
  python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'{int(sys.argv[3]):<8d} {s:10.2f} {int(sys.argv[4])/s:10.1f} {int(sys.argv[5]):12d}')" \
    "$start" "$end" "$n" "$jobs" "$execs"
done

# A done/ with 100,000 finished jobs must not slow claiming: 1 worker, 2,000 jobs, done/ empty vs full.
for filled in 0 "$done_jobs"; do
  ws="$root/done$filled"
  mkdir -p "$ws/queue/pending" "$ws/queue/done"
  python3 - "$ws/queue" "$filled" "$claim_jobs" <<'PY'
import os, sys
q, n, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    os.mkdir(os.path.join(q, "done", f"old{i:06d}"))
for i in range(m):
    with open(os.path.join(q, "pending", f"j{i:05d}.json"), "w") as f:
        f.write('{"kind": "test.record"}')
PY
  sync  # flush the 100,000 mkdirs first, or the first fsyncs pay for them
  start=$(date +%s.%N)
  "$bin" worker --queue "$ws/queue" --drain --poll 0.05 --lease 30 2>"$ws/worker.log"
  end=$(date +%s.%N)
  python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); m=int(sys.argv[4]); print(f'done/ holding {int(sys.argv[3]):>6d} jobs: 1 worker, {m} jobs in {s:.2f} s = {m/s:.0f} jobs/s')" "$start" "$end" "$filled" "$claim_jobs"
  rm -rf "$ws"
done

# Drop-to-start latency: one idle worker polling at the default 1 s, 20 drops (BENCH_QUEUE_DROPS) at random moments.
ws="$root/latency"
mkdir -p "$ws/queue/pending"
"$bin" worker --queue "$ws/queue" 2>"$ws/worker.log" &
wpid=$!
python3 - "$ws/queue" "$drops" <<'PY'
import os, sys, time, random, statistics, glob
q, drops = sys.argv[1], int(sys.argv[2])
lat = []
for i in range(drops):
    time.sleep(random.uniform(0.3, 1.7))
    tmp = os.path.join(q, "pending", f".l{i}.tmp")
    with open(tmp, "w") as f:
        f.write('{"kind": "test.record"}')
    t0 = time.time()
    os.rename(tmp, os.path.join(q, "pending", f"l{i}.json"))
    while True:
        started = glob.glob(os.path.join(q, "running", f"l{i}@*")) + glob.glob(os.path.join(q, "done", f"l{i}"))
        if started:
            lat.append(time.time() - t0)
            break
        time.sleep(0.002)
lat.sort()
print(f"drop-to-start (poll 1 s, idle worker, {drops} drops): median {statistics.median(lat)*1000:.0f} ms, "
      f"p90 {lat[int(0.9*len(lat))-1]*1000:.0f} ms, max {lat[-1]*1000:.0f} ms")
PY
kill -TERM "$wpid"; wait "$wpid" || true
