#!/usr/bin/env python3
"""Adds one set of same-machine A/B runs (scripts/ab-bench.sh's $OUT/ab-<variant>-<round>-<n>.json)
to a committed flashmfa-ab/1 file under bench/results/, and prints the medians per row.

    scripts/ab-json.py OUT_DIR bench/results/h100-x-ab.json \\
        --experiment "L.4 the warp-per-row combine in one pass (new) against the old kernel (old)" \\
        --code 6b38123 --variant new= --variant old=-DFLASHMFA_COMBINE_ROWS_OLD=1 \\
        [--title "L: the combine step"] [--command "VARIANTS=... scripts/ab-bench.sh ..."]

A set with the same experiment text is replaced. Machine paths are stripped from the commands.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re


def runs(out_dir: str, variants: list[str]) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(os.path.join(out_dir, "ab-*-*-*.json"))):
        m = re.fullmatch(r"ab-(.+)-(\d+)-(\d+)\.json", os.path.basename(path))
        if not m or m.group(1) not in variants:
            continue
        with open(path) as f:
            run = json.load(f)
        command = re.sub(r"\S*/", "", run["command"])  # machine paths (the --json file's directory)
        for r in run["rows"]:
            rows.append(dict(
                variant=m.group(1), round=int(m.group(2)), row=int(m.group(3)), command=command,
                us=r["us"], us_min=r["us_min"], us_max=r["us_max"], tflops=r["tflops"],
                pct_roofline=r["pct_roofline"], check_ok=r.get("check_ok"), path=r.get("path"),
                variant_name=r["variant"], cache=r.get("cache"), s_q=r["s_q"], b=r["b"],
                s_k=r["s_k"], h_q=r["h_q"], causal=r["causal"], varlen=r["varlen"],
                sm_clock_ghz=r.get("sm_clock_ghz"),
                copy_GBps=run["copy_GBps"], gemm_TFLOPS=run["gemm_TFLOPS"],
                floor_us=run.get("floor_us"), device=run["device"], date=run["date"]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("json_file")
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--code", required=True, help="the commit (or description) the runs built")
    ap.add_argument("--variant", action="append", required=True, help="name=compile flags")
    ap.add_argument("--title", help="the file's experiment line (new files, or to replace it)")
    ap.add_argument("--command", help="the ab-bench.sh command line (new files)")
    a = ap.parse_args()

    variants = dict(v.split("=", 1) for v in a.variant)
    new_set = dict(experiment=a.experiment, code=a.code, variants=variants,
                   runs=runs(a.out_dir, list(variants)))
    if not new_set["runs"]:
        raise SystemExit(f"no ab-<variant>-<round>-<n>.json of {list(variants)} in {a.out_dir}")
    if os.path.exists(a.json_file):
        with open(a.json_file) as f:
            doc = json.load(f)
    else:
        first = new_set["runs"][0]
        doc = dict(schema="flashmfa-ab/1", experiment=a.title or a.experiment,
                   device=first["device"], date=first["date"][:10], command=a.command or "",
                   sets=[])
    if a.title:
        doc["experiment"] = a.title
    doc["sets"] = [s for s in doc["sets"] if s["experiment"] != a.experiment] + [new_set]
    with open(a.json_file, "w") as f:
        json.dump(doc, f, indent=1)

    medians = collections.defaultdict(list)
    commands = {}
    for r in new_set["runs"]:
        medians[(r["row"], r["variant"])].append(r["us"])
        commands[r["row"]] = re.sub(r" --json \S+", "", r["command"])
    for (row, variant), us in sorted(medians.items()):
        shown = " / ".join("not timed" if x is None else f"{x:.1f}" for x in us)  # failed checks
        print(f"{row} {variant:>10}: {shown}   {commands[row]}")


if __name__ == "__main__":
    main()
