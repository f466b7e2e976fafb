// flashmfa internal: the float8 e4m3 ("e4m3fn": no infinities, one NaN pattern per sign, largest
// finite 448) codec and the scale rule of the FP8 cache formats (flashmfa.hpp, CacheFormat).
// Host code; plain arithmetic, so device code may use the same functions later.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

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

// float -> e4m3 bits, rounding to nearest (ties to even) and saturating to +-448 (what
// cvt.rn.satfinite.e4m3x2.f32 does on the GPU); NaN gives NaN.
inline uint8_t float_to_e4m3(float x) {
  if (std::isnan(x)) return 0x7f;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  const float a = std::fabs(x);
  if (a >= kE4m3Max) return sign | 0x7e;
  constexpr float kMinNormal = 0x1p-6f;
  if (a < kMinNormal) {  // subnormal: multiples of 2^-9 (rounding up to 8 gives 2^-6, bits 0x08)
    return sign | uint8_t(std::nearbyint(a * 0x1p9f));
  }
  int e = 0;
  const float frac = std::frexp(a, &e);  // a = frac * 2^e, frac in [0.5, 1)
  int m = int(std::nearbyint((frac * 2.0f - 1.0f) * 8.0f));
  int exp = e - 1;  // a = (1 + m / 8) * 2^exp
  if (m == 8) m = 0, ++exp;
  const int biased = exp + 7;  // in [1, 15]; 448 itself was handled above
  if (biased > 15 || (biased == 15 && m == 7)) return sign | 0x7e;
  return sign | uint8_t(biased << 3 | m);
}

// The scale of a group of values whose largest magnitude is amax: values are stored as
// e4m3(x / scale) and read as e4m3 * scale, so the largest lands on 448. An all-zero group
// gets scale 0 (its values read back as 0).
inline float e4m3_scale_for(float amax) { return amax > 0.0f ? amax / kE4m3Max : 0.0f; }

// x / scale as e4m3 (0 when the scale is 0).
inline uint8_t quantize_e4m3(float x, float scale) {
  return scale > 0.0f ? float_to_e4m3(x / scale) : uint8_t(0);
}

}  // namespace flashmfa::detail
