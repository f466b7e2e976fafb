// flashmfa internal: reading one cached row as numbers, in every cache format (CacheFormat).
// Shared by the reference (float64) and the fast path (float, FP8 formats; its native rows go
// through its own vectorized converters).
#pragma once

#include <array>
#include <cstdint>
#include <cstring>

#include "core/fp8.hpp"
#include "core/params.hpp"
#include "flashmfa/half.hpp"

namespace flashmfa::cpu {

// Every e4m3 byte as float (exact).
inline const std::array<float, 256>& e4m3_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int b = 0; b < 256; ++b) t[b] = detail::e4m3_to_float(uint8_t(b));
    return t;
  }();
  return table;
}

// One cached FP8 value as the decode reads it: T(e4m3 * T(scale)), T = q's 16-bit type (the
// product of a 4-bit and an 11-bit significand is exact in float: one rounding). Every backend
// dequantizes into T and runs the 16-bit math on that cache, so the reference does too, bit for
// bit with the GPU kernels (whose tensor cores take bf16 / f16; sm80/decode/dequant.cuh).
inline float dequantize(DType dtype, float e4m3, float scale) {
  const float t_scale = half::to_float(dtype, half::from_float(dtype, scale));
  return half::to_float(dtype, half::from_float(dtype, e4m3 * t_scale));
}

// The scale of an fp8_row cache row (token j of the sequence whose block-table row is bt_row,
// KV head kv), from k_scale (v = false) or v_scale (v = true).
inline float row_scale(const detail::DecodeParams& p, const int32_t* bt_row, int j, int kv,
                       bool v) {
  const int64_t page = bt_row[j >> p.log2_page_size], slot = j & (p.page_size - 1);
  return v ? p.v_scale[page * p.vs_sp + slot * p.vs_st + kv * p.vs_sh]
           : p.k_scale[page * p.ks_sp + slot * p.ks_st + kv * p.ks_sh];
}

// dst[0, n) = the first n values of the row starting at element `off` of `base`, dequantized
// (FP8 formats: dequantize() per value). `scale`: the row's scale (fp8_row only). MLA's 656-byte row is read from its
// bytes with memcpy (no alignment is assumed).
template <class F>
void read_cache_row(const detail::DecodeParams& p, const void* base, int64_t off, float scale,
                    F* dst, int n) {
  switch (p.kv_format) {
    case CacheFormat::native: {
      const uint16_t* src = static_cast<const uint16_t*>(base) + off;
      for (int d = 0; d < n; ++d) dst[d] = F(half::to_float(p.dtype, src[d]));
      return;
    }
    case CacheFormat::fp8_row: {
      const uint8_t* src = static_cast<const uint8_t*>(base) + off;
      const std::array<float, 256>& e4m3 = e4m3_table();
      for (int d = 0; d < n; ++d) dst[d] = F(dequantize(p.dtype, e4m3[src[d]], scale));
      return;
    }
    case CacheFormat::fp8_mla: {
      const uint8_t* src = static_cast<const uint8_t*>(base) + off;
      float scales[MlaFp8Row::kScales];
      std::memcpy(scales, src + MlaFp8Row::kScaleOffset, sizeof(scales));
      const std::array<float, 256>& e4m3 = e4m3_table();
      const int latent = n < MlaFp8Row::kLatent ? n : MlaFp8Row::kLatent;
      for (int d = 0; d < latent; ++d)
        dst[d] = F(dequantize(p.dtype, e4m3[src[d]], scales[d / MlaFp8Row::kGroup]));
      for (int d = latent; d < n; ++d) {
        uint16_t bits;
        std::memcpy(&bits, src + MlaFp8Row::kRopeOffset + 2 * (d - MlaFp8Row::kLatent), 2);
        dst[d] = F(half::to_float(p.dtype, bits));
      }
      return;
    }
  }
}

}  // namespace flashmfa::cpu
