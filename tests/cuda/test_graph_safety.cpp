// flashmfa GPU tests: CUDA-graph capture of plan + run replayed with new lengths, device-side
// safety (lying block tables and lengths are skipped and flagged, never read out of bounds),
// and the reduced suite that compute-sanitizer runs.
#include <gtest/gtest.h>

#include <cstring>

#include "gpu_problem.hpp"

namespace flashmfa::gputest {
namespace {

using testing::ProblemSpec;

// Captures plan + run of `s` once and replays the graph with each round's lengths (at most
// the first round's, which sized the block table), comparing every replay with the reference.
void replay_rounds(ProblemSpec s, const std::vector<std::vector<int32_t>>& rounds) {
  s.seqlens = rounds.front();
  testing::HostProblem h = testing::make_problem(s);
  DeviceProblem d(h);
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph;
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const Plan p = d.plan(stream);
  run(p, d.args, stream);
  CUDA_OK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec;
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  int round = 0;
  for (const auto& lens : rounds) {
    h.seqlens = lens;
    CUDA_OK(cudaMemcpyAsync(d.seqlens.get(), lens.data(), lens.size() * sizeof(int32_t),
                            cudaMemcpyHostToDevice, stream));
    d.poison();
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    const std::string why = compare_device_outputs(h, d);
    EXPECT_TRUE(why.empty()) << describe(s) << " replay " << round << ": " << why;
    ++round;
  }
  EXPECT_EQ(read_error_flags(p, stream), 0u) << describe(s);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST(CudaGraph, PlanAndRunReplayWithNewLengths) {
  SKIP_WITHOUT_GPU();
  ProblemSpec s;
  s.variant = Variant::mla();
  s.h_q = 32;
  s.b = 4;
  s.s_q = 2;
  s.causal = true;
  // The first round holds the largest lengths the block table will hold.
  replay_rounds(s, {{900, 2000, 40, 1500}, {1, 2000, 0, 3}, {64, 65, 39, 1}, {899, 10, 40, 1499}});
}

// Serving-sized batches whose sequences are mostly split over two parts, replayed with new
// lengths every round (so the cut, the split sequences and their partial slots move): every
// replay's partials must be merged afresh, with nothing left from the round before.
TEST(CudaGraph, SplitBatchesReplayWithNewLengths) {
  SKIP_WITHOUT_GPU();
  struct Case {
    Variant v;
    int h_q, s_q;
  };
  for (const Case& c : {Case{Variant::mfa(), 64, 1}, Case{Variant::mla(), 128, 1},
                        Case{Variant::mfa_kr(256), 64, 4}}) {
    ProblemSpec s;
    s.variant = c.v;
    s.h_q = c.h_q;
    s.s_q = c.s_q;
    s.causal = c.s_q > 1;
    s.b = 96;
    std::vector<std::vector<int32_t>> rounds(4, std::vector<int32_t>(s.b));
    for (int r = 0; r < 4; ++r)
      for (int i = 0; i < s.b; ++i)
        rounds[r][i] = r == 0 ? 1600 : (i * 131 + r * 977) % 1601;  // round 0: the largest
    replay_rounds(s, rounds);
  }
}

// A problem whose sequence 0 gets a lie written into it; the others must stay exact.
struct LyingProblem {
  testing::HostProblem h;
  explicit LyingProblem(Variant v, int h_q = 16, int page_size = 64) {
    ProblemSpec s;
    s.variant = v;
    s.h_q = h_q;
    s.page_size = page_size;
    s.b = 3;
    s.seqlens = {300, 200, 100};
    h = testing::make_problem(s);
  }
  // Sequences 1.. of the device result against the reference (sequence 0 is the liar).
  void expect_others_exact(DeviceProblem& d) {
    std::vector<uint16_t> out;
    std::vector<float> lse;
    d.out.download(out);
    d.lse.download(lse);
    testing::HostProblem ref = h;
    ref.seqlens[0] = 0;  // the reference cannot follow the lie; sequence 0 is not compared
    const std::string why = compare_sequences(ref, ref.args(), out, lse, 1, h.spec.b);
    EXPECT_TRUE(why.empty()) << why;
  }
};

TEST(CudaSafety, PageIndexOutOfRangeIsSkippedAndFlagged) {
  SKIP_WITHOUT_GPU();
  // Pages of 16 (MFA): the lying page is the second of the first tile's four.
  const struct { Variant v; int page; } cases[] = {
      {Variant::mla(), 64}, {Variant::mfa(), 64}, {Variant::mfa(), 16}};
  for (int32_t bad : {-1, 1 << 30}) {
    for (const auto& c : cases) {
      LyingProblem lp(c.v, 16, c.page);
      lp.h.block_table[1] = bad;  // sequence 0, page 1: inside its length
      DeviceProblem d(lp.h);
      d.poison();
      const Plan p = d.plan();
      run(p, d.args);
      CUDA_OK(cudaDeviceSynchronize());
      EXPECT_EQ(read_error_flags(p), uint32_t(kFlagPageOutOfRange)) << "page " << bad;
      EXPECT_EQ(read_error_flags(p), 0u) << "flags are cleared by reading them";
      lp.expect_others_exact(d);
      // Checked mode raises right after the call.
      d.args.checked = true;
      try {
        run(p, d.args);
        ADD_FAILURE() << "checked run did not raise";
      } catch (const Error& e) {
        EXPECT_EQ(e.status(), Status::bad_page_index);
        EXPECT_NE(std::string(e.what()).find("page index"), std::string::npos) << e.what();
      }
    }
  }
}

// The same lie on the portable kernel's 64-row MLA tile (h_q 128, page 64): the rows of the
// skipped page are zero-filled and masked, the flag raised, the other sequences exact.
TEST(CudaSafety, PageIndexOutOfRangeOnPortable64RowTiles) {
  SKIP_WITHOUT_GPU();
  for (int32_t bad : {-1, 1 << 30}) {
    LyingProblem lp(Variant::mla(), 128);
    lp.h.block_table[1] = bad;
    DeviceProblem d(lp.h);
    d.set_path(DecodeArgs::Path::portable);
    d.poison();
    const Plan p = d.plan();
    run(p, d.args);
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_EQ(read_error_flags(p), uint32_t(kFlagPageOutOfRange)) << "page " << bad;
    lp.expect_others_exact(d);
  }
}

TEST(CudaSafety, LengthsBeyondTheBlockTableAreClampedAndFlagged) {
  SKIP_WITHOUT_GPU();
  LyingProblem lp(Variant::mla());
  DeviceProblem d(lp.h);
  const int capacity = lp.h.max_pages * lp.h.spec.page_size;
  for (auto [len, flag] : {std::pair{capacity + 1000, kFlagSeqlenTooLong},
                           std::pair{-5, kFlagSeqlenNegative}}) {
    std::vector<int32_t> lens = lp.h.seqlens;
    lens[0] = len;
    CUDA_OK(cudaMemcpy(d.seqlens.get(), lens.data(), lens.size() * 4, cudaMemcpyHostToDevice));
    d.poison();
    const Plan p = d.plan();
    run(p, d.args);
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_EQ(read_error_flags(p) & flag, uint32_t(flag)) << "length " << len;
    lp.expect_others_exact(d);
  }
}

TEST(CudaSafety, WorkspaceTooSmallIsRefused) {
  SKIP_WITHOUT_GPU();
  ProblemSpec s;
  s.seqlens = {100};
  testing::HostProblem h = testing::make_problem(s);
  DeviceProblem d(h);
  const size_t need = workspace_size(d.args);
  ASSERT_GT(need, 0u);
  try {
    plan(d.args, d.workspace.get(), need - 1);
    ADD_FAILURE() << "a workspace one byte short was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("workspace_bytes"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(std::to_string(need)), std::string::npos) << e.what();
  }
  DeviceBuffer big(need + 16);
  try {  // the kernels read the workspace as float4: a misaligned base is refused
    plan(d.args, static_cast<char*>(big.get()) + 4, need);
    ADD_FAILURE() << "a misaligned workspace was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("16-byte aligned"), std::string::npos) << e.what();
  }
}

// The reduced suite for compute-sanitizer (memcheck, racecheck): every kernel, split and
// unsplit sequences, aliasing and separate V, FP8 caches, small pages and a lying block table.
// One test per kernel family, so that each can be sanitized on its own (scripts/device.sh
// sanitize).
void sanitizer_suite(DecodeArgs::Path path) {
  for (Variant v : {Variant::mla(), Variant::mfa(), Variant::mfa_kr(128), Variant::mqa(64)}) {
    for (int page : {1, 16, 64}) {
      // Pages of 16: the sm_90a decode kernel's tiles of four pages (MFA, MFA-KR 128), once.
      if (page == 16 && !(v == Variant::mfa() || v == Variant::mfa_kr(128))) continue;
      // The Hopper path takes pages of >= 64 tokens for MLA, >= 16 for the decode kernel;
      // automatic falls back below that.
      const DecodeArgs::Path p = page < 16 ? DecodeArgs::Path::automatic : path;
      ProblemSpec s;
      s.variant = v;
      s.page_size = page;
      s.h_kv = v == Variant::mla() ? 1 : 2;
      s.h_q = s.h_kv * 8;
      s.s_q = 2;
      s.causal = true;
      s.b = 3;
      s.seqlens = {0, 70, 700};
      run_and_check(s, "sanitizer " + v.name() + " page " + std::to_string(page), p);
      // FP8 caches: the portable kernel's raw stages, dequantizing pass and its barrier; on the
      // Hopper path the decode kernel's raw ring and conversions (page 16: two producer
      // warps, one per half of the ring), and the MLA kernel's raw-buffer widening (16 rows;
      // sm90/mla/fp8.cuh).
      if (v == Variant::mla() || v == Variant::mfa() || v == Variant::mfa_kr(128))
        run_and_check_fp8(s, "sanitizer fp8 " + v.name() + " page " + std::to_string(page), p);
      // More than 64 rows of one KV head (160: the sm_90a row split's two warpgroups on 128
      // rows, then a CTA whose second warpgroup has no rows and only follows the ring).
      if (v == Variant::mfa() || v == Variant::mfa_kr(128)) {
        ProblemSpec r = s;
        r.h_kv = 1;
        r.h_q = 40;
        r.s_q = 4;
        run_and_check(r, "sanitizer 160 rows " + v.name() + " page " + std::to_string(page), p);
      }
    }
  }
  {  // MLA's 64-row tiles (the portable kernel's compute-bound form; split loads)
    ProblemSpec s;
    s.h_q = 64;
    s.b = 3;
    s.seqlens = {0, 130, 700};
    run_and_check(s, "sanitizer MLA 64 rows", path);
    // The FP8 MLA kernel's in-slot widening (more than 32 rows).
    run_and_check_fp8(s, "sanitizer fp8 MLA 64 rows", path);
  }
  LyingProblem lp(Variant::mla());
  lp.h.block_table[0] = 1 << 30;
  DeviceProblem d(lp.h);
  d.set_path(path);
  const Plan p = d.plan();
  run(p, d.args);
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT_EQ(read_error_flags(p), uint32_t(kFlagPageOutOfRange));
}

TEST(CudaSanitizer, Portable) {
  SKIP_WITHOUT_GPU();
  sanitizer_suite(DecodeArgs::Path::portable);
}

// The automatic choice: the sm_90a kernels on a Hopper device (page 64), the portable one
// elsewhere.
TEST(CudaSanitizer, Automatic) {
  SKIP_WITHOUT_GPU();
  sanitizer_suite(DecodeArgs::Path::automatic);
}

}  // namespace
}  // namespace flashmfa::gputest
