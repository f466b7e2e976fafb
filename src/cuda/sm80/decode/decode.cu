// flashmfa CUDA, portable path: choosing the tile of the sm_80 decode kernel and launching it.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cuda/sm80/decode/config.hpp"
#include "cuda/sm80/decode/decode.hpp"
#include "cuda/sm80/decode/registry.hpp"
#include "cuda/sm80/decode/traits.cuh"
#include "flashmfa/error.hpp"

namespace flashmfa::cuda::sm80 {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr size_t kDefaultSmem = 48 * 1024;  // dynamic smem a CTA gets without opting in
constexpr int kBlockMs[] = {16, 32, 64};    // the BLOCK_M values of the tile table
constexpr int kBlockNs[] = {64, 32};        // preferred first: longer tiles, fewer barriers

#define FLASHMFA_SM80_FAMILY_FN(DK) &kernels_d##DK,
constexpr std::span<const KernelEntry> (*kFamilies[])() = {
    FLASHMFA_SM80_FAMILIES(FLASHMFA_SM80_FAMILY_FN)};
#undef FLASHMFA_SM80_FAMILY_FN

const KernelEntry* find(const TileKey& key) {
  for (auto family : kFamilies)
    for (const KernelEntry& e : family())
      if (e.key == key) return &e;
  return nullptr;
}

// BLOCK_M: the smallest tile that holds all rows of a KV head (GQA with 4 rows per KV head
// must not pay for a 64-row tile); past 64 rows, 64-row tiles (the O accumulator of a 64 x 512
// MLA tile already takes half the register file).
int block_m_for(int rows) {
  for (int bm : kBlockMs)
    if (rows <= bm) return bm;
  return kBlockMs[std::size(kBlockMs) - 1];
}

bool strides_multiple_of(int64_t n, int64_t a, int64_t b, int64_t c) {
  return a % n == 0 && b % n == 0 && c % n == 0;
}

// Per (device, kernel): the dynamic shared memory limit already raised, and the occupancy
// found for each size asked. Cached so that run() (possibly inside a CUDA graph capture) makes
// no runtime attribute calls after the first plan.
struct FuncState {
  int device;
  const void* kernel;
  size_t smem_limit;
  size_t occ_smem;
  int occ_ctas;
};
std::mutex g_mu;
std::vector<FuncState> g_funcs;

FuncState& state_for(int device, const void* kernel) {
  for (FuncState& f : g_funcs)
    if (f.device == device && f.kernel == kernel) return f;
  g_funcs.push_back({device, kernel, kDefaultSmem, 0, 0});
  return g_funcs.back();
}

// Raises the kernel's dynamic shared-memory limit on the current device to at least `smem`.
void ensure_smem_limit(FuncState& f, size_t smem) {
  if (smem <= f.smem_limit) return;
  FLASHMFA_CUDA_CHECK(
      cudaFuncSetAttribute(f.kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  f.smem_limit = smem;
}

// Resident CTAs per SM of `kernel` with `smem` bytes of dynamic shared memory on `dev`.
int occupancy(const DeviceInfo& dev, const void* kernel, size_t smem) {
  std::lock_guard<std::mutex> lock(g_mu);
  DeviceGuard guard(dev.id);  // restores the caller's device also when a call below throws
  FuncState& f = state_for(dev.id, kernel);
  if (f.occ_smem != smem || f.occ_ctas == 0) {
    ensure_smem_limit(f, smem);
    FLASHMFA_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&f.occ_ctas, kernel, kThreads, smem));
    f.occ_smem = smem;
  }
  return f.occ_ctas;
}

// Whether P V runs as two products (KernelParams::split_p), which keeps P to ~16 bits instead
// of T's 8 (bf16) / 11 (f16). Measured on the H100 (bench presets, bf16):
//
//   tile                          single P       split P
//   MLA h_q 16  (BLOCK_M 16)      94% of copy    94% of copy      memory-bound: free
//   GQA 32/8    (BLOCK_M 16)      92%            93%
//   MFA h_q 64  (BLOCK_M 64)      91%            80%              2 stages; extra MMA shows
//   MLA h_q 128 (BLOCK_M 64)      273-282 TF/s   170 TF/s         compute-bound, and P_lo's
//                                                                 8 KB force BLOCK_N 32
//
// So by default P is rounded to T before PV, as FlashAttention and FlashMLA do: each weight
// moves by at most half an ulp, out by at most ~2^-8 (bf16) of sum_j P_j |V_jd|, which the
// tests' rounding model (tools/problem Tolerances) bounds. Building with
// FLASHMFA_SM80_SPLIT_P=1 splits P everywhere (~16-bit P, for accuracy studies).
bool split_p_policy(const detail::DecodeParams& p, int block_m) {
  (void)p, (void)block_m;
#if defined(FLASHMFA_SM80_SPLIT_P)
  return FLASHMFA_SM80_SPLIT_P != 0;
#else
  return false;
#endif
}

// For experiments (same-machine A/B runs, docs/perf-notes.md D): FLASHMFA_SM80_TILE="N:S"
// restricts the choice to BLOCK_N = N and at most S stages where a compiled tile fits (fewer
// stages can buy a second CTA per SM); the normal choice where none does. Read once.
struct TileOverride {
  int block_n = 0;  // 0: any
  int max_stages = kMaxStages;
};
const TileOverride& tile_override() {
  static const TileOverride o = [] {
    TileOverride t;
    if (const char* s = std::getenv("FLASHMFA_SM80_TILE")) {
      if (std::sscanf(s, "%d:%d", &t.block_n, &t.max_stages) != 2) t = TileOverride{};
    }
    return t;
  }();
  return o;
}

// The first compiled tile that fits: BLOCK_M from the rows up, BLOCK_N in kBlockNs order (only
// `only_bn` where non-zero), the deepest pipeline up to max_stages.
std::optional<KernelConfig> first_fit(const detail::DecodeParams& p, const DeviceInfo& dev,
                                      int only_bn, int max_stages) {
  const bool v_separate = !p.v_aliases_k;
  // Start at the BLOCK_M the rows ask for; a larger one only if nothing smaller fits.
  const int want_m = block_m_for(detail::rows_per_kv_head(p));
  const bool split_p = split_p_policy(p, want_m);
  for (int bm : kBlockMs) {
    if (bm < want_m) continue;
    for (int bn : kBlockNs) {
      if (only_bn != 0 && bn != only_bn) continue;
      const KernelEntry* e = find({p.dtype, p.kv_format, p.d_k, p.d_v, bm, bn});
      if (e == nullptr) continue;
      // The deepest pipeline that fits: more tiles in flight per SM hide more DRAM latency;
      // the decode tiles are memory-bound everywhere except MLA at 64+ rows per KV head.
      for (int stages = max_stages; stages >= kMinStages; --stages) {
        const SmemPlan plan(p.d_k, p.d_v, bm, bn, stages, v_separate, split_p, p.kv_format);
        if (plan.total > dev.smem_per_block_optin) continue;
        KernelConfig cfg;
        cfg.block_m = bm;
        cfg.block_n = bn;
        cfg.threads = kThreads;
        cfg.smem_bytes = plan.total;
        cfg.stages = stages;
        cfg.split_p = split_p;
        cfg.ctas_per_sm = occupancy(dev, e->kernel, plan.total);
        if (cfg.ctas_per_sm < 1) continue;
        return cfg;
      }
    }
  }
  return std::nullopt;
}

}  // namespace

KernelConfig choose(const detail::DecodeParams& p, const DeviceInfo& dev) {
  const TileOverride& ov = tile_override();
  if (ov.block_n != 0 || ov.max_stages != kMaxStages)
    if (auto cfg = first_fit(p, dev, ov.block_n, std::min(kMaxStages, ov.max_stages))) return *cfg;
  if (auto cfg = first_fit(p, dev, 0, kMaxStages)) return *cfg;
  const bool v_separate = !p.v_aliases_k;
  throw Error(Status::unsupported,
              "flashmfa: no sm80 decode tile for d_k " + std::to_string(p.d_k) + ", d_v " +
                  std::to_string(p.d_v) + (v_separate ? " (separate V)" : "") + ", cache " +
                  cache_format_name(p.kv_format) + " fits " +
                  std::to_string(dev.smem_per_block_optin) +
                  " bytes of shared memory per block on " + dev.name);
}

void launch(const detail::DecodeParams& p, const Schedule& sched, const KernelConfig& cfg,
            cudaStream_t stream) {
  const int rows = detail::rows_per_kv_head(p);
  if (sched.num_parts == 0 || rows == 0 || p.h_kv == 0) return;
  const KernelEntry* e = find({p.dtype, p.kv_format, p.d_k, p.d_v, cfg.block_m, cfg.block_n});
  if (e == nullptr || cfg.block_n != sched.block_n)
    throw Error(Status::invalid_argument, "flashmfa: sm80 launch with a config choose() did not make");

  KernelParams kp{};
  kp.p = p;
  kp.sched = sched;
  kp.stages = cfg.stages;
  kp.scale_log2 = p.scale * kLog2e;
  kp.split_p = cfg.split_p;
  constexpr int64_t kVecElems = kChunkBytes / kElemBytes;  // 16-byte rows: 8-element strides
  // Cache strides count elements of the cache's dtype: 2 bytes, or 1 for the FP8 formats.
  const int64_t kv_vec_elems = p.kv_format == CacheFormat::native ? kVecElems : kChunkBytes;
  kp.kv_vec =
      aligned(p.k, kChunkBytes) && strides_multiple_of(kv_vec_elems, p.k_sp, p.k_st, p.k_sh) &&
      aligned(p.v, kChunkBytes) && strides_multiple_of(kv_vec_elems, p.v_sp, p.v_st, p.v_sh);
  kp.q_vec = aligned(p.q, kChunkBytes) && strides_multiple_of(kVecElems, p.q_sb, p.q_ss, p.q_sh);
  kp.out_vec = aligned(p.out, 2 * kElemBytes) && strides_multiple_of(2, p.o_sb, p.o_ss, p.o_sh);

  {
    std::lock_guard<std::mutex> lock(g_mu);
    int device = 0;
    FLASHMFA_CUDA_CHECK(cudaGetDevice(&device));
    ensure_smem_limit(state_for(device, e->kernel), cfg.smem_bytes);
  }
  const dim3 grid((rows + cfg.block_m - 1) / cfg.block_m, sched.num_parts, p.h_kv);
  void* args[] = {&kp};
  FLASHMFA_CUDA_CHECK(
      cudaLaunchKernel(e->kernel, grid, dim3(kThreads), args, cfg.smem_bytes, stream));
}

}  // namespace flashmfa::cuda::sm80
