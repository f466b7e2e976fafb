# Sourced by scripts/ncu-memory.sh and scripts/ncu-pipes.sh: one Nsight Compute run of
# flashmfa-bench that profiles decode / MLA kernel launches -- SKIP (default 20) passed over
# first, COUNT (default 1) profiled; no cache flush, no clock lock, so the kernels see the caches
# and clocks of the benchmark's replays -- and writes the given metrics as CSV in base units
# (one line per launch and metric).
#
#   ncu_metrics_csv CSV_FILE METRICS(comma-separated) BENCH_BINARY [bench arguments...]
ncu_metrics_csv() {
  local csv=$1 metrics=$2 bin=$3
  shift 3
  ncu --clock-control none --cache-control none -k 'regex:decode_kernel|mla_kernel' \
    --launch-skip "${SKIP:-20}" --launch-count "${COUNT:-1}" --metrics "$metrics" --csv \
    --print-units base "$bin" "$@" --iters 30 --warmup 10 > "$csv" 2>/dev/null
}
