// half.hpp: bf16 / f16 <-> float. Exhaustive over all 65536 bit patterns where that is cheap:
// exact decoding, round trips, round-to-nearest-even at every midpoint, subnormals, inf, NaN.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "flashmfa/half.hpp"

namespace flashmfa {
namespace {

using half::bf16_to_float;
using half::f16_to_float;
using half::float_to_bf16;
using half::float_to_f16;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr uint32_t kCodes = 1u << 16;
constexpr uint16_t kSign = 0x8000u;

bool bf16_is_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x007fu) != 0; }
bool f16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0; }

// f16 value from its fields, computed independently of half.hpp (exact in double).
double f16_value(uint16_t h) {
  const int exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  const double sign = (h & kSign) ? -1.0 : 1.0;
  if (exp == 0x1f) return man ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  if (exp == 0) return sign * std::ldexp(man, -24);            // subnormal: man * 2^-24
  return sign * std::ldexp(1024 + man, exp - 25);              // (1 + man/1024) * 2^(exp-15)
}

TEST(Half, F16DecodesEveryPatternExactly) {
  for (uint32_t c = 0; c < kCodes; ++c) {
    const uint16_t h = static_cast<uint16_t>(c);
    const double want = f16_value(h);
    const float got = f16_to_float(h);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << c;
    } else {
      ASSERT_EQ(double(got), want) << std::hex << c;
      ASSERT_EQ(std::signbit(got), (h & kSign) != 0) << std::hex << c;  // -0 stays -0
    }
  }
}

TEST(Half, Bf16DecodesAsTheUpperHalfOfAFloat) {
  for (uint32_t c = 0; c < kCodes; ++c)
    ASSERT_EQ(std::bit_cast<uint32_t>(bf16_to_float(uint16_t(c))), c << 16) << std::hex << c;
}

TEST(Half, RoundTripsEveryPattern) {
  for (uint32_t c = 0; c < kCodes; ++c) {
    const uint16_t h = static_cast<uint16_t>(c);
    if (bf16_is_nan(h))
      ASSERT_TRUE(bf16_is_nan(float_to_bf16(bf16_to_float(h)))) << std::hex << c;
    else
      ASSERT_EQ(float_to_bf16(bf16_to_float(h)), h) << std::hex << c;
    if (f16_is_nan(h))
      ASSERT_TRUE(f16_is_nan(float_to_f16(f16_to_float(h)))) << std::hex << c;
    else
      ASSERT_EQ(float_to_f16(f16_to_float(h)), h) << std::hex << c;
  }
}

// For every pair of neighbours (h, h + 1) of one sign, the float midpoint rounds to the one
// with an even last bit, and the floats just below / above it round down / up. Midpoints are
// exact in float: bf16 needs 9 significant bits, f16 12, subnormals included.
template <class ToFloat, class FromFloat>
void check_midpoints(ToFloat to_float, FromFloat from_float, uint16_t last_finite) {
  for (uint16_t sign : {uint16_t(0), kSign}) {
    for (uint16_t h = 0; h < last_finite; ++h) {
      const uint16_t lo = sign | h, hi = sign | uint16_t(h + 1);
      const float a = to_float(lo), b = to_float(hi);
      const float mid = static_cast<float>((double(a) + double(b)) / 2);
      ASSERT_EQ(double(mid), (double(a) + double(b)) / 2) << "midpoint not exact at " << h;
      const uint16_t even = (h & 1) ? hi : lo;
      ASSERT_EQ(from_float(mid), even) << std::hex << "tie between " << lo << " and " << hi;
      ASSERT_EQ(from_float(std::nextafter(mid, a)), lo) << std::hex << "below tie " << lo;
      ASSERT_EQ(from_float(std::nextafter(mid, b)), hi) << std::hex << "above tie " << lo;
    }
  }
}

TEST(Half, Bf16RoundsToNearestEvenAtEveryMidpoint) {
  check_midpoints(bf16_to_float, float_to_bf16, 0x7f7f);  // 0x7f7f: largest finite
}

TEST(Half, F16RoundsToNearestEvenAtEveryMidpoint) {
  check_midpoints(f16_to_float, float_to_f16, 0x7bff);  // 0x7bff: 65504
}

TEST(Half, NamedRoundingExamples) {
  // 1 + half an ulp is a tie to the even 1.0; 1 + 3/2 ulp is a tie to the even 1 + 2 ulp.
  EXPECT_EQ(float_to_bf16(1.0f + 0x1p-8f), 0x3f80);
  EXPECT_EQ(float_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
  EXPECT_EQ(float_to_f16(1.0f + 0x1p-11f), 0x3c00);
  EXPECT_EQ(float_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
  EXPECT_EQ(float_to_f16(-2.5f), 0xc100);
  EXPECT_EQ(float_to_bf16(-2.5f), 0xc020);
}

TEST(Half, F16Subnormals) {
  EXPECT_EQ(f16_to_float(0x0001), 0x1p-24f);               // smallest subnormal
  EXPECT_EQ(f16_to_float(0x03ff), 1023 * 0x1p-24f);        // largest subnormal
  EXPECT_EQ(f16_to_float(0x0400), 0x1p-14f);               // smallest normal
  EXPECT_EQ(float_to_f16(0x1p-24f), 0x0001);
  EXPECT_EQ(float_to_f16(0x1p-25f), 0x0000);               // tie with 0: even
  EXPECT_EQ(float_to_f16(std::nextafter(0x1p-25f, 1.0f)), 0x0001);
  EXPECT_EQ(float_to_f16(3 * 0x1p-25f), 0x0002);           // tie between 1 and 2: even
  EXPECT_EQ(float_to_f16(-0x1p-24f), 0x8001);
  EXPECT_EQ(float_to_f16(1e-30f), 0x0000);                 // far below: +0
  EXPECT_EQ(float_to_f16(-1e-30f), 0x8000);                // -0 keeps its sign
  EXPECT_EQ(float_to_f16(1023.5f * 0x1p-24f), 0x0400);     // tie at the top rounds to normal
}

TEST(Half, Bf16Subnormals) {
  EXPECT_EQ(bf16_to_float(0x0001), 0x1p-133f);             // float subnormal
  EXPECT_EQ(float_to_bf16(0x1p-133f), 0x0001);
  EXPECT_EQ(float_to_bf16(0x1p-149f), 0x0000);             // smallest float: rounds to 0
  EXPECT_EQ(float_to_bf16(0x1p-134f), 0x0000);             // tie with 0: even
  EXPECT_EQ(float_to_bf16(std::nextafter(0x1p-134f, 1.0f)), 0x0001);
}

TEST(Half, InfinityAndOverflow) {
  EXPECT_EQ(float_to_bf16(kInf), 0x7f80);
  EXPECT_EQ(float_to_bf16(-kInf), 0xff80);
  EXPECT_EQ(float_to_f16(kInf), 0x7c00);
  EXPECT_EQ(float_to_f16(-kInf), 0xfc00);
  EXPECT_EQ(bf16_to_float(0x7f80), kInf);
  EXPECT_EQ(f16_to_float(0xfc00), -kInf);
  // Past the largest finite value's upper midpoint, rounding goes to infinity.
  EXPECT_EQ(float_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(float_to_f16(65520.0f), 0x7c00);               // tie with 2^16: even (inf)
  EXPECT_EQ(float_to_f16(1e6f), 0x7c00);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x7f7f7fffu)), 0x7f7f);
}

TEST(Half, NaNStaysNaN) {
  const float qnan = std::numeric_limits<float>::quiet_NaN();
  const float snan = std::bit_cast<float>(0x7f800001u);  // payload only in the low bits
  for (float n : {qnan, -qnan, snan}) {
    EXPECT_TRUE(bf16_is_nan(float_to_bf16(n)));  // truncation alone would give infinity
    EXPECT_TRUE(f16_is_nan(float_to_f16(n)));
  }
  EXPECT_TRUE(std::isnan(bf16_to_float(0x7fc0)));
  EXPECT_TRUE(std::isnan(f16_to_float(0x7e00)));
  EXPECT_TRUE(std::isnan(f16_to_float(0xfc01)));
}

TEST(Half, DispatchOnDtype) {
  EXPECT_EQ(half::from_float(DType::bf16, 1.5f), float_to_bf16(1.5f));
  EXPECT_EQ(half::from_float(DType::f16, 1.5f), float_to_f16(1.5f));
  EXPECT_EQ(half::to_float(DType::bf16, 0x3fc0), 1.5f);
  EXPECT_EQ(half::to_float(DType::f16, 0x3e00), 1.5f);
}

}  // namespace
}  // namespace flashmfa
