// flashmfa: the CPU reference decode. float64 everywhere, each query row on its own (rows are
// spread over threads, each computed exactly as on one), no tricks:
// this is the definition every other path is tested against.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

#include "cpu/cache_rows.hpp"
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

// One output row (sequence i, query token t, head h); `work` holds its scratch vectors.
struct RowWork {
  std::vector<double> score, abs_score, acc, acc_abs, row;
};

// Cached row (K: v = false, V: v = true) of token j of sequence i, KV head kv, dequantized.
void cache_row(const DecodeParams& p, int i, int j, int kv, bool v, std::vector<double>& row) {
  const int n = v ? p.d_v : p.d_k;
  row.resize(n);
  const int32_t* bt_row = p.block_table + i * p.bt_sb;
  const float scale = p.kv_format == CacheFormat::fp8_row ? row_scale(p, bt_row, j, kv, v) : 0.f;
  const int64_t off = v ? row_offset(p, i, j, kv, p.v_sp, p.v_st, p.v_sh)
                        : row_offset(p, i, j, kv, p.k_sp, p.k_st, p.k_sh);
  read_cache_row(p, v ? p.v : p.k, off, scale, row.data(), n);
}

void reference_row(const DecodeParams& p, const ReferenceScales* scales, int i, int t, int h,
                   RowWork& work) {
  std::vector<double>& score = work.score;
  std::vector<double>& abs_score = work.abs_score;
  std::vector<double>& acc = work.acc;
  std::vector<double>& acc_abs = work.acc_abs;
  const int len = p.seqlens[i];
  // Causal: token t sees cached rows j <= len - s_q + t (it is itself at that position).
  const int visible = p.causal ? std::max(0, len - p.s_q + t + 1) : len;
  const int kv = h / p.q_per_kv;
  const int64_t q_off = i * p.q_sb + t * p.q_ss + h * p.q_sh;
  score.assign(visible, 0.0);
  abs_score.assign(visible, 0.0);
  double max_s = -std::numeric_limits<double>::infinity();
  for (int j = 0; j < visible; ++j) {
    cache_row(p, i, j, kv, false, work.row);
    double dot = 0.0, abs_dot = 0.0;
    for (int d = 0; d < p.d_k; ++d) {
      const double term = load(p.dtype, p.q, q_off + d) * work.row[d];
      dot += term;
      abs_dot += std::fabs(term);
    }
    score[j] = dot * p.scale;
    abs_score[j] = abs_dot * p.scale;
    max_s = std::max(max_s, score[j]);
  }
  acc.assign(p.d_v, 0.0);
  acc_abs.assign(p.d_v, 0.0);
  double sum = 0.0, lse_scale = 0.0;
  for (int j = 0; j < visible; ++j) {
    const double w = std::exp(score[j] - max_s);
    sum += w;
    lse_scale += w * abs_score[j];
    cache_row(p, i, j, kv, !p.v_aliases_k, work.row);  // aliased: K's first d_v columns
    for (int d = 0; d < p.d_v; ++d) {
      const double v = work.row[d];
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

}  // namespace

// Rows are independent and each is computed by exactly one thread in the same order as on one
// thread, so the result does not depend on the thread count.
void decode_reference(const DecodeParams& p, const ReferenceScales* scales) {
  const int64_t rows = int64_t(p.b) * p.s_q * p.h_q;
  int64_t work = 0;  // multiply-adds, to decide whether threads pay for themselves
  for (int i = 0; i < p.b; ++i) work += int64_t(p.seqlens[i]) * p.s_q * p.h_q * (p.d_k + p.d_v);
  constexpr int64_t kWorkPerThread = int64_t(1) << 22;
  const int64_t hw = std::max(1u, std::thread::hardware_concurrency());
  const int threads = int(std::max<int64_t>(1, std::min({hw, rows, work / kWorkPerThread})));
  std::atomic<int64_t> next{0};
  auto worker = [&] {
    RowWork w;
    for (int64_t r = next.fetch_add(1); r < rows; r = next.fetch_add(1)) {
      const int i = int(r / (int64_t(p.s_q) * p.h_q));
      const int t = int(r / p.h_q % p.s_q), h = int(r % p.h_q);
      reference_row(p, scales, i, t, h, w);
    }
  };
  std::vector<std::thread> pool;
  for (int k = 1; k < threads; ++k) pool.emplace_back(worker);
  worker();
  for (std::thread& th : pool) th.join();
}

}  // namespace flashmfa::cpu
