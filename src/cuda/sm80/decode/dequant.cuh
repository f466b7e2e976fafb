// flashmfa CUDA, portable path: FP8 caches. After a stage of raw rows (as stored: e4m3 values,
// their scales, MLA's 16-bit RoPE tail) has landed, the CTA turns it into the one swizzled
// 16-bit K (and V) tile the products read, value = T(e4m3 * T(scale)). The mainloop is then the
// 16-bit one: the tensor cores see bf16 / f16 operands, and only the cache's bytes move from
// memory (656 instead of 1152 per MLA row, d + 4 instead of 2 d per fp8_row row).
//
// Thread `tid` converts rows (tid / 8) + 32 i of the tile and raw chunks (tid % 8) + 8 c of
// each (the loader's mapping); a 16-byte raw chunk (16 values) becomes two 16-byte T chunks.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/sm80/decode/loader.cuh"
#include "cuda/sm80/decode/ptx.cuh"
#include "cuda/sm80/decode/traits.cuh"
#include "flashmfa/flashmfa.hpp"

namespace flashmfa::cuda::sm80 {

// Values are T(e4m3 * T(scale)): the product of a 4-bit and an (at most) 11-bit significand is
// exact in any float, so this is one rounding to T, and the CPU backend computes the same bits
// (cpu/cache_rows.hpp). The arithmetic stays in the 16-bit units, and the e4m3 bits are put in
// place with integer ops: conversion instructions (cvt: e4m3 -> f16, f16 -> f32, f32 -> T)
// issue at a quarter of the integer rate and made the first version of this pass compute-bound
// (MLA h_q 16 ran at 48% of its FP8 roofline).
//
// Placement: byte S.EEEE.MMM becomes the T value with the same sign, exponent field EEEE and
// mantissa MMM0..: an exact e4m3 value (subnormals included) times 2^(7 - T's bias), i.e.
// 2^-8 for f16 and 2^-120 for bf16 (kPlacement); PRMT's sign-replicating selectors give each
// 16-bit half [S x 8 | byte], one shift moves the byte into place and one AND keeps the sign,
// exponent and mantissa bits. e4m3's NaN byte (S.1111.111) reads as +-480 * scale: append_kv
// never writes it (it saturates to +-448).
template <class T>
struct E4m3Place;
template <>
struct E4m3Place<__half> {
  static constexpr int kShift = 7;                 // byte bits 6..0 -> f16 bits 13..7
  static constexpr uint32_t kMask = 0xbf80bf80u;   // sign, exponent 5 bits, mantissa 3 bits
  static constexpr float kPlacement = 0x1p-8f;
};
template <>
struct E4m3Place<__nv_bfloat16> {
  static constexpr int kShift = 4;                 // byte bits 6..0 -> bf16 bits 10..4
  static constexpr uint32_t kMask = 0x87f087f0u;
  static constexpr float kPlacement = 0x1p-120f;
};

// PTX prmt.b32 (default mode) of x: result byte i is byte (sel_i & 7) of x, or, where sel_i has
// bit 3 set, that byte's sign bit replicated 8 times. Inline PTX: CUDA's __byte_perm documents
// 3-bit selectors only.
__device__ __forceinline__ uint32_t prmt_sign(uint32_t x, uint32_t sel) {
  uint32_t r;
  asm("prmt.b32 %0, %1, 0, %2;\n" : "=r"(r) : "r"(x), "r"(sel));
  return r;
}

// Two 16-bit lanes as one word, and back.
template <class T2>
__device__ __forceinline__ uint32_t bits_of(T2 v) {
  return *reinterpret_cast<const uint32_t*>(&v);
}
template <class T2>
__device__ __forceinline__ T2 from_bits(uint32_t w) {
  return *reinterpret_cast<const T2*>(&w);
}

template <class T>
struct Pair;
template <>
struct Pair<__half> {
  using Type = __half2;
  static __device__ __forceinline__ Type splat(float x) { return __float2half2_rn(x); }
};
template <>
struct Pair<__nv_bfloat16> {
  using Type = __nv_bfloat162;
  static __device__ __forceinline__ Type splat(float x) { return __float2bfloat162_rn(x); }
};

// Per-row factors of dequant_chunk: 2^-kPlacement (exact in T: 2^8, 2^120), which brings a
// placed value back to its e4m3 value exactly, then T(scale), whose product with it is rounded
// to T once. (Folding both into one factor would overflow T for large scales.)
template <class T>
struct RowScale {
  typename Pair<T>::Type unplace, mul;
  __device__ __forceinline__ explicit RowScale(float scale)
      : unplace(Pair<T>::splat(1.0f / E4m3Place<T>::kPlacement)), mul(Pair<T>::splat(scale)) {}
};

// 16 e4m3 values (one raw chunk, bytes lowest first) as 16 T values in out[0, 8).
template <class T>
__device__ __forceinline__ void dequant_chunk(const uint32_t (&raw)[4], const RowScale<T>& rs,
                                              uint32_t (&out)[8]) {
  using P = E4m3Place<T>;
  using T2 = typename Pair<T>::Type;
#pragma unroll
  for (int w = 0; w < 4; ++w) {
    // Bytes 0, 1 (then 2, 3) into the two halves, each above its replicated sign.
    const uint32_t x01 = prmt_sign(raw[w], 0x9180), x23 = prmt_sign(raw[w], 0xb3a2);
    const T2 v01 = __hmul2(from_bits<T2>((x01 << P::kShift) & P::kMask), rs.unplace);  // exact
    const T2 v23 = __hmul2(from_bits<T2>((x23 << P::kShift) & P::kMask), rs.unplace);
    out[2 * w] = bits_of(__hmul2(v01, rs.mul));  // the one rounding to T
    out[2 * w + 1] = bits_of(__hmul2(v23, rs.mul));
  }
}

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
