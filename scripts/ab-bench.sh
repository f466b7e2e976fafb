#!/usr/bin/env bash
# Same-machine A/B of compile-time switches: builds flashmfa-bench once per variant (bench
# target only, every core) and runs the same workloads on each variant in alternation, ROUNDS
# times, so that drift of the lent machine falls on both sides. Logs and JSON under $OUT.
#
#   VARIANTS="base: prefetch:-DFLASHMFA_SM80_S_PREFETCH=1" \
#     scripts/ab-bench.sh "deepseek-v3 --path portable" "step3-mfa --b 1 --s-k 131072"
#
# VARIANTS: space-separated name[@source-dir]:CUDA-flags (flags may be empty; commas stand for
# spaces; source-dir, default ., another tree to build, e.g. an earlier commit unpacked with
# `git archive <commit> | tar x -C .carry/base` and carried to the device); each argument is
# one flashmfa-bench command line. ROUNDS (default 2); TIMEOUT (seconds per
# run, default 120: a hung kernel costs one run, not the device call). Output: $OUT/ab-<variant>-
# <round>-<n>.json, and one table line per row in $OUT/ab.log; scripts/ab-json.py adds the runs
# to a committed bench/results/*-ab.json (schema flashmfa-ab/1).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device-out}
ROUNDS=${ROUNDS:-2}
TIMEOUT=${TIMEOUT:-120}
mkdir -p "$OUT"
log="$OUT/ab.log"
: > "$log"
names=()
for v in ${VARIANTS:?name:flags ...}; do
  name=${v%%:*}
  flags=${v#*:}
  flags=${flags//,/ }
  src=.
  if [[ $name == *@* ]]; then src=${name#*@}; name=${name%%@*}; fi
  dir="$PWD/build-ab-$name"
  { cmake -S "$src" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHMFA_CUDA=ON \
      -DFLASHMFA_CUDA_ARCHS=90 -DCMAKE_CUDA_FLAGS="$flags" &&
      cmake --build "$dir" -j "$(nproc)" --target flashmfa-bench; } > "$OUT/ab-build-$name.log" 2>&1
  echo "build $name from $src ($flags) rc=$?" | tee -a "$log"
  names+=("$name")
done
for round in $(seq 1 "$ROUNDS"); do
  n=0
  for cmd in "$@"; do
    n=$((n + 1))
    for name in "${names[@]}"; do
      # shellcheck disable=SC2086
      timeout "$TIMEOUT" "build-ab-$name/bench/flashmfa-bench" $cmd --json "$OUT/ab-$name-$round-$n.json" \
        > "$OUT/ab-$name-$round-$n.log" 2>&1
      echo "== $name round $round: $cmd (rc=$?)" >> "$log"
      grep -E "^(MLA|MFA|MFA-KR|GQA|MQA) " "$OUT/ab-$name-$round-$n.log" >> "$log"
    done
  done
done
cat "$log"
