// flashmfa test problems on FP8 caches (fp8.hpp).
#include "problem/fp8.hpp"

#include <cmath>
#include <cstring>

namespace flashmfa::testing {

Fp8Problem::Fp8Problem(const ProblemSpec& spec) : h(make_problem(spec)) {
  const Variant var = spec.variant;
  mla = var == Variant::mla();
  row_bytes = mla ? MlaFp8Row::kBytes : var.d_k;
  const size_t rows = size_t(h.num_pages) * spec.page_size * spec.h_kv;
  constexpr uint8_t kNanByte = 0xff;  // e4m3fn NaN
  k8.assign(rows * row_bytes, kNanByte);
  if (!var.v_aliases_k) v8.assign(rows * var.d_v, kNanByte);
  if (!mla) ks.assign(rows, std::nanf(""));
  if (!mla && !var.v_aliases_k) vs.assign(rows, std::nanf(""));
  // One append_kv per sequence, its whole length at once (seqlens_k = len, s_new = len).
  for (int i = 0; i < spec.b; ++i) {
    const int len = spec.seqlens[i];
    if (len == 0) continue;
    std::vector<uint16_t> k_new(size_t(len) * spec.h_kv * var.d_k);
    std::vector<uint16_t> v_new(var.v_aliases_k ? 0 : size_t(len) * spec.h_kv * var.d_v);
    for (int j = 0; j < len; ++j)
      for (int kv = 0; kv < spec.h_kv; ++kv) {
        const size_t row = (size_t(h.block_table[size_t(i) * h.max_pages + j / spec.page_size]) *
                                spec.page_size + j % spec.page_size) * spec.h_kv + kv;
        std::memcpy(&k_new[(size_t(j) * spec.h_kv + kv) * var.d_k], &h.k_cache[row * var.d_k],
                    size_t(var.d_k) * 2);
        if (!var.v_aliases_k)
          std::memcpy(&v_new[(size_t(j) * spec.h_kv + kv) * var.d_v], &h.v_cache[row * var.d_v],
                      size_t(var.d_v) * 2);
      }
    const DecodeArgs d = fp8_args();
    AppendArgs a;
    a.k_new = make_view(k_new.data(), spec.dtype, {1, len, spec.h_kv, var.d_k});
    if (!var.v_aliases_k) a.v_new = make_view(v_new.data(), spec.dtype, {1, len, spec.h_kv, var.d_v});
    a.k_cache = d.k_cache, a.v_cache = d.v_cache, a.k_scale = d.k_scale, a.v_scale = d.v_scale;
    a.block_table = make_view(h.block_table.data() + size_t(i) * h.max_pages, DType::i32,
                              {1, h.max_pages});
    a.seqlens_k = make_view(h.seqlens.data() + i, DType::i32, {1});
    append_kv(a);
  }
}

DecodeArgs Fp8Problem::args_on(Device dev, void* q, void* k8_data, void* v8_data, void* ks_data,
                               void* vs_data, void* block_table, void* seqlens, void* out,
                               void* lse) const {
  const ProblemSpec& s = h.spec;
  DecodeArgs a = h.args_on(dev, q, k8_data, v8_data, block_table, seqlens, out, lse);
  a.k_cache = make_view(k8_data, DType::f8_e4m3, {h.num_pages, s.page_size, s.h_kv, row_bytes}, dev);
  a.v_cache = v8.empty() ? TensorView{}
                         : make_view(v8_data, DType::f8_e4m3,
                                     {h.num_pages, s.page_size, s.h_kv, s.variant.d_v}, dev);
  if (!ks.empty()) a.k_scale = make_view(ks_data, DType::f32, {h.num_pages, s.page_size, s.h_kv}, dev);
  if (!vs.empty()) a.v_scale = make_view(vs_data, DType::f32, {h.num_pages, s.page_size, s.h_kv}, dev);
  return a;
}

DecodeArgs Fp8Problem::fp8_args() {
  const DecodeArgs a = h.args();
  return args_on(a.q.device, a.q.data, k8.data(), v8.data(), ks.data(), vs.data(),
                 a.block_table.data, a.seqlens_k.data, a.out.data, a.lse.data);
}

std::vector<float> transpose_page_scales(const std::vector<float>& s, int rows, int cols) {
  const size_t r = size_t(rows), c = size_t(cols), page = r * c;
  std::vector<float> t(s.size());
  for (size_t p = 0; p + page <= s.size(); p += page)
    for (size_t i = 0; i < r; ++i)
      for (size_t j = 0; j < c; ++j) t[p + j * r + i] = s[p + i * c + j];
  return t;
}

TensorView fp8_scale_view(void* data, int64_t pages, int page_size, int h_kv, bool head_major,
                          Device dev) {
  const int64_t ps = page_size, h = h_kv;
  if (head_major) return make_view(data, DType::f32, {pages, ps, h}, {h * ps, 1, ps}, dev);
  return make_view(data, DType::f32, {pages, ps, h}, dev);
}

}  // namespace flashmfa::testing
