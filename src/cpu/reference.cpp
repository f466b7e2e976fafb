// flashmfa: the CPU reference decode. float64 everywhere, one query row at a time, no tricks:
// this is the definition every other path is tested against.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "cpu/cpu_backend.hpp"
#include "flashmfa/half.hpp"

namespace flashmfa::cpu {

using detail::DecodeParams;

namespace {

double load(DType t, const void* base, int64_t offset) {
  return half::to_float(t, static_cast<const uint16_t*>(base)[offset]);
}

// Element offset of cached token j of sequence i, KV head h, column 0.
int64_t row_offset(const DecodeParams& p, int i, int j, int h, int64_t sp, int64_t st,
                   int64_t sh) {
  const int32_t page = p.block_table[i * p.bt_sb + (j >> p.log2_page_size)];
  return page * sp + int64_t(j & (p.page_size - 1)) * st + h * sh;
}

}  // namespace

void decode_reference(const DecodeParams& p, const ReferenceScales* scales) {
  std::vector<double> score, abs_score, acc(p.d_v), acc_abs(p.d_v);
  for (int i = 0; i < p.b; ++i) {
    const int len = p.seqlens[i];
    for (int t = 0; t < p.s_q; ++t) {
      // Causal: token t sees cached rows j <= len - s_q + t (it is itself at that position).
      const int visible = p.causal ? std::max(0, len - p.s_q + t + 1) : len;
      for (int h = 0; h < p.h_q; ++h) {
        const int kv = h / p.q_per_kv;
        const int64_t q_off = i * p.q_sb + t * p.q_ss + h * p.q_sh;
        score.assign(visible, 0.0);
        abs_score.assign(visible, 0.0);
        double max_s = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < visible; ++j) {
          const int64_t k_off = row_offset(p, i, j, kv, p.k_sp, p.k_st, p.k_sh);
          double dot = 0.0, abs_dot = 0.0;
          for (int d = 0; d < p.d_k; ++d) {
            const double term = load(p.dtype, p.q, q_off + d) * load(p.dtype, p.k, k_off + d);
            dot += term;
            abs_dot += std::fabs(term);
          }
          score[j] = dot * p.scale;
          abs_score[j] = abs_dot * p.scale;
          max_s = std::max(max_s, score[j]);
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        std::fill(acc_abs.begin(), acc_abs.end(), 0.0);
        double sum = 0.0, lse_scale = 0.0;
        for (int j = 0; j < visible; ++j) {
          const double w = std::exp(score[j] - max_s);
          sum += w;
          lse_scale += w * abs_score[j];
          const int64_t v_off = row_offset(p, i, j, kv, p.v_sp, p.v_st, p.v_sh);
          for (int d = 0; d < p.d_v; ++d) {
            const double v = load(p.dtype, p.v, v_off + d);
            acc[d] += w * v;
            acc_abs[d] += w * std::fabs(v);
          }
        }
        if (scales) {
          const int64_t row = (int64_t(i) * p.s_q + t) * p.h_q + h;  // dense [b, s_q, h_q]
          for (int d = 0; d < p.d_v; ++d)
            scales->out[row * p.d_v + d] = visible ? float(acc_abs[d] / sum) : 0.0f;
          scales->lse[(int64_t(i) * p.h_q + h) * p.s_q + t] = visible ? float(lse_scale / sum) : 0.0f;
        }
        auto* out = static_cast<uint16_t*>(p.out) + i * p.o_sb + t * p.o_ss + h * p.o_sh;
        for (int d = 0; d < p.d_v; ++d)
          out[d] = half::from_float(p.dtype, visible ? float(acc[d] / sum) : 0.0f);
        p.lse[i * p.lse_sb + h * p.lse_sh + t * p.lse_ss] =
            visible ? float(max_s + std::log(sum)) : -std::numeric_limits<float>::infinity();
      }
    }
  }
}

}  // namespace flashmfa::cpu
