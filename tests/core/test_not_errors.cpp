// What is NOT an error: rows with nothing to see (s_q longer than a sequence under causal
// masking, zero-length sequences) and an empty batch. Such rows get out = 0 and lse = -inf,
// from the fast CPU path (plan + run) and from the reference alike.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "flashmfa/flashmfa.hpp"
#include "flashmfa/half.hpp"
#include "problem/problem.hpp"

namespace flashmfa {
namespace {

using testing::HostProblem;
using testing::ProblemSpec;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Runs the fast path (public API) on p and the reference on a copy; returns the copy.
HostProblem run_both(HostProblem& p) {
  HostProblem ref = p;
  decode_reference(ref.args());
  DecodeArgs a = p.args();
  const Plan pl = plan(a, nullptr, workspace_size(a));
  run(pl, a);
  return ref;
}

// Rows a query token of sequence i sees under the causal rule (j <= len - s_q + t).
int visible(const ProblemSpec& s, int len, int t) {
  return s.causal ? std::max(0, len - s.s_q + t + 1) : len;
}

// Checks every row: empty rows are exactly out 0 / lse -inf, other rows finite.
void expect_rows(const HostProblem& p, const char* which) {
  SCOPED_TRACE(which);
  const ProblemSpec& s = p.spec;
  const int d_v = s.variant.d_v;
  for (int i = 0; i < s.b; ++i)
    for (int t = 0; t < s.s_q; ++t)
      for (int h = 0; h < s.h_q; ++h) {
        const float lse = p.lse[(size_t(i) * s.h_q + h) * s.s_q + t];
        const uint16_t* out = p.out.data() + ((size_t(i) * s.s_q + t) * s.h_q + h) * d_v;
        const bool empty = visible(s, s.seqlens[i], t) == 0;
        if (empty) {
          EXPECT_EQ(lse, kNegInf) << "seq " << i << " token " << t << " head " << h;
          for (int d = 0; d < d_v; ++d)
            ASSERT_EQ(half::to_float(s.dtype, out[d]), 0.0f)
                << "seq " << i << " token " << t << " head " << h << " col " << d;
        } else {
          EXPECT_TRUE(std::isfinite(lse)) << "seq " << i << " token " << t << " head " << h;
          for (int d = 0; d < d_v; ++d)
            ASSERT_TRUE(std::isfinite(half::to_float(s.dtype, out[d])))
                << "seq " << i << " token " << t << " head " << h << " col " << d;
        }
      }
}

void expect_match(const HostProblem& got, const HostProblem& ref) {
  const auto tol = testing::tolerances(got.spec.dtype);
  const auto co = testing::compare_out(got.spec.dtype, got.out.data(), ref.out.data(),
                                       got.out.size(), tol.out_atol, tol.out_rtol);
  const auto cl = testing::compare_lse(got.lse.data(), ref.lse.data(), got.lse.size(),
                                       tol.lse_atol, tol.lse_rtol);
  EXPECT_TRUE(co.ok) << "out: " << co.summary();
  EXPECT_TRUE(cl.ok) << "lse: " << cl.summary();
}

TEST(NotAnError, CausalQueryLongerThanSequence) {
  // s_q = 4 new tokens over sequences of 0, 1, 2 and 5 cached tokens: with len < s_q the first
  // s_q - len query tokens see nothing.
  ProblemSpec s;
  s.variant = Variant::mla();
  s.b = 4, s.s_q = 4, s.h_q = 3, s.h_kv = 1, s.page_size = 1;
  s.seqlens = {1, 2, 0, 5};
  s.causal = true;
  for (DType dt : {DType::bf16, DType::f16}) {
    s.dtype = dt;
    HostProblem p = testing::make_problem(s);
    const HostProblem ref = run_both(p);
    expect_rows(p, "fast");
    expect_rows(ref, "reference");
    expect_match(p, ref);
  }
}

TEST(NotAnError, SingleVisibleTokenCopiesItsValueRow) {
  // Sequence of length 1, s_q 2, causal: token 0 sees nothing, token 1 sees row 0 with
  // weight exactly 1, so out is that V row bit for bit and lse is its score.
  ProblemSpec s;
  s.variant = Variant::mfa();
  s.b = 1, s.s_q = 2, s.h_q = 2, s.h_kv = 1, s.page_size = 16;
  s.seqlens = {1};
  s.causal = true;
  HostProblem p = testing::make_problem(s);
  const HostProblem ref = run_both(p);
  const int page = p.block_table[0], d = s.variant.d_v;
  const uint16_t* v0 = p.v_cache.data() + size_t(page) * s.page_size * d;
  for (int h = 0; h < s.h_q; ++h) {
    const uint16_t* out = p.out.data() + (size_t(1) * s.h_q + h) * d;  // token 1
    for (int c = 0; c < d; ++c) ASSERT_EQ(out[c], v0[c]) << "head " << h << " col " << c;
  }
  expect_rows(p, "fast");
  expect_match(p, ref);
}

TEST(NotAnError, ZeroLengthSequences) {
  ProblemSpec s;
  s.variant = Variant::mfa_kr(256);
  s.b = 5, s.s_q = 2, s.h_q = 4, s.h_kv = 2, s.page_size = 16;
  s.seqlens = {0, 17, 0, 0, 3};
  for (bool causal : {false, true}) {
    s.causal = causal;
    HostProblem p = testing::make_problem(s);
    const HostProblem ref = run_both(p);
    expect_rows(p, "fast");
    expect_rows(ref, "reference");
    expect_match(p, ref);
  }
}

TEST(NotAnError, AllSequencesEmpty) {
  ProblemSpec s;
  s.variant = Variant::mqa(64);
  s.b = 3, s.s_q = 1, s.h_q = 8, s.h_kv = 8, s.page_size = 64;
  s.seqlens = {0, 0, 0};
  s.extra_pages_per_seq = 0;  // a block table with one column nobody uses
  HostProblem p = testing::make_problem(s);
  const HostProblem ref = run_both(p);
  expect_rows(p, "fast");
  expect_rows(ref, "reference");
}

TEST(NotAnError, EmptyBatch) {
  ProblemSpec s;
  s.variant = Variant::mla();
  s.b = 0;
  HostProblem p = testing::make_problem(s);
  DecodeArgs a = p.args();
  EXPECT_EQ(workspace_size(a), 0u);
  EXPECT_NO_THROW(decode(a, nullptr, 0));
  EXPECT_NO_THROW(decode_reference(a));
}

}  // namespace
}  // namespace flashmfa
