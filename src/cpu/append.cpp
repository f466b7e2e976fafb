// flashmfa: writing new tokens' rows into a paged cache on the CPU, in every cache format
// (AppendArgs, CacheFormat). FP8 rows get scale = amax / 448 per group (cache_rows.hpp reads
// them back as e4m3 * scale).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/fp8.hpp"
#include "cpu/cpu_backend.hpp"
#include "flashmfa/half.hpp"

namespace flashmfa::cpu {
namespace {

using detail::AppendParams;

// Quantizes src[0, n) to e4m3 bytes with one scale; returns the scale.
float quantize_group(DType dtype, const uint16_t* src, int n, uint8_t* dst) {
  float amax = 0.0f;
  for (int d = 0; d < n; ++d) amax = std::max(amax, std::fabs(half::to_float(dtype, src[d])));
  const float scale = detail::e4m3_scale_for(amax);
  for (int d = 0; d < n; ++d) dst[d] = detail::quantize_e4m3(half::to_float(dtype, src[d]), scale);
  return scale;
}

// One row of n values (src, in p.dtype) into the cache row at element offset `off` of `base`.
void write_row(const AppendParams& p, const uint16_t* src, int n, void* base, int64_t off,
               float* scale) {
  switch (p.kv_format) {
    case CacheFormat::native:
      std::memcpy(static_cast<uint16_t*>(base) + off, src, size_t(n) * sizeof(uint16_t));
      return;
    case CacheFormat::fp8_row:
      *scale = quantize_group(p.dtype, src, n, static_cast<uint8_t*>(base) + off);
      return;
    case CacheFormat::fp8_mla: {
      uint8_t* row = static_cast<uint8_t*>(base) + off;
      float scales[MlaFp8Row::kScales];
      for (int g = 0; g < MlaFp8Row::kScales; ++g)
        scales[g] = quantize_group(p.dtype, src + g * MlaFp8Row::kGroup, MlaFp8Row::kGroup,
                                   row + g * MlaFp8Row::kGroup);
      std::memcpy(row + MlaFp8Row::kScaleOffset, scales, sizeof(scales));
      std::memcpy(row + MlaFp8Row::kRopeOffset, src + MlaFp8Row::kLatent,
                  MlaFp8Row::kRope * sizeof(uint16_t));
      return;
    }
  }
}

}  // namespace

void append_kv(const AppendParams& p) {
  const auto* k_new = static_cast<const uint16_t*>(p.k_new);
  const auto* v_new = static_cast<const uint16_t*>(p.v_new);
  for (int i = 0; i < p.b; ++i) {
    const int32_t* bt_row = p.block_table + i * p.bt_sb;
    for (int t = 0; t < p.s_new; ++t) {
      const int pos = p.seqlens[i] - p.s_new + t;
      const int64_t page = bt_row[pos >> p.log2_page_size], slot = pos & (p.page_size - 1);
      for (int kv = 0; kv < p.h_kv; ++kv) {
        write_row(p, k_new + i * p.kn_sb + t * p.kn_ss + kv * p.kn_sh, p.d_k, p.k,
                  page * p.k_sp + slot * p.k_st + kv * p.k_sh,
                  p.k_scale + page * p.ks_sp + slot * p.ks_st + kv * p.ks_sh);
        if (p.d_v > 0)
          write_row(p, v_new + i * p.vn_sb + t * p.vn_ss + kv * p.vn_sh, p.d_v, p.v,
                    page * p.v_sp + slot * p.v_st + kv * p.v_sh,
                    p.v_scale + page * p.vs_sp + slot * p.vs_st + kv * p.vs_sh);
      }
    }
  }
}

}  // namespace flashmfa::cpu
