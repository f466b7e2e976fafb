// flashmfa CUDA, portable path: FP8 caches. After a stage of raw rows (as stored: e4m3 values,
// their scales, MLA's 16-bit RoPE tail) has landed, the CTA turns it into the one swizzled
// 16-bit K (and V) tile the products read, value = T(e4m3 * T(scale)). The mainloop is then the
// 16-bit one: the tensor cores see bf16 / f16 operands, and only the cache's bytes move from
// memory (656 instead of 1152 per MLA row, d + 4 instead of 2 d per fp8_row row).
//
// Thread `tid` converts rows (tid / 8) + 32 i of the tile and raw chunks (tid % 8) + 8 c of
// each (the loader's mapping); a 16-byte raw chunk (16 values) becomes two 16-byte T chunks.
#pragma once

#include <cstdint>

#include "cuda/common/fp8_dequant.cuh"
#include "cuda/sm80/decode/loader.cuh"
#include "cuda/sm80/decode/ptx.cuh"
#include "cuda/sm80/decode/traits.cuh"
#include "flashmfa/flashmfa.hpp"

namespace flashmfa::cuda::sm80 {

__device__ __forceinline__ void lds_v4(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void sts_v4(uint32_t addr, uint32_t a, uint32_t b, uint32_t c,
                                       uint32_t d) {
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(a), "r"(b), "r"(c),
               "r"(d)
               : "memory");
}
__device__ __forceinline__ float lds_f32(uint32_t addr) {
  float v;
  asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(v) : "r"(addr));
  return v;
}

// Raw chunk `chunk` (16 e4m3 values, columns 16 chunk ..) of a raw row, dequantized with
// `scale`, into T chunks 2 chunk and 2 chunk + 1 of row `row` of a swizzled tile.
template <class Tr>
__device__ __forceinline__ void dequant_to_tile(uint32_t src, const RowScale<typename Tr::T>& rs,
                                                uint32_t tile, int row, int chunk) {
  uint32_t raw[4], out[8];
  lds_v4(src, raw);
  dequant_chunk<typename Tr::T>(raw, rs, out);
  sts_v4(tile + swizzle<Tr::KV_ROW_BYTES>(row, 2 * chunk), out[0], out[1], out[2], out[3]);
  sts_v4(tile + swizzle<Tr::KV_ROW_BYTES>(row, 2 * chunk + 1), out[4], out[5], out[6], out[7]);
}

// Dequantizes one stage: raw K rows (and separate V rows) into the k (and v) tiles. Must be
// followed by a CTA barrier before the tiles are read.
template <class Tr>
__device__ void dequantize_stage(const StageDst& raw, uint32_t k_tile, uint32_t v_tile,
                                 bool v_separate) {
  using T = typename Tr::T;
  constexpr int ROWS = Tr::BLOCK_N / kLoadRowsPerPass;
  const int row_lane = threadIdx.x / kLoadThreadsPerRow, chunk_lane = threadIdx.x % kLoadThreadsPerRow;
#pragma unroll
  for (int i = 0; i < ROWS; ++i) {
    const int row = row_lane + kLoadRowsPerPass * i;
    if constexpr (Tr::FMT == CacheFormat::fp8_mla) {
      // MLA's row: 512 e4m3 (4 groups of 128 = 8 chunks, one f32 scale each), the scales,
      // then the 64-value RoPE tail already in T (copied: columns 512 .. 575).
      const uint32_t src = raw.k + row * Tr::RAW_K_ROW_BYTES;
      constexpr int kGroupChunks = MlaFp8Row::kGroup / kChunkBytes;
      static_assert(kGroupChunks == kLoadThreadsPerRow, "chunk c + 8 g lies in group g");
#pragma unroll
      for (int g = 0; g < MlaFp8Row::kScales; ++g) {
        const RowScale<T> rs(lds_f32(src + MlaFp8Row::kScaleOffset + g * sizeof(float)));
        const int chunk = chunk_lane + kGroupChunks * g;
        dequant_to_tile<Tr>(src + chunk * kChunkBytes, rs, k_tile, row, chunk);
      }
      constexpr int kRopeChunks = MlaFp8Row::kRope * 2 / kChunkBytes;
      static_assert(kRopeChunks == kLoadThreadsPerRow, "one RoPE chunk per thread");
      uint32_t r[4];
      lds_v4(src + MlaFp8Row::kRopeOffset + chunk_lane * kChunkBytes, r);
      sts_v4(k_tile + swizzle<Tr::KV_ROW_BYTES>(row, 2 * (MlaFp8Row::kLatent / kChunkBytes) +
                                                         chunk_lane),
             r[0], r[1], r[2], r[3]);
    } else {
      const RowScale<T> k_scale(lds_f32(raw.k_sc + row * sizeof(float)));
#pragma unroll
      for (int c = 0; c < Tr::RAW_K_PASSES; ++c) {
        const int chunk = chunk_lane + kLoadThreadsPerRow * c;
        if (chunk < Tr::RAW_K_CHUNKS)
          dequant_to_tile<Tr>(raw.k + row * Tr::RAW_K_ROW_BYTES + chunk * kChunkBytes, k_scale,
                              k_tile, row, chunk);
      }
      if (v_separate) {
        const RowScale<T> v_scale(lds_f32(raw.v_sc + row * sizeof(float)));
#pragma unroll
        for (int c = 0; c < Tr::RAW_V_PASSES; ++c) {
          const int chunk = chunk_lane + kLoadThreadsPerRow * c;
          if (chunk < Tr::RAW_V_CHUNKS)
            dequant_to_tile<Tr>(raw.v + row * Tr::RAW_V_ROW_BYTES + chunk * kChunkBytes,
                                v_scale, v_tile, row, chunk);
        }
      }
    }
  }
}

}  // namespace flashmfa::cuda::sm80
