#!/usr/bin/env python3
"""One table of ratios from the output of every benchmark (`ops/bench` with no argument).

Usage: ratios.py BENCH_LOG RATIOS_JSON. Reads the Markdown tables the Swift runner prints, the
reader's score job line and the tokenizer report's "fidq ÷ peer" column; a ratio column is one
headed `ratio`, `A/B` or `A÷B` (not a rate such as `GB/s`). A row's case names its labels, its
`P`/`threads` cells and the "### N threads" section it is in.
Prints a Markdown table (benchmark, case, column, ratio) and writes the same rows as JSON.
Stdlib only.
"""
import json
import re
import sys

NUMBER = re.compile(r"^[-+]?[0-9][0-9,]*(\.[0-9]+)?(e[-+]?[0-9]+)?[x×%]?$", re.I)


# Columns that are neither a ratio nor part of a row's name.
MEASURE = {"goal", "spread", "other+steal", "best"}
# Numeric columns that name the row (the reader's passage count, search's thread count).
KEY_NUMBERS = {"p", "threads"}


def is_ratio_header(h):
    h = h.strip().lower()
    # A rate (`GB/s`, `psg/s`, `q/s`, `GB/s read`) is not a ratio.
    if re.search(r"/s(\s|$)", h):
        return False
    return h == "ratio" or "/" in h or "÷" in h


def case_label(header, cells, ratio_cols, threads):
    """The row's name: its label cells and key numbers, after the section's thread count."""
    parts = [threads] if threads else []
    for i, (h, c) in enumerate(zip(header, cells)):
        key = h.strip().lower()
        if i in ratio_cols or key in MEASURE or c in ("-", ""):
            continue
        if key in KEY_NUMBERS:
            parts.append(f"{h}={c}")
        elif not NUMBER.match(c):
            parts.append(c)
    return " ".join(parts)


def value(cell):
    cell = cell.strip().rstrip("x×").replace(",", "")
    try:
        return float(cell)
    except ValueError:
        return None


def main():
    log, out = sys.argv[1], sys.argv[2]
    rows = []
    bench = "?"
    header = None
    threads = ""  # the section's "### N threads" heading
    for line in open(log, errors="replace"):
        line = line.rstrip("\n")
        m = re.match(r"bench: === (\S+) ===", line)
        if m:
            bench, header, threads = m.group(1), None, ""
            continue
        m = re.match(r"^#+ (\d+ threads?)$", line)
        if m:
            threads, header = m.group(1), None
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if all(re.fullmatch(r":?-+:?", c) for c in cells if c):
                continue
            if header is None or len(cells) != len(header):
                header = cells
                continue
            ratio_cols = [i for i, h in enumerate(header) if is_ratio_header(h)]
            label = case_label(header, cells, ratio_cols, threads)
            for i in ratio_cols:
                v = value(cells[i])
                if v is not None:
                    rows.append({"benchmark": bench, "case": label, "column": header[i], "ratio": v})
            continue
        header = None
        # The reader's score job line: "score job, … greedy, N threads: … ratio torch / ours R (goal ≥ 1); …".
        m = re.match(r"^score job, .*greedy, (\d+ threads?): .*ratio torch / ours ([0-9.]+) ", line)
        if m:
            rows.append({"benchmark": bench, "case": f"{m.group(1)} score job (whole fidq process)",
                         "column": "torch / ours", "ratio": float(m.group(2))})
            continue
        # The tokenizer report: "... fidq ÷ peer" header, rows ending in "1.23x".
        m = re.match(r"^(\S+)\s+(\d+)\s+(\S+)\s+.*\s([0-9.]+)x$", line)
        if m and bench == "tokenize":
            rows.append({"benchmark": bench, "case": f"{m.group(1)} threads {m.group(2)} vs {m.group(3)}",
                         "column": "peer time ÷ fidq time", "ratio": float(m.group(4))})
    with open(out, "w") as f:
        json.dump(rows, f, indent=2)
        f.write("\n")
    print("| benchmark | case | column | ratio |")
    print("|---|---|---|---:|")
    for r in rows:
        print(f"| {r['benchmark']} | {r['case']} | {r['column']} | {r['ratio']:.3f} |")


if __name__ == "__main__":
    main()
