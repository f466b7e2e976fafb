// flashmfa internal: the float8 e4m3 ("e4m3fn": no infinities, one NaN pattern per sign, largest
// finite 448) codec and the scale rule of the FP8 cache formats (flashmfa.hpp, CacheFormat).
// The encoder and the scale rule are host and device code: the CPU backend and the CUDA append
// kernel call the same functions, so both write the same bytes. They use integer arithmetic and
// correctly rounded division only; device code must not be built with flush-to-zero
// (--use_fast_math, -ftz=true), which would change rows of subnormal values.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__CUDACC__)
#define FLASHMFA_FP8_HD __host__ __device__
#else
#define FLASHMFA_FP8_HD
#endif

namespace flashmfa::detail {

constexpr float kE4m3Max = 448.0f;

// e4m3 bits -> float, exactly: sign, 4 exponent bits (bias 7), 3 mantissa bits; exponent 0 is
// subnormal (m * 2^-9); S.1111.111 is NaN.
constexpr float e4m3_to_float(uint8_t bits) {
  const int e = (bits >> 3) & 15, m = bits & 7;
  float v = 0.0f;
  if (e == 15 && m == 7) {
    v = std::numeric_limits<float>::quiet_NaN();
  } else if (e == 0) {
    v = float(m) * 0x1p-9f;
  } else {
    v = float(8 + m);  // (1 + m / 8) * 2^(e - 7) = (8 + m) * 2^(e - 10)
    for (int k = e - 10; k > 0; --k) v *= 2.0f;
    for (int k = e - 10; k < 0; ++k) v *= 0.5f;
  }
  return (bits & 0x80) ? -v : v;
}

// x / y rounded to nearest even. Device code says so explicitly: under -prec-div=false nvcc
// turns `/` into an approximation.
FLASHMFA_FP8_HD inline float div_rn(float x, float y) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(x, y);
#else
  return x / y;
#endif
}

FLASHMFA_FP8_HD inline uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
#endif
}

// float -> e4m3 bits, rounding to nearest (ties to even) and saturating to +-448 (what
// cvt.rn.satfinite.e4m3x2.f32 does on the GPU); every NaN gives 0x7f. Works on the bits: an
// f32 with biased exponent E and significand s (24 bits with the implicit one) holds
// s * 2^(max(E, 1) - 150); e4m3 keeps 3 fraction bits from 2^-6 up, multiples of 2^-9 below.
FLASHMFA_FP8_HD inline uint8_t float_to_e4m3(float x) {
  constexpr int kF32Bias = 127, kF32Frac = 23, kE4m3Bias = 7, kE4m3Frac = 3;
  constexpr uint32_t kAbsMask = 0x7fffffffu, kFracMask = 0x7fffffu, kInfBits = 0x7f800000u;
  constexpr uint32_t kMaxBits = 0x43e00000u;        // 448.0f
  constexpr uint32_t kMinNormalBits = 0x3c800000u;  // 2^-6, e4m3's smallest normal
  constexpr uint8_t kNan = 0x7f, kMaxFinite = 0x7e;
  const uint32_t u = float_bits(x), a = u & kAbsMask;
  if (a > kInfBits) return kNan;
  const uint8_t sign = uint8_t((u >> 24) & 0x80);
  if (a >= kMaxBits) return sign | kMaxFinite;
  if (a >= kMinNormalBits) {
    // Rebias the exponent in place, then round away all but 3 fraction bits; a carry out of
    // the fraction bumps the exponent, as it should (below 448 it never passes 0x7e).
    constexpr int kDrop = kF32Frac - kE4m3Frac;
    const uint32_t r = a - (uint32_t(kF32Bias - kE4m3Bias) << kF32Frac);
    const uint32_t lsb = (r >> kDrop) & 1;
    return sign | uint8_t((r + (1u << (kDrop - 1)) - 1 + lsb) >> kDrop);
  }
  // Below 2^-6: the nearest multiple of 2^-9 = 2^(1 - kE4m3Bias - kE4m3Frac), as a count
  // s >> shift rounded to even; a count of 8 is the smallest normal (bits 0x08), as it should.
  constexpr int kUnitShift = kF32Bias + kF32Frac - (kE4m3Bias - 1 + kE4m3Frac);  // 141
  const int e = int(a >> kF32Frac);
  const uint32_t s = e == 0 ? a : (a & kFracMask) | (1u << kF32Frac);
  const int shift = kUnitShift - (e == 0 ? 1 : e);  // >= 21 below 2^-6
  if (shift > kF32Frac + 1) return sign;  // below 2^-10: rounds to zero (s < 2^24: no tie)
  const uint32_t q = s >> shift, rem = s & ((1u << shift) - 1), half = 1u << (shift - 1);
  return sign | uint8_t(q + (rem > half || (rem == half && (q & 1)) ? 1 : 0));
}

// The scale of a group of values whose largest magnitude is amax: values are stored as
// e4m3(x / scale) and read as e4m3 * scale, so the largest lands on 448. An all-zero group
// gets scale 0 (its values read back as 0).
FLASHMFA_FP8_HD inline float e4m3_scale_for(float amax) {
  return amax > 0.0f ? div_rn(amax, kE4m3Max) : 0.0f;
}

// x / scale as e4m3 (0 when the scale is 0).
FLASHMFA_FP8_HD inline uint8_t quantize_e4m3(float x, float scale) {
  return scale > 0.0f ? float_to_e4m3(div_rn(x, scale)) : uint8_t(0);
}

}  // namespace flashmfa::detail
