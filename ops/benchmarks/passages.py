"""DPR-style 100-word passages (title, text) from gensim's real enwiki excerpt (ref/assets.md §3.3).

Used by the tokenizer fixture generator and the tokenizer benchmark. Needs gensim==4.4.0 (for
filter_wiki) and the file `ops/assets` unpacks into .assets/enwiki-sample.xml.bz2.
Run directly to write `text<TAB>title` lines: `passages.py OUT [COUNT]` (repeats the corpus to COUNT).
"""
import bz2
import os
import re
import sys
import xml.etree.ElementTree as ET

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ENWIKI = os.path.join(os.environ.get("FIDQ_ASSETS", os.path.join(ROOT, ".assets")), "enwiki-sample.xml.bz2")


def articles(path=ENWIKI):
    """Yields (title, cleaned text) for each real article (namespace 0, not a redirect)."""
    from gensim.corpora.wikicorpus import filter_wiki

    if not os.path.exists(path):
        sys.exit(f"passages: {path} is missing; run ops/assets first")
    with bz2.open(path) as f:
        for _, elem in ET.iterparse(f):
            if not elem.tag.endswith("}page"):
                continue
            ns = elem.find("{*}ns")
            title = elem.find("{*}title").text or ""
            text = elem.find("{*}revision/{*}text")
            redirect = elem.find("{*}redirect")
            if ns is not None and ns.text == "0" and redirect is None and text is not None and text.text:
                body = filter_wiki(text.text).replace("'''", "").replace("''", "")
                body = re.sub(r"^=+\s*(.*?)\s*=+\s*$", r"\1.", body, flags=re.M)
                yield title, body
            elem.clear()


def passages(words=100):
    """All (title, text) passages of `words` whitespace-separated words, in corpus order."""
    out = []
    for title, body in articles():
        toks = body.split()
        for i in range(0, len(toks), words):
            out.append((title, " ".join(toks[i:i + words])))
    return out


def fid_string(question, title, text):
    """The reader's encoder string, exactly as FiD's collator joins it (fid-spec §2.4)."""
    return f"question: {question} title: {title} context: {text}"


if __name__ == "__main__":
    out_path = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    ps = passages()
    n = count or len(ps)
    with open(out_path + ".tmp", "w") as f:
        for i in range(n):
            title, text = ps[i % len(ps)]
            f.write(f"{text}\t{title}\n")
    os.replace(out_path + ".tmp", out_path)
    print(f"passages: wrote {n} passages ({len(ps)} distinct) to {out_path}")
