// flashmfa GPU tests: the split-KV combine (one CTA per partial row, programmatic dependent
// launch behind the decode kernel) and the scheduler's "one part per sequence" rule, against
// the float64 reference: one long sequence cut over every part, batches mixing empty, short
// and long sequences, out rows that are not 4-byte aligned (element-wise stores), and two calls
// sharing one workspace back to back on one stream, one plan run many times in a row; partial
// values of any magnitude.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>

#include "gpu_problem.hpp"

namespace flashmfa::gputest {
namespace {

using testing::ProblemSpec;

// One long sequence split over every part: n = num_parts partial slots per row, more than the
// 8-deep unroll of every split group (d_v 256: 4 groups, 512: 2, 64: 16). Each case runs on
// the automatically chosen kernel and on the portable one (both trigger the combine's launch).
constexpr DecodeArgs::Path kPaths[] = {DecodeArgs::Path::automatic, DecodeArgs::Path::portable};
TEST(CudaCombine, OneLongSequenceManySplits) {
  SKIP_WITHOUT_GPU();
  struct Case { Variant v; int h_q, h_kv, s_q; bool causal; DType dtype; };
  const Case cases[] = {
      {Variant::mfa(), 64, 1, 1, false, DType::bf16},   // MFA h_q 64, d_v 256
      {Variant::mfa(), 64, 1, 1, false, DType::f16},
      {Variant::mla(), 16, 1, 1, false, DType::bf16},   // MLA h_q 16, d_v 512
      {Variant::mla(), 16, 1, 2, true, DType::f16},
      {Variant::mqa(64), 16, 4, 1, false, DType::bf16}, // GQA 16/4, d_v 64
      {Variant::mfa_kr(64), 8, 2, 2, true, DType::bf16},
      {Variant::mqa(128), 32, 8, 1, false, DType::f16}, // GQA 32/8, d_v 128
  };
  for (const Case& c : cases) {
    ProblemSpec s;
    s.variant = c.v;
    s.dtype = c.dtype;
    s.h_q = c.h_q;
    s.h_kv = c.h_kv;
    s.s_q = c.s_q;
    s.causal = c.causal;
    s.b = 1;
    s.seqlens = {20000};
    s.seed = 7000 + c.h_q + c.v.d_v;
    for (DecodeArgs::Path path : kPaths) {
      const std::string label =
          describe(s) + (path == DecodeArgs::Path::portable ? " portable" : " automatic");
      const Plan p = run_and_check(s, label, path);
      EXPECT_GT(p.num_parts, 8) << label << ": the sequence should be cut into many splits";
    }
  }
}

// Sequences shorter than their part's fixed cost: with b = 1 and a length of 0 or 1 the cost
// axis (a few units) is cut into many 1-unit parts, so the sequence is split over several
// parts of which all (length 0: lse = -inf, out must be exactly 0) or all but one are empty.
TEST(CudaCombine, TinySequencesSplitIntoEmptyPartials) {
  SKIP_WITHOUT_GPU();
  for (Variant v : {Variant::mfa(), Variant::mla(), Variant::mqa(64)}) {
    const std::vector<int> batches[] = {{0}, {1}, {0, 0}, {2, 0}};
    for (const std::vector<int>& lens : batches) {
      ProblemSpec s;
      s.variant = v;
      s.h_kv = v == Variant::mqa(64) ? 2 : 1;
      s.h_q = s.h_kv * 8;
      s.b = int(lens.size());
      s.seqlens = lens;
      run_and_check(s, describe(s));
    }
  }
}

// Empty, short and long sequences mixed: parts span several short sequences, long ones are
// split over many parts, and empty ones may straddle a part boundary (split, all partials
// empty).
TEST(CudaCombine, MixedEmptyShortLongBatch) {
  SKIP_WITHOUT_GPU();
  struct Case { Variant v; int h_q, h_kv, s_q; bool causal; };
  const Case cases[] = {{Variant::mfa(), 64, 1, 1, false},
                        {Variant::mla(), 16, 1, 2, true},
                        {Variant::mqa(64), 32, 8, 1, false}};
  for (const Case& c : cases) {
    ProblemSpec s;
    s.variant = c.v;
    s.h_q = c.h_q;
    s.h_kv = c.h_kv;
    s.s_q = c.s_q;
    s.causal = c.causal;
    s.b = 48;
    for (int i = 0; i < s.b; ++i) {
      switch (i % 4) {
        case 0: s.seqlens.push_back(0); break;
        case 1: s.seqlens.push_back(1 + (i * 13) % 60); break;
        case 2: s.seqlens.push_back(i % 8 == 2 ? 0 : 200 + i); break;
        default: s.seqlens.push_back(2500 + i * 97); break;
      }
    }
    s.seed = 8000 + c.h_q;
    for (DecodeArgs::Path path : kPaths)
      run_and_check(s, describe(s) + (path == DecodeArgs::Path::portable ? " portable" : ""),
                     path);
  }
}

// out rows 2-byte aligned only (the pointer one element past a 4-byte boundary, odd head
// stride): the combine falls back to element-wise stores, the decode kernels to theirs.
// Out rows only 2-byte aligned: the decode kernels' and the combine's epilogues store single
// elements instead of pairs. Both kernel families (automatic is the sm_90a one on Hopper).
TEST(CudaCombine, UnalignedOutRows) {
  SKIP_WITHOUT_GPU();
  for (Variant v : {Variant::mfa(), Variant::mla()}) for (DecodeArgs::Path path : kPaths) {
    ProblemSpec s;
    s.variant = v;
    s.h_q = 16;
    s.b = 3;
    s.s_q = 2;
    s.seqlens = {6000, 0, 33};
    const std::string label = describe(s) + " (unaligned out" +
                              (path == DecodeArgs::Path::portable ? ", portable)" : ")");
    testing::HostProblem h = testing::make_problem(s);
    DeviceProblem d(h);
    d.set_path(path);
    const int64_t d_v = v.d_v, sh = d_v + 1, ss = s.h_q * sh, sb = s.s_q * ss;
    DeviceBuffer padded((size_t(s.b) * sb + 1) * sizeof(uint16_t));
    ASSERT_NE(padded.get(), nullptr);
    CUDA_OK(cudaMemset(padded.get(), 0xff, padded.bytes()));
    DecodeArgs args = d.args;
    uint16_t* const out0 = static_cast<uint16_t*>(padded.get()) + 1;  // 2-byte aligned only
    args.out = make_view(out0, s.dtype, {s.b, s.s_q, s.h_q, d_v}, {sb, ss, sh, 1},
                         {DeviceType::cuda, 0});
    d.poison();
    const Plan p = plan(args, d.workspace.get(), d.workspace.bytes());
    run(p, args);
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_EQ(read_error_flags(p), 0u) << label;
    std::vector<uint16_t> raw, out(h.out.size());
    std::vector<float> lse;
    padded.download(raw);
    d.lse.download(lse);
    for (int i = 0; i < s.b; ++i)
      for (int t = 0; t < s.s_q; ++t)
        for (int hq = 0; hq < s.h_q; ++hq)
          for (int64_t c = 0; c < d_v; ++c)
            out[((size_t(i) * s.s_q + t) * s.h_q + hq) * d_v + c] =
                raw[1 + i * sb + t * ss + hq * sh + c];
    const std::string why = compare_with_reference(h, out, lse);
    EXPECT_TRUE(why.empty()) << label << ": " << why;
  }
}

// Equal lengths and a batch just below the parts the SMs give (at most ~3% of them idle): the
// GPU scheduler gives one part per sequence (the others idle); lengths that differ keep the
// equal cut. Both must be exact, around the rule's edges.
TEST(CudaCombine, BatchJustBelowSmParts) {
  SKIP_WITHOUT_GPU();
  for (Variant v : {Variant::mfa(), Variant::mla()}) {
    ProblemSpec s;
    s.variant = v;
    s.h_q = v == Variant::mfa() ? 64 : 16;
    s.b = 1;
    s.seqlens = {100};
    testing::HostProblem h1 = testing::make_problem(s);
    DeviceProblem d1(h1);
    const int sm_parts = d1.plan().num_parts;  // the part count does not depend on b
    if (sm_parts <= 2) GTEST_SKIP() << "too few parts on this device for the rule to matter";
    const int slack = sm_parts / 32;  // the rule's largest idle count (0: the rule never applies)
    for (int b : {sm_parts - 1, sm_parts - std::max(1, slack), sm_parts - slack - 1, sm_parts})
      for (bool equal : {true, false}) {
        s.b = b;
        s.seqlens.assign(b, 700);
        if (!equal) s.seqlens[0] = 701;
        s.seed = 9000 + b + equal;
        const Plan p = run_and_check(s, describe(s));
        EXPECT_EQ(p.num_parts, sm_parts) << describe(s);
      }
  }
}

// bf16 bits times 2^shift (exact: the exponent field moves; zero stays zero).
uint16_t times_pow2(uint16_t bits, int shift) {
  const int e = (bits >> 7) & 0xff;
  if (e == 0 || e == 0xff) return bits;  // zero (no subnormals here), or the NaN of unused rows
  EXPECT_TRUE(e + shift > 0 && e + shift < 0xff) << "bf16 exponent out of range";
  return uint16_t((bits & 0x807f) | ((e + shift) << 7));
}

// Partial rows are fp16 with a power-of-two scale per column group (partials.cuh), so values
// far outside fp16's range (2^-24 .. 65504), either way, must come through the split and the
// merge. V is multiplied by 2^shift before the run (MLA: the whole cached row, with the softmax
// scale divided by as much, so that S is unchanged), which bf16 does exactly; the result,
// divided back, must match the reference on the unscaled problem with the usual tolerances.
TEST(CudaCombine, PartialsKeepValuesOfAnyMagnitude) {
  SKIP_WITHOUT_GPU();
  for (Variant v : {Variant::mfa(), Variant::mla()})
    for (int shift : {60, -60})
      for (DecodeArgs::Path path : kPaths) {
        ProblemSpec s;
        s.variant = v;
        s.h_q = v == Variant::mfa() ? 64 : 16;
        s.b = 3;
        s.seqlens = {20000, 3000, 517};
        s.softmax_scale = 1.f / std::sqrt(float(v.d_k));
        s.seed = 12000 + v.d_v + shift;
        const std::string label = describe(s) + " V x 2^" + std::to_string(shift) +
                                  (path == DecodeArgs::Path::portable ? " portable" : "");
        testing::HostProblem h = testing::make_problem(s);
        testing::HostProblem scaled = h;
        const bool aliased = h.v_cache.empty();  // MLA: V is the head of the cached K row
        for (uint16_t& u : aliased ? scaled.k_cache : scaled.v_cache) u = times_pow2(u, shift);
        DeviceProblem d(scaled);
        d.set_path(path);
        if (aliased) d.args.softmax_scale = std::ldexp(*s.softmax_scale, -shift);
        d.poison();
        const Plan p = d.plan();
        run(p, d.args);
        CUDA_OK(cudaDeviceSynchronize());
        EXPECT_EQ(read_error_flags(p), 0u) << label;
        EXPECT_GT(p.num_parts, 8) << label << ": the long sequence should be cut into splits";
        std::vector<uint16_t> out;
        std::vector<float> lse;
        d.out.download(out);
        d.lse.download(lse);
        for (uint16_t& u : out) u = times_pow2(u, -shift);
        const std::string why = compare_with_reference(h, out, lse);
        EXPECT_TRUE(why.empty()) << label << ": " << why;
      }
}

// Few rows with long sequences (the combine's CTA-per-row layout, many partials per row): one
// plan, several runs in a row on poisoned outputs, every run checked; then a plan of other
// lengths on the same workspace, run twice more. Nothing a run leaves in the workspace may
// change the next one's result.
TEST(CudaCombine, RepeatedRunsOfOnePlanWithManySplits) {
  SKIP_WITHOUT_GPU();
  struct Case { Variant v; int h_q, h_kv, s_q; std::vector<int32_t> lens, lens2; };
  const Case cases[] = {
      {Variant::mfa(), 64, 1, 1, {20000}, {9000}},
      {Variant::mla(), 128, 1, 1, {30000, 5000}, {26000, 700}},
      {Variant::mla(), 16, 1, 2, {12000, 0, 9000}, {1, 0, 8900}},
      {Variant::mfa_kr(256), 64, 1, 4, {8000, 3000}, {5000, 2900}},
      {Variant::mqa(128), 32, 8, 1, {16000}, {2000}},
  };
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (const Case& c : cases) {
    ProblemSpec s;
    s.variant = c.v;
    s.h_q = c.h_q;
    s.h_kv = c.h_kv;
    s.s_q = c.s_q;
    s.causal = c.s_q > 1;
    s.b = int(c.lens.size());
    s.seqlens = c.lens;
    s.seed = 8100 + c.h_q + c.s_q;
    testing::HostProblem h = testing::make_problem(s);
    DeviceProblem d(h);
    for (int phase = 0; phase < 2; ++phase) {
      if (phase == 1) {  // new lengths, each within its sequence's pages
        h.seqlens = c.lens2;
        CUDA_OK(cudaMemcpyAsync(d.seqlens.get(), c.lens2.data(), c.lens2.size() * sizeof(int32_t),
                                cudaMemcpyHostToDevice, stream));
      }
      const Plan p = d.plan(stream);
      EXPECT_GT(p.num_parts, 8) << describe(s);
      for (int round = 0; round < (phase == 0 ? 4 : 2); ++round) {
        d.poison();
        CUDA_OK(cudaDeviceSynchronize());
        run(p, d.args, stream);
        CUDA_OK(cudaStreamSynchronize(stream));
        const std::string why = compare_device_outputs(h, d);
        EXPECT_TRUE(why.empty()) << describe(s) << " plan " << phase << " run " << round << ": "
                                 << why;
      }
      EXPECT_EQ(read_error_flags(p, stream), 0u) << describe(s);
    }
  }
  cudaStreamDestroy(stream);
}

// Two calls sharing one workspace back to back on one stream, no synchronization between
// them: the second plan rewrites the schedule and the second decode the partials, so the first
// combine (launched with programmatic serialization) must have finished before either.
TEST(CudaCombine, BackToBackCallsShareOneWorkspace) {
  SKIP_WITHOUT_GPU();
  ProblemSpec a;
  a.variant = Variant::mfa();
  a.h_q = 64;
  a.b = 2;
  a.seqlens = {12000, 3000};
  a.seed = 11;
  ProblemSpec b = a;
  b.seqlens = {2000, 9000};
  b.seed = 12;
  testing::HostProblem ha = testing::make_problem(a), hb = testing::make_problem(b);
  DeviceProblem da(ha), db(hb);
  DeviceBuffer ws(std::max(da.workspace.bytes(), db.workspace.bytes()));
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (int round = 0; round < 3; ++round) {
    da.poison();
    db.poison();
    CUDA_OK(cudaDeviceSynchronize());
    const Plan pa = plan(da.args, ws.get(), ws.bytes(), stream);
    run(pa, da.args, stream);
    const Plan pb = plan(db.args, ws.get(), ws.bytes(), stream);
    run(pb, db.args, stream);
    CUDA_OK(cudaStreamSynchronize(stream));
    EXPECT_EQ(read_error_flags(pb, stream), 0u);
    for (auto [h, d, name] : {std::tuple{&ha, &da, "first"}, std::tuple{&hb, &db, "second"}}) {
      const std::string why = compare_device_outputs(*h, *d);
      EXPECT_TRUE(why.empty()) << name << " call, round " << round << ": " << why;
    }
  }
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace flashmfa::gputest
