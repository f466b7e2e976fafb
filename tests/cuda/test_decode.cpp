// flashmfa GPU tests: the CUDA decode path against the float64 CPU reference over the issue's
// grid (variant x dtype x page size x s_q x causal x h_kv), odd shapes, a randomized sweep and
// determinism. NaN fills every unused cache row and unused block-table slots hold huge page ids
// (make_problem), outputs are poisoned before each run.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <tuple>

#include "gpu_problem.hpp"

namespace flashmfa::gputest {
namespace {

using testing::ProblemSpec;

const Variant kVariants[] = {Variant::mla(),     Variant::mfa(),     Variant::mfa_kr(256),
                             Variant::mqa(128),  Variant::mfa_kr(128), Variant::mqa(64),
                             Variant::mfa_kr(64)};

using GridParam = std::tuple<int /*variant*/, DType, int /*page*/, int /*s_q*/, bool, int /*h_kv*/>;

class CudaDecodeGrid : public ::testing::TestWithParam<GridParam> {};

TEST_P(CudaDecodeGrid, MatchesReference) {
  SKIP_WITHOUT_GPU();
  const auto [vi, dtype, page, s_q, causal, h_kv] = GetParam();
  ProblemSpec s;
  s.variant = kVariants[vi];
  s.dtype = dtype;
  s.page_size = page;
  s.s_q = s_q;
  s.causal = causal;
  s.h_kv = h_kv;
  s.h_q = h_kv == 1 ? 16 : h_kv * 4;
  s.b = 3;
  // A row that sees nothing under causal masking (length 1 < s_q), a sequence ending inside a
  // page, and one long enough to be split over several parts.
  s.seqlens = {1, 77, 300};
  s.seed = 1000 + vi * 97 + page * 13 + s_q * 7 + causal + h_kv * 3;
  run_and_check(s, describe(s));
}

INSTANTIATE_TEST_SUITE_P(Grid, CudaDecodeGrid,
                         ::testing::Combine(::testing::Range(0, 7),
                                            ::testing::Values(DType::bf16, DType::f16),
                                            ::testing::Values(1, 16, 64, 256),
                                            ::testing::Values(1, 2, 4), ::testing::Bool(),
                                            ::testing::Values(1, 2, 8)));

// FP8 caches (CacheFormat fp8_mla / fp8_row) on the portable kernel, which dequantizes them in
// shared memory: the same grid against the reference on the same FP8 cache (rows quantized
// by append_kv on the host; unused rows hold e4m3 NaN bytes and NaN scales).
using Fp8Param = std::tuple<int /*variant*/, DType, int /*page*/, int /*s_q*/, int /*h_kv*/>;

class CudaFp8Grid : public ::testing::TestWithParam<Fp8Param> {};

TEST_P(CudaFp8Grid, MatchesReferenceOnTheFp8Cache) {
  SKIP_WITHOUT_GPU();
  const auto [vi, dtype, page, s_q, h_kv] = GetParam();
  ProblemSpec s;
  s.variant = kVariants[vi];
  s.dtype = dtype;
  s.page_size = page;
  s.s_q = s_q;
  s.causal = s_q > 1;
  s.h_kv = h_kv;
  s.h_q = h_kv == 1 ? 16 : h_kv * 4;
  s.b = 3;
  s.seqlens = {1, 77, 300};
  s.seed = 5000 + vi * 97 + page * 13 + s_q * 7 + h_kv * 3;
  run_and_check_fp8(s, describe(s));
}

INSTANTIATE_TEST_SUITE_P(Grid, CudaFp8Grid,
                         ::testing::Combine(::testing::Range(0, 7),
                                            ::testing::Values(DType::bf16, DType::f16),
                                            ::testing::Values(1, 16, 64, 256),
                                            ::testing::Values(1, 2, 4), ::testing::Values(1, 2)));

// The wide tiles (64 query rows per KV head: MLA h_q 128, MFA h_q 64), long split sequences,
// zero lengths, and rows whose strides are not multiples of 16 bytes (element-wise loads).
TEST(CudaFp8, WideTilesLongSequencesAndPaddedRows) {
  SKIP_WITHOUT_GPU();
  for (Variant v : {Variant::mla(), Variant::mfa(), Variant::mfa_kr(256), Variant::mqa(128)}) {
    for (bool pad : {false, true}) {
      ProblemSpec s;
      s.variant = v;
      s.h_kv = 1;
      s.h_q = v == Variant::mla() ? 128 : 64;
      s.s_q = 2;
      s.causal = true;
      s.b = 4;
      s.seqlens = {0, 3000, 129, 64};
      s.seed = 77 + pad;
      run_and_check_fp8(s, describe(s) + (pad ? " padded rows" : ""),
                        DecodeArgs::Path::automatic, pad ? 8 : 0);
    }
  }
}

// The portable kernel's compute-bound MLA tile (64 query rows of one KV head) on whole-tile
// pages: odd and even tile counts per work item, items of 0 and 1 tiles, several items per
// part and split sequences, s_q up to 4 with the causal rule, h_q 32 to 128, both dtypes; then
// pitched rows (16-byte multiples) and pages of 16 tokens (a tile spans four pages).
TEST(CudaDecode, PortableMla64RowTiles) {
  SKIP_WITHOUT_GPU();
  for (DType dtype : {DType::bf16, DType::f16}) {
    for (int page : {64, 256}) {
      for (auto [h_q, s_q] : {std::pair{128, 1}, std::pair{64, 2}, std::pair{32, 4}}) {
        ProblemSpec s;
        s.variant = Variant::mla();
        s.dtype = dtype;
        s.page_size = page;
        s.h_q = h_q;
        s.s_q = s_q;
        s.causal = s_q > 1;
        s.b = 10;
        s.seqlens = {0, 1, 63, 64, 65, 128, 129, 191, 700, 3001};
        s.seed = 9100 + page + h_q + s_q + int(dtype);
        run_and_check(s, describe(s) + " portable", DecodeArgs::Path::portable);
      }
    }
  }
  ProblemSpec s;
  s.variant = Variant::mla();
  s.h_q = 128;
  s.s_q = 2;
  s.causal = true;
  s.b = 3;
  s.seqlens = {65, 1000, 129};
  s.seed = 9177;
  run_and_check_pitched(s, describe(s) + " portable, pitched rows", DecodeArgs::Path::portable, 8);
  s.page_size = 16;
  run_and_check(s, describe(s) + " portable, page 16", DecodeArgs::Path::portable);
}

TEST(CudaDecode, OddShapes) {
  SKIP_WITHOUT_GPU();
  for (int h_q : {1, 3, 9, 63, 126, 128}) {
    for (int b : {1, 17}) {
      ProblemSpec s;
      s.variant = Variant::mla();
      s.h_q = h_q;
      s.b = b;
      s.s_q = 2;
      s.causal = true;
      const int lens[] = {0, 1, 63, 65, 97, 64, 128, 129};
      for (int i = 0; i < b; ++i) s.seqlens.push_back(lens[i % 8]);
      s.seed = h_q * 31 + b;
      run_and_check(s, describe(s));
    }
  }
}

TEST(CudaDecode, AllEmpty) {
  SKIP_WITHOUT_GPU();
  ProblemSpec s;
  s.variant = Variant::mfa();
  s.h_q = 64;
  s.b = 5;
  s.seqlens = {0, 0, 0, 0, 0};
  run_and_check(s, describe(s));
}

TEST(CudaDecode, LongSequencesAndManyShortOnes) {
  SKIP_WITHOUT_GPU();
  {  // one long sequence cut over every part
    ProblemSpec s;
    s.variant = Variant::mla();
    s.h_q = 128;
    s.b = 1;
    s.seqlens = {20000};
    run_and_check(s, describe(s));
  }
  {  // many short sequences: parts span several sequences, most are not split
    ProblemSpec s;
    s.variant = Variant::mfa();
    s.h_q = 8;
    s.b = 300;
    for (int i = 0; i < s.b; ++i) s.seqlens.push_back(1 + (i * 37) % 200);
    run_and_check(s, describe(s));
  }
}

// Serving-sized problems: each part holds a few dozen KV tiles of one sequence, so the cp.async
// ring wraps many times. The cache is copied back after the run and must be bit-identical (no
// stray write lands in it); the first two sequences are compared with the reference.
TEST(CudaDecode, LongWorkItems) {
  SKIP_WITHOUT_GPU();
  struct Case { Variant v; int h_q, s_q; bool causal; };
  const Case cases[] = {{Variant::mfa(), 64, 1, false},    {Variant::mfa(), 8, 1, false},
                        {Variant::mla(), 16, 1, false},    {Variant::mla(), 128, 2, true},
                        {Variant::mfa_kr(256), 64, 1, false}};
  constexpr int kBatch = 32, kLen = 8192, kChecked = 2;
  for (const Case& c : cases) {
    ProblemSpec s;
    s.variant = c.v;
    s.h_q = c.h_q;
    s.s_q = c.s_q;
    s.causal = c.causal;
    s.b = kBatch;
    s.seqlens.assign(kBatch, kLen);
    s.seqlens[1] = kLen - 77;
    const std::string label = describe(s);
    testing::HostProblem h = testing::make_problem(s);
    DeviceProblem d(h);
    d.poison();
    const Plan p = d.plan();
    run(p, d.args);
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_EQ(read_error_flags(p), 0u) << label;
    std::vector<uint16_t> k_after, v_after, out;
    std::vector<float> lse;
    d.k.download(k_after);
    EXPECT_TRUE(k_after == h.k_cache) << label << ": the K cache changed during the run";
    if (!h.v_cache.empty()) {
      d.v.download(v_after);
      EXPECT_TRUE(v_after == h.v_cache) << label << ": the V cache changed during the run";
    }
    d.out.download(out);
    d.lse.download(lse);
    // The reference on the first kChecked sequences only (a batch prefix of the same views).
    DecodeArgs ref = h.args();
    for (TensorView* t : {&ref.q, &ref.block_table, &ref.seqlens_k, &ref.out, &ref.lse})
      t->shape[0] = kChecked;
    const std::string why = compare_sequences(h, ref, out, lse, 0, kChecked);
    EXPECT_TRUE(why.empty()) << label << " (parts " << p.num_parts << "): " << why;
  }
}

TEST(CudaDecode, RandomizedSweep) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(20261123);
  auto pick = [&](std::initializer_list<int> xs) {
    return *(xs.begin() + std::uniform_int_distribution<int>(0, int(xs.size()) - 1)(rng));
  };
  for (int iter = 0; iter < 200; ++iter) {
    ProblemSpec s;
    s.variant = kVariants[std::uniform_int_distribution<int>(0, 6)(rng)];
    s.dtype = rng() % 2 ? DType::bf16 : DType::f16;
    s.h_kv = pick({1, 1, 2, 4});
    s.h_q = s.h_kv * pick({1, 2, 3, 5, 8, 16, 32});
    s.page_size = pick({1, 2, 8, 16, 32, 64, 128, 256});
    s.s_q = pick({1, 1, 2, 3, 4, 8});
    s.causal = rng() % 2;
    s.b = pick({1, 2, 5, 9});
    for (int i = 0; i < s.b; ++i) s.seqlens.push_back(std::uniform_int_distribution<int>(0, 700)(rng));
    s.extra_pages_per_seq = pick({0, 1, 3});
    s.seed = iter;
    run_and_check(s, "sweep " + std::to_string(iter) + ": " + describe(s));
  }
}

TEST(CudaDecode, Deterministic) {
  SKIP_WITHOUT_GPU();
  ProblemSpec s;
  s.variant = Variant::mla();
  s.h_q = 128;
  s.b = 4;
  s.seqlens = {5000, 17, 3000, 999};
  testing::HostProblem h = testing::make_problem(s);
  DeviceProblem d(h);
  std::vector<uint16_t> out[2];
  std::vector<float> lse[2];
  for (int r = 0; r < 2; ++r) {
    d.poison();
    run(d.plan(), d.args);
    CUDA_OK(cudaDeviceSynchronize());
    d.out.download(out[r]);
    d.lse.download(lse[r]);
  }
  EXPECT_EQ(out[0], out[1]) << "out differs between two identical runs";
  EXPECT_EQ(0, std::memcmp(lse[0].data(), lse[1].data(), lse[0].size() * sizeof(float)))
      << "lse differs between two identical runs";
}

}  // namespace
}  // namespace flashmfa::gputest
