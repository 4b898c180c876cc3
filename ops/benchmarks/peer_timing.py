"""peer_timing.py: the timing loop the Python benchmark peers share (torch_gemm.py, torch_norms.py)."""
import time


def time_calls(call, min_time):
    """Calls `call()` until `min_time` seconds have passed; returns the reply line 'SECONDS_PER_CALL CALLS'."""
    calls = 0
    start = time.perf_counter()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            break
    return f"{elapsed / calls:.9e} {calls}"
