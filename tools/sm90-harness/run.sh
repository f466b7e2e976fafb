#!/usr/bin/env bash
# Device-side: build the sm90 harness twice (plain, and with the mbarrier watchdog), run the
# correctness suite on the watchdog build and the timings on the plain one.
# Usage: tools/sm90-harness/run.sh [modes...]   (modes: test quick bench bench-combine diag)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/h /tmp/hw
NV="nvcc -std=c++20 -O3 -lineinfo -I include -I src -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr"
srcs="src/cuda/sm90/decode/launch.cu src/cuda/sm90/decode/kernel_bf16.cu src/cuda/sm90/decode/kernel_f16.cu src/cuda/sm90/mla/kernel_bf16.cu src/cuda/sm90/mla/kernel_f16.cu src/cuda/common/scheduler.cu src/cuda/common/combine.cu src/cuda/common/device.cu tools/sm90-harness/harness.cu"
t0=$(date +%s)
for f in $srcs; do
  ( $NV -Xptxas -v -c $f -o /tmp/h/$(basename $f).o > /tmp/h/$(basename $f).log 2>&1 || echo "BUILD FAIL $f" ) &
  ( $NV -DFLASHMFA_SM90_WATCHDOG -c $f -o /tmp/hw/$(basename $f).o > /dev/null 2>&1 || echo "BUILD FAIL wd $f" ) &
done
wait
cat /tmp/h/*.log > "$OUT/build.log"
grep -E "error|BUILD FAIL" "$OUT/build.log" | head -20
grep -E "spill|Used" /tmp/h/kernel_bf16.cu.log | paste - - | sed 's/ptxas info    ://g' | head -8
$NV -o /tmp/h/harness /tmp/h/*.o || exit 1
$NV -o /tmp/hw/harness /tmp/hw/*.o || exit 1
echo "build $(( $(date +%s) - t0 )) s"
for m in "$@"; do
  case $m in
    test|quick|diag) H=/tmp/hw/harness ;;
    *) H=/tmp/h/harness ;;
  esac
  timeout 90 stdbuf -oL $H $m 2>&1 | tee "$OUT/$m.log" | grep -v "^PASS"; echo "$m rc=${PIPESTATUS[0]}"
done
