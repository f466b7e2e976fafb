#!/usr/bin/env python3
"""FP8 caches against 16-bit caches: packs one scripts/fp8-bench.sh run into a committed set, and
renders a committed set as the README's FP8 table.

    scripts/fp8-set.py pack OUT_DIR bench/results/h100-fp8.json --what "..." --code HASH
    scripts/fp8-set.py table bench/results/h100-fp8.json

pack: every $OUT/fp8-<cache>-<name>.json of the run, as {"schema": "flashmfa-bench-set/1",
"what", "code", "runs": [{"file", "run"}]} (the runs unchanged). table: one line per row that
ran with both caches (fp8-native-<name> beside fp8-fp8-<name>, rows matched on their shape),
with the speed-up of the FP8 cache and its % of the memory roofline counted in its own bytes;
then the FP8 rows on the Hopper path beside the portable kernel (fp8-fp8-paths).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

SHAPE = ("variant", "dtype", "b", "s_q", "s_k", "varlen", "causal", "h_q", "h_kv", "page_size")


def pack(args: argparse.Namespace) -> None:
    runs = []
    for path in sorted(glob.glob(os.path.join(args.out_dir, args.pattern))):
        with open(path) as f:
            runs.append({"file": os.path.basename(path), "run": json.load(f)})
    if not runs:
        sys.exit(f"fp8-set: no {args.pattern} under {args.out_dir}")
    doc = {"schema": "flashmfa-bench-set/1", "what": args.what, "code": args.code, "runs": runs}
    with open(args.set, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{args.set}: {len(runs)} runs")


def shape(row: dict) -> tuple:
    return tuple(row.get(k) for k in SHAPE)


def lengths(row: dict) -> str:
    return ("varlen" if row["varlen"] else "fixed") + (", causal" if row["causal"] else "")


def table(args: argparse.Namespace) -> None:
    with open(args.set) as f:
        doc = json.load(f)
    runs = {r["file"]: r["run"] for r in doc["runs"]}
    first = next(iter(runs.values()))
    print(f"Measured on {first['device']} ({first['sms']} SMs) at commit `{doc['code']}`, "
          f"{first['date']}: copy {first['copy_GBps']:,.0f} GB/s (measured in the same run); "
          f"{first['timing']}. A row's 16-bit and FP8 runs are consecutive processes of one "
          "scripts/fp8-bench.sh run; FP8 GB/s and % roofline count the FP8 cache's own bytes "
          "(656 per MLA row, d + 4 per fp8_row row).")
    print()
    print("| variant | h_q | s_q | s_k | lengths | page | 16-bit µs | FP8 µs | FP8 speed-up | "
          "FP8 GB/s | FP8 % roofline | FP8 max err |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    pairs = []
    for name in (f[len("fp8-native-"):-len(".json")] for f in runs if f.startswith("fp8-native-")):
        fp8 = runs.get(f"fp8-fp8-{name}.json")
        by_shape = {shape(r): r for r in fp8["rows"]} if fp8 else {}
        pairs += [(b, by_shape[shape(b)]) for b in runs[f"fp8-native-{name}.json"]["rows"]
                  if shape(b) in by_shape]
    pairs.sort(key=lambda p: (p[1]["variant"], p[1]["s_k"], p[1]["h_q"], p[1]["s_q"]))
    for base, row in pairs:
        print(f"| {row['variant']} | {row['h_q']} | {row['s_q']} | {row['s_k']} | "
              f"{lengths(row)} | {row['page_size']} | {base['us']:,.1f} | {row['us']:,.1f} | "
              f"**{base['us'] / row['us']:.2f}x** | {row['gbps']:,.0f} | "
              f"{row['pct_roofline']:.1f} | {row['max_abs_err']:.1e} |")
    paths = runs.get("fp8-fp8-paths.json")
    if paths is None:
        return
    print()
    print("FP8 caches on the automatic path (the Hopper kernels) and on the portable kernel:")
    print()
    print("| variant | h_q | s_k | lengths | auto µs | portable µs | auto speed-up |")
    print("|---|---|---|---|---|---|---|")
    by_path = {}
    for row in paths["rows"]:
        by_path.setdefault(shape(row), {})[row["path"]] = row
    for rows in by_path.values():
        if "auto" in rows and "portable" in rows:
            a, p = rows["auto"], rows["portable"]
            print(f"| {a['variant']} | {a['h_q']} | {a['s_k']} | {lengths(a)} | {a['us']:,.1f} | "
                  f"{p['us']:,.1f} | {p['us'] / a['us']:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("out_dir")
    p.add_argument("set")
    p.add_argument("--what", required=True)
    p.add_argument("--code", required=True)
    p.add_argument("--pattern", default="fp8-*-*.json",
                   help="which JSON files of the run "
                        "(default: fp8-bench.sh's fp8-<cache>-<name>.json)")
    t = sub.add_parser("table")
    t.add_argument("set")
    args = ap.parse_args()
    pack(args) if args.cmd == "pack" else table(args)


if __name__ == "__main__":
    main()
