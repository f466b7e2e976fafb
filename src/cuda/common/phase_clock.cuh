// flashmfa CUDA: phase clocks, a measuring aid compiled only with
// -DFLASHMFA_PHASE_CLOCK=1 (otherwise every macro here is empty and nothing is emitted).
//
// Each CTA records %globaltimer (ns, one clock for the whole GPU) at up to kPhases numbered
// points (a point reached again, e.g. by a later work item, keeps the later reading); the last
// launch's readings stay in a __device__ table, and at process exit the table is printed to
// stderr as, per point, the minimum / median / maximum over CTAs of the time since the
// earliest CTA's entry, and the median of the time since each CTA's own point 1. Built for
// questions such as "how long after the kernel starts does the first tile land" that event
// timing cannot answer.
//
//   FLASHMFA_PHASE(i)        record point i (called by one thread of the CTA)
//   FLASHMFA_PHASE_REPORT()  host side, in the launcher: registers the exit-time report once
//
// Chain clocks, in the same builds: a ChainClock accumulates SM cycles (clock64) per step of a
// repeated chain (the MLA consumers' own tile, mla/consumer.cuh) in registers, and
// ChainClock::store writes one warpgroup's sums to a second table; the exit report prints, per
// step, the median over (CTA, warpgroup) of the cycles per chain. Without FLASHMFA_PHASE_CLOCK
// ChainClock is an empty type whose calls compile to nothing.
#pragma once

namespace flashmfa::cuda {
// The tile (counted per CTA from its first) whose chain the MLA FP8 kernel's points follow.
constexpr int kPhaseTile = 40;
constexpr int kChainSteps = 8;  // steps a ChainClock can tell apart
}  // namespace flashmfa::cuda

#if defined(FLASHMFA_PHASE_CLOCK) && FLASHMFA_PHASE_CLOCK

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace flashmfa::cuda::phase_clock {

constexpr int kPhases = 16;
constexpr int kMaxCtas = 1024;
// One table per translation unit (static), and static readers: each kernel file reports its own.
static __device__ unsigned long long g_table[kMaxCtas][kPhases];

__device__ __forceinline__ void record(int i) {
  const int cta = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  if (cta >= kMaxCtas) return;
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  g_table[cta][i] = t;
}

static void report() {
  static std::vector<unsigned long long> host(size_t(kMaxCtas) * kPhases);
  if (cudaMemcpyFromSymbol(host.data(), g_table, host.size() * sizeof(host[0])) != cudaSuccess)
    return;
  unsigned long long t0 = ~0ull;
  int ctas = 0;
  for (int c = 0; c < kMaxCtas; ++c)
    if (host[size_t(c) * kPhases] != 0) t0 = std::min(t0, host[size_t(c) * kPhases]), ++ctas;
  if (ctas == 0) return;
  std::fprintf(stderr,
               "phase clock (%d CTAs, us since the first entry at %llu ns): point min / median / "
               "max\n",
               ctas, t0);
  for (int i = 0; i < kPhases; ++i) {
    std::vector<double> v;
    for (int c = 0; c < kMaxCtas; ++c) {
      const unsigned long long t = host[size_t(c) * kPhases + i];
      if (host[size_t(c) * kPhases] != 0 && t >= t0) v.push_back((t - t0) * 1e-3);
    }
    if (v.empty()) continue;
    std::sort(v.begin(), v.end());
    // And the median over CTAs of the time since the CTA's own point 1 (a chain's start).
    std::vector<double> d;
    for (int c = 0; c < kMaxCtas; ++c) {
      const unsigned long long t = host[size_t(c) * kPhases + i], t1 = host[size_t(c) * kPhases + 1];
      if (host[size_t(c) * kPhases] != 0 && t >= t0 && t1 >= t0)
        d.push_back((double(t) - double(t1)) * 1e-3);
    }
    std::sort(d.begin(), d.end());
    std::fprintf(stderr, "  %2d: %8.2f %8.2f %8.2f  (%zu CTAs)  from point 1: %8.2f\n", i,
                 v.front(), v[v.size() / 2], v.back(), v.size(), d.empty() ? 0.0 : d[d.size() / 2]);
  }
}

// Chain clocks: [CTA][warpgroup][step] cycle sums, and [..][kChainSteps] the chains counted.
static __device__ unsigned long long g_chain[kMaxCtas][2][kChainSteps + 1];

static void report_chains() {
  static std::vector<unsigned long long> host(size_t(kMaxCtas) * 2 * (kChainSteps + 1));
  if (cudaMemcpyFromSymbol(host.data(), g_chain, host.size() * sizeof(host[0])) != cudaSuccess)
    return;
  std::vector<double> per[kChainSteps], total;
  for (size_t c = 0; c < size_t(kMaxCtas) * 2; ++c) {
    const unsigned long long* row = &host[c * (kChainSteps + 1)];
    if (row[kChainSteps] == 0) continue;
    double sum = 0;
    for (int i = 0; i < kChainSteps; ++i) {
      per[i].push_back(double(row[i]) / double(row[kChainSteps]));
      sum += per[i].back();
    }
    total.push_back(sum);
  }
  if (total.empty()) return;
  auto median = [](std::vector<double>& v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::fprintf(stderr, "chain clock (%zu warpgroups): SM cycles per chain, median over them\n",
               total.size());
  for (int i = 0; i < kChainSteps; ++i) std::fprintf(stderr, "  step %d: %8.0f\n", i, median(per[i]));
  std::fprintf(stderr, "  whole:  %8.0f\n", median(total));
}

static void register_report() {
  static const bool once = [] { return std::atexit(report) == 0 && std::atexit(report_chains) == 0; }();
  (void)once;
}

}  // namespace flashmfa::cuda::phase_clock

namespace flashmfa::cuda {
struct ChainClock {
  unsigned long long sum[kChainSteps] = {};
  long long last = 0;
  int chains = 0;
  __device__ void begin() { last = clock64(); }
  // The step that ends now.
  __device__ void step(int i) {
    const long long t = clock64();
    sum[i] += t - last;
    last = t;
  }
  __device__ void count() { ++chains; }
  // Warpgroup wg's sums (call from one thread of it).
  __device__ void store(int wg) const {
    const int cta = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    if (cta >= phase_clock::kMaxCtas) return;
    for (int i = 0; i < kChainSteps; ++i) phase_clock::g_chain[cta][wg][i] = sum[i];
    phase_clock::g_chain[cta][wg][kChainSteps] = chains;
  }
};
}  // namespace flashmfa::cuda

#define FLASHMFA_PHASE(i) ::flashmfa::cuda::phase_clock::record(i)
#define FLASHMFA_PHASE_REPORT() ::flashmfa::cuda::phase_clock::register_report()

#else

namespace flashmfa::cuda {
struct ChainClock {
  __device__ void begin() {}
  __device__ void step(int) {}
  __device__ void count() {}
  __device__ void store(int) const {}
};
}  // namespace flashmfa::cuda

#define FLASHMFA_PHASE(i) ((void)0)
#define FLASHMFA_PHASE_REPORT() ((void)0)

#endif
