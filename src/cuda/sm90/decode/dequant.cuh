// flashmfa CUDA, Hopper path, FP8 caches: the consumers' conversion of a raw slot (64 rows of D
// e4m3 bytes, then their 64 f32 scales, producer.cuh) into a 16-bit tile in the layout TMA
// would have written (128B-swizzled atoms), value = T(e4m3 * T(scale)) (common/
// fp8_dequant.cuh, the portable kernel's arithmetic; bf16 tiles hold it times 2^-kFp8Shift,
// which the consumers undo in the softmax scale and the output's normalization). Each consumer
// warpgroup converts the tiles it owns into its own 16-bit tile and runs its GEMMs on that
// (consumer.cuh, take_raw):
//
//   wait raw_full[r] -> convert -> fence.proxy.async -> arrive raw_empty[r] -> wgmma
//
// The fence orders the generic-proxy stores before wgmma (async proxy) reads them.
#pragma once

#include <type_traits>

#include "cuda/common/fp8_dequant.cuh"
#include "cuda/sm90/decode/ptx.cuh"
#include "cuda/sm90/decode/traits.cuh"

namespace flashmfa::cuda::sm90 {

// The raw slot `raw` into the 16-bit swizzled tile `dst` by one warpgroup (this thread: t),
// rows [valid, 64) written as zeros (a V tile's rows past the sequence must not hold NaN, and
// the raw rows there may be stale or NaN bytes).
//
// Thread t owns the 16-byte chunk column col = t % ROW_CHUNKS (16 e4m3 -> 16-bit units 2 col
// and 2 col + 1) of rows row0 + ROWS_PER_PASS i, row0 = t / ROW_CHUNKS. ROWS_PER_PASS is a
// multiple of the 8-row swizzle period, so each of the thread's addresses is a fixed base plus a
// compile-time step and the tile is PASSES straight-line passes; the loads of BATCH passes are
// issued before their conversions (shared-memory accesses are volatile asm: nothing moves
// across a store). Per store instruction, lanes 0-3 and 4-7 write units of two atoms at the
// same offsets, so the second group (col bit 2 set) stores its chunk's halves in the other
// order, which keeps each phase's eight 16-byte stores in distinct banks; that lane takes its
// first half from bytes 8-15 through its prmt selectors, so no registers are swapped.
template <class T, int D, int BATCH = 4>
__device__ __forceinline__ void convert_raw_tile(uint32_t raw, uint32_t dst, int t, int valid) {
  constexpr int kThreads = kWarpgroupThreads;
  constexpr int kRowChunks = D / 16;
  constexpr int kRowsPerPass = kThreads / kRowChunks;
  constexpr int kPasses = kBlockN / kRowsPerPass;
  static_assert(kThreads % kRowChunks == 0 && kRowsPerPass % kSwizzleGroupRows == 0,
                "a thread's rows share one swizzle phase");
  static_assert(kPasses % BATCH == 0, "whole batches");
  constexpr uint32_t kTileBytes = uint32_t(kBlockN) * D;
  const int col = t % kRowChunks, row0 = t / kRowChunks;
  const int flip = (col >> 2) & 1;
  const uint32_t src = raw + uint32_t(t) * 16;
  const uint32_t scale_at = raw + kTileBytes + uint32_t(row0) * uint32_t(sizeof(float));
  const uint32_t first = dst + swizzled_offset(row0, 2 * col + flip);
  const uint32_t second = dst + swizzled_offset(row0, 2 * col + 1 - flip);
  const uint32_t sel01 = flip ? 0xd5c4u : 0x9180u, sel23 = flip ? 0xf7e6u : 0xb3a2u;
  auto passes = [&](auto full) {
#pragma unroll
    for (int b = 0; b < kPasses; b += BATCH) {
      uint32_t in[BATCH][4];
      float scale[BATCH];
#pragma unroll
      for (int j = 0; j < BATCH; ++j) {
        ld_shared(src + uint32_t((b + j) * kThreads * 16), in[j]);
        scale[j] = __int_as_float(
            ld_shared_s32(scale_at + uint32_t((b + j) * kRowsPerPass) * uint32_t(sizeof(float))));
      }
#pragma unroll
      for (int j = 0; j < BATCH; ++j) {
        uint32_t out[8];
        dequant_chunk<T>(in[j], TileRowScale<T>(scale[j]), out, sel01, sel23);
        if constexpr (!decltype(full)::value) {
          const bool keep = row0 + (b + j) * kRowsPerPass < valid;
#pragma unroll
          for (int k = 0; k < 8; ++k) out[k] = keep ? out[k] : 0u;
        }
        const uint32_t step = uint32_t((b + j) * kRowsPerPass * kSwizzleRowBytes);
        st_shared(first + step, make_uint4(out[0], out[1], out[2], out[3]));
        st_shared(second + step, make_uint4(out[4], out[5], out[6], out[7]));
      }
    }
  };
  // valid is uniform over the warpgroup: one branch per tile, none per pass.
  if (valid == kBlockN) passes(std::true_type{});
  else passes(std::false_type{});
}

}  // namespace flashmfa::cuda::sm90
