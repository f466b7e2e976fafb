// flashmfa-bench: the sampled correctness check (see check.hpp).
#include "check.hpp"

#include <algorithm>
#include <atomic>
#include <random>
#include <sstream>
#include <thread>

#include "problem/problem.hpp"

namespace flashmfa::bench {

namespace {

// Decorrelates the check's sequence draw from the lengths drawn with the same seed.
constexpr uint64_t kPickSalt = 0x5eed0c4ecull;

struct SampleResult {
  testing::CompareResult out, lse;
  std::string error;  // an exception from the reference (a bug: the timed path accepted it)
};

// The reference on one sample, heads 0, S, 2S, ... only.
SampleResult check_one(const Shape& s, const SeqSample& x, int stride) {
  const int d_k = s.variant.d_k, d_v = s.variant.d_v;
  const int h_sub = s.h_q / stride;
  const int n_pages = pages_for(x.len, s.page_size);
  const int64_t page_k = int64_t(s.page_size) * s.h_kv * d_k;
  const int64_t page_v = int64_t(s.page_size) * s.h_kv * d_v;
  const Device cpu{};

  // The sample's own block table (pages in order) and length.
  std::vector<int32_t> table(n_pages);
  for (int j = 0; j < n_pages; ++j) table[j] = j;
  int32_t len = x.len;
  std::vector<uint16_t> ref_out(size_t(s.s_q) * h_sub * d_v);  // [1, s_q, h_sub, d_v]
  std::vector<float> ref_lse(size_t(h_sub) * s.s_q);           // [1, h_sub, s_q]
  auto* q = const_cast<uint16_t*>(x.q.data());
  auto* k = const_cast<uint16_t*>(x.k.data());
  auto* v = const_cast<uint16_t*>(x.v.data());

  DecodeArgs a;
  // q [1, s_q, h_sub, d_k]: every stride-th head of the sample's q.
  a.q = make_view(q, s.dtype, {1, s.s_q, h_sub, d_k},
                  {int64_t(s.s_q) * s.h_q * d_k, int64_t(s.h_q) * d_k, int64_t(stride) * d_k, 1}, cpu);
  a.k_cache = make_view(k, s.dtype, {n_pages, s.page_size, s.h_kv, d_k},
                        {page_k, int64_t(s.h_kv) * d_k, d_k, 1}, cpu);
  if (!s.variant.v_aliases_k)
    a.v_cache = make_view(v, s.dtype, {n_pages, s.page_size, s.h_kv, d_v},
                          {page_v, int64_t(s.h_kv) * d_v, d_v, 1}, cpu);
  if (s.fp8) {
    const int64_t row = int64_t(x.k8.size()) / (int64_t(n_pages) * s.page_size * s.h_kv);
    auto* k8 = const_cast<uint8_t*>(x.k8.data());
    a.k_cache = make_view(k8, DType::f8_e4m3, {n_pages, s.page_size, s.h_kv, row}, cpu);
    a.v_cache = TensorView{};
    if (!x.v8.empty())
      a.v_cache = make_view(const_cast<uint8_t*>(x.v8.data()), DType::f8_e4m3,
                            {n_pages, s.page_size, s.h_kv, d_v}, cpu);
    if (!x.ks.empty())
      a.k_scale = make_view(const_cast<float*>(x.ks.data()), DType::f32,
                            {n_pages, s.page_size, s.h_kv}, cpu);
    if (!x.vs.empty())
      a.v_scale = make_view(const_cast<float*>(x.vs.data()), DType::f32,
                            {n_pages, s.page_size, s.h_kv}, cpu);
  }
  a.block_table = make_view(table.data(), DType::i32, {1, n_pages}, cpu);
  a.seqlens_k = make_view(&len, DType::i32, {1}, cpu);
  a.out = make_view(ref_out.data(), s.dtype, {1, s.s_q, h_sub, d_v}, cpu);
  a.lse = make_view(ref_lse.data(), DType::f32, {1, h_sub, s.s_q}, cpu);
  a.causal = s.causal;

  SampleResult r;
  testing::ErrorScales scales;
  try {
    scales = testing::reference_with_scales(a);
  } catch (const std::exception& e) {
    r.error = e.what();
    return r;
  }

  // The timed path's values for the same heads, gathered contiguously.
  std::vector<uint16_t> got_out(ref_out.size());
  std::vector<float> got_lse(ref_lse.size());
  for (int t = 0; t < s.s_q; ++t)
    for (int h = 0; h < h_sub; ++h) {
      const uint16_t* src = x.out.data() + (size_t(t) * s.h_q + size_t(h) * stride) * d_v;
      std::copy(src, src + d_v, got_out.begin() + (size_t(t) * h_sub + h) * d_v);
      got_lse[size_t(h) * s.s_q + t] = x.lse[size_t(h) * stride * s.s_q + t];
    }
  // The CPU fast path keeps P in float32; the GPU kernels round it to the input dtype before
  // PV, which the rounding model (per-element error scales) accounts for.
  const testing::RoundedCompare c = testing::compare_rounded(
      s.dtype, got_out.data(), ref_out.data(), scales.out.data(), got_out.size(), got_lse.data(),
      ref_lse.data(), scales.lse.data(), got_lse.size());
  r.out = c.out;
  r.lse = c.lse;
  return r;
}

}  // namespace

int pages_for(int len, int page_size) { return std::max(1, (len + page_size - 1) / page_size); }

std::vector<int> pick_sequences(const std::vector<int>& lens, int n, uint64_t seed) {
  const int b = int(lens.size());
  std::vector<int> pick;
  if (n >= b) {
    for (int i = 0; i < b; ++i) pick.push_back(i);
    return pick;
  }
  auto add = [&](int i) {
    if (int(pick.size()) < n && std::find(pick.begin(), pick.end(), i) == pick.end())
      pick.push_back(i);
  };
  add(int(std::min_element(lens.begin(), lens.end()) - lens.begin()));
  add(int(std::max_element(lens.begin(), lens.end()) - lens.begin()));
  std::mt19937_64 rng(seed ^ kPickSalt);
  std::uniform_int_distribution<int> dist(0, b - 1);
  while (int(pick.size()) < n) add(dist(rng));
  std::sort(pick.begin(), pick.end());
  return pick;
}

int head_stride(int h_q, int h_kv, int want) {
  if (h_kv <= 0 || h_q % h_kv != 0 || h_q <= want) return 1;
  const int q_per_kv = h_q / h_kv;
  for (int stride = q_per_kv; stride > 1; --stride)
    if (q_per_kv % stride == 0 && h_q / stride >= want) return stride;
  return 1;
}

CheckResult check_samples(const Shape& s, const std::vector<SeqSample>& samples, int stride,
                          int b_total) {
  std::vector<SampleResult> results(samples.size());
  const unsigned workers =
      std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), unsigned(samples.size())));
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (unsigned w = 0; w < workers; ++w)
    pool.emplace_back([&] {
      for (size_t i = next++; i < samples.size(); i = next++)
        results[i] = check_one(s, samples[i], stride);
    });
  for (std::thread& t : pool) t.join();

  CheckResult c;
  std::ostringstream what;
  what << samples.size() << "/" << b_total << " sequences x " << s.h_q / stride << "/" << s.h_q
       << " heads";
  c.what = what.str();
  for (size_t i = 0; i < samples.size(); ++i) {
    const SampleResult& r = results[i];
    const std::string where = "sequence " + std::to_string(samples[i].seq) + " (length " +
                              std::to_string(samples[i].len) + ")";
    if (!r.error.empty()) {
      if (c.ok) c.message = where + ": the reference refused it: " + r.error;
      c.ok = false;
      continue;
    }
    c.max_abs_out = std::max(c.max_abs_out, r.out.max_abs);
    c.max_abs_lse = std::max(c.max_abs_lse, r.lse.max_abs);
    c.elements += r.out.count;
    if (c.ok && !r.out.ok) c.message = where + ": out " + r.out.summary();
    else if (c.ok && !r.lse.ok) c.message = where + ": lse " + r.lse.summary();
    c.ok = c.ok && r.out.ok && r.lse.ok;
  }
  return c;
}

}  // namespace flashmfa::bench
