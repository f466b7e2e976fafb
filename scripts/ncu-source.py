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


SECTION = re.compile(r"^//-+ \.text\.(\S+) -+")


def mangled_hint(kernel: str) -> str:
    """The Itanium-mangled form of a demangled kernel's name and template arguments, as a
    substring of its .text section: 'decode_kernel<__nv_bfloat16, (int)256, (bool)1>' ->
    'decode_kernelI13__nv_bfloat16Li256ELb1E'."""
    m = re.search(r"(\w+)<([^>]*)>", kernel)
    if not m:
        return re.sub(r"\(.*", "", kernel).split("::")[-1]
    args = []
    for arg in (a.strip() for a in m.group(2).split(",")):
        lit = re.fullmatch(r"\((int|bool)\)(-?\d+)", arg)
        if lit:
            args.append(("Li" if lit.group(1) == "int" else "Lb") + lit.group(2) + "E")
        else:
            args.append(f"{len(arg)}{arg}")
    return f"{m.group(1)}I{''.join(args)}"


def frames(sass_path: str, function: str) -> dict[int, list[str]]:
    """Instruction offset -> call chain, outermost first ('file:line'), of the function whose
    .text section name contains `function` (every function's when empty)."""
    chain: dict[int, list[str]] = {}
    block: list[str] = []
    current: list[str] = []
    in_block = False
    selected = not function
    with open(sass_path) as f:
        for line in f:
            sec = SECTION.match(line)
            if sec:
                selected = not function or function in sec.group(1)
                continue
            if not selected:
                continue
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
    ap.add_argument("--function", default=None,
                    help="substring of the SASS function's mangled name (default: derived from "
                         "the CSV's kernel name)")
    a = ap.parse_args()
    with open(a.csv) as f:
        rows = [r for r in csv.reader(f)]
    start = next((i for i, r in enumerate(rows) if r and r[0] == "Address"), None)
    if start is None or len(rows) < start + 2:
        sys.exit("ncu-source: no source page in " + a.csv)
    kernel = next((r[1] for r in rows[:start] if r and r[0] == "Kernel Name"), "")
    end = next((i for i in range(start + 1, len(rows)) if rows[i] and rows[i][0] == "Kernel Name"),
               len(rows))  # the first profiled launch only
    head, data = rows[start], rows[start + 1:end]
    function = a.function if a.function is not None else mangled_hint(kernel)
    chain = frames(a.sass, function)
    if not chain:
        sys.exit(f"ncu-source: no function matching {function!r} in {a.sass}")
    print(f"{kernel[:110]} (SASS function ~ {function})")
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
