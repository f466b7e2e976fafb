// The fast CPU path (public plan + run on CPU tensors) against the float64 reference over the
// full grid: every variant x dtype x page size {1, 16, 64, 256} x s_q {1, 2, 4} x causal.
//
// Every problem has NaN in each unused cache row, a sentinel page id in each unused
// block-table slot (make_problem), a zero-length sequence, a one-token sequence (empty rows
// when s_q > 1 and causal), and sequences that end inside a page and span several pages.
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "cpu_check.hpp"

namespace flashmfa {
namespace {

using testing::ProblemSpec;

// One row per variant, with a head layout typical of it (GQA rows have h_kv > 1).
struct GridVariant {
  const char* name;
  Variant variant;
  int h_q, h_kv;
};
const GridVariant kVariants[] = {
    {"mla", Variant::mla(), 16, 1},
    {"mfa", Variant::mfa(), 8, 1},
    {"mfa_kr256", Variant::mfa_kr(256), 8, 1},
    {"mfa_kr128", Variant::mfa_kr(128), 8, 1},
    {"mfa_kr64", Variant::mfa_kr(64), 4, 1},
    {"gqa64", Variant::mqa(64), 8, 2},
    {"gqa128", Variant::mqa(128), 6, 3},
    {"gqa256", Variant::mqa(256), 8, 4},
};
constexpr int kNumVariants = sizeof(kVariants) / sizeof(kVariants[0]);

// Lengths: mid-page ends for every page size, one empty and one single-token sequence, and a
// sequence long enough to be cut into several chunks by the fast path.
const std::vector<int> kGridLengths = {97, 0, 300, 1};

using GridParam = std::tuple<int, DType, int, int, bool>;  // variant, dtype, page, s_q, causal

// Test name, e.g. "mla_bf16_page64_sq2_causal". (A function, because a structured binding's
// commas would split the INSTANTIATE macro's arguments.)
std::string grid_name(const GridParam& param) {
  const auto [vi, dtype, page, s_q, causal] = param;
  return std::string(kVariants[vi].name) + "_" + dtype_name(dtype) + "_page" +
         std::to_string(page) + "_sq" + std::to_string(s_q) + (causal ? "_causal" : "");
}

class CpuDecodeGrid : public ::testing::TestWithParam<GridParam> {};

TEST_P(CpuDecodeGrid, FastMatchesReference) {
  const auto [vi, dtype, page, s_q, causal] = GetParam();
  const GridVariant& gv = kVariants[vi];
  ProblemSpec s;
  s.variant = gv.variant;
  s.dtype = dtype;
  s.b = static_cast<int>(kGridLengths.size());
  s.s_q = s_q, s.h_q = gv.h_q, s.h_kv = gv.h_kv, s.page_size = page;
  s.seqlens = kGridLengths;
  s.causal = causal;
  s.seed = 1000 + vi * 97 + page * 7 + s_q * 3 + causal;
  EXPECT_TRUE(testing::fast_matches_reference(s));
}

INSTANTIATE_TEST_SUITE_P(
    Grid, CpuDecodeGrid,
    ::testing::Combine(::testing::Range(0, kNumVariants), ::testing::Values(DType::bf16, DType::f16),
                       ::testing::Values(1, 16, 64, 256), ::testing::Values(1, 2, 4),
                       ::testing::Bool()),
    [](const ::testing::TestParamInfo<GridParam>& info) { return grid_name(info.param); });

}  // namespace
}  // namespace flashmfa
