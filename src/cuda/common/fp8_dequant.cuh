// flashmfa CUDA, both kernel families: e4m3 cache values to 16-bit tensor-core operands.
// An FP8 value reads as T(e4m3 * T(scale)), T = q's dtype, on every backend (docs/fp8.md); the
// portable kernel (sm80/decode/dequant.cuh) and the Hopper kernel's consumer warpgroups
// (sm90/decode/dequant.cuh) both turn 16-byte chunks of e4m3 into 16 T values here.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

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

// Per-row factors of dequant_chunk, two products: 2^-kPlacement (exact in T: 2^8, 2^120),
// which brings a placed value back to its e4m3 value exactly, then T(scale), whose product with
// it is rounded to T once. Exact for every scale; the portable kernel and f16 tiles use it.
template <class T>
struct RowScale {
  typename Pair<T>::Type unplace, mul;
  __device__ __forceinline__ explicit RowScale(float scale)
      : unplace(Pair<T>::splat(1.0f / E4m3Place<T>::kPlacement)), mul(Pair<T>::splat(scale)) {}
};

// The Hopper kernels' bf16 tiles hold every FP8 value times 2^-kFp8Shift (docs/perf-notes.md
// U.3), so that one product per two values does: the factor T(scale) * 2^(120 - kFp8Shift) is
// exact and finite for T(scale) < 2^kFp8MaxScaleLog2, and the product e4m3 * T(scale) *
// 2^-kFp8Shift is T(e4m3 * T(scale)) * 2^-kFp8Shift exactly while it stays normal, i.e. for
// every e4m3 value when T(scale) >= 2^kFp8MinScaleLog2 (bf16's exponent range has room for both;
// f16's has not, so f16 tiles keep RowScale). The kernels undo the shift where it is exact
// and free: scores through the softmax scale (times 2^kFp8Shift; MLA's unscaled RoPE part of Q
// times 2^-kFp8Shift instead), the output through its normalization (times 2^kFp8Shift). So
// for scales in [2^-85, 2^40) -- FP8 groups whose largest magnitude lies between about 1.2e-23 and
// 4.9e14 -- the results are the bits of the two-product form; larger scales overflow (inf),
// smaller ones lose their smallest values to zero. FLASHMFA_FP8_FOLD=0: RowScale everywhere
// (the two-product form, for A/B runs).
#ifndef FLASHMFA_FP8_FOLD
#define FLASHMFA_FP8_FOLD 1
#endif
// Measuring builds only (with FLASHMFA_MEASURE_TIME_FAILED): the folded conversion without its
// product, what a conversion would cost that leaves the scales to S and P (docs/perf-notes.md
// AA.1; moving them there measured slower, AA.2).
#ifndef FLASHMFA_MEASURE_FP8_NO_SCALE
#define FLASHMFA_MEASURE_FP8_NO_SCALE 0
#endif
constexpr int kFp8Shift = 32;
constexpr int kFp8MaxScaleLog2 = 128 - (120 - kFp8Shift);        // the factor stays finite
constexpr int kFp8MinScaleLog2 = -126 + kFp8Shift + 9;           // e4m3's smallest is 2^-9
static_assert(kFp8MaxScaleLog2 == 40 && kFp8MinScaleLog2 == -85, "the window documented above");
template <class T>
inline constexpr bool kFp8Folded = FLASHMFA_FP8_FOLD && std::is_same_v<T, __nv_bfloat16>;
// 2^kFp8Shift where T's tiles are folded, else 1: what scores and outputs are multiplied by.
template <class T>
inline constexpr float kFp8Unshift = kFp8Folded<T> ? 0x1p32f : 1.0f;
static_assert(0x1p32f == float(1ull << kFp8Shift), "kFp8Unshift is 2^kFp8Shift");

// One product: T(scale) * 2^(120 - kFp8Shift), rounded from the f32 scale times that power of
// two (the same bits as rounding the scale first: a power of two moves no rounding boundary).
struct FoldedRowScale {
  __nv_bfloat162 both;
  __device__ __forceinline__ explicit FoldedRowScale(float scale)
      : both(__float2bfloat162_rn(scale * 0x1p88f)) {}
};
static_assert(88 == 120 - kFp8Shift, "the folded factor's power of two, 2^(120 - kFp8Shift)");

// The Hopper kernels' per-row factors for T's tiles.
template <class T>
using TileRowScale = std::conditional_t<kFp8Folded<T>, FoldedRowScale, RowScale<T>>;

// 16 e4m3 values (one raw chunk, bytes lowest first) as 16 T values in out[0, 8), each placed
// value times rs's factors (RowScale or FoldedRowScale). Output words 2w, 2w + 1 take their
// bytes through prmt over (raw[w], raw[w ^ 2]) with sel01 / sel23: the default selectors read
// raw[w] (bytes 0, 1 / 2, 3 with their signs replicated); 0xd5c4 / 0xf7e6 read raw[w ^ 2]
// instead, so a lane can swap the chunk's halves at no cost (sm90/decode/dequant.cuh,
// convert_raw_tile).
template <class T, class Scale>
__device__ __forceinline__ void dequant_chunk(const uint32_t (&raw)[4], const Scale& rs,
                                              uint32_t (&out)[8], uint32_t sel01 = 0x9180u,
                                              uint32_t sel23 = 0xb3a2u) {
  using P = E4m3Place<T>;
  using T2 = typename Pair<T>::Type;
#pragma unroll
  for (int w = 0; w < 4; ++w) {
    uint32_t x01, x23;  // PTX prmt.b32, default mode (a selector's bit 3: replicate the sign)
    asm("prmt.b32 %0, %1, %2, %3;\n" : "=r"(x01) : "r"(raw[w]), "r"(raw[w ^ 2]), "r"(sel01));
    asm("prmt.b32 %0, %1, %2, %3;\n" : "=r"(x23) : "r"(raw[w]), "r"(raw[w ^ 2]), "r"(sel23));
    if constexpr (std::is_same_v<Scale, FoldedRowScale> && FLASHMFA_MEASURE_FP8_NO_SCALE) {
      out[2 * w] = (x01 << P::kShift) & P::kMask;  // measuring builds only: results wrong
      out[2 * w + 1] = (x23 << P::kShift) & P::kMask;
    } else if constexpr (std::is_same_v<Scale, FoldedRowScale>) {
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
