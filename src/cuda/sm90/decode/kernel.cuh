// flashmfa CUDA, Hopper path: the decode kernel -- role split between the producer warpgroup
// (warp 0 lane 0 issues every TMA; FP8 at small pages: one warp per consumer warpgroup) and
// 1-3 consumer warpgroups -- and its typed launcher.
// Included only by the instantiation files (kernel_bf16.cu, kernel_f16.cu).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include "core/params.hpp"
#include "cuda/common/device.hpp"
#include "cuda/common/phase_clock.cuh"
#include "cuda/common/schedule.cuh"
#include "cuda/sm90/decode/consumer.cuh"
#include "cuda/sm90/decode/decode.hpp"
#include "cuda/sm90/decode/producer.cuh"
#include "cuda/sm90/decode/smem_optin.hpp"
#include "cuda/sm90/decode/traits.cuh"

namespace flashmfa::cuda::sm90 {

#if FLASHMFA_MEASURE_FP8_MATH == 4
// Measuring builds only (measure_fp8_math.cuh, mode 4): producer warps 1-3 (thread t of 96) copy
// every raw tile, in the ring order of each consumer warpgroup's half, into the 16-bit slot of
// the same index, and publish it on that slot's full barrier (one arrival). A raw slot is
// refilled only after its consumer's P V has read the copy, so the copy's slot is free then.
template <class Tr, int D>
__device__ void copy_raw_tiles(const Schedule& sched, const SmemView& sm, int part, int t) {
  static_assert(Tr::kRawStages <= Tr::kStages && Tr::kFullArrivals == 1, "one copy per raw slot");
  constexpr int kThreads = (kWarpsPerWarpgroup - 1) * kWarpSize;
  static_assert(Tr::kRingParts == 2, "measured with two consumer warpgroups");
  RingPos raw0 = ring_of<Tr::kRawStages, 2>(0), raw1 = ring_of<Tr::kRawStages, 2>(1);
  for (PartWalker w(sched, part); w.valid(); w.next()) {
    const WorkItem it = w.item();
#pragma unroll 1
    for (int blk = it.block_begin; blk < it.block_end; ++blk) {
      const bool second = tile_owner<2>(blk, it.block_begin);
      RingPos pos = second ? raw1 : raw0;  // a copy: a reference would put both on the stack
      mbar_wait(sm.raw_full_bar(pos.stage), pos.phase);
      transpose_bound_strided<D, kThreads>(sm.raw_slot(pos.stage), sm.slot(pos.stage), t);
      fence_proxy_async();
      named_barrier_sync(int(NamedBarrier::kMeasureCopy), kThreads);
      if (t == 0) mbar_arrive(sm.full_bar(pos.stage));
      pos.advance();
      (second ? raw1 : raw0) = pos;
    }
  }
}
#endif

// Grid (row tiles, parts, h_kv). Parameters are __grid_constant__ so that the walkers can hold
// references to them without a local copy; the tensor maps must be for TMA. FP8: the maps are
// of the raw e4m3 caches (traits.cuh, dequant.cuh).
template <class T, int D, int WARPGROUPS, bool KV_SPLIT, bool FP8>
__global__ void __launch_bounds__(Traits<D, WARPGROUPS, KV_SPLIT, FP8>::kThreads, 1)
decode_kernel(const __grid_constant__ detail::DecodeParams p,
              const __grid_constant__ Schedule sched, const __grid_constant__ CUtensorMap k_map,
              const __grid_constant__ CUtensorMap v_map) {
  using Tr = Traits<D, WARPGROUPS, KV_SPLIT, FP8>;
  extern __shared__ uint8_t smem_raw[];
  // 128B-swizzled tiles need 1024-byte alignment of the .shared address itself.
  const uint32_t base = uint32_t(align_up(smem_addr(smem_raw), kTileAlign));
  const SmemView sm(base, Tr::kPlan);
  const int part = blockIdx.y, kv_head = blockIdx.z;
  // 0: producer, 1..: consumers. Warp-uniform as far as the compiler can tell (a shuffle from
  // lane 0): with a plain threadIdx-derived index, every branch on the warpgroup looks divergent
  // and ptxas serializes the wgmma behind it (C7520).
  const int role = __shfl_sync(~0u, int(threadIdx.x) / kWarpgroupThreads, 0);

  if (threadIdx.x == 0) {
    FLASHMFA_PHASE(0);
    for (int s = 0; s < Tr::kStages; ++s) {
      mbar_init(sm.full_bar(s), Tr::kFullArrivals);
      mbar_init(sm.empty_bar(s), Tr::kReadersPerSlot);
    }
    for (int s = 0; s < Tr::kRawStages; ++s) {
      mbar_init(sm.raw_full_bar(s), Tr::kRawFullArrivals);
      mbar_init(sm.raw_empty_bar(s), Tr::kRawEmptyArrivals);
    }
    fence_mbar_init();
    launch_dependents();  // no effect unless the next launch opted in
  }
#ifdef FLASHMFA_MEASURE_RAW_LOADS
  // Measuring builds that skip copies (producer.cuh): the slots they leave unwritten read as
  // zeros, not as a previous launch's bytes, so that no score depends on stale data (a running
  // max that moves on every tile would add O rescales that the real chain does not have).
  for (int s = 0; s < Tr::kRawStages; ++s)
    for (uint32_t b = 16 * threadIdx.x; b < uint32_t(raw_slot_bytes(D)); b += 16 * blockDim.x)
      st_shared(sm.raw_slot(s) + b, make_uint4(0, 0, 0, 0));
#endif
  __syncthreads();
  if (threadIdx.x == 0) FLASHMFA_PHASE(1);

  if (role == 0) {
    if constexpr (Tr::kSplitRegisters) setmaxnreg_dec<Tr::kProducerRegs>();
    const int warp = __shfl_sync(~0u, int(threadIdx.x) / kWarpSize, 0);
    const int lane = int(threadIdx.x) % kWarpSize;
    if (threadIdx.x == 0) {
      tma_prefetch_map(&k_map);
      if (!p.v_aliases_k) tma_prefetch_map(&v_map);
    }
    if constexpr (FP8) {  // warp 0 (small pages: one per consumer) streams the raw tiles
      const bool per_consumer =
          kFp8WarpPerConsumer && p.page_size < fp8_one_warp_min_page(WARPGROUPS);
      const int warps = per_consumer ? WARPGROUPS : 1;
      if (warp < warps)
        Producer<Tr>{p, sched, &k_map, &v_map, sm, kv_head, lane}.run(part, warp, warps);
#if FLASHMFA_MEASURE_FP8_MATH == 4
      static_assert(!kFp8WarpPerConsumer, "mode 4 copies with producer warps 1-3");
      if constexpr (D == 256)
        if (warp != 0 && p.v_aliases_k) copy_raw_tiles<Tr, D>(sched, sm, part, int(threadIdx.x) - kWarpSize);
#endif
    } else if (threadIdx.x == 0) {
      Producer<Tr>{p, sched, &k_map, &v_map, sm, kv_head}.run(part);
    }
  } else {
    if constexpr (Tr::kSplitRegisters) setmaxnreg_inc<Tr::kConsumerRegs>();
    const int warpgroup = role - 1;
    const int first_row =
        blockIdx.x * Tr::kBlockM + (KV_SPLIT ? 0 : warpgroup * kRowsPerWarpgroup);
    const int tid = int(threadIdx.x) - kWarpgroupThreads;
    Consumer<T, D, WARPGROUPS, KV_SPLIT, FP8>{{p, sched, sm, kv_head, warpgroup, tid, first_row}}
        .run(part);
  }
}

// Launches one instance; the kernel's shared-memory limit is raised once per process.
template <class T, int D, int WARPGROUPS, bool KV_SPLIT, bool FP8>
void launch_typed(const detail::DecodeParams& p, const Schedule& sched, const CUtensorMap& k_map,
                  const CUtensorMap& v_map, cudaStream_t stream) {
  using Tr = Traits<D, WARPGROUPS, KV_SPLIT, FP8>;
  auto* kernel = &decode_kernel<T, D, WARPGROUPS, KV_SPLIT, FP8>;
  constexpr size_t kSmem = Tr::kPlan.launch_bytes();
  opt_in_smem<&decode_kernel<T, D, WARPGROUPS, KV_SPLIT, FP8>>(kSmem);
  FLASHMFA_PHASE_REPORT();
  const dim3 grid((p.s_q * p.q_per_kv + Tr::kBlockM - 1) / Tr::kBlockM, sched.num_parts, p.h_kv);
  kernel<<<grid, Tr::kThreads, kSmem, stream>>>(p, sched, k_map, v_map);
  FLASHMFA_CUDA_CHECK(cudaGetLastError());
}

#define FLASHMFA_SM90_INSTANTIATE_FMT(T, D, WG, SPLIT, FP8)                                  \
  template void launch_typed<T, D, WG, SPLIT, FP8>(const detail::DecodeParams&, const Schedule&, \
                                                   const CUtensorMap&, const CUtensorMap&,   \
                                                   cudaStream_t);

}  // namespace flashmfa::cuda::sm90
