#!/usr/bin/env bash
# FP8 caches against 16-bit caches on the same machine: issue 8's presets (MLA h_q 16/32/64/128,
# MFA and MFA-KR h_q 64 at s_k 8192 and 32768, Llama-3 GQA; b 128) on the automatic path (the
# Hopper kernels where they apply: fp8_row caches on the decode kernel's FP8 form, MLA's FP8
# rows on the MLA kernel's FP8 form), both cache kinds in alternation. Writes
# $OUT/fp8-<cache>-<set>.json and one log. Usage: scripts/fp8-bench.sh [build dir] [flags...]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device-out}
BUILD=${1:-build-device}
shift || true
mkdir -p "$OUT"
B="$BUILD/bench/flashmfa-bench"
log="$OUT/fp8-bench.log"
: > "$log"
run() {  # name, flags...
  local name=$1
  shift
  for cache in native fp8; do
    # shellcheck disable=SC2086
    "$B" "$@" --cache "$cache" --json "$OUT/fp8-$cache-$name.json" >> "$log" 2>&1
    echo "rc=$? $cache $name" >> "$log"
  done
}
# SETS picks groups (default: all): presets, long (s_k 32768 MFA / MFA-KR / MLA h_q 16), mla (MLA
# h_q 32, 64 at 8k and 32k, h_q 16 at s_q 2 causal), paths (FP8 on the Hopper path and on the
# portable kernel side by side), pages (pages smaller than a tile: Llama-3 GQA's grid at page 16
# on the automatic and portable paths, and MFA / MFA-KR / GQA at pages of 16 and 64), tile (the
# A/B below). scripts/fp8-set.py packs a run into bench/results/ and renders the README's FP8
# table from it.
SETS=${SETS:-presets long mla paths pages tile}
has() { [[ " $SETS " == *" $1 "* ]]; }
has presets && run presets deepseek-v3-tp8,deepseek-v3,step3-mfa,mfa-kr-256,llama3-gqa "$@"
has long && run long step3-mfa,mfa-kr-256,deepseek-v3-tp8 --s-k 32768 "$@"
has mla && run mla-h32 deepseek-v3-tp8 --h-q 32 "$@"
has mla && run mla-h64 deepseek-v3-tp8 --h-q 64 "$@"
has mla && run mla-h32-long deepseek-v3-tp8 --h-q 32 --s-k 32768 "$@"
has mla && run mla-h64-long deepseek-v3-tp8 --h-q 64 --s-k 32768 "$@"
has mla && run mla-h16-mtp deepseek-v3-tp8 --s-q 2 --causal "$@"
if has paths; then
  "$B" step3-mfa,mfa-kr-256,deepseek-v3-tp8,deepseek-v3 --cache fp8 --path auto,portable "$@" \
    --json "$OUT/fp8-fp8-paths.json" >> "$log" 2>&1
  echo "rc=$? fp8 paths" >> "$log"
fi
if has pages; then
  for cache in native fp8; do
    "$B" llama3-gqa --sweep --path auto,portable --cache "$cache" "$@" \
      --json "$OUT/pages-$cache-gqa-grid.json" >> "$log" 2>&1
    echo "rc=$? $cache gqa grid" >> "$log"
    for page in 16 64; do
      "$B" step3-mfa,mfa-kr-256,llama3-gqa --page-size "$page" --cache "$cache" "$@" \
        --json "$OUT/pages-$cache-page$page.json" >> "$log" 2>&1
      echo "rc=$? $cache page $page" >> "$log"
    done
  done
fi
# A/B of the portable FP8 tile on the memory-bound MLA row: BLOCK_N 32 with 2 stages (two CTAs
# per SM, one CTA's dequant pass beside the other's products) against the default 64 x 3 stages.
if has tile; then
  FLASHMFA_SM80_TILE=32:2 "$B" deepseek-v3-tp8 --cache fp8 "$@" \
    --json "$OUT/fp8-fp8-mla-h16-bn32x2.json" >> "$log" 2>&1
  echo "rc=$? fp8 mla-h16 FLASHMFA_SM80_TILE=32:2" >> "$log"
fi
grep -E "^(MLA|MFA|GQA|MQA)|^rc=" "$log"
