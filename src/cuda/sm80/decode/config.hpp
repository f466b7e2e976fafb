// flashmfa CUDA, portable path: the tile table and the shared-memory plan of the sm_80 decode
// kernel. Host and device code both read this file (no CUDA-only constructs), so choose()
// sizes shared memory with exactly the arithmetic the kernel lays it out with.
#pragma once

#include <cstddef>
#include <cstdint>

#include "flashmfa/flashmfa.hpp"
#include "flashmfa/tensor.hpp"

// Callable from host and device code (the kernel lays out shared memory with SmemPlan too).
#if defined(__CUDACC__)
#define FLASHMFA_SM80_HD __host__ __device__
#else
#define FLASHMFA_SM80_HD
#endif

// Every (D_K, D_V, BLOCK_M, BLOCK_N, cache format) the kernel is compiled for, per head-dim
// family; each entry is instantiated for bf16 and f16 (instantiate.cuh), one .cu file per family
// so the build runs them in parallel. "V aliases K" is a run-time flag of the same kernel, so
// (256, 256) covers MFA and MFA-KR, (128, 128) and (64, 64) both GQA forms.
//
// BLOCK_N = 64 is the default tile; BLOCK_N = 32 exists only where a 64-token tile leaves no
// room for two pipeline stages on an sm_80-class part (163 KB of shared memory per CTA):
// MLA at every BLOCK_M, and MFA with a separate V at BLOCK_M = 64. FP8 caches (CacheFormat
// fp8_mla for MLA's 656-byte rows, fp8_row for the others) have tiles of their own: their
// stages hold raw FP8 rows, dequantized into one 16-bit K (and V) tile per step (SmemPlan).
#define FLASHMFA_SM80_TILES_576(X) \
  X(576, 512, 16, 64, native) X(576, 512, 32, 64, native) X(576, 512, 64, 64, native) \
  X(576, 512, 16, 32, native) X(576, 512, 32, 32, native) X(576, 512, 64, 32, native)
#define FLASHMFA_SM80_TILES_576_fp8(X) \
  X(576, 512, 16, 64, fp8_mla) X(576, 512, 32, 64, fp8_mla) \
  X(576, 512, 16, 32, fp8_mla) X(576, 512, 32, 32, fp8_mla) X(576, 512, 64, 32, fp8_mla)
#define FLASHMFA_SM80_TILES_256(X) \
  X(256, 256, 16, 64, native) X(256, 256, 32, 64, native) X(256, 256, 64, 64, native) \
  X(256, 256, 64, 32, native)
#define FLASHMFA_SM80_TILES_256_fp8(X) \
  X(256, 256, 16, 64, fp8_row) X(256, 256, 32, 64, fp8_row) X(256, 256, 64, 64, fp8_row) \
  X(256, 256, 64, 32, fp8_row)
#define FLASHMFA_SM80_TILES_128(X) \
  X(128, 128, 16, 64, native) X(128, 128, 32, 64, native) X(128, 128, 64, 64, native)
#define FLASHMFA_SM80_TILES_128_fp8(X) \
  X(128, 128, 16, 64, fp8_row) X(128, 128, 32, 64, fp8_row) X(128, 128, 64, 64, fp8_row)
#define FLASHMFA_SM80_TILES_64(X) \
  X(64, 64, 16, 64, native) X(64, 64, 32, 64, native) X(64, 64, 64, 64, native)
#define FLASHMFA_SM80_TILES_64_fp8(X) \
  X(64, 64, 16, 64, fp8_row) X(64, 64, 32, 64, fp8_row) X(64, 64, 64, 64, fp8_row)

// The families, one instantiation file each (decode_d<D_K>.cu, decode_d<D_K>_fp8.cu).
#define FLASHMFA_SM80_FAMILIES(X) \
  X(576) X(256) X(128) X(64) X(576_fp8) X(256_fp8) X(128_fp8) X(64_fp8)

// Same-machine A/B switch of the bulk row copies (Traits::BULK_ROWS); on by default.
#ifndef FLASHMFA_SM80_BULK_ROWS
#define FLASHMFA_SM80_BULK_ROWS 1
#endif

namespace flashmfa::cuda::sm80 {

constexpr int kWarps = 8;                  // per CTA: 2 warps per SM sub-partition
constexpr int kThreads = kWarps * 32;
constexpr int kMmaM = 16, kMmaN = 8, kMmaK = 16;  // mma.sync.m16n8k16
constexpr int kElemBytes = 2;              // bf16 / f16
constexpr int kChunkBytes = 16;            // one cp.async / one ldmatrix row
constexpr int kChunkElems = kChunkBytes / kElemBytes;
constexpr int kMinStages = 2;              // one tile computing while the next one lands
constexpr int kMaxStages = 4;              // cp.async.wait_group dispatch covers 0..2 pending
constexpr int kSmemAlign = 128;

// Loads: 8 threads cover one 128-byte span of a row, so a warp instruction reads 4 rows x 128
// contiguous bytes; a pass of the CTA covers kLoadRowsPerPass rows.
constexpr int kLoadThreadsPerRow = 8;
constexpr int kLoadRowsPerPass = kThreads / kLoadThreadsPerRow;

// How the warps split the S = Q K^T tile (BLOCK_M x BLOCK_N): WM warps along M (16 mt rows
// each), WN along N (`cols` columns each); warps beyond WM * WN sit the S product out.
//
// ldmatrix traffic of the product is sum over S warps of (rows + cols) * D_K * 2 bytes, the
// MMA work is fixed: for the 64 x 64 tile of the wide heads (MLA, MFA: D_K >= 256), four
// 32 x 32 warp tiles read a third less shared memory than eight 16 x 32 ones (the S phase is
// bound by shared-memory bandwidth, not by the tensor pipe; MLA at 64 rows: 282 against 256
// TFLOP/s), and one warp per SM sub-partition still has 8 independent accumulators to cover
// ldmatrix latency. Narrow heads keep 16-row slices, whose 16 accumulator registers fit the
// 128-register budget of two CTAs per SM. The smaller (memory-bound) tiles spread over all 8
// warps; 8 warps would need 4-column slices for BLOCK_M = 16 with BLOCK_N = 32, narrower than
// an mma, so 4 of them sit out there.
struct SWarpGrid {
  int wm, wn, cols, mt;  // warps along M, along N, S columns per warp, 16-row m-tiles per warp
};
FLASHMFA_SM80_HD constexpr SWarpGrid s_warp_grid(int d_k, int block_m, int block_n) {
  constexpr int kWideRows = 32, kWideCols = 32;  // the 32 x 32 warp tile of the 64 x 64 S
  constexpr int kWideMinDk = 256;
  if (d_k >= kWideMinDk && block_m == 2 * kWideRows && block_n == 2 * kWideCols)
    return {block_m / kWideRows, block_n / kWideCols, kWideCols, kWideRows / kMmaM};
  const int wm = block_m / kMmaM;
  int wn = kWarps / wm;
  if (wn * kMmaN > block_n) wn = block_n / kMmaN;
  return {wm, wn, block_n / wn, 1};
}

FLASHMFA_SM80_HD constexpr size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

// Tiles whose K/V rows land by bulk copies on sm_90 builds (Traits::BULK_ROWS): MLA's 64 x 64
// 16-bit tile. Their stage rows are padded by one chunk instead of XOR-swizzled.
FLASHMFA_SM80_HD constexpr bool bulk_rows_tile(CacheFormat fmt, int d_k, int block_m, int block_n) {
  return FLASHMFA_SM80_BULK_ROWS && fmt == CacheFormat::native && d_k == 576 && block_m == 64 &&
         block_n == 64;
}
// Bytes from one K/V stage row to the next.
FLASHMFA_SM80_HD constexpr int stage_pitch(CacheFormat fmt, int d_k, int block_m, int block_n) {
  return d_k * kElemBytes + (bulk_rows_tile(fmt, d_k, block_m, block_n) ? kChunkBytes : 0);
}

// Bytes of one cached row as stored (the raw rows FP8 stages hold): MLA's 656-byte row, or
// `d` e4m3 bytes (fp8_row; the scale sits in its own array).
FLASHMFA_SM80_HD constexpr int raw_row_bytes(CacheFormat fmt, int d) {
  return fmt == CacheFormat::fp8_mla ? MlaFp8Row::kBytes : d;
}

// Byte offsets of the dynamic shared memory of one CTA.
//
//   q    (BLOCK_M, D_K)              T, swizzled      the query tile of the current work item
//   k    (STAGES, BLOCK_N, D_K)      T, swizzled      K rows (and V, when V aliases K)
//   v    (STAGES, BLOCK_N, D_K)      T, swizzled      separate V rows (absent when aliased);
//                                                     rows keep K's pitch so that PV reads V
//                                                     the same way from either buffer
//   p    (SPLITS, BLOCK_M, BLOCK_N)  T, swizzled      softmax numerators, shared by all warps:
//                                                     P rounded to T, and with split_p also
//                                                     the rounding residue P - T(P) (a second
//                                                     PV product brings P to ~16 bits)
//   red  (WN, BLOCK_M)               f32              row max, then row sum, across S warps
//   bad  (STAGES, BLOCK_N)           u8               1: the row's page was skipped
//   full (STAGES)                    mbarrier         bulk row copies only: the stage landed
//
// FP8 caches: the stages hold the rows as stored and k / v hold ONE dequantized tile each:
//
//   k, v    (1, BLOCK_N, D_K)        T, swizzled      the tile being computed, dequantized
//   raw_k   (STAGES, BLOCK_N, RAW_K) u8, row-major    K rows as cached (RAW_K: raw_row_bytes)
//   raw_v   (STAGES, BLOCK_N, D_V)   u8, row-major    separate V rows as cached
//   k_sc    (STAGES, BLOCK_N)        f32              fp8_row: the K rows' scales
//   v_sc    (STAGES, BLOCK_N)        f32              fp8_row, separate V: the V rows' scales
struct SmemPlan {
  size_t q = 0, k = 0, v = 0, p = 0, p_lo = 0, red = 0, bad = 0, full = 0, total = 0;
  size_t raw_k = 0, raw_v = 0, k_sc = 0, v_sc = 0;
  size_t k_stage = 0, v_stage = 0;          // bytes per stage of k / v (0 for FP8: one tile)
  size_t raw_k_stage = 0, raw_v_stage = 0;  // bytes per stage of raw_k / raw_v (FP8 only)

  FLASHMFA_SM80_HD constexpr SmemPlan(int d_k, int d_v, int block_m, int block_n, int stages,
                                       bool v_separate, bool split_p, CacheFormat fmt) {
    const bool fp8 = fmt != CacheFormat::native;
    const bool bulk_rows = bulk_rows_tile(fmt, d_k, block_m, block_n);
    const size_t tile = size_t(block_n) * stage_pitch(fmt, d_k, block_m, block_n);
    const int k_tiles = fp8 ? 1 : stages;
    k_stage = fp8 ? 0 : tile;
    v_stage = fp8 || !v_separate ? 0 : tile;
    q = 0;
    k = align_up(q + size_t(block_m) * d_k * kElemBytes, kSmemAlign);
    v = align_up(k + tile * k_tiles, kSmemAlign);
    p = align_up(v + (v_separate ? tile * k_tiles : 0), kSmemAlign);
    const size_t p_tile = size_t(block_m) * block_n * kElemBytes;
    p_lo = p + p_tile;
    red = align_up(p + p_tile * (split_p ? 2 : 1), kSmemAlign);
    bad = align_up(red + sizeof(float) * s_warp_grid(d_k, block_m, block_n).wn * block_m, kSmemAlign);
    full = align_up(bad + size_t(stages) * block_n, 8);
    size_t end = align_up(full + (bulk_rows ? sizeof(uint64_t) * stages : 0), kSmemAlign);
    if (fp8) {
      raw_k_stage = size_t(block_n) * raw_row_bytes(fmt, d_k);
      raw_v_stage = v_separate ? size_t(block_n) * raw_row_bytes(fmt, d_v) : 0;
      const bool row_scales = fmt == CacheFormat::fp8_row;
      raw_k = end;
      raw_v = align_up(raw_k + raw_k_stage * stages, kSmemAlign);
      k_sc = align_up(raw_v + raw_v_stage * stages, kSmemAlign);
      v_sc = align_up(k_sc + (row_scales ? sizeof(float) * stages * block_n : 0), kSmemAlign);
      end = align_up(v_sc + (row_scales && v_separate ? sizeof(float) * stages * block_n : 0),
                     kSmemAlign);
    }
    total = end;
  }
};

// One compiled tile shape, as the dispatch table lists it.
struct TileKey {
  DType dtype;
  CacheFormat fmt;
  int d_k, d_v, block_m, block_n;
  friend constexpr bool operator==(const TileKey&, const TileKey&) = default;
};

}  // namespace flashmfa::cuda::sm80
