"""peer_timing.py: the timing loop the Python benchmark peers share (torch_gemm.py, torch_norms.py)."""
import os
import time

# BENCH_CLOCK=cpu: this process's CPU time, as the Swift runner then measures its own (Timing.swift).
clock = time.process_time if os.environ.get("BENCH_CLOCK") == "cpu" else time.perf_counter


def time_calls(call, min_time):
    """Calls `call()` until `min_time` seconds have passed; returns the reply line 'SECONDS_PER_CALL CALLS'."""
    calls = 0
    start = clock()
    while True:
        call()
        calls += 1
        elapsed = clock() - start
        if elapsed >= min_time:
            break
    return f"{elapsed / calls:.9e} {calls}"
