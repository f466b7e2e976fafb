// flashmfa CUDA, both kernel families: e4m3 cache values to 16-bit tensor-core operands.
// An FP8 value reads as T(e4m3 * T(scale)), T = q's dtype, on every backend (docs/fp8.md); the
// portable kernel (sm80/decode/dequant.cuh) and the Hopper kernel's consumer warpgroups
// (sm90/decode/dequant.cuh) both turn 16-byte chunks of e4m3 into 16 T values here.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace flashmfa::cuda {

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

// FLASHMFA_FP8_ONE_FACTOR (default 0; docs/perf-notes.md U.1): the Hopper kernels' conversions
// multiply a placed value by one factor, 2^-kPlacement * T(scale), instead of two, wherever every
// row of a warp's batch has |T(scale)| < kOneFactorLimit (2^8). The factor is then exact (a
// power of two times a T value, finite in T) and the product e4m3 * T(scale) is rounded to T
// once, as before: the same bits, one HMUL2 per two values fewer.
#ifndef FLASHMFA_FP8_ONE_FACTOR
#define FLASHMFA_FP8_ONE_FACTOR 0
#endif
constexpr bool kFp8OneFactor = FLASHMFA_FP8_ONE_FACTOR != 0;
// 2: measuring builds only -- one factor on every row, no branch (wrong for |T(scale)| >= 2^8).
constexpr bool kFp8OneFactorAlways = FLASHMFA_FP8_ONE_FACTOR == 2;
constexpr float kOneFactorLimit = 0x1p8f;  // bf16: 2^120 * 255 is its largest; f16: 2^8 * 255.875

// Per-row factors of dequant_chunk: 2^-kPlacement (exact in T: 2^8, 2^120), which brings a
// placed value back to its e4m3 value exactly, then T(scale), whose product with it is rounded
// to T once. Folding both into one factor would overflow T for large scales, so the folded
// factor (`both`) serves only rows whose scale passes one_factor_ok().
template <class T>
struct RowScale {
  typename Pair<T>::Type unplace, mul, both;
  __device__ __forceinline__ explicit RowScale(float scale)
      : unplace(Pair<T>::splat(1.0f / E4m3Place<T>::kPlacement)), mul(Pair<T>::splat(scale)) {
    if constexpr (kFp8OneFactor) both = __hmul2(unplace, mul);  // exact, see above
  }
  // Whether `both` is exact for this row (false for NaN and infinite scales).
  __device__ __forceinline__ bool one_factor_ok() const {
    return fabsf(__low2float(mul)) < kOneFactorLimit;
  }
};

// Whether the whole warp may take one factor per value (`ok`: this lane's rows allow it). Call
// with every lane of the warp.
__device__ __forceinline__ bool warp_one_factor(bool ok) {
  return kFp8OneFactorAlways || __all_sync(0xffffffffu, ok);
}

// 16 e4m3 values (one raw chunk, bytes lowest first) as 16 T values in out[0, 8). Output words
// 2w, 2w + 1 take their bytes through prmt over (raw[w], raw[w ^ 2]) with sel01 / sel23: the
// default selectors read raw[w] (bytes 0, 1 / 2, 3 with their signs replicated); 0xd5c4 /
// 0xf7e6 read raw[w ^ 2] instead, so a lane can swap the chunk's halves at no cost
// (sm90/decode/dequant.cuh, convert_raw_tile_wg).
// ONE_FACTOR: one product with rs.both (only where rs.one_factor_ok() holds).
template <class T, bool ONE_FACTOR = false>
__device__ __forceinline__ void dequant_chunk(const uint32_t (&raw)[4], const RowScale<T>& rs,
                                              uint32_t (&out)[8], uint32_t sel01 = 0x9180u,
                                              uint32_t sel23 = 0xb3a2u) {
  using P = E4m3Place<T>;
  using T2 = typename Pair<T>::Type;
#pragma unroll
  for (int w = 0; w < 4; ++w) {
    uint32_t x01, x23;  // PTX prmt.b32, default mode (a selector's bit 3: replicate the sign)
    asm("prmt.b32 %0, %1, %2, %3;\n" : "=r"(x01) : "r"(raw[w]), "r"(raw[w ^ 2]), "r"(sel01));
    asm("prmt.b32 %0, %1, %2, %3;\n" : "=r"(x23) : "r"(raw[w]), "r"(raw[w ^ 2]), "r"(sel23));
    if constexpr (ONE_FACTOR) {
      out[2 * w] = bits_of(__hmul2(from_bits<T2>((x01 << P::kShift) & P::kMask), rs.both));
      out[2 * w + 1] = bits_of(__hmul2(from_bits<T2>((x23 << P::kShift) & P::kMask), rs.both));
    } else {
      const T2 v01 = __hmul2(from_bits<T2>((x01 << P::kShift) & P::kMask), rs.unplace);
      const T2 v23 = __hmul2(from_bits<T2>((x23 << P::kShift) & P::kMask), rs.unplace);
      out[2 * w] = bits_of(__hmul2(v01, rs.mul));
      out[2 * w + 1] = bits_of(__hmul2(v23, rs.mul));
    }
  }
}

}  // namespace flashmfa::cuda
