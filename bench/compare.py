#!/usr/bin/env python3
"""Side-by-side table of two benchmark JSON files with the same record names.

    python3 bench/compare.py ours.json reference.json [--markdown]

Each file holds {"results": [{"bench": name, "median_s": t, "peak_mib": m?}, ...]} as written by
`mergevq bench … --json` and `bench/reference.py --json`. Prints, per benchmark present in both,
our median, the reference's, and the speed-up (reference time / our time; > 1 means we are faster);
where both records carry a throughput `per_s` (AR decoding: tokens/s over all images, whatever
the batch) the speed-up is ours / theirs of `per_s`, and the KV memory (`peak_kv_mib`) is shown.
Standard library only.
"""
import json
import sys


def load(path):
    with open(path) as f:
        doc = json.load(f)
    return doc, {r["bench"]: r for r in doc.get("results", [])}


def fmt_mem(r):
    m = r.get("peak_mib")
    if m is None:
        return "-"
    return f"{m:.0f} MiB"


def fmt_rate(r):
    v = r.get("per_s")
    return "-" if v is None else f"{v:.1f}"


def fmt_kv(r):
    m = r.get("peak_kv_mib")
    return "-" if m is None else f"{m:.1f} MiB"


def speedup(ours, ref):
    """ref time / our time, or our per_s / theirs where both have a throughput."""
    if ours.get("per_s") and ref.get("per_s"):
        return f"{ours['per_s'] / ref['per_s']:.2f}x (per_s)"
    return f"{ref['median_s'] / ours['median_s']:.2f}x"


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    markdown = "--markdown" in argv
    if len(args) != 2:
        sys.exit("usage: compare.py OURS.json REFERENCE.json [--markdown]")
    (a_doc, a), (b_doc, b) = load(args[0]), load(args[1])
    head = ["benchmark", "ours (s)", "reference (s)", "ours per_s", "ref. per_s", "speed-up", "ours peak",
            "ref. peak", "ours KV", "ref. KV"]
    rows = []
    for name, r in a.items():
        ref = b.get(name)
        if ref is None or "median_s" not in ref or ref.get("error"):
            note = ref.get("error", "")[:40] if ref else "not in reference"
            rows.append([name, f"{r['median_s']:.4f}", "-", fmt_rate(r), "-", note, fmt_mem(r), "-", fmt_kv(r), "-"])
            continue
        rows.append([name, f"{r['median_s']:.4f}", f"{ref['median_s']:.4f}", fmt_rate(r), fmt_rate(ref),
                     speedup(r, ref), fmt_mem(r), fmt_mem(ref), fmt_kv(r), fmt_kv(ref)])
    print(f"ours: {a_doc.get('impl')} on {a_doc.get('device')}, {a_doc.get('threads')} threads; "
          f"reference: {b_doc.get('impl')} torch {b_doc.get('torch')} on {b_doc.get('device')}, {b_doc.get('threads')} threads")
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        for row in [head] + rows:
            print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))


if __name__ == "__main__":
    main(sys.argv[1:])
