"""torch_gemm.py: the PyTorch peer of `ops/bench gemm`; answers timing requests on stdin.

Same line protocol as sgemm.c:
  info                               -> torch version, its BLAS, its thread count
  gemm M K N TRANSB THREADS MINTIME  -> "SECONDS_PER_CALL CALLS" for torch.matmul(A, B) into a
                                        preallocated output (B stored N×K and passed as B.t()
                                        when TRANSB is 1), repeated until MINTIME seconds passed
  quit                               -> exit
"""
import sys

import torch

from peer_timing import time_calls


def main():
    torch.manual_seed(42)
    shape = None
    threads_set = None
    a = b = out = None
    while True:
        line = sys.stdin.readline()
        if not line or line.startswith("quit"):
            break
        parts = line.split()
        if parts[0] == "info":
            blas = "MKL" if torch.backends.mkl.is_available() else "no MKL"
            reply = f"torch {torch.__version__} ({blas}), {torch.get_num_threads()} threads at start"
        elif parts[0] == "gemm" and len(parts) == 7:
            m, k, n, trans_b, threads = (int(x) for x in parts[1:6])
            min_time = float(parts[6])
            if threads != threads_set:
                torch.set_num_threads(threads)
                threads_set = threads
            if (m, k, n, trans_b) != shape:
                a = torch.rand(m, k) * 2 - 1  # (M, K)
                b = (torch.rand(n, k) * 2 - 1).t() if trans_b else torch.rand(k, n) * 2 - 1  # (K, N)
                out = torch.empty(m, n)  # (M, N)
                shape = (m, k, n, trans_b)
            with torch.no_grad():
                reply = time_calls(lambda: torch.matmul(a, b, out=out), min_time)
        else:
            print(f"torch peer: bad request: {line.strip()}", file=sys.stderr)
            reply = "error"
        print(reply, flush=True)


if __name__ == "__main__":
    main()
