#!/usr/bin/env bash
# DRAM traffic and duration of each flashmfa kernel launch of one flashmfa-bench run, from
# Nsight Compute (no cache flush, no clock lock: the kernels see the caches and clocks they
# see in the benchmark's graph replays). One line per launch: kernel, us, MB read, MB written.
#
#   scripts/ncu-dram.sh build-device/bench/flashmfa-bench step3-mfa --b 1 --s-k 131072
#
# SKIP (default 40) launches of the matched kernels are passed over first (warm-up replays),
# COUNT (default 6) are profiled.
set -uo pipefail
bin=${1:?flashmfa-bench binary}
shift
ncu --clock-control none --cache-control none --csv --page raw \
  -k 'regex:decode_kernel|mla_kernel|combine' --launch-skip "${SKIP:-40}" \
  --launch-count "${COUNT:-6}" \
  --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
  "$bin" "$@" --iters 20 --warmup 20 2>/dev/null |
  python3 -c '
import csv, sys
rows = [r for r in csv.reader(l for l in sys.stdin if l.startswith("\""))]
if not rows: sys.exit("ncu-dram: no profiled launches")
head, units = rows[0], rows[1]
col = {name: i for i, name in enumerate(head)}
def val(r, m):
    unit = units[col[m]].strip().lower()
    x = float(r[col[m]].replace(",", ""))
    scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3,
             "b": 1e-6, "byte": 1e-6, "kb": 1e-3, "kbyte": 1e-3, "mb": 1.0, "mbyte": 1.0,
             "gb": 1e3, "gbyte": 1e3}
    if unit not in scale: sys.exit("ncu-dram: unknown unit %r of %s" % (unit, m))
    return x * scale[unit]
for r in rows[2:]:
    name = r[col["Kernel Name"]].split("(")[0].split("<")[0].split("::")[-1]
    print("%-22s %8.2f us  read %8.2f MB  write %7.2f MB" % (name,
          val(r, "gpu__time_duration.sum"), val(r, "dram__bytes_read.sum"),
          val(r, "dram__bytes_write.sum")))
'
