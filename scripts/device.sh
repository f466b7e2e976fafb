#!/usr/bin/env bash
# The one script for the GPU machine: builds with every core, runs the GPU tests, the
# compute-sanitizer suite, the Python GPU tests and the benchmark, and leaves logs and JSON
# under $OUT (default ./device-out). Steps can be picked:
#
#   scripts/device.sh                      # all steps
#   scripts/device.sh build test sanitize  # some
#   BENCH_ARGS="--preset step3-mfa" scripts/device.sh build bench
#
# Steps: build, test, sanitize, python, bench, ptxas. Each step's log is $OUT/<step>.log; the
# summary of all steps is printed last (the device tool returns the end of the output).
# The device tool copies the tree without .git: pass FLASHMFA_COMMIT=<hash> so that the
# benchmark JSON records the commit it measured. It also returns only a few files from $OUT:
# PACK=1 packs everything the steps wrote into $OUT/device-out.tgz (and removes the rest).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device-out}
BUILD=${BUILD:-build-device}
JOBS=${JOBS:-$(nproc)}
ARCHS=${ARCHS:-90}
mkdir -p "$OUT"
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(build test sanitize python bench)
summary=()
note() { summary+=("$1"); echo "== $1"; }
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
export FLASHMFA_COMMIT=${FLASHMFA_COMMIT:-$commit}


for step in "${steps[@]}"; do
  start=$(date +%s)
  case $step in
    build)
      nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv \
        > "$OUT/build.log" 2>&1
      cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHMFA_CUDA=ON \
        -DFLASHMFA_CUDA_ARCHS="$ARCHS" >> "$OUT/build.log" 2>&1 &&
        cmake --build "$BUILD" -j "$JOBS" >> "$OUT/build.log" 2>&1
      rc=$?
      grep -E "warning|spill|lmem|error" "$OUT/build.log" | grep -v "^--" | head -20
      ;;
    ptxas)  # register / spill report of the CUDA kernels
      for f in $(find src/cuda -name '*.cu'); do
        nvcc -std=c++20 -O3 -I include -I src -DFLASHMFA_CUDA_ARCH_LIST='"sm_90"' \
          -gencode=arch=compute_90,code=sm_90 --expt-relaxed-constexpr -Xptxas -v \
          -c "$f" -o /dev/null 2>&1 | grep -E "Compiling entry|Used|spill" | sed 's/^/  /'
      done > "$OUT/ptxas.log" 2>&1
      rc=$?
      grep -B1 -E "[1-9][0-9]* bytes spill" "$OUT/ptxas.log" | head
      ;;
    test)
      # Line-buffered, so that a run stopped by a time limit still leaves its log.
      stdbuf -oL "$BUILD/tests/cuda/flashmfa_cuda_tests" --gtest_brief=1 > "$OUT/test.log" 2>&1
      rc=$?
      tail -5 "$OUT/test.log"
      grep -E "^\[  FAILED  \]" "$OUT/test.log" | head -20
      ;;
    sanitize)
      # memcheck over both kernel families; racecheck per family (CudaSanitizer.Portable, the
      # sm80 kernel; CudaSanitizer.Automatic, the sm90a kernels on a Hopper device), whose
      # named-barrier hand-offs racecheck misreads (tools/racecheck-probe, docs/perf-notes.md).
      rc=0
      compute-sanitizer --tool memcheck --error-exitcode 9 \
        "$BUILD/tests/cuda/flashmfa_cuda_tests" --gtest_filter='CudaSanitizer.*' \
        > "$OUT/sanitize-memcheck.log" 2>&1 || rc=$?
      tail -3 "$OUT/sanitize-memcheck.log"
      for family in Portable Automatic; do
        log="$OUT/sanitize-racecheck-${family,,}.log"
        compute-sanitizer --tool racecheck --error-exitcode 9 \
          "$BUILD/tests/cuda/flashmfa_cuda_tests" --gtest_filter="CudaSanitizer.$family" \
          > "$log" 2>&1 || rc=$?
        tail -1 "$log"
      done
      nvcc -arch=sm_90a -o "$BUILD/racecheck-probe" tools/racecheck-probe/probe.cu &&
        for k in bar_sync bar_arrive syncthreads racy bar_sync_lane0 mixed with_arrive with_mbar \
                 mbar_ring; do
          compute-sanitizer --tool racecheck "$BUILD/racecheck-probe" $k 2>&1 |
            grep -E "SUMMARY" | sed "s/^/probe $k: /"
        done > "$OUT/racecheck-probe.log"
      cat "$OUT/racecheck-probe.log"
      ;;
    python)
      python3 -m pip install --no-build-isolation -q --target /tmp/flashmfa-py \
        -C cmake.define.FLASHMFA_CUDA_ARCHS="$ARCHS" -C build.verbose=false . \
        > "$OUT/python.log" 2>&1 &&
        PYTHONPATH=/tmp/flashmfa-py python3 -m pytest -q -x tests/python >> "$OUT/python.log" 2>&1
      rc=$?
      tail -5 "$OUT/python.log"
      ;;
    bench)
      # shellcheck disable=SC2086
      "$BUILD/bench/flashmfa-bench" ${BENCH_ARGS:---sweep} --json "$OUT/bench.json" \
        > "$OUT/bench.log" 2>&1
      rc=$?
      cat "$OUT/bench.log" | tail -40
      ;;
    *) echo "unknown step $step"; rc=2 ;;
  esac
  note "$step: rc=$rc ($(( $(date +%s) - start )) s)"
done
echo "== summary (commit $FLASHMFA_COMMIT)"
printf '%s\n' "${summary[@]}"
if [ "${PACK:-0}" = 1 ]; then
  (cd "$OUT" && find . -type f ! -name device-out.tgz -print0 |
     tar czf device-out.tgz --null -T - --remove-files)
fi
