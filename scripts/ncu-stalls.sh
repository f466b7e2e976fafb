#!/usr/bin/env bash
# Where the warps of each flashmfa kernel launch wait, from Nsight Compute: for every stall
# reason, the warps stalled on it per issued instruction (the WarpStateStats numbers), with
# the launch's duration, instructions issued and SM clock. One block per profiled launch (no
# cache flush, no clock lock: the kernels see the caches and clocks of the benchmark's graph
# replays).
#
#   scripts/ncu-stalls.sh build-device/bench/flashmfa-bench deepseek-v3-tp8 --cache fp8
#
# SKIP (default 20) launches of the decode / MLA kernels are passed over first (warm-up),
# COUNT (default 2) are profiled. SOURCE=file.csv also writes the per-SASS-instruction
# sampled stalls of the first profiled launch (Nsight Compute's source page) to that file;
# LINEINFO=<a kernel instantiation file, e.g. src/cuda/sm90/mla/kernel_fp8_bf16.cu> with it
# compiles that file as the library does plus -lineinfo (no instruction changes) and prints
# the samples per source call site (scripts/ncu-source.py; needs nvdisasm, which the GPU
# machine has).
set -uo pipefail
bin=${1:?flashmfa-bench binary}
shift
rep=$(mktemp -u /tmp/ncu-stalls.XXXXXX)
sections=(--section WarpStateStats --section SchedulerStats --section InstructionStats)
[ -n "${SOURCE:-}" ] && sections+=(--section SourceCounters)
metrics='regex:^smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio$'
metrics+=',gpu__time_duration.sum,smsp__inst_executed.sum,sm__cycles_elapsed.avg.per_second'
ncu --clock-control none --cache-control none -k 'regex:decode_kernel|mla_kernel' \
  --launch-skip "${SKIP:-20}" --launch-count "${COUNT:-2}" "${sections[@]}" --metrics "$metrics" \
  -o "$rep" "$bin" "$@" --iters 30 --warmup 10 > /dev/null 2>&1 ||
  { echo "ncu-stalls: ncu failed"; exit 1; }
ncu -i "$rep.ncu-rep" --csv --page raw 2>/dev/null | python3 -c '
import csv, sys
rows = [r for r in csv.reader(l for l in sys.stdin if l.startswith("\""))]
if len(rows) < 3: sys.exit("ncu-stalls: no profiled launches")
head, units = rows[0], rows[1]
pre, suf = "smsp__average_warps_issue_stalled_", "_per_issue_active.ratio"
for r in rows[2:]:
    v = dict(zip(head, r))
    name = v["Kernel Name"].split("(")[0].split("<")[0].split("::")[-1]
    print("%s: %s %s, %s instructions, SM clock %s %s" % (name, v.get("gpu__time_duration.sum"),
          units[head.index("gpu__time_duration.sum")], v.get("smsp__inst_executed.sum"),
          v.get("sm__cycles_elapsed.avg.per_second"),
          units[head.index("sm__cycles_elapsed.avg.per_second")]))
    stalls = sorted(((float(v[k].replace(",", "")), k[len(pre):-len(suf)]) for k in head
                     if k.startswith(pre) and k.endswith(suf) and v[k]), reverse=True)
    total = sum(s for s, _ in stalls)
    print("  warps stalled per issued instruction: %.2f" % total)
    for s, k in stalls:
        if s >= 0.01: print("  %-28s %6.2f  %5.1f%%" % (k, s, 100 * s / total))
'
if [ -n "${SOURCE:-}" ]; then
  ncu -i "$rep.ncu-rep" --csv --page source --print-source sass --launch-count 1 > "$SOURCE" 2>&1 ||
    echo "ncu-stalls: no source page"
  if [ -n "${LINEINFO:-}" ]; then
    cubin=$(mktemp -u /tmp/ncu-stalls.XXXXXX).cubin
    nvcc -O3 -std=c++20 -Iinclude -Isrc -gencode=arch=compute_90a,code=sm_90a \
      --expt-relaxed-constexpr -DFLASHMFA_CUDA_ARCH_LIST='"sm_90a"' -lineinfo -cubin \
      -o "$cubin" "$LINEINFO" && nvdisasm -c -gi "$cubin" > "${SOURCE%.csv}.sass" &&
      python3 "$(dirname "$0")/ncu-source.py" "${SOURCE%.csv}.sass" "$SOURCE"
    rm -f "$cubin"
  fi
fi
rm -f "$rep.ncu-rep"
