#!/usr/bin/env bash
# How busy each of an SM's shared units is during one flashmfa decode / MLA kernel launch, from
# Nsight Compute: issue slots (IPC), the tensor pipe (wgmma), the ALU / FMA pipes, the load-store
# pipe, shared-memory wavefronts and bank conflicts, barrier and memory-input-output throughput,
# each as a percentage of its sustained peak over the active cycles, with the instructions and
# shared-memory wavefronts per launch. A kernel whose time no added warp shortens (docs/
# perf-notes.md Z.1) is held by whichever of these is full. No cache flush, no clock lock.
#
#   scripts/ncu-pipes.sh build-device/bench/flashmfa-bench llama3-gqa --cache fp8 --page-size 64
#
# SKIP (default 20) launches of the decode / MLA kernels are passed over first, COUNT (default 1)
# are profiled. CSV=file keeps Nsight Compute's own CSV (base units) as well.
set -uo pipefail
bin=${1:?flashmfa-bench binary}
shift
metrics=$(printf '%s,' gpu__time_duration.sum sm__cycles_elapsed.avg.per_second \
  smsp__inst_executed.sum sm__inst_executed.avg.per_cycle_active \
  sm__pipe_tensor_op_hmma_type_hmma_hgmma_qgmma_cycles_active.avg.pct_of_peak_sustained_active \
  l1tex__data_pipe_lsu_wavefronts_mem_shared_op_gmma.sum \
  sm__inst_executed_pipe_{alu,fma,xu,lsu,uniform}.avg.pct_of_peak_sustained_active \
  l1tex__data_pipe_lsu_wavefronts_mem_shared.{sum,avg.pct_of_peak_sustained_active} \
  l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum \
  {l1tex__throughput,sm__memory_throughput}.avg.pct_of_peak_sustained_active \
  smsp__inst_executed_op_shared_{ld,st}.sum)
csv=${CSV:-$(mktemp -u /tmp/ncu-pipes.XXXXXX).csv}
. "$(dirname "$0")/ncu-lib.sh"
ncu_metrics_csv "$csv" "${metrics%,}" "$bin" "$@" || { echo "ncu-pipes: ncu failed"; exit 1; }
python3 - "$csv" <<'EOF'
import csv, sys
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"'))]
if len(rows) < 2: sys.exit("ncu-pipes: no profiled launches")
head = rows[0]
# Long format (one metric per line) or wide (one launch per line): collect (launch, metric).
if "Metric Name" in head:
    i_id, i_name, i_val = head.index("ID"), head.index("Metric Name"), head.index("Metric Value")
    i_kernel = head.index("Kernel Name")
    launches = {}
    for r in rows[1:]:
        launches.setdefault(r[i_id], {"Kernel Name": r[i_kernel]})[r[i_name]] = r[i_val]
    launches = list(launches.values())
else:
    launches = [dict(zip(head, r)) for r in rows[2:]]
for v in launches:
    def num(k):
        try:
            return float(v.get(k, "nan").replace(",", ""))
        except ValueError:  # "n/a": a metric this device or launch does not report
            return float("nan")
    name = v["Kernel Name"].split("(")[0].split("<")[0].split("::")[-1]
    print("%s: %.1f us, SM clock %.3f GHz, %.3g instructions, IPC %.2f per SM" % (
        name, num("gpu__time_duration.sum") / 1e3, num("sm__cycles_elapsed.avg.per_second") / 1e9,
        num("smsp__inst_executed.sum"), num("sm__inst_executed.avg.per_cycle_active")))
    for label, key in [
            ("tensor pipe (wgmma)", "sm__pipe_tensor_op_hmma_type_hmma_hgmma_qgmma_cycles_active.avg.pct_of_peak_sustained_active"),
            ("ALU pipe", "sm__inst_executed_pipe_alu.avg.pct_of_peak_sustained_active"),
            ("FMA pipe", "sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active"),
            ("XU pipe (exp2, conversions)", "sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active"),
            ("LSU pipe", "sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active"),
            ("uniform pipe", "sm__inst_executed_pipe_uniform.avg.pct_of_peak_sustained_active"),
            ("shared-memory wavefronts", "l1tex__data_pipe_lsu_wavefronts_mem_shared.avg.pct_of_peak_sustained_active"),
            ("L1TEX throughput", "l1tex__throughput.avg.pct_of_peak_sustained_active"),
            ("SM memory throughput", "sm__memory_throughput.avg.pct_of_peak_sustained_active")]:
        print("  %-30s %6.1f%%" % (label, num(key)))
    print("  shared: %.3g wavefronts (%.3g of them wgmma operands), %.3g bank conflicts, %.3g load and %.3g store instructions" % (
        num("l1tex__data_pipe_lsu_wavefronts_mem_shared.sum"),
        num("l1tex__data_pipe_lsu_wavefronts_mem_shared_op_gmma.sum"),
        num("l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum"),
        num("smsp__inst_executed_op_shared_ld.sum"), num("smsp__inst_executed_op_shared_st.sum")))
EOF
[ -n "${CSV:-}" ] || rm -f "$csv"
