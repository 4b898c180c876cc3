"""torch_reader.py: the PyTorch peer of `ops/bench reader`; answers timing requests on stdin.

A t5-small-shaped transformers T5ForConditionalGeneration (random weights, float32, CPU) run the
way FiD runs it: each of P passages of L tokens encoded as its own row, the encoder states joined to
one (1, P·L, D) memory, then the decoder. Same line protocol as torch_norms.py:
  info                               -> torch and transformers versions, thread count
  reader KIND P L T THREADS MINTIME  -> "SECONDS_PER_CALL CALLS", repeated until MINTIME passed
     KIND: fwd   forward with labels under no_grad, eval mode (logits and loss)
           train forward in train mode (dropout 0.1), backward, AdamW step, zero_grad
           enc   the encoder alone (eval, no_grad)
           gen   greedy decoding of T tokens with the key/value cache after the encoder (eval)
  rss                                -> peak resident set size of this process so far, bytes
  quit                               -> exit
"""
import resource
import sys

import torch
import transformers
from transformers import T5Config, T5ForConditionalGeneration

from peer_timing import time_calls


def build():
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6,
                   num_heads=8, dropout_rate=0.1, feed_forward_proj="relu", tie_word_embeddings=True,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    model = T5ForConditionalGeneration(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    return model, opt


def batch(P, L, T):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 32000, (P, L), generator=g)
    mask = torch.ones(P, L, dtype=torch.long)
    labels = torch.randint(2, 32000, (1, T), generator=g)
    return ids, mask, labels


def fid_forward(model, ids, mask, labels):
    P, L = ids.shape
    enc = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state.reshape(1, P * L, -1)
    return model(encoder_outputs=(enc,), attention_mask=mask.reshape(1, P * L), labels=labels)


def greedy(model, ids, mask, T):
    P, L = ids.shape
    enc = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state.reshape(1, P * L, -1)
    tok = torch.zeros(1, 1, dtype=torch.long)
    past = None
    for _ in range(T):
        out = model(encoder_outputs=(enc,), attention_mask=mask.reshape(1, P * L), decoder_input_ids=tok,
                    past_key_values=past, use_cache=True)
        past = out.past_key_values
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
    return tok


def main():
    model, opt = build()
    threads_set = None
    while True:
        line = sys.stdin.readline()
        if not line or line.startswith("quit"):
            break
        parts = line.split()
        if parts[0] == "info":
            reply = f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads at start"
        elif parts[0] == "rss":
            reply = str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        elif parts[0] == "reader" and len(parts) == 7:
            kind = parts[1]
            P, L, T, threads = (int(v) for v in parts[2:6])
            min_time = float(parts[6])
            if threads != threads_set:
                torch.set_num_threads(threads)
                threads_set = threads
            ids, mask, labels = batch(P, L, T)
            if kind == "train":
                model.train()

                def call():
                    out = fid_forward(model, ids, mask, labels)
                    out.loss.backward()
                    opt.step()
                    opt.zero_grad(set_to_none=True)

                reply = time_calls(call, min_time)
            else:
                model.eval()
                with torch.no_grad():
                    if kind == "fwd":
                        reply = time_calls(lambda: fid_forward(model, ids, mask, labels), min_time)
                    elif kind == "enc":
                        reply = time_calls(lambda: model.encoder(input_ids=ids, attention_mask=mask), min_time)
                    elif kind == "gen":
                        reply = time_calls(lambda: greedy(model, ids, mask, T), min_time)
                    else:
                        reply = "error"
        else:
            print(f"torch peer: bad request: {line.strip()}", file=sys.stderr)
            reply = "error"
        print(reply, flush=True)


if __name__ == "__main__":
    main()
