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
  score MODEL DATA P L THREADS       -> "SECONDS TOKENS": FiD's test_reader.py compute on fidq's bench folder,
                                        once: per question (batch 1) collation (3.0.2's: no </s> on passages,
                                        padded to L) + encoder per passage + generate(max_length=50), greedy;
                                        the model is loaded first, untimed
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


def fid_length(p, L):
    """Tokens of passage p in the padded rows: ReaderBench.paddedLength (140 to 200 of 200)."""
    return L - (p * 23) % (L * 3 // 10 + 1)


def batch(P, L, T, padded=False):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 32000, (P, L), generator=g)
    mask = torch.ones(P, L, dtype=torch.long)
    labels = torch.randint(2, 32000, (1, T), generator=g)
    if padded:
        # FiD's collator pads every passage to text_maxlength with id 0, mask 0.
        for p in range(P):
            n = fid_length(p, L)
            ids[p, n:] = 0
            mask[p, n:] = 0
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


def score(model_dir, data_path, P, L):
    import json
    import time

    from transformers import PreTrainedTokenizerFast
    from transformers.modeling_outputs import BaseModelOutput

    tok = PreTrainedTokenizerFast(tokenizer_file=model_dir + "/tokenizer.json")
    model = T5ForConditionalGeneration.from_pretrained(model_dir).eval()
    with open(data_path) as f:
        data = json.load(f)
    t0 = time.perf_counter()
    tokens = 0
    with torch.no_grad():
        for ex in data:
            ctxs = sorted(ex["ctxs"], key=lambda c: float(c["score"]), reverse=True)[:P]
            texts = ["question: " + ex["question"] + " title: " + c["title"] + " context: " + c["text"] for c in ctxs]
            enc = tok(texts, max_length=L, padding="max_length", truncation=True, add_special_tokens=False, return_tensors="pt")
            ids, mask = enc["input_ids"], enc["attention_mask"]
            memory = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state.reshape(1, P * L, -1)
            out = model.generate(encoder_outputs=BaseModelOutput(memory), attention_mask=mask.reshape(1, P * L),
                                 max_length=50, num_beams=1, do_sample=False)
            tok.decode(out[0], skip_special_tokens=True)
            tokens += out.shape[1] - 1
    return f"{time.perf_counter() - t0} {tokens}"


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
        elif parts[0] == "score" and len(parts) == 6:
            torch.set_num_threads(int(parts[5]))
            threads_set = int(parts[5])
            reply = score(parts[1], parts[2], int(parts[3]), int(parts[4]))
        elif parts[0] == "rss":
            reply = str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        elif parts[0] == "reader" and len(parts) == 7:
            kind = parts[1]
            P, L, T, threads = (int(v) for v in parts[2:6])
            min_time = float(parts[6])
            if threads != threads_set:
                torch.set_num_threads(threads)
                threads_set = threads
            padded = kind.endswith("pad")
            kind = kind[:-3] if padded else kind
            ids, mask, labels = batch(P, L, T, padded)
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
