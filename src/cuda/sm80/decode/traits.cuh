// flashmfa CUDA, portable path: compile-time traits of one instantiation of the sm_80 decode
// kernel (warp roles, fragment counts, swizzled shared-memory addressing) and the kernel's
// by-value parameter block.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "core/params.hpp"
#include "cuda/common/schedule.cuh"
#include "cuda/sm80/decode/config.hpp"

// Same-machine A/B switch of the K/V loader split (Traits::SPLIT_LOADS); on by default.
#ifndef FLASHMFA_SM80_SPLIT_LOADS
#define FLASHMFA_SM80_SPLIT_LOADS 1
#endif

namespace flashmfa::cuda::sm80 {

// Everything the kernel reads, passed by value (one launch argument).
struct KernelParams {
  detail::DecodeParams p;
  Schedule sched;
  int stages;         // K/V pipeline depth, kMinStages..kMaxStages (choose() fits it to smem)
  float scale_log2;   // softmax_scale * log2(e): scores live in the exp2 domain
  // P V as two products, T(P) V + T(P - T(P)) V: P then carries ~16 significant bits instead
  // of T's 8 (bf16) or 11 (f16). Rounding P to T alone is what FlashAttention and FlashMLA do;
  // its error, up to 2^-9 of the largest weights' V rows for bf16, exceeds a 8e-4 absolute
  // tolerance on peaked softmax rows. Costs a second PV product (free where memory-bound).
  bool split_p;
  // Vector paths, decided on the host from pointers and strides. 16-byte cp.async needs every
  // row start 16-byte aligned; 4-byte output stores need even element offsets. A view that
  // breaks this (odd strides, offset data pointers) takes the element-wise path: slow, correct.
  bool kv_vec, q_vec, out_vec;
};

// Swizzled byte offset of 16-byte chunk `chunk` of row `row` in a row-major tile whose rows
// are ROW_BYTES long. The chunk index is XOR-ed with the row's position within a 128-byte
// line group, so that the 8 rows an ldmatrix (or a cp.async warp instruction) touches at one
// logical column fall into 8 different bank groups instead of one.
//   ROW_BYTES >= 128 (a multiple of 128): chunk ^ (row % 8) inside each 8-chunk group.
//   ROW_BYTES == 64: two rows share a 128-byte line; chunk ^ ((row / 2) % 4).
template <int ROW_BYTES>
__device__ __forceinline__ uint32_t swizzle(int row, int chunk) {
  static_assert(ROW_BYTES == 64 || ROW_BYTES % 128 == 0, "rows of 64 or k * 128 bytes");
  if constexpr (ROW_BYTES == 64)
    return uint32_t(row * ROW_BYTES + ((chunk ^ ((row >> 1) & 3)) << 4));
  else
    return uint32_t(row * ROW_BYTES + ((chunk ^ (row & 7)) << 4));
}

template <class T_, int D_K_, int D_V_, int BLOCK_M_, int BLOCK_N_, CacheFormat FMT_>
struct Traits {
  using T = T_;
  static constexpr int D_K = D_K_, D_V = D_V_, BLOCK_M = BLOCK_M_, BLOCK_N = BLOCK_N_;

  // How cached rows are stored (flashmfa.hpp, CacheFormat). FP8 rows land in shared memory as
  // stored (raw stages) and are dequantized to T once per tile (dequant.cuh).
  static constexpr CacheFormat FMT = FMT_;
  static constexpr bool FP8 = FMT != CacheFormat::native;
  static constexpr int RAW_K_ROW_BYTES = raw_row_bytes(FMT, D_K);
  static constexpr int RAW_V_ROW_BYTES = raw_row_bytes(FMT, D_V);
  static constexpr int RAW_K_CHUNKS = RAW_K_ROW_BYTES / kChunkBytes;
  static constexpr int RAW_V_CHUNKS = RAW_V_ROW_BYTES / kChunkBytes;
  // 16-byte chunks of a raw row each of a row's 8 loader threads covers (the last pass partly).
  static constexpr int RAW_K_PASSES = (RAW_K_CHUNKS + kLoadThreadsPerRow - 1) / kLoadThreadsPerRow;
  static constexpr int RAW_V_PASSES = (RAW_V_CHUNKS + kLoadThreadsPerRow - 1) / kLoadThreadsPerRow;

  // S = Q K^T: warp (wm, wn) owns rows [S_ROWS wm, +S_ROWS) x columns [S_COLS wn, +S_COLS).
  static constexpr SWarpGrid kGrid = s_warp_grid(D_K, BLOCK_M, BLOCK_N);
  static constexpr int WM = kGrid.wm, WN = kGrid.wn, S_COLS = kGrid.cols;
  static constexpr int S_MT = kGrid.mt, S_ROWS = S_MT * kMmaM;  // m-tiles / rows per S warp
  static constexpr int S_WARPS = WM * WN;
  static constexpr int S_NT = S_COLS / kMmaN;  // n-tiles of S per warp
  static constexpr int K_STEPS = D_K / kMmaK;  // k-steps of Q K^T

  // O += P V: every warp owns all BLOCK_M rows x a D_V / 8 column slice, so one V fragment
  // feeds BLOCK_M / 16 MMAs (a 64 x 512 fp32 O would not fit one warp set's registers whole).
  static constexpr int MT = BLOCK_M / kMmaM;
  static constexpr int O_COLS = D_V / kWarps;
  static constexpr int O_NT = O_COLS / kMmaN;
  static constexpr int PV_STEPS = BLOCK_N / kMmaK;

  // Shared-memory pitches. V rows keep K's pitch whether V aliases K or not (SmemPlan).
  static constexpr int KV_ROW_BYTES = D_K * kElemBytes;
  static constexpr int P_ROW_BYTES = BLOCK_N * kElemBytes;
  static constexpr int K_CHUNKS = D_K / kChunkElems;  // 16-byte chunks per K row
  static constexpr int V_CHUNKS = D_V / kChunkElems;

  // K/V loads. The wide S grid (four 32 x 32 warp tiles of a 16-bit cache's 64 x 64 tile)
  // leaves warps S_WARPS.. idle during S = Q K^T: they issue every K/V copy, so the S warps go
  // from barrier A straight to their MMAs (ncu, MLA h_q 128: the copies' issue took 18% of the
  // warp samples, on the S warps' path). Elsewhere all warps share the copies. Loader thread
  // l = tid - KV_LOAD_FIRST_THREAD covers rows (l / 8) + KV_ROWS_PER_PASS i, chunks (l % 8) + 8 c.
  static constexpr bool SPLIT_LOADS =
      FLASHMFA_SM80_SPLIT_LOADS && !FP8 && S_WARPS < kWarps && S_MT > 1;
  static constexpr int KV_LOAD_FIRST_THREAD = SPLIT_LOADS ? S_WARPS * 32 : 0;
  static constexpr int KV_ROWS_PER_PASS = (kThreads - KV_LOAD_FIRST_THREAD) / kLoadThreadsPerRow;
  static constexpr int LOAD_ROWS = BLOCK_N / KV_ROWS_PER_PASS;  // KV rows per loader thread
  // The compute-bound MLA tile (64 x 64, 576-wide 16-bit rows) on sm_90 builds: each K/V row
  // lands with one bulk copy (cp.async.bulk, completing on the stage's mbarrier) instead of 72
  // cp.async chunks, so S = Q K^T no longer shares the LSU with 4608 copies per tile. Bulk
  // copies write rows as they are, so the stages use rows padded by one chunk (STAGE_PITCH:
  // an ldmatrix's 8 rows at one chunk start on banks 4 r + 4 c, conflict-free) instead of the
  // XOR swizzle. The layout is the tile's on every target; sm_80 builds fill it with cp.async.
  static constexpr bool BULK_ROWS = bulk_rows_tile(FMT, D_K, BLOCK_M, BLOCK_N);
  static constexpr int STAGE_PITCH = stage_pitch(FMT, D_K, BLOCK_M, BLOCK_N);
  // Byte offset of 16-byte chunk `chunk` of row `row` in a K/V stage.
  __device__ static uint32_t stage_offset(int row, int chunk) {
    if constexpr (BULK_ROWS) return uint32_t(row * STAGE_PITCH + chunk * kChunkBytes);
    else return swizzle<KV_ROW_BYTES>(row, chunk);
  }

  // Q (all threads): rows (tid / 8) + 32 i.
  static constexpr int Q_PASSES = (BLOCK_M + kLoadRowsPerPass - 1) / kLoadRowsPerPass;
  static constexpr int K_CHUNKS_PER_THREAD = K_CHUNKS / kLoadThreadsPerRow;
  static constexpr int V_CHUNKS_PER_THREAD = V_CHUNKS / kLoadThreadsPerRow;

  // Register budget: two CTAs of 256 threads leave 128 registers a thread. Past 64 O floats a
  // thread, or with 64-row tiles of D_K >= 128 (S, P and O fragments together: sm_80's ptxas
  // spilled there), ask for one CTA and let ptxas use up to 255.
  static constexpr int O_REGS = MT * O_NT * 4;
  static constexpr int kTwoCtaMaxDk = 64;
  static constexpr int MIN_BLOCKS =
      O_REGS >= 64 || (BLOCK_M == kWarps * kMmaM / 2 && D_K > kTwoCtaMaxDk) ? 1 : 2;

  static_assert(BLOCK_M % kMmaM == 0 && BLOCK_M <= kWarps * kMmaM, "BLOCK_M: 16, 32 or 64");
  static_assert(WM * S_ROWS == BLOCK_M && WN * S_COLS == BLOCK_N && S_WARPS <= kWarps,
                "the S warps tile S exactly");
  static_assert(BLOCK_N % kLoadRowsPerPass == 0, "BLOCK_N: a multiple of 32");
  static_assert(BLOCK_N % KV_ROWS_PER_PASS == 0, "whole passes of the K/V loader threads");
  static_assert(S_COLS % kMmaN == 0 && (S_NT == 1 || S_NT % 2 == 0), "S slice: 8 or 16k cols");
  static_assert(O_COLS % kMmaN == 0 && (O_NT == 1 || O_NT % 2 == 0), "O slice: 8 or 16k cols");
  static_assert(K_CHUNKS % kLoadThreadsPerRow == 0, "D_K: a multiple of 64");
  static_assert(V_CHUNKS % kLoadThreadsPerRow == 0, "D_V: a multiple of 64");
  static_assert(D_V <= D_K, "V is read with K's row pitch");
  static_assert(KV_ROW_BYTES % 128 == 0, "swizzle groups of 8 chunks per K row");
  static_assert(P_ROW_BYTES == 64 || P_ROW_BYTES == 128, "P rows: BLOCK_N 32 or 64");
  static_assert(RAW_K_ROW_BYTES % kChunkBytes == 0 && RAW_V_ROW_BYTES % kChunkBytes == 0,
                "raw rows: whole 16-byte chunks");
  static_assert(FMT != CacheFormat::fp8_mla ||
                    (D_K == MlaFp8Row::kLatent + MlaFp8Row::kRope && D_V == MlaFp8Row::kLatent),
                "fp8_mla: MLA's 576 / 512 rows");
};

}  // namespace flashmfa::cuda::sm80
