// flashmfa GPU tests: the Hopper (sm_90a) fast paths forced with DecodeArgs::Path::hopper, so a
// shape the path stops covering fails here instead of passing quietly on the portable kernel.
// Run on compute capability 9.0 devices of a build that includes sm_90; skipped elsewhere.
#include <cmath>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <initializer_list>
#include <string>

#include "gpu_problem.hpp"

namespace flashmfa::gputest {
namespace {

using testing::ProblemSpec;

bool have_hopper_path() {
  if (!have_gpu()) return false;
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return false;
  return prop.major == 9 && prop.minor == 0 && build_info().find("sm_90") != std::string::npos;
}

#define SKIP_WITHOUT_HOPPER_PATH()                                                     \
  if (!have_hopper_path()) GTEST_SKIP() << "no sm_90 device or no sm_90 build: skipped"

// Case n of a row-count sweep: six sequences -- empty, one token, a partial first tile, a single
// full tile, an odd tile count and one long enough to be split over parts -- on pages of 64,
// every third case 256.
ProblemSpec row_case(Variant v, DType dtype, int h_kv, int h_q, int s_q, bool causal, int n,
                     int seed0) {
  ProblemSpec s;
  s.variant = v;
  s.dtype = dtype;
  s.h_kv = h_kv;
  s.h_q = h_q;
  s.s_q = s_q;
  s.causal = causal;
  s.page_size = n % 3 == 2 ? 256 : 64;
  s.b = 6;
  s.seqlens = {0, 1, 40, 64, 193, 1500 + 7 * n};
  s.seed = seed0 + n;
  return s;
}

// Two sequences of h_q 64 long enough to wrap the rings many times and to be split over parts
// (the second with a partial last tile), on pages of page_size.
ProblemSpec long_items(Variant v, int page_size, int seed) {
  ProblemSpec s;
  s.variant = v;
  s.h_q = 64;
  s.page_size = page_size;
  s.b = 2;
  s.seqlens = {20000, 5000 - 13};
  s.seed = seed;
  return s;
}

// An MLA problem of b sequences of `len` tokens (the first 13 shorter: a partial last tile).
struct MlaItems {
  int h_kv, h_q, s_q, b, len;
  bool causal;
};
ProblemSpec mla_items(const MlaItems& c, int seed) {
  ProblemSpec s;
  s.variant = Variant::mla();
  s.h_kv = c.h_kv;
  s.h_q = c.h_q;
  s.s_q = c.s_q;
  s.causal = c.causal;
  s.b = c.b;
  s.seqlens.assign(c.b, c.len);
  s.seqlens[0] = c.len - 13;
  s.seed = seed;
  return s;
}

// MLA (d_k 576, d_v 512 from the K rows): the seesaw kernel's every row count and tail case.
// Lengths: empty, one token, a partial first tile, a single full tile, an odd and an even tile
// count (which warpgroup owns the last tile), and one long enough to be split over parts.
TEST(HopperPath, MlaMatchesReference) {
  SKIP_WITHOUT_HOPPER_PATH();
  int n = 0;
  for (DType dtype : {DType::bf16, DType::f16})
    for (int h_q : {1, 3, 9, 16, 63, 64, 126, 128})
      for (int s_q : {1, 2, 4})
        for (bool causal : {false, true}) {
          const ProblemSpec s = row_case(Variant::mla(), dtype, 1, h_q, s_q, causal, n, 4000);
          ++n;
          run_and_check(s, describe(s), DecodeArgs::Path::hopper);
        }
}

// More than one KV head, s_q up to 16, and lengths whose tiles wrap the two-slot ring many
// times inside one work item.
TEST(HopperPath, MlaHeadsAndLongItems) {
  SKIP_WITHOUT_HOPPER_PATH();
  const MlaItems cases[] = {
      {2, 16, 1, 3, 700, false}, {8, 16, 2, 2, 300, true}, {1, 128, 16, 2, 900, true},
      {1, 32, 1, 2, 12000, false}, {1, 128, 1, 1, 40000, false}};
  int n = 0;
  for (const auto& c : cases) {
    const ProblemSpec s = mla_items(c, 5000 + n++);
    run_and_check(s, describe(s), DecodeArgs::Path::hopper);
  }
}

// The 16-bit decode kernel (MFA, MFA-KR 256 and 128, GQA d 128) at row counts on both sides of
// 64 per KV head: the KV split (<= 64 rows), the row split (two warpgroups on 128 rows), and
// row tiles whose second warpgroup has some rows (h_q 100 at s_q 1: 100) or none (h_q 40 at
// s_q 4: 160, the second CTA's second warpgroup only follows the ring).
TEST(HopperPath, DecodeRowCounts) {
  SKIP_WITHOUT_HOPPER_PATH();
  int n = 0;
  for (Variant v : {Variant::mfa(), Variant::mfa_kr(256), Variant::mfa_kr(128), Variant::mqa(128)})
    for (int h_q : {9, 40, 64, 100, 128})
      for (int s_q : {1, 2, 4})
        for (bool causal : {false, true}) {
          if (s_q == 1 && causal) continue;
          const int h_kv = v == Variant::mqa(128) && h_q % 2 == 0 ? 2 : 1;
          const ProblemSpec s = row_case(v, n % 2 ? DType::f16 : DType::bf16, h_kv, h_q, s_q,
                                         causal, n, 7000);
          ++n;
          run_and_check(s, describe(s), DecodeArgs::Path::hopper);
        }
}

// Pages smaller than a tile (16 and 32 tokens: a tile is copied page by page) on the decode
// kernel, 16-bit and FP8 caches: MFA, MFA-KR 256 and 128, GQA d 128 with 2 and 8 KV heads, the
// KV split and the row split, with row_case's lengths (partial pages inside the first and the
// last tile, a tile ending on a page boundary, a split sequence), the pages scattered over the
// cache and unused rows NaN; then one item long enough to wrap both rings many times.
TEST(HopperPath, DecodeSmallPages) {
  SKIP_WITHOUT_HOPPER_PATH();
  const struct { Variant v; int h_kv, h_q, s_q; bool causal; } cases[] = {
      {Variant::mfa(), 1, 64, 1, false},      {Variant::mfa(), 1, 40, 4, true},
      {Variant::mfa_kr(256), 1, 9, 2, true},  {Variant::mfa_kr(128), 1, 100, 1, false},
      {Variant::mqa(128), 2, 16, 2, true},    {Variant::mqa(128), 8, 32, 1, false}};
  int n = 0;
  for (int page : {16, 32})
    for (const auto& c : cases) {
      ProblemSpec s = row_case(c.v, n % 2 ? DType::f16 : DType::bf16, c.h_kv, c.h_q, c.s_q,
                               c.causal, n, 9700);
      s.page_size = page;
      ++n;
      run_and_check(s, describe(s), DecodeArgs::Path::hopper);
      run_and_check_fp8(s, describe(s), DecodeArgs::Path::hopper);
    }
  for (Variant v : {Variant::mfa(), Variant::mfa_kr(256)}) {
    const ProblemSpec s = long_items(v, 16, 9800 + n++);
    run_and_check(s, describe(s), DecodeArgs::Path::hopper);
    run_and_check_fp8(s, describe(s), DecodeArgs::Path::hopper);
    // A lying block table: sequence 0's second page (inside its first tile) out of range.
    run_and_check_fp8(s, describe(s) + " lying page", DecodeArgs::Path::hopper, 0, 1 << 30);
  }
}

// Cache and q rows wider apart than their width (views of wider buffers, 16-byte aligned, so
// the fast paths still take them): the tensor maps carry the caller's strides -- MLA's two 5-D
// maps whose atom stride is smaller than the token stride, the decode kernel's 4-D maps, MLA's
// q map (h_q 128) -- for MLA with whole-slot and half release, MFA, MFA-KR on the row split,
// GQA with 2 KV heads.
TEST(HopperPath, PitchedCacheRows) {
  SKIP_WITHOUT_HOPPER_PATH();
  const struct { Variant v; int h_kv, h_q, s_q; bool causal; } cases[] = {
      {Variant::mla(), 1, 16, 1, false},      {Variant::mla(), 1, 128, 2, true},
      {Variant::mfa(), 1, 64, 1, false},      {Variant::mfa_kr(256), 1, 64, 4, true},
      {Variant::mqa(128), 2, 16, 2, true}};
  int n = 0;
  for (const auto& c : cases)
    for (int pad : {8, 64}) {
      const ProblemSpec s = row_case(c.v, n % 2 ? DType::f16 : DType::bf16, c.h_kv, c.h_q, c.s_q,
                                     c.causal, n, 9000);
      ++n;
      run_and_check_pitched(s, describe(s), DecodeArgs::Path::hopper, pad);
    }
}

// q with dimensions of one element whose strides are 0 (a caller may give any stride there):
// MLA's q map steps over them with the dense strides (one sequence, one token; h_q 128 and 64,
// where the producer loads Q by TMA, 16 at s_q 4, where a box holds 4 tokens, 16 at s_q 1 and
// 1 at s_q 2, where the box is taller than s_q).
TEST(HopperPath, MlaQueryStridesOfSingleDimensions) {
  SKIP_WITHOUT_HOPPER_PATH();
  const struct { int h_q, s_q; } cases[] = {{128, 1}, {64, 1}, {16, 4}, {16, 1}, {1, 2}};
  for (const auto& c : cases) {
    ProblemSpec s;
    s.variant = Variant::mla();
    s.h_q = c.h_q;
    s.s_q = c.s_q;
    s.causal = c.s_q > 1;
    s.b = 1;
    s.seqlens = {5000};
    s.seed = 9500 + c.h_q;
    testing::HostProblem h = testing::make_problem(s);
    DeviceProblem d(h);
    const TensorView& q = d.args.q;
    d.args.q = make_view(q.data, q.dtype, {1, c.s_q, c.h_q, 576},
                         {0, c.s_q == 1 ? 0 : int64_t(c.h_q) * 576, 576, 1}, q.device);
    d.args.path = DecodeArgs::Path::hopper;
    const Plan p = d.plan();
    run(p, d.args);
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_EQ(read_error_flags(p), 0u) << describe(s);
    const std::string why = compare_device_outputs(h, d);
    EXPECT_TRUE(why.empty()) << describe(s) << ": " << why;
  }
}

// fp8_row caches on the decode kernel's FP8 form (raw ring, dequantizing warps): MFA, MFA-KR
// 256 and 128, GQA d 128 with 2 and 8 KV heads, against the reference on the same FP8 cache
// (unused rows hold e4m3 NaN bytes and NaN scales); the lengths as above (items of one to
// four tiles leave some of d 128's three warpgroups without tiles) plus items long enough to
// wrap the raw ring many times and to be split over parts.
TEST(HopperPath, Fp8RowCachesMatchReference) {
  SKIP_WITHOUT_HOPPER_PATH();
  int n = 0;
  for (Variant v : {Variant::mfa(), Variant::mfa_kr(256), Variant::mfa_kr(128), Variant::mqa(128)})
    for (DType dtype : {DType::bf16, DType::f16})
      for (int s_q : {1, 2, 4})
        for (int h_kv : v == Variant::mqa(128) ? std::initializer_list<int>{2, 8}
                                                : std::initializer_list<int>{1}) {
          ProblemSpec s;
          s.variant = v;
          s.dtype = dtype;
          s.h_kv = h_kv;
          s.h_q = h_kv == 1 ? (n % 2 ? 64 : 9) : h_kv * 4;
          s.s_q = s_q;
          s.causal = s_q > 1 && n % 3 != 1;
          s.page_size = n % 3 == 2 ? 256 : 64;
          s.b = 6;
          s.seqlens = {0, 1, 40, 64, 193, 700 + 7 * n};
          s.seed = 6000 + n++;
          run_and_check_fp8(s, describe(s), DecodeArgs::Path::hopper);
        }
  for (Variant v : {Variant::mfa(), Variant::mfa_kr(256), Variant::mfa_kr(128)}) {
    const ProblemSpec s = long_items(v, 64, 6100 + n++);
    run_and_check_fp8(s, describe(s), DecodeArgs::Path::hopper);
  }
  // GQA d 128 at pages of 16: three consumer warpgroups, each streamed by a producer warp of its
  // own into its third of the raw ring (4 slots), which items of 94 and 31 tiles wrap many times.
  ProblemSpec gqa = long_items(Variant::mqa(128), 16, 6100 + n++);
  gqa.h_kv = 8;
  gqa.h_q = 32;
  gqa.seqlens = {6000, 2000 - 13};
  run_and_check_fp8(gqa, describe(gqa), DecodeArgs::Path::hopper);
}

// Every e4m3 value of the fp8_row caches subnormal (exponent field 0: magnitudes 2^-9 .. 7 x
// 2^-9 times the row's scale, and zeros), which the conversions' bit placement must carry
// (common/fp8_dequant.cuh). The softmax scale is raised so that the tiny scores still decide P:
// K rows read as zero would give a uniform P, V rows read as zero a zero output. NaN bytes of
// unused rows stay NaN. MFA, MFA-KR 256 and 128, GQA d 128 with 8 KV heads (three warpgroups),
// both dtypes.
TEST(HopperPath, Fp8RowSubnormalValuesMatchReference) {
  SKIP_WITHOUT_HOPPER_PATH();
  auto subnormal = [](testing::Fp8Problem& f) {
    for (auto* bytes : {&f.k8, &f.v8})
      for (uint8_t& b : *bytes)
        if ((b & 0x7f) != 0x7f) b &= 0x87;  // keep the sign and the mantissa
  };
  int n = 0;
  for (Variant v : {Variant::mfa(), Variant::mfa_kr(256), Variant::mfa_kr(128), Variant::mqa(128)})
    for (DType dtype : {DType::bf16, DType::f16}) {
      ProblemSpec s;
      s.variant = v;
      s.dtype = dtype;
      s.h_kv = v == Variant::mqa(128) ? 8 : 1;
      s.h_q = s.h_kv == 8 ? 32 : 64;
      s.b = 3;
      s.seqlens = {64, 193, 900 + n};
      s.softmax_scale = float(std::ldexp(1.0 / std::sqrt(double(v.d_k)), 14));
      s.seed = 6300 + n++;
      run_and_check_fp8(s, describe(s) + " subnormal e4m3", DecodeArgs::Path::hopper, 0,
                        std::nullopt, 0, false, subnormal);
    }
}

// fp8_row scales laid out head-major in memory ([num_pages, h_kv, page_size], passed as the
// [num_pages, page_size, h_kv] view with strides (h_kv * page_size, 1, page_size)): each KV
// head's scales of a page are contiguous, so the producer's scale copies coalesce (measured
// no faster, docs/perf-notes.md Y.5). GQA d 128 with 8 KV heads and MFA, pages of 16, 64 and 256, s_q 1
// and 2 (causal), on the decode kernel's FP8 form and on the portable kernel.
TEST(HopperPath, Fp8RowHeadMajorScalesMatchReference) {
  SKIP_WITHOUT_HOPPER_PATH();
  int n = 0;
  for (Variant v : {Variant::mqa(128), Variant::mfa()})
    for (int page : {16, 64, 256})
      for (DecodeArgs::Path path : {DecodeArgs::Path::hopper, DecodeArgs::Path::portable}) {
        ProblemSpec s;
        s.variant = v;
        s.h_kv = v == Variant::mqa(128) ? 8 : 1;
        s.h_q = s.h_kv == 8 ? 32 : 64;
        s.s_q = 1 + n % 2;
        s.causal = s.s_q > 1;
        s.page_size = page;
        s.b = 4;
        s.seqlens = {1, 64, 193, 700 + 7 * n};
        s.seed = 6200 + n++;
        run_and_check_fp8(s, describe(s) + " head-major scales", path, 0, std::nullopt, 0, true);
      }
}

// FlashMLA's FP8 rows (fp8_mla) on the MLA kernel, whose producer widens each raw tile from a
// raw buffer of its own (at most 32 query rows per KV head: Q staged as 32 rows) or inside its
// slot (mla/fp8.cuh): both dtypes, 1 to 128 query rows per KV head (one and two row tiles; 32
// and 33 rows: the two forms' boundary),
// s_q 1 / 2 / 4 with and without the causal rule, pages of 64 and 256, the lengths of
// row_case (empty, one token, partial, odd and even tile counts, split), against the reference
// on the same FP8 cache (unused rows hold e4m3 NaN bytes and NaN scales); then long items
// that wrap the two-slot ring many times, two KV heads, cache rows 16 bytes apart beyond
// their 656 (and q rows beyond their 576), and a lying block table. (The FP8 kernel's
// consumers load Q themselves: Q by TMA from its producer measured slower, docs/perf-notes.md
// Q.1.)
TEST(HopperPath, Fp8MlaCachesMatchReference) {
  SKIP_WITHOUT_HOPPER_PATH();
  int n = 0;
  for (DType dtype : {DType::bf16, DType::f16})
    for (int h_q : {1, 9, 16, 32, 33, 64, 128})
      for (int s_q : {1, 2, 4}) {
        const ProblemSpec s = row_case(Variant::mla(), dtype, 1, h_q, s_q, s_q > 1 && n % 3 != 1,
                                       n, 8000);
        ++n;
        const Plan p = run_and_check_fp8(s, describe(s), DecodeArgs::Path::hopper);
        EXPECT_EQ(p.kernel, run_and_check_fp8(s, "automatic " + describe(s)).kernel)
            << "the automatic choice takes the Hopper kernel for FP8 MLA";
      }
  const MlaItems cases[] = {
      {1, 16, 1, 2, 12000, false}, {1, 128, 1, 1, 40000, false}, {2, 16, 2, 2, 700, true},
      {1, 128, 4, 2, 900, true}, {1, 32, 1, 3, 9000, false}};
  for (const auto& c : cases) {
    const ProblemSpec s = mla_items(c, 8100 + n++);
    run_and_check_fp8(s, describe(s), DecodeArgs::Path::hopper);
    run_and_check_fp8(s, describe(s) + " rows 672 bytes apart", DecodeArgs::Path::hopper, 16);
  }
  for (int32_t bad : {-1, 1 << 30})
    for (int h_q : {16, 128}) {
      ProblemSpec s;
      s.variant = Variant::mla();
      s.h_q = h_q;
      s.b = 3;
      s.seqlens = {300, 200, 100};
      s.seed = 8200 + n++;
      run_and_check_fp8(s, describe(s) + " page " + std::to_string(bad),
                        DecodeArgs::Path::hopper, 0, bad);
    }
}

// bf16 tiles on the Hopper kernels hold FP8 values times 2^-32 so that one product per two
// values converts them (common/fp8_dequant.cuh, FoldedRowScale): exact for scales in
// [2^-85, 2^40), the scores and outputs scaled back. Caches whose scales sit near either end
// (those of the other tests, 2^-7.6 .. 2^-6.8, times 2^46 and 2^-40) must still match the
// reference: MLA with one and two row tiles and s_q 2, MFA, MFA-KR (f16 tiles keep two
// products). With the large scales the softmax scale moves the other way, so that the scaled
// scores stay O(1): every kernel's softmax rounds the scaled row max, and scaled scores beyond
// ~2^30 overflow its numerators (FlashAttention's form has the same limit; MLA's RoPE part,
// which no scale touches, keeps the small-scale case at the default softmax scale).
TEST(HopperPath, Fp8BfloatScalesNearTheFoldedRange) {
  SKIP_WITHOUT_HOPPER_PATH();
  int n = 0;
  for (int scale_log2 : {46, -40}) {
    auto check = [&](ProblemSpec s) {
      if (scale_log2 > 0)
        s.softmax_scale = float(std::ldexp(1.0 / std::sqrt(double(s.variant.d_k)), -scale_log2));
      run_and_check_fp8(s, describe(s) + " scales 2^" + std::to_string(scale_log2),
                        DecodeArgs::Path::hopper, 0, std::nullopt, scale_log2);
    };
    for (int h_q : {16, 128})
      for (int s_q : {1, 2}) {
        check(row_case(Variant::mla(), DType::bf16, 1, h_q, s_q, s_q > 1, n, 8300));
        ++n;
      }
    for (Variant v : {Variant::mfa(), Variant::mfa_kr(256)}) {
      ProblemSpec s;
      s.variant = v;
      s.h_q = 64;
      s.b = 4;
      s.seqlens = {1, 64, 193, 1500};
      s.seed = 8400 + n++;
      check(s);
    }
  }
}

}  // namespace
}  // namespace flashmfa::gputest
