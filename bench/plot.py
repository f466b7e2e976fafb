#!/usr/bin/env python3
"""Draws a flashmfa-bench results JSON as a PNG: % of roofline per configuration and, with
--compare, the other run's % of roofline beside it and the speed-up over it.

    python3 bench/plot.py bench/results/h100.json --compare ../shared/flashmla-h100.json \
        -o bench/results/h100.png

Exits 77 (the "skipped" code of the tests) when matplotlib is not installed.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (the loaders and the configuration matching)

EXIT_NO_MATPLOTLIB = 77
BAR_WIDTH = 0.4
INCHES_PER_ROW = 0.45
MIN_HEIGHT_INCHES = 3.0
FIG_WIDTH_INCHES = 11.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="a flashmfa-bench --json file")
    ap.add_argument("--compare", metavar="FILE", help="another run: ours, FlashMLA's or the Triton peer's")
    ap.add_argument("-o", "--output", help="the PNG to write (default: results path with .png)")
    ap.add_argument("--title", help="figure title (default: device and commit)")
    args = ap.parse_args(argv)

    try:
        import matplotlib
        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot.py: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
        return EXIT_NO_MATPLOTLIB

    try:
        doc = report.load(args.results)
        if "schema" not in doc:
            raise ValueError("not a flashmfa-bench results file (no \"schema\")")
        ref_label, ref_rows = (None, [])
        if args.compare:
            ref_label, ref_rows = report.reference_rows(report.load(args.compare))
    except (OSError, ValueError, KeyError) as e:
        print(f"plot.py: error: {e}", file=sys.stderr)
        return 1

    rows = [r for r in doc["rows"] if r["check_ok"] and r["us"] is not None]
    if not rows:
        print("plot.py: error: no checked row to plot", file=sys.stderr)
        return 1
    labels = [report.label_of(r) for r in rows]
    ours = [r["pct_roofline"] for r in rows]
    hits = [report.match(r, ref_rows) for r in rows]
    theirs = [h.get("pct_roofline") if h else None for h in hits]
    speedups = [h["us"] / r["us"] if h else None for r, h in zip(rows, hits)]
    compare = args.compare is not None

    height = max(MIN_HEIGHT_INCHES, INCHES_PER_ROW * len(rows))
    fig, axes = plt.subplots(1, 2 if compare else 1, figsize=(FIG_WIDTH_INCHES, height),
                             sharey=True, squeeze=False)
    ax = axes[0][0]
    y = list(range(len(rows)))
    ax.barh([v - BAR_WIDTH / 2 if compare else v for v in y], ours,
            height=BAR_WIDTH if compare else 2 * BAR_WIDTH, label="flashmfa", color="tab:blue")
    if compare:
        ax.barh([v + BAR_WIDTH / 2 for v in y], [t if t is not None else 0 for t in theirs],
                height=BAR_WIDTH, label=ref_label, color="tab:gray")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    for v, pct in zip(y, ours):
        ax.text(pct, v - (BAR_WIDTH / 2 if compare else 0), f" {pct:.0f}%", va="center", fontsize=8)
    ax.axvline(100, color="black", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("% of roofline (max of copy-bandwidth and matmul time, measured)")

    if compare:
        ax2 = axes[0][1]
        vals = [s if s is not None else 0 for s in speedups]
        colors = ["tab:green" if s and s >= 1 else "tab:red" for s in speedups]
        ax2.barh(y, vals, color=colors, height=2 * BAR_WIDTH)
        for v, s in zip(y, speedups):
            ax2.text(s or 0, v, f" {s:.2f}x" if s else " no match", va="center", fontsize=8)
        ax2.axvline(1, color="black", linewidth=0.8)
        ax2.set_xlabel(f"speed-up over {ref_label} (their µs / our µs)")

    fig.suptitle(args.title or f"flashmfa decode on {doc['device']} (commit {doc['commit']})")
    fig.tight_layout()
    out = args.output or os.path.splitext(args.results)[0] + ".png"
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
