// A randomized sweep: kSweepShapes shapes drawn from a fixed seed (so a failure reproduces by
// its index), each fast-vs-reference. Draws every axis at once: variant, dtype, any power-of-two
// page size, s_q 1..5, causal, batch 1..6, h_kv 1..4 with 1..8 query heads per KV head,
// lengths 0..700 with the edge values over-represented, spare block-table columns 0..3,
// sometimes an explicit scale, and the entry (public API or decode_fast with 1..6 threads).
//
// Sized for the reference's speed: about 10 s for the whole sweep in a Release build.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "cpu_check.hpp"

namespace flashmfa {
namespace {

using testing::FastEntry;
using testing::ProblemSpec;

constexpr int kSweepShapes = 300;
constexpr uint64_t kSweepSeed = 0x5eed2025;
constexpr int kMaxLength = 700;
constexpr int kEdgeLengths[] = {0, 1, 2, 63, 64, 65, 97, 128, 255, 257};

struct SweepCase {
  ProblemSpec spec;
  FastEntry entry;
};

SweepCase draw(int index) {
  std::mt19937_64 rng(kSweepSeed + static_cast<uint64_t>(index));
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const auto& variants = supported_variants();
  SweepCase c;
  ProblemSpec& s = c.spec;
  s.variant = variants[pick(0, static_cast<int>(variants.size()) - 1)];
  s.dtype = pick(0, 1) ? DType::bf16 : DType::f16;
  s.page_size = 1 << pick(0, 8);
  s.s_q = pick(1, 5);
  s.causal = pick(0, 1);
  s.b = pick(1, 6);
  s.h_kv = pick(1, 4);
  s.h_q = s.h_kv * pick(1, 8);
  for (int i = 0; i < s.b; ++i) {
    const bool edge = pick(0, 2) == 0;
    s.seqlens.push_back(edge ? kEdgeLengths[pick(0, std::size(kEdgeLengths) - 1)]
                             : pick(0, kMaxLength));
  }
  s.extra_pages_per_seq = pick(0, 3);
  if (pick(0, 3) == 0) s.softmax_scale = std::uniform_real_distribution<float>(0.01f, 0.5f)(rng);
  s.seed = rng();
  c.entry.threads = pick(0, 1) ? 0 : pick(1, 6);
  return c;
}

class CpuDecodeSweep : public ::testing::TestWithParam<int> {};

TEST_P(CpuDecodeSweep, FastMatchesReference) {
  const SweepCase c = draw(GetParam());
  EXPECT_TRUE(testing::fast_matches_reference(c.spec, c.entry)) << "sweep index " << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Sweep, CpuDecodeSweep, ::testing::Range(0, kSweepShapes));

}  // namespace
}  // namespace flashmfa
