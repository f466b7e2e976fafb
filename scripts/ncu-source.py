#!/usr/bin/env python3
"""Where a kernel's sampled warp stalls sit in its source: joins Nsight Compute's per-SASS-
instruction samples (scripts/ncu-stalls.sh with SOURCE=file.csv) to the source lines of the
same code, read from a -lineinfo build's disassembly (nvdisasm -c -gi), by instruction offset.
The offsets agree when the -lineinfo cubin is compiled with the library's flags (ncu-stalls.sh
LINEINFO=... does that; -lineinfo changes no instruction). Prints one line per call-site
chain (`--depth` frames below the kernel), its share of all samples and its top stall reasons,
and the split between the producer and consumer roles.

    scripts/ncu-source.py kernel.sass samples.csv [--depth 2] [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import csv
import re
import sys

FRAME = re.compile(r'//## File "([^"]+)", line (\d+)')
INSTR = re.compile(r"\s+/\*([0-9a-f]{4,})\*/\s+(\S+)")


def frames(sass_path: str) -> dict[int, list[str]]:
    """Instruction offset -> call chain, outermost first ('file:line')."""
    chain: dict[int, list[str]] = {}
    block: list[str] = []
    current: list[str] = []
    in_block = False
    with open(sass_path) as f:
        for line in f:
            m = FRAME.search(line)
            if m:
                if not in_block:
                    block, in_block = [], True
                block.append(f"{m.group(1).split('/')[-1]}:{m.group(2)}")
                continue
            m = INSTR.match(line)
            if m:
                if in_block:
                    current, in_block = list(reversed(block)), False
                chain[int(m.group(1), 16)] = current
    return chain


def role(chain: list[str]) -> str:
    text = " ".join(chain)
    if "producer.cuh" in text or "fp8.cuh" in text:
        return "producer"
    return "consumer" if "consumer.cuh" in text else "other"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sass")
    ap.add_argument("csv")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    chain = frames(a.sass)
    with open(a.csv) as f:
        rows = [r for r in csv.reader(f)]
    start = next((i for i, r in enumerate(rows) if r and r[0] == "Address"), None)
    if start is None or len(rows) < start + 2:
        sys.exit("ncu-source: no source page in " + a.csv)
    head, data = rows[start], rows[start + 1:]
    col = {h: i for i, h in enumerate(head)}
    stalls = [h for h in head if h.startswith("stall_") and "Not Issued" not in h]
    base = int(data[0][0], 16)
    by_site: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    by_role: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    unknown = 0
    for r in data:
        offset = int(r[0], 16) - base
        c = chain.get(offset)
        if c is None:
            unknown += 1
            c = ["?"]
        site = " > ".join(c[1:a.depth + 1]) or c[0]
        for s in stalls:
            v = int(r[col[s]]) if r[col[s]].isdigit() else 0
            by_site[site][s] += v
            by_role[role(c)][s] += v
    total = sum(sum(c.values()) for c in by_site.values()) or 1
    if unknown:
        print(f"ncu-source: {unknown} sampled instructions have no line (another build?)")
    print(f"{total} samples")
    for name, c in sorted(by_role.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(c.values()) or 1
        top = ", ".join(f"{k[6:]} {100 * v / n:.0f}%" for k, v in c.most_common(4))
        print(f"  {name:9s} {100 * n / total:5.1f}%  ({top})")
    for site, c in sorted(by_site.items(), key=lambda kv: -sum(kv[1].values()))[:a.top]:
        n = sum(c.values())
        top = ", ".join(f"{k[6:]} {100 * v / total:.1f}" for k, v in c.most_common(3))
        print(f"{100 * n / total:5.1f}%  {site[:90]:90s} {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
