#!/usr/bin/env bash
# What one flashmfa decode / MLA kernel launch moves through DRAM and L2, from Nsight Compute:
# DRAM bytes read and written, DRAM throughput against its peak, L2 read sectors and hit rate,
# with the launch's duration and SM clock; and, when the bench is given --json, the bytes the
# row's roofline counts, so that the ratio DRAM read / counted says how much of the traffic the
# kernel adds (sectors fetched for scales, block-table entries, partials, rereads). No cache
# flush, no clock lock (the kernels see the caches and clocks of the benchmark's replays).
#
#   scripts/ncu-memory.sh build-device/bench/flashmfa-bench llama3-gqa --cache fp8 --json x.json
#
# SKIP (default 20) launches of the decode / MLA kernels are passed over first, COUNT (default 1)
# are profiled. CSV=file keeps Nsight Compute's own CSV (base units) as well.
set -uo pipefail
bin=${1:?flashmfa-bench binary}
shift
json=""
prev=""
for a in "$@"; do
  [ "$prev" = "--json" ] && json=$a
  prev=$a
done
metrics='gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second,dram__bytes_read.sum'
metrics+=',dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed'
metrics+=',lts__t_sectors_op_read.sum,lts__t_sector_op_read_hit_rate.pct'
csv=${CSV:-$(mktemp -u /tmp/ncu-memory.XXXXXX).csv}
. "$(dirname "$0")/ncu-lib.sh"
ncu_metrics_csv "$csv" "$metrics" "$bin" "$@" || { echo "ncu-memory: ncu failed"; exit 1; }
python3 -c '
import csv, json, sys
rows = [r for r in csv.reader(l for l in open(sys.argv[2]) if l.startswith("\""))]
if len(rows) < 2: sys.exit("ncu-memory: no profiled launches")
head = rows[0]
counted = None
if sys.argv[1]:
    try:
        counted = json.load(open(sys.argv[1]))["rows"][0]["bytes"]
    except (OSError, KeyError, IndexError, ValueError):
        pass
# --csv without --page raw: one row per metric (ID, kernel, metric name, unit, value).
per = {}
for r in rows[1:]:
    v = dict(zip(head, r))
    key = (v.get("ID"), v.get("Kernel Name", "").split("(")[0].split("<")[0].split("::")[-1])
    per.setdefault(key, {})[v["Metric Name"]] = (v["Metric Unit"], v["Metric Value"].replace(",", ""))
for (lid, name), m in per.items():
    def num(k):
        unit, val = m.get(k, ("", "nan"))
        x = float(val)
        return x * {"nsecond": 1e-3, "ns": 1e-3}.get(unit, 1.0)  # base units; time in us
    rd, wr = num("dram__bytes_read.sum"), num("dram__bytes_write.sum")
    line = "%s #%s: %.1f us, SM clock %s %s; DRAM read %.1f MB, written %.1f MB, %.1f%% of peak;" % (
        name, lid, num("gpu__time_duration.sum"), *reversed(m.get("sm__cycles_elapsed.avg.per_second", ("", "?"))),
        rd / 1e6, wr / 1e6, num("dram__throughput.avg.pct_of_peak_sustained_elapsed"))
    line += " L2 read sectors %.3g (%.1f MB), hit rate %.1f%%" % (
        num("lts__t_sectors_op_read.sum"), num("lts__t_sectors_op_read.sum") * 32 / 1e6,
        num("lts__t_sector_op_read_hit_rate.pct"))
    if counted:
        line += "; roofline bytes %.1f MB, DRAM read / counted %.3f" % (counted / 1e6, rd / counted)
    print(line)
' "$json" "$csv"
