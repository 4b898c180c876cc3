"""torch_norms.py: the PyTorch peer of `ops/bench softmax|rmsnorm|layernorm|dropout`; answers timing requests on stdin.

Same line protocol as torch_gemm.py:
  info                                      -> torch version, its thread count
  op NAME PASS ROWS COLS THREADS MINTIME    -> "SECONDS_PER_CALL CALLS", repeated until MINTIME passed
     NAME: softmax (torch.softmax over the last axis), layernorm (F.layer_norm, eps 1e-12),
           rmsnorm (T5LayerNorm as transformers writes it: x·rsqrt(mean(x²) + 1e-6), then w·),
           dropout (F.dropout, p 0.1, training: a fresh mask per call)
     PASS: fwd (under no_grad, as at inference) or bwd (autograd.grad of the recorded forward
           with respect to x and the weights, dy given; the graph is kept between calls)
  quit                                      -> exit
"""
import sys

import torch
import torch.nn.functional as F

from peer_timing import time_calls


def t5_rmsnorm(x, w, eps=1e-6):
    # transformers' T5LayerNorm.forward, in float32.
    variance = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(variance + eps))


def make(name, rows, cols):
    """The call to time for fwd, and the (output, inputs, dy) for bwd."""
    x = torch.randn(rows, cols)  # (N, C)
    w = torch.rand(cols) + 0.5  # (C)
    b = torch.randn(cols) * 0.1  # (C)
    dy = torch.randn(rows, cols)  # (N, C)
    if name == "softmax":
        fwd = lambda t: torch.softmax(t, dim=-1)
        params = []
    elif name == "layernorm":
        fwd = lambda t: F.layer_norm(t, (cols,), w, b, 1e-12)
        params = [w, b]
    elif name == "rmsnorm":
        fwd = lambda t: t5_rmsnorm(t, w)
        params = [w]
    elif name == "dropout":
        fwd = lambda t: F.dropout(t, 0.1, training=True)
        params = []
    else:
        raise ValueError(name)
    return x, params, dy, fwd


def main():
    torch.manual_seed(42)
    key = None
    threads_set = None
    while True:
        line = sys.stdin.readline()
        if not line or line.startswith("quit"):
            break
        parts = line.split()
        if parts[0] == "info":
            reply = f"torch {torch.__version__}, {torch.get_num_threads()} threads at start"
        elif parts[0] == "op" and len(parts) == 7:
            name, pas = parts[1], parts[2]
            rows, cols, threads = (int(v) for v in parts[3:6])
            min_time = float(parts[6])
            if threads != threads_set:
                torch.set_num_threads(threads)
                threads_set = threads
            if (name, pas, rows, cols) != key:
                x, params, dy, fwd = make(name, rows, cols)
                if pas == "fwd":
                    call = lambda: fwd(x)
                    ctx = torch.no_grad
                else:
                    xg = x.clone().requires_grad_(True)
                    for p in params:
                        p.requires_grad_(True)
                    y = fwd(xg)
                    inputs = [xg] + params
                    call = lambda: torch.autograd.grad(y, inputs, dy, retain_graph=True)
                    ctx = torch.enable_grad
                key = (name, pas, rows, cols)
            with ctx():
                reply = time_calls(call, min_time)
        else:
            print(f"torch peer: bad request: {line.strip()}", file=sys.stderr)
            reply = "error"
        print(reply, flush=True)


if __name__ == "__main__":
    main()
