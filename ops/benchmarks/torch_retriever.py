"""torch_retriever.py: the sentence-transformers peer of `ops/bench retriever`; answers timing requests on stdin.

all-MiniLM-L6-v2 from the folder ops/assets unpacks (BENCH_MINILM, default .assets/minilm) as
sentence-transformers' Transformer + Pooling (mean) modules: what `encode` does before its Normalize
module, which fidq's embeddings leave out too. Texts are RetrieverBench.texts (same formula), each
truncated to exactly L tokens. Line protocol as torch_reader.py:
  info                           -> torch, transformers and sentence-transformers versions, threads
  embed N L BATCH THREADS MINTIME [DTYPE] -> "SECONDS_PER_CALL CALLS": encode N passages (tokenisation
                                    included); DTYPE bfloat16 runs the model cast to bfloat16 (torch's
                                    half precision on the CPU: oneDNN's AVX-512 BF16 kernels), default float32
  quit                           -> exit
"""
import os
import sys

import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer, models

from peer_timing import time_calls

WORDS = ["the", "history", "of", "city", "river", "was", "built", "in", "century", "by", "people", "who",
         "lived", "near", "mountain", "and", "traded", "with", "their", "neighbours", "during", "long",
         "winter", "when", "snow", "covered", "fields", "around", "old", "castle", "king", "ordered",
         "new", "bridge", "across", "water", "after", "great", "flood", "destroyed", "many", "houses",
         "school", "church", "market", "became", "centre", "region", "famous", "for"]


def texts(n):
    return [" ".join(WORDS[(i * 7 + j * 3 + j // 11) % len(WORDS)] for j in range(230)) for i in range(n)]


def build(L, dtype="float32"):
    folder = os.environ.get("BENCH_MINILM", ".assets/minilm")
    word = models.Transformer(folder, max_seq_length=L)
    pool = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[word, pool], device="cpu")
    return model.to(torch.bfloat16) if dtype == "bfloat16" else model


def main():
    built = {}  # (L, dtype) -> model
    threads_set = None
    while True:
        line = sys.stdin.readline()
        if not line or line.startswith("quit"):
            break
        parts = line.split()
        if parts[0] == "info":
            reply = (f"torch {torch.__version__}, transformers {transformers.__version__}, "
                     f"sentence-transformers {sentence_transformers.__version__}, {torch.get_num_threads()} threads at start")
        elif parts[0] == "embed" and len(parts) in (6, 7):
            n, L, batch, threads = (int(v) for v in parts[1:5])
            min_time = float(parts[5])
            dtype = parts[6] if len(parts) == 7 else "float32"
            if threads != threads_set:
                torch.set_num_threads(threads)
                threads_set = threads
            if (L, dtype) not in built:
                built[(L, dtype)] = build(L, dtype)
            model = built[(L, dtype)]
            data = texts(n)
            lengths = {len(ids) for ids in model.tokenizer(data, truncation=True, max_length=L)["input_ids"]}
            assert lengths == {L}, lengths
            with torch.inference_mode():
                reply = time_calls(lambda: model.encode(data, batch_size=batch, convert_to_numpy=True,
                                                        normalize_embeddings=False), min_time)
        else:
            print(f"torch peer: bad request: {line.strip()}", file=sys.stderr)
            reply = "error"
        print(reply, flush=True)


if __name__ == "__main__":
    main()
