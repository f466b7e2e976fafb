#!/usr/bin/env python3
"""Prints the README's performance table (markdown) from a flashmfa-bench results JSON.

    python3 bench/report.py bench/results/h100.json [--compare ../shared/flashmla-h100.json]

With --compare, each row gains the other run's time and the speed-up (their us / our us),
matched on the configuration exactly as `flashmfa-bench --compare` matches it. The other file
may be ours, FlashMLA's (flashmla-h100.json, a "flashmla" list) or the Triton peer's
(triton-peer-h100.json, "rows" with a "peer" and a variant name). plot.py imports the loaders.
"""
import argparse
import json
import math
import sys

# Widths and aliasing of the families a peer's file names without widths (DESIGN.md section 1).
FAMILIES = {"MLA": (576, 512, True), "MFA": (256, 256, False), "MFA-KR": (256, 256, True)}


def load(path):
    """Reads a results file (Python's json accepts the NaN literal the Triton file holds)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def family(row):
    """MLA / MFA / MFA-KR / MQA / GQA, as flashmfa-bench's family_name() names them."""
    if "d_k" not in row:
        return row.get("variant", "MLA")
    dk, dv, alias, h_kv = row["d_k"], row["d_v"], row["v_aliases_k"], row["h_kv"]
    if (dk, dv, alias) == FAMILIES["MLA"]:
        return "MLA"
    if alias:
        return "MFA-KR"
    if dk == dv == 256 and h_kv == 1:
        return "MFA"
    return "MQA" if h_kv == 1 else "GQA"


def reference_rows(doc):
    """(label, rows) of any of the three formats; every row gets the full match key."""
    ours = "schema" in doc
    if "flashmla" in doc:
        label, rows = "FlashMLA", doc["flashmla"]
    elif "rows" in doc:
        label, rows = ("flashmfa " + doc.get("commit", "?")) if ours else "peer", doc["rows"]
    else:
        raise ValueError('no "rows" or "flashmla" list: not a benchmark results file')
    out = []
    for r in rows:
        if not ours and "peer" in r:
            label = r["peer"]
        if "d_k" in r:
            widths = (r["d_k"], r["d_v"], r["v_aliases_k"])
        else:
            widths = FAMILIES[r.get("variant", "MLA")]
        out.append(dict(r, widths=widths, s_q=r.get("s_q", 1), causal=r.get("causal", False),
                        h_kv=r.get("h_kv", 1)))
    return label, out


def key(r):
    """What two rows must share to describe the same configuration."""
    widths = r["widths"] if "widths" in r else (r["d_k"], r["d_v"], r["v_aliases_k"])
    return (widths, r["b"], r.get("s_q", 1), r["s_k"], r["h_q"], r.get("h_kv", 1),
            bool(r["varlen"]), bool(r.get("causal", False)))


def match(row, ref_rows):
    """The first reference row of the same configuration (page size / dtype where it has them)."""
    for x in ref_rows:
        if key(x) != key(row):
            continue
        if "page_size" in x and x["page_size"] != row.get("page_size"):
            continue
        if "dtype" in x and x["dtype"] != row.get("dtype"):
            continue
        if x.get("us") is None or (isinstance(x["us"], float) and math.isnan(x["us"])):
            continue
        return x
    return None


def label_of(r):
    """A short configuration label, e.g. 'MLA b128 s_q1 8K var h128'."""
    s_k = r["s_k"]
    sk = f"{s_k // 1024}K" if s_k % 1024 == 0 else str(s_k)
    parts = [family(r), f"b{r['b']}", f"s_q{r['s_q']}", sk, "var" if r["varlen"] else "fix"]
    if r.get("causal"):
        parts.append("causal")
    parts.append(f"h{r['h_q']}" + (f"/{r['h_kv']}" if r.get("h_kv", 1) > 1 else ""))
    if r.get("path", "auto") != "auto":
        parts.append(f"[{r['path']}]")
    return " ".join(parts)


def fmt(x, digits=1):
    return "–" if x is None else f"{x:,.{digits}f}"


def table(doc, compare=None):
    """The markdown: one sentence on where and how, then the table."""
    if "schema" not in doc:
        raise ValueError("not a flashmfa-bench results file (no \"schema\")")
    lines = [
        f"Measured on {doc['device']} ({doc['sms']} {'SMs' if doc['backend'] == 'cuda' else 'threads'})"
        f" at commit `{doc['commit']}`, {doc['date']}: copy {doc['copy_GBps']:,.0f} GB/s"
        + (f", matmul {doc['gemm_TFLOPS']:,.3g} TFLOP/s" if doc.get("gemm_TFLOPS") else "")
        + (f", call floor {doc['floor_us']:.1f} µs" if doc.get("floor_us") else "")
        + f" (measured in the same run); {doc['timing']}.",
        "",
    ]
    # The kernel family column appears when a run compared families (--path auto,portable).
    paths = any(r.get("path", "auto") != "auto" for r in doc["rows"])
    head = ["variant", "d_k/d_v", "dtype", "b", "s_q", "s_k", "lengths", "h_q", "h_kv", "page"]
    head += ["path"] if paths else []
    head += ["µs", "TFLOP/s", "GB/s", "% roofline", "max err"]
    ref_label, ref_rows = (None, None)
    if compare is not None:
        ref_label, ref_rows = reference_rows(compare)
        head += [f"{ref_label} µs", "speed-up"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for r in doc["rows"]:
        lens = ("varlen" if r["varlen"] else "fixed") + (", causal" if r["causal"] else "")
        ok = r["check_ok"] and r["us"] is not None
        cells = [family(r), f"{r['d_k']}/{r['d_v']}" + (" (V=K)" if r["v_aliases_k"] else ""),
                 r["dtype"], str(r["b"]), str(r["s_q"]), str(r["s_k"]), lens, str(r["h_q"]),
                 str(r["h_kv"]), str(r["page_size"])]
        # Plan::kernel ids (src/cuda/backend.cu): 0 the portable sm80 kernel, 1 the sm_90a one.
        kernel = {0: "sm80", 1: "sm90a"}.get(r.get("kernel"), "?")
        cells += [f"{r.get('path', 'auto')} ({kernel})"] if paths else []
        if ok:
            cells += [fmt(r["us"]), fmt(r["tflops"]), fmt(r["gbps"], 0), fmt(r["pct_roofline"]),
                      f"{r['max_abs_err']:.1e}"]
        else:
            cells += ["failed check", "", "", "", ""]
        if ref_rows is not None:
            hit = match(r, ref_rows)
            if hit is None:
                cells += ["–", "–"]
            else:
                cells += [fmt(hit["us"]), f"{hit['us'] / r['us']:.2f}x" if ok else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="a flashmfa-bench --json file")
    ap.add_argument("--compare", metavar="FILE", help="another run: ours, FlashMLA's or the Triton peer's")
    args = ap.parse_args(argv)
    try:
        doc = load(args.results)
        other = load(args.compare) if args.compare else None
        print(table(doc, other))
    except (OSError, ValueError, KeyError) as e:
        print(f"report.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
