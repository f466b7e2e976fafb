// flashmfa: host-side bf16 / f16 <-> float conversions (round to nearest even), for the CPU
// backend, tests and tools. Header-only, no CUDA needed.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include "flashmfa/tensor.hpp"

namespace flashmfa::half {

inline float bf16_to_float(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

inline float f16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);                  // inf / NaN
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (man << 13);          // normal
  } else if (man == 0) {
    u = sign;                                              // zero
  } else {                                                 // subnormal: normalize
    exp = 113;
    while ((man & 0x400u) == 0) { man <<= 1; --exp; }
    u = sign | (exp << 23) | ((man & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(u);
}

inline uint16_t float_to_f16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u;              // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;             // overflow (rounds to inf) / inf
  if (a < 0x33000001u) return sign;                        // below half the smallest subnormal
  int exp = int(a >> 23) - 127;
  uint32_t man = (a & 0x7fffffu) | 0x800000u;
  int shift = exp >= -14 ? 13 : 13 + (-14 - exp);          // subnormals shift further
  uint32_t r = man >> shift;
  const uint32_t rem = man & ((1u << shift) - 1), halfway = 1u << (shift - 1);
  if (rem > halfway || (rem == halfway && (r & 1u))) ++r;  // round to nearest even
  if (exp >= -14) return sign | uint16_t((uint32_t(exp + 15) << 10) + (r - 0x400u));
  return sign | uint16_t(r);
}

inline float to_float(DType t, uint16_t bits) {
  return t == DType::bf16 ? bf16_to_float(bits) : f16_to_float(bits);
}
inline uint16_t from_float(DType t, float f) {
  return t == DType::bf16 ? float_to_bf16(f) : float_to_f16(f);
}

}  // namespace flashmfa::half
