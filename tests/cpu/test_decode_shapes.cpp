// The fast CPU path against the reference on the shapes the grid does not reach: odd head
// counts and batch sizes, thread counts that cut sequences into many chunks (LSE merge),
// row tiles (h_q * s_q above one task's rows), every page size, arbitrary strides, the
// softmax scale, and plan reuse.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "cpu_check.hpp"

namespace flashmfa {
namespace {

using testing::FastEntry;
using testing::HostProblem;
using testing::ProblemSpec;

// ---- Odd shapes: h_q 1, 3, 9, 63 (h_kv dividing it) x b 1, 17; lengths 0, 1, 63, 65, 97 ----

const std::pair<int, int> kOddHeads[] = {{1, 1}, {3, 1}, {3, 3}, {9, 1},
                                         {9, 3}, {63, 1}, {63, 7}, {63, 21}};
const int kOddLengths[] = {0, 1, 63, 65, 97};
const Variant kOddVariants[] = {Variant::mla(), Variant::mqa(64), Variant::mfa_kr(128),
                                Variant::mfa()};

using OddParam = std::tuple<int, int, bool>;  // index into kOddHeads, b, causal

// e.g. "hq63_hkv7_b17_causal" (a function: see test_decode_grid.cpp).
std::string odd_name(const OddParam& param) {
  const auto [hi, b, causal] = param;
  return "hq" + std::to_string(kOddHeads[hi].first) + "_hkv" +
         std::to_string(kOddHeads[hi].second) + "_b" + std::to_string(b) +
         (causal ? "_causal" : "");
}

class CpuDecodeOddShapes : public ::testing::TestWithParam<OddParam> {};

TEST_P(CpuDecodeOddShapes, FastMatchesReference) {
  const auto [hi, b, causal] = GetParam();
  ProblemSpec s;
  s.variant = kOddVariants[hi % 4];
  s.dtype = hi % 2 ? DType::f16 : DType::bf16;
  s.b = b, s.s_q = 2, s.h_q = kOddHeads[hi].first, s.h_kv = kOddHeads[hi].second;
  s.page_size = 16;
  for (int i = 0; i < b; ++i) s.seqlens.push_back(kOddLengths[(i + hi) % 5]);
  if (b == 1) s.seqlens = {hi % 2 ? 97 : 65};
  s.causal = causal;
  s.seed = 2000 + hi * 31 + b + causal;
  EXPECT_TRUE(testing::fast_matches_reference(s));
}

INSTANTIATE_TEST_SUITE_P(Odd, CpuDecodeOddShapes,
                         ::testing::Combine(::testing::Range(0, 8), ::testing::Values(1, 17),
                                            ::testing::Bool()),
                         [](const ::testing::TestParamInfo<OddParam>& info) {
                           return odd_name(info.param);
                         });

// ---- Threads and chunks: long sequences cut into many chunks, merged by their LSE ----

class CpuDecodeThreads : public ::testing::TestWithParam<int> {};

TEST_P(CpuDecodeThreads, MlaLongSequences) {
  ProblemSpec s;
  s.variant = Variant::mla();
  s.b = 3, s.s_q = 1, s.h_q = 16, s.h_kv = 1, s.page_size = 64;
  s.seqlens = {2500, 5, 1100};
  s.seed = 31;
  EXPECT_TRUE(testing::fast_matches_reference(s, FastEntry{GetParam()}));
}

TEST_P(CpuDecodeThreads, GqaCausalMultiToken) {
  ProblemSpec s;
  s.variant = Variant::mqa(128);
  s.dtype = DType::f16;
  s.b = 3, s.s_q = 4, s.h_q = 8, s.h_kv = 2, s.page_size = 32;
  s.seqlens = {1800, 3, 700};
  s.causal = true;
  s.seed = 32;
  EXPECT_TRUE(testing::fast_matches_reference(s, FastEntry{GetParam()}));
}

INSTANTIATE_TEST_SUITE_P(Threads, CpuDecodeThreads, ::testing::Values(1, 2, 3, 5, 8, 16));

// ---- More rows than one task takes (h_q 128 x s_q 4 = 512 rows): row tiles ----

TEST(CpuDecode, RowTilesMla128Heads) {
  ProblemSpec s;
  s.variant = Variant::mla();
  s.dtype = DType::f16;
  s.b = 2, s.s_q = 4, s.h_q = 128, s.h_kv = 1, s.page_size = 64;
  s.seqlens = {130, 2};
  s.causal = true;
  s.seed = 33;
  EXPECT_TRUE(testing::fast_matches_reference(s));
  EXPECT_TRUE(testing::fast_matches_reference(s, FastEntry{3}));
}

// ---- Every page size, and a block table with no spare column ----

TEST(CpuDecode, EveryPageSize) {
  for (int page = 1; page <= 256; page *= 2) {
    ProblemSpec s;
    s.variant = Variant::mfa_kr(128);
    s.b = 3, s.s_q = 2, s.h_q = 4, s.h_kv = 1, s.page_size = page;
    s.seqlens = {page * 2, page + 1 < 600 ? page + 1 : 5, 77};
    s.causal = true;
    s.seed = 40 + page;
    EXPECT_TRUE(testing::fast_matches_reference(s)) << "page " << page;
  }
}

TEST(CpuDecode, FullBlockTable) {
  ProblemSpec s;
  s.variant = Variant::mfa();
  s.b = 2, s.h_q = 8, s.page_size = 64;
  s.seqlens = {128, 64};
  s.extra_pages_per_seq = 0;  // sequence 0 uses every column
  EXPECT_TRUE(testing::fast_matches_reference(s));
}

// ---- Arbitrary strides: every tensor padded in every dimension ----

// Copies a contiguous [n0, n1, n2, n3] buffer into one with padded strides; pad = fill.
template <class T>
std::vector<T> pad4(const std::vector<T>& src, const int64_t (&shape)[4], const int64_t (&st)[4],
                    T fill) {
  std::vector<T> dst(size_t(shape[0] > 0 ? shape[0] * st[0] : 1), fill);
  size_t k = 0;
  for (int64_t a = 0; a < shape[0]; ++a)
    for (int64_t b = 0; b < shape[1]; ++b)
      for (int64_t c = 0; c < shape[2]; ++c)
        for (int64_t d = 0; d < shape[3]; ++d)
          dst[a * st[0] + b * st[1] + c * st[2] + d * st[3]] = src[k++];
  return dst;
}
template <class T>
std::vector<T> unpad4(const std::vector<T>& src, const int64_t (&shape)[4],
                      const int64_t (&st)[4]) {
  std::vector<T> dst;
  for (int64_t a = 0; a < shape[0]; ++a)
    for (int64_t b = 0; b < shape[1]; ++b)
      for (int64_t c = 0; c < shape[2]; ++c)
        for (int64_t d = 0; d < shape[3]; ++d)
          dst.push_back(src[a * st[0] + b * st[1] + c * st[2] + d * st[3]]);
  return dst;
}
// Strides of a [n0, n1, n2, n3] tensor with `pad` extra elements after every row of each dim.
void padded_strides(const int64_t (&shape)[4], int64_t pad, int64_t (&st)[4]) {
  st[3] = 1;
  for (int i = 2; i >= 0; --i) st[i] = st[i + 1] * shape[i + 1] + pad * (3 - i);
}

class CpuDecodeStrides : public ::testing::TestWithParam<int> {};

TEST_P(CpuDecodeStrides, PaddedViewsMatchContiguous) {
  const Variant variants[] = {Variant::mfa(), Variant::mla(), Variant::mqa(128)};
  ProblemSpec s;
  s.variant = variants[GetParam()];
  s.dtype = GetParam() == 1 ? DType::bf16 : DType::f16;
  s.b = 3, s.s_q = 2, s.h_q = 4, s.h_kv = GetParam() == 2 ? 2 : 1, s.page_size = 16;
  s.seqlens = {40, 0, 100};
  s.causal = true;
  s.seed = 50 + GetParam();
  HostProblem p = testing::make_problem(s);
  HostProblem ref = p;
  decode_reference(ref.args());

  const uint16_t nan = testing::nan_bits(s.dtype);
  constexpr uint16_t kUntouched = 0x1234;  // out padding must keep this
  constexpr float kLsePadding = 7.0f;
  const int64_t d_k = s.variant.d_k, d_v = s.variant.d_v;
  const int64_t q_shape[4] = {s.b, s.s_q, s.h_q, d_k};
  const int64_t k_shape[4] = {p.num_pages, s.page_size, s.h_kv, d_k};
  const int64_t v_shape[4] = {p.num_pages, s.page_size, s.h_kv, d_v};
  const int64_t o_shape[4] = {s.b, s.s_q, s.h_q, d_v};
  const int64_t l_shape[4] = {1, s.b, s.h_q, s.s_q};
  int64_t q_st[4], k_st[4], v_st[4], o_st[4], l_st[4];
  padded_strides(q_shape, 8, q_st);
  padded_strides(k_shape, 16, k_st);
  padded_strides(v_shape, 24, v_st);
  padded_strides(o_shape, 8, o_st);
  padded_strides(l_shape, 3, l_st);
  std::vector<uint16_t> q = pad4(p.q, q_shape, q_st, nan);
  std::vector<uint16_t> k = pad4(p.k_cache, k_shape, k_st, nan);
  std::vector<uint16_t> v = s.variant.v_aliases_k ? std::vector<uint16_t>{}
                                                  : pad4(p.v_cache, v_shape, v_st, nan);
  std::vector<uint16_t> out = pad4(p.out, o_shape, o_st, kUntouched);
  std::vector<float> lse = pad4(p.lse, l_shape, l_st, kLsePadding);
  const int64_t bt_stride = p.max_pages + 3;
  std::vector<int32_t> bt(size_t(s.b) * bt_stride, testing::kSentinelPage);
  for (int i = 0; i < s.b; ++i)
    std::memcpy(&bt[i * bt_stride], &p.block_table[size_t(i) * p.max_pages],
                sizeof(int32_t) * p.max_pages);

  DecodeArgs a = p.args();
  a.q = make_view(q.data(), s.dtype, {q_shape[0], q_shape[1], q_shape[2], q_shape[3]},
                  {q_st[0], q_st[1], q_st[2], q_st[3]});
  a.k_cache = make_view(k.data(), s.dtype, {k_shape[0], k_shape[1], k_shape[2], k_shape[3]},
                        {k_st[0], k_st[1], k_st[2], k_st[3]});
  if (!s.variant.v_aliases_k)
    a.v_cache = make_view(v.data(), s.dtype, {v_shape[0], v_shape[1], v_shape[2], v_shape[3]},
                          {v_st[0], v_st[1], v_st[2], v_st[3]});
  a.out = make_view(out.data(), s.dtype, {o_shape[0], o_shape[1], o_shape[2], o_shape[3]},
                    {o_st[0], o_st[1], o_st[2], o_st[3]});
  a.lse = make_view(lse.data(), DType::f32, {l_shape[1], l_shape[2], l_shape[3]},
                    {l_st[1], l_st[2], l_st[3]});
  a.block_table = make_view(bt.data(), DType::i32, {s.b, p.max_pages}, {bt_stride, 1});

  // The fast path through the public API, on the padded views.
  run(plan(a, nullptr, 0), a);
  HostProblem got = p;
  got.out = unpad4(out, o_shape, o_st);
  got.lse = unpad4(lse, l_shape, l_st);
  EXPECT_TRUE(testing::outputs_match(got, ref));
  // Padding of out and lse untouched.
  // (Elements inside the views never equal the padding value: NaN or results.)
  size_t not_padding = 0;
  for (uint16_t x : out) not_padding += x != kUntouched;
  EXPECT_EQ(not_padding, got.out.size()) << "the fast path wrote outside out's view";
  size_t lse_not_padding = 0;
  for (float x : lse) lse_not_padding += x != kLsePadding;
  EXPECT_EQ(lse_not_padding, got.lse.size()) << "the fast path wrote outside lse's view";

  // The reference on the padded views gives exactly its contiguous result.
  decode_reference(a);
  EXPECT_EQ(unpad4(out, o_shape, o_st), ref.out);
  const std::vector<float> ref_lse = unpad4(lse, l_shape, l_st);
  for (size_t i = 0; i < ref_lse.size(); ++i)
    EXPECT_TRUE(ref_lse[i] == ref.lse[i]) << i << ": " << ref_lse[i] << " vs " << ref.lse[i];
}

const char* const kStrideCaseNames[] = {"mfa", "mla", "gqa128"};
INSTANTIATE_TEST_SUITE_P(Strides, CpuDecodeStrides, ::testing::Values(0, 1, 2),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(kStrideCaseNames[info.param]);
                         });

// ---- Softmax scale: default 1/sqrt(d_k), and an explicit one ----

TEST(CpuDecode, SoftmaxScaleDefaultAndExplicit) {
  for (const Variant v : {Variant::mla(), Variant::mqa(64)}) {
    ProblemSpec s;
    s.variant = v;
    s.b = 2, s.s_q = 2, s.h_q = 4, s.h_kv = 1, s.page_size = 16;
    s.seqlens = {50, 33};
    s.seed = 60;
    // Fast and reference agree under an explicit scale.
    s.softmax_scale = 0.3f;
    EXPECT_TRUE(testing::fast_matches_reference(s));

    // The default is 1/sqrt(d_k): bit-identical to passing it explicitly, on both paths.
    s.softmax_scale.reset();
    HostProblem by_default = testing::make_problem(s);
    s.softmax_scale = 1.0f / std::sqrt(float(v.d_k));
    HostProblem explicit_default = testing::make_problem(s);
    HostProblem ref_default = by_default, ref_explicit = explicit_default;
    testing::run_fast(by_default);
    testing::run_fast(explicit_default);
    decode_reference(ref_default.args());
    decode_reference(ref_explicit.args());
    EXPECT_EQ(by_default.out, explicit_default.out) << v.name();
    EXPECT_EQ(by_default.lse, explicit_default.lse) << v.name();
    EXPECT_EQ(ref_default.out, ref_explicit.out) << v.name();
    EXPECT_EQ(ref_default.lse, ref_explicit.lse) << v.name();

    // And the scale is used: twice the default changes the result beyond tolerance.
    s.softmax_scale = 2.0f / std::sqrt(float(v.d_k));
    HostProblem doubled = testing::make_problem(s);
    testing::run_fast(doubled);
    EXPECT_FALSE(testing::outputs_match(doubled, ref_default)) << v.name();
  }
}

// ---- Plan reuse: same shapes, several runs, new lengths ----

TEST(CpuDecode, PlanReuse) {
  ProblemSpec s;
  s.variant = Variant::mfa_kr(256);
  s.b = 2, s.s_q = 2, s.h_q = 8, s.page_size = 16;
  s.seqlens = {300, 45};
  s.extra_pages_per_seq = 3;
  s.causal = true;
  HostProblem p = testing::make_problem(s);
  HostProblem ref = p;
  decode_reference(ref.args());
  const Plan pl = plan(p.args(), nullptr, 0);
  run(pl, p.args());
  const std::vector<uint16_t> first = p.out;
  p.poison_outputs();
  run(pl, p.args());
  EXPECT_EQ(p.out, first) << "a second run with the same plan differs";
  EXPECT_TRUE(testing::outputs_match(p, ref));

  // Shorter lengths within the same block table: the plan still serves.
  p.seqlens = {17, 44};
  ref.seqlens = p.seqlens;
  decode_reference(ref.args());
  p.poison_outputs();
  run(pl, p.args());
  EXPECT_TRUE(testing::outputs_match(p, ref));
}

}  // namespace
}  // namespace flashmfa
