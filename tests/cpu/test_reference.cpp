// The reference itself, on tiny cases whose answer is computed by hand: two cached tokens with
// scores 0 and 1, so softmax weights are 1/(1+e) and e/(1+e) and lse = log(1 + e). A reference
// that mis-scales, mis-masks, maps heads wrongly, takes V from the wrong columns or returns a
// base-2 lse fails here, so "fast path == reference" elsewhere means something.
//
// Problems come from make_problem (shuffled pages, NaN past each length, sentinel block-table
// slots); the test then overwrites the rows it uses with hand-picked values, located through
// the block table like any kernel would.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

#include "cpu_check.hpp"
#include "flashmfa/flashmfa.hpp"
#include "flashmfa/half.hpp"
#include "problem/problem.hpp"

namespace flashmfa {
namespace {

using testing::HostProblem;
using testing::ProblemSpec;

const double kE = std::exp(1.0);

// Pointer to cached row j of sequence i, KV head kv, in a [num_pages, page, h_kv, d] cache.
uint16_t* cache_row(HostProblem& p, std::vector<uint16_t>& cache, int d, int i, int j, int kv) {
  const int ps = p.spec.page_size;
  const int32_t page = p.block_table[size_t(i) * p.max_pages + j / ps];
  return cache.data() + ((size_t(page) * ps + j % ps) * p.spec.h_kv + kv) * d;
}
uint16_t* q_row(HostProblem& p, int i, int t, int h) {
  const ProblemSpec& s = p.spec;
  return p.q.data() + ((size_t(i) * s.s_q + t) * s.h_q + h) * s.variant.d_k;
}
float out_at(const HostProblem& p, int i, int t, int h, int d) {
  const ProblemSpec& s = p.spec;
  return half::to_float(s.dtype,
                        p.out[((size_t(i) * s.s_q + t) * s.h_q + h) * s.variant.d_v + d]);
}
float lse_at(const HostProblem& p, int i, int t, int h) {
  const ProblemSpec& s = p.spec;
  return p.lse[(size_t(i) * s.h_q + h) * s.s_q + t];
}
void fill(uint16_t* row, int n, DType dt, float value) {
  for (int d = 0; d < n; ++d) row[d] = half::from_float(dt, value);
}

// One ulp of `dtype` at |x| (a correct rounding costs at most half of it; the other half
// absorbs the last bits in which a double formula and the reference's sum may differ).
double one_ulp(DType dtype, double x) {
  const int significand_bits = dtype == DType::bf16 ? 8 : 11;
  return std::fabs(x) * std::ldexp(1.0, 1 - significand_bits) + 1e-30;
}

// V rows of the two tokens: exactly representable in bf16 and f16, different per column.
float v0_of(int d) { return float(d % 64) / 8; }
float v1_of(int d) { return -float(d % 32) / 16; }

// out[d] and lse when token 0 has score 0, token 1 score 1 and both are visible.
double two_token_out(int d) { return (v0_of(d) + kE * v1_of(d)) / (1 + kE); }
const double kTwoTokenLse = std::log(1 + kE);

class ReferenceTwoTokens : public ::testing::TestWithParam<std::tuple<DType, int>> {};

// MQA d 64: explicit scale 0.5 and q . k1 = 2 give scores 0 and 1.
TEST_P(ReferenceTwoTokens, ExplicitScale) {
  const auto [dtype, page] = GetParam();
  ProblemSpec s;
  s.variant = Variant::mqa(64);
  s.dtype = dtype;
  s.b = 1, s.s_q = 1, s.h_q = 1, s.h_kv = 1, s.page_size = page;
  s.seqlens = {2};
  s.softmax_scale = 0.5f;
  HostProblem p = testing::make_problem(s);
  const int d = 64;
  fill(q_row(p, 0, 0, 0), d, dtype, 0.0f);
  q_row(p, 0, 0, 0)[0] = half::from_float(dtype, 2.0f);
  for (int j = 0; j < 2; ++j) {
    uint16_t* k = cache_row(p, p.k_cache, d, 0, j, 0);
    fill(k, d, dtype, 3.0f);  // columns where q is 0 must not matter
    k[0] = half::from_float(dtype, float(j));
    uint16_t* v = cache_row(p, p.v_cache, d, 0, j, 0);
    for (int c = 0; c < d; ++c) v[c] = half::from_float(dtype, j == 0 ? v0_of(c) : v1_of(c));
  }
  decode_reference(p.args());
  for (int c = 0; c < d; ++c)
    EXPECT_NEAR(out_at(p, 0, 0, 0, c), two_token_out(c), one_ulp(dtype, two_token_out(c)))
        << "column " << c;
  EXPECT_NEAR(lse_at(p, 0, 0, 0), kTwoTokenLse, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(CpuReference, ReferenceTwoTokens,
                         ::testing::Combine(::testing::Values(DType::bf16, DType::f16),
                                            ::testing::Values(1, 4, 64)));

// Default scale 1/sqrt(64) = 1/8 with q . k1 = 8; s_q = 2. Causal: token 0 sees only row 0
// (out = v0, lse = 0), token 1 sees both. Not causal: both tokens see both rows.
TEST(CpuReference, DefaultScaleAndCausalRule) {
  for (bool causal : {false, true}) {
    ProblemSpec s;
    s.variant = Variant::mqa(64);
    s.b = 1, s.s_q = 2, s.h_q = 1, s.h_kv = 1, s.page_size = 1;
    s.seqlens = {2};
    s.causal = causal;
    HostProblem p = testing::make_problem(s);
    const int d = 64;
    for (int t = 0; t < 2; ++t) {
      fill(q_row(p, 0, t, 0), d, s.dtype, 0.0f);
      q_row(p, 0, t, 0)[0] = half::from_float(s.dtype, 8.0f);
    }
    for (int j = 0; j < 2; ++j) {
      uint16_t* k = cache_row(p, p.k_cache, d, 0, j, 0);
      fill(k, d, s.dtype, 0.0f);
      k[0] = half::from_float(s.dtype, float(j));
      uint16_t* v = cache_row(p, p.v_cache, d, 0, j, 0);
      for (int c = 0; c < d; ++c) v[c] = half::from_float(s.dtype, j == 0 ? v0_of(c) : v1_of(c));
    }
    decode_reference(p.args());
    SCOPED_TRACE(causal ? "causal" : "not causal");
    for (int c = 0; c < d; ++c) {
      const double first = causal ? v0_of(c) : two_token_out(c);
      EXPECT_NEAR(out_at(p, 0, 0, 0, c), first, one_ulp(s.dtype, first)) << "column " << c;
      EXPECT_NEAR(out_at(p, 0, 1, 0, c), two_token_out(c), one_ulp(s.dtype, two_token_out(c)))
          << "column " << c;
    }
    EXPECT_NEAR(lse_at(p, 0, 0, 0), causal ? 0.0 : kTwoTokenLse, 1e-6);
    EXPECT_NEAR(lse_at(p, 0, 1, 0), kTwoTokenLse, 1e-6);
  }
}

// MLA: V is the first 512 columns of the K row; the score comes from column 575 (in the RoPE
// part, outside V) with the default scale 1/sqrt(576) = 1/24 and q[575] = 24. Columns 512..575
// hold 100 so that reading V from them shows.
TEST(CpuReference, MlaTakesVFromTheFirstColumnsOfK) {
  ProblemSpec s;
  s.variant = Variant::mla();
  s.b = 1, s.s_q = 1, s.h_q = 2, s.h_kv = 1, s.page_size = 64;
  s.seqlens = {2};
  HostProblem p = testing::make_problem(s);
  const int d_k = 576, d_v = 512, score_col = 575;
  for (int h = 0; h < 2; ++h) {
    fill(q_row(p, 0, 0, h), d_k, s.dtype, 0.0f);
    q_row(p, 0, 0, h)[score_col] = half::from_float(s.dtype, 24.0f);
  }
  for (int j = 0; j < 2; ++j) {
    uint16_t* k = cache_row(p, p.k_cache, d_k, 0, j, 0);
    for (int c = 0; c < d_v; ++c) k[c] = half::from_float(s.dtype, j == 0 ? v0_of(c) : v1_of(c));
    fill(k + d_v, d_k - d_v, s.dtype, 100.0f);
    k[score_col] = half::from_float(s.dtype, float(j));
  }
  decode_reference(p.args());
  for (int h = 0; h < 2; ++h) {
    for (int c = 0; c < d_v; ++c)
      EXPECT_NEAR(out_at(p, 0, 0, h, c), two_token_out(c), one_ulp(s.dtype, two_token_out(c)))
          << "head " << h << " column " << c;
    EXPECT_NEAR(lse_at(p, 0, 0, h), kTwoTokenLse, 1e-6);
  }
}

// GQA: h_q 4 over h_kv 2, query heads {0, 1} read KV head 0 and {2, 3} read KV head 1. One
// cached token, so out is that head's V row and lse its score, (h + 1) * (kv + 1).
TEST(CpuReference, GqaHeadMapping) {
  ProblemSpec s;
  s.variant = Variant::mqa(128);
  s.dtype = DType::f16;
  s.b = 1, s.s_q = 1, s.h_q = 4, s.h_kv = 2, s.page_size = 16;
  s.seqlens = {1};
  s.softmax_scale = 1.0f;
  HostProblem p = testing::make_problem(s);
  const int d = 128;
  for (int h = 0; h < 4; ++h) {
    fill(q_row(p, 0, 0, h), d, s.dtype, 0.0f);
    q_row(p, 0, 0, h)[0] = half::from_float(s.dtype, float(h + 1));
  }
  for (int kv = 0; kv < 2; ++kv) {
    uint16_t* k = cache_row(p, p.k_cache, d, 0, 0, kv);
    fill(k, d, s.dtype, 0.0f);
    k[0] = half::from_float(s.dtype, float(kv + 1));
    fill(cache_row(p, p.v_cache, d, 0, 0, kv), d, s.dtype, float(10 * (kv + 1)));
  }
  decode_reference(p.args());
  for (int h = 0; h < 4; ++h) {
    const int kv = h / 2;
    for (int c = 0; c < d; ++c) ASSERT_EQ(out_at(p, 0, 0, h, c), 10.0f * (kv + 1)) << "head " << h;
    EXPECT_EQ(lse_at(p, 0, 0, h), float((h + 1) * (kv + 1))) << "head " << h;
  }
}

// Large scores: lse is the natural log of the sum, computed without overflow (scores 100 and
// 101 give 101 + log(1 + e^-1)).
TEST(CpuReference, LargeScoresNaturalLogLse) {
  ProblemSpec s;
  s.variant = Variant::mfa_kr(64);
  s.b = 1, s.s_q = 1, s.h_q = 1, s.h_kv = 1, s.page_size = 2;
  s.seqlens = {2};
  s.softmax_scale = 1.0f;
  HostProblem p = testing::make_problem(s);
  const int d = 64;
  uint16_t* q = q_row(p, 0, 0, 0);
  fill(q, d, s.dtype, 0.0f);
  q[d - 2] = half::from_float(s.dtype, 100.0f);
  q[d - 1] = half::from_float(s.dtype, 1.0f);
  for (int j = 0; j < 2; ++j) {
    uint16_t* k = cache_row(p, p.k_cache, d, 0, j, 0);  // also V (aliasing): columns 0..63
    fill(k, d, s.dtype, float(j + 1));
    k[d - 2] = half::from_float(s.dtype, 1.0f);
    k[d - 1] = half::from_float(s.dtype, float(j));  // scores 100 + j
  }
  decode_reference(p.args());
  const double w1 = 1 / (1 + std::exp(-1.0));  // weight of token 1
  const double lse = 101 + std::log(1 + std::exp(-1.0));
  EXPECT_NEAR(lse_at(p, 0, 0, 0), lse, 1e-5);
  // Column 0 of V: 1 for token 0 and 2 for token 1.
  EXPECT_NEAR(out_at(p, 0, 0, 0, 0), 1 + w1, one_ulp(s.dtype, 1 + w1));
}

}  // namespace
}  // namespace flashmfa
