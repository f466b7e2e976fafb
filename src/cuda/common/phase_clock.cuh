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
// warpgroup and step, the median over CTAs of the cycles per chain, and CTAs 0 and 1 whole.
// LandClock (load latency) and the hand-off clock build on it (ChainClocks holds all three), and
// so does ReleaseClock (a slot half's last release to the producer's copy, in the producer).
// Without FLASHMFA_PHASE_CLOCK they are empty types whose calls compile to nothing.
#pragma once

namespace flashmfa::cuda {
// The tile (counted per CTA from its first) whose chain the MLA FP8 kernel's points follow.
constexpr int kPhaseTile = 40;
constexpr int kChainSteps = 11;  // steps a ChainClock can tell apart
// The own-tile chain, two LandClock groups, the P hand-off, two ReleaseClock groups.
constexpr int kChainGroups = 6;
#if defined(FLASHMFA_PHASE_CLOCK) && FLASHMFA_PHASE_CLOCK
constexpr bool kPhaseClock = true;
#else
constexpr bool kPhaseClock = false;
#endif
// LandClock and the P hand-off read clock stamps another thread wrote, from shared memory
// (past the plan: config.hpp, kPhaseStampBytes). (Read from global memory they slowed the MLA
// chain ~18%, and a global load after the hand-off's barrier held back the shared loads behind
// it by ~1500 cycles.) FLASHMFA_PHASE_LAND=0 leaves both out.
#ifndef FLASHMFA_PHASE_LAND
#define FLASHMFA_PHASE_LAND 1
#endif
constexpr bool kPhaseLand = kPhaseClock && FLASHMFA_PHASE_LAND;
// The stamps' slots: the load of ring stage s, half h at 2 s + h; the P hand-off after them;
// then the latest consumer release of stage s, half h (MLA half release; ReleaseClock).
constexpr int land_stamp(int stage, int half) { return 2 * stage + half; }
constexpr int kHandoffStamp = land_stamp(1, 1) + 1;
constexpr int release_stamp(int stage, int half) { return kHandoffStamp + 1 + 2 * stage + half; }
constexpr int kIssueSlots = release_stamp(1, 1) + 1;  // 9
// Shared memory the stamps take past a kernel's plan (sm90 config.hpp, SmemPlan::launch_bytes).
constexpr unsigned kStampBytes = sizeof(long long);  // one clock64 stamp
constexpr unsigned kPhaseStampBytes = kPhaseLand ? kIssueSlots * kStampBytes : 0u;
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

// This CTA's row in the tables.
__device__ __forceinline__ int cta_index() {
  return blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
}

__device__ __forceinline__ void record(int i) {
  const int cta = cta_index();
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

static void report_warpgroup(const std::vector<unsigned long long>& host, int group, int w,
                             const char* name);
// One group's report: per warpgroup and step, the median over CTAs of the cycles per chain.
static void report_group(const std::vector<unsigned long long>& host, int group) {
  static const char* const kNames[kChainGroups] = {
      "chain clock", "landing, waits that blocked (step 0: issue to landed; step 1: the wait)",
      "landing, waits that found it landed (step 0: issue to the wait, an upper bound)",
      "P hand-off (step 0: the publisher's bar.arrive to the taker's first use of the row state)",
      "release to copy, producer waits that blocked (step 0: the last warp's release to the "
      "copy's issue; 'warpgroup' = the half)",
      "release to copy, producer waits that found the half free (step 0: release to issue)"};
  for (int w = 0; w < 2; ++w) report_warpgroup(host, group, w, kNames[group]);
}
static void report_warpgroup(const std::vector<unsigned long long>& host, int group, int w,
                             const char* name) {
  std::vector<double> per[kChainSteps], total, counts;
  for (int c = 0; c < kMaxCtas; ++c) {
    const unsigned long long* row =
        &host[(size_t(c) * 2 * kChainGroups + 2 * group + w) * (kChainSteps + 1)];
    if (row[kChainSteps] == 0) continue;
    counts.push_back(double(row[kChainSteps]));
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
  // The CTAs' own sums, for CTAs 0 and 1 (the two row tiles of part 0 when there are two):
  // the medians of separate steps need not come from one consistent chain.
  std::vector<double> own[2];
  for (int c = 0; c < 2; ++c) {
    const unsigned long long* row =
        &host[(size_t(c) * 2 * kChainGroups + 2 * group + w) * (kChainSteps + 1)];
    for (int i = 0; i < kChainSteps && row[kChainSteps] != 0; ++i)
      own[c].push_back(double(row[i]) / double(row[kChainSteps]));
  }
  std::fprintf(stderr,
               "%s, warpgroup %d (%zu CTAs, median %.0f per CTA): SM cycles, median (CTA 0, "
               "CTA 1)\n",
               name, w, total.size(), median(counts));
  for (int i = 0; i < kChainSteps; ++i)
    if (median(per[i]) != 0)
      std::fprintf(stderr, "  step %d: %8.0f  (%6.0f %6.0f)\n", i, median(per[i]),
                   own[0].empty() ? 0.0 : own[0][i], own[1].empty() ? 0.0 : own[1][i]);
  std::fprintf(stderr, "  whole:  %8.0f\n", median(total));
}

// Chain clocks: [CTA][slot][step] cycle sums, and [..][kChainSteps] the chains counted; a
// chain's slot is its group (kChainGroups, 2 slots each: one per warpgroup).
static __device__ unsigned long long g_chain[kMaxCtas][2 * kChainGroups][kChainSteps + 1];

static void report_chains() {
  static std::vector<unsigned long long> host(size_t(kMaxCtas) * 2 * kChainGroups *
                                              (kChainSteps + 1));
  if (cudaMemcpyFromSymbol(host.data(), g_chain, host.size() * sizeof(host[0])) != cudaSuccess)
    return;
  for (int g = 0; g < kChainGroups; ++g) report_group(host, g);
}


static void register_report() {
  static const bool once = [] {
    return std::atexit(report) == 0 && std::atexit(report_chains) == 0;
  }();
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
  // One chain of one step: the cycles from stamp_issue(slot) (another thread's, same SM) to
  // now; the stamp's load is used only by finish_since, so its latency stays off the chain.
  long long since_now = 0, since_stamp_value = 0;
  __device__ void since_stamp(uint32_t stamps, int slot);
  __device__ void finish_since() {
    if (since_now == 0) return;
    sum[0] += since_now - since_stamp_value;
    since_now = 0;
    count();
  }
  // Warpgroup wg's sums into group `group` (call from one thread of it).
  __device__ void store(int wg, int group = 0) const {
    const int cta = phase_clock::cta_index();
    if (cta >= phase_clock::kMaxCtas) return;
    for (int i = 0; i < kChainSteps; ++i) phase_clock::g_chain[cta][2 * group + wg][i] = sum[i];
    phase_clock::g_chain[cta][2 * group + wg][kChainSteps] = chains;
  }
};

// Load latency: the producer stamps each load's issue (stamp_issue, at `stamps`, the shared
// address of SmemView::phase_stamps), a consumer waiting for it measures either the landing (its
// wait blocked: `wait()` returns true) or an upper bound (the load had landed when it came:
// `wait()` must tell without blocking, mbarrier.test_wait). The stamp is ordered before the
// consumer's read by the mbarrier (or named barrier) between them.
namespace phase_clock {
__device__ __forceinline__ long long load_stamp(uint32_t stamps, int slot) {
  long long t;
  asm volatile("ld.shared.u64 %0, [%1];"
               : "=l"(t)
               : "r"(stamps + kStampBytes * uint32_t(slot))
               : "memory");
  return t;
}
}  // namespace phase_clock
__device__ __forceinline__ void stamp_issue(uint32_t stamps, int slot) {
  if (!kPhaseLand) return;
  asm volatile("st.shared.u64 [%0], %1;"
               :
               : "r"(stamps + kStampBytes * uint32_t(slot)), "l"(clock64())
               : "memory");
}
__device__ __forceinline__ void ChainClock::since_stamp(uint32_t stamps, int slot) {
  if (!kPhaseLand) return;
  since_now = clock64();
  since_stamp_value = phase_clock::load_stamp(stamps, slot);
}
struct LandClock {
  ChainClock blocked, free;
  // `wait()` waits for the load stamped at `slot` and returns whether it had to block.
  template <class Wait>
  __device__ void measure(uint32_t stamps, int slot, Wait wait) {
    const long long t0 = clock64();
    const bool waited = wait();
    const long long t1 = clock64();
    const long long issued = phase_clock::load_stamp(stamps, slot);
    // Both groups updated with selects: a reference chosen at run time would put them on the
    // stack.
    blocked.sum[0] += waited ? t1 - issued : 0;
    blocked.sum[1] += waited ? t1 - t0 : 0;
    blocked.chains += waited;
    free.sum[0] += waited ? 0 : t0 - issued;
    free.sum[1] += waited ? 0 : t1 - t0;
    free.chains += !waited;
  }
  __device__ void store(int wg) const {
    blocked.store(wg, 1);
    free.store(wg, 2);
  }
};
// Release to copy (MLA half release): each consumer warp raises the half's release stamp to its
// clock (a shared max: the last warp's wins) before its arrival on the empty barrier; the
// producer reads it once its wait returns, right before it issues the half's copy.
__device__ __forceinline__ void stamp_release(uint32_t stamps, int slot) {
  if (!kPhaseLand) return;
  asm volatile("red.shared.max.u64 [%0], %1;"
               :
               : "r"(stamps + kStampBytes * uint32_t(slot)), "l"(clock64())
               : "memory");
}
// Zeroes the release stamps (one thread, before the CTA's first barrier).
__device__ __forceinline__ void clear_release_stamps(uint32_t stamps) {
  if (!kPhaseLand) return;
  for (int slot = release_stamp(0, 0); slot < kIssueSlots; ++slot)
    asm volatile("st.shared.u64 [%0], %1;"
                 :
                 : "r"(stamps + kStampBytes * uint32_t(slot)), "l"(0ll)
                 : "memory");
}
struct ReleaseClock {
  ChainClock blocked[2], free[2];  // per half
  template <class Wait>
  __device__ void measure(uint32_t stamps, int slot, int half, Wait wait) {
    const bool waited = wait();
    const long long now = clock64(), released = phase_clock::load_stamp(stamps, slot);
    if (released == 0) return;  // a fresh slot: nothing was released
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      blocked[h].sum[0] += waited && h == half ? now - released : 0;
      blocked[h].chains += waited && h == half;
      free[h].sum[0] += !waited && h == half ? now - released : 0;
      free[h].chains += !waited && h == half;
    }
  }
  __device__ void store() const {
    for (int h = 0; h < 2; ++h) blocked[h].store(h, 4), free[h].store(h, 5);
  }
};
// A warpgroup's clocks of one repeated chain: its steps (group 0), the loads it waits for
// (groups 1, 2), a hand-off from the other warpgroup (group 3).
struct ChainClocks {
  ChainClock steps, handoff;
  LandClock land;
  __device__ void store(int wg) const {
    steps.store(wg);
    land.store(wg);
    handoff.store(wg, 3);
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
  __device__ void since_stamp(uint32_t, int) {}
  __device__ void finish_since() {}
  __device__ void store(int, int = 0) const {}
};
__device__ __forceinline__ void stamp_issue(uint32_t, int) {}
__device__ __forceinline__ void stamp_release(uint32_t, int) {}
__device__ __forceinline__ void clear_release_stamps(uint32_t) {}
struct ReleaseClock {
  template <class Wait>
  __device__ void measure(uint32_t, int, int, Wait wait) {
    wait();
  }
  __device__ void store() const {}
};
struct LandClock {
  template <class Wait>
  __device__ void measure(uint32_t, int, Wait wait) {
    wait();
  }
  __device__ void store(int) const {}
};
struct ChainClocks {
  ChainClock steps, handoff;
  LandClock land;
  __device__ void store(int) const {}
};
}  // namespace flashmfa::cuda

#define FLASHMFA_PHASE(i) ((void)0)
#define FLASHMFA_PHASE_REPORT() ((void)0)

#endif
