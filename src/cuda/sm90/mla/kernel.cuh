// flashmfa CUDA, Hopper path: the MLA decode kernel (d_k 576, d_v 512, V = the first 512
// columns of the cached row) -- the producer warpgroup of decode/ streaming 576-wide K tiles
// into a two-slot ring, and the seesaw consumers of consumer.cuh -- and its typed launcher.
// Included only by the instantiation files (kernel_bf16.cu, kernel_f16.cu).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include "core/params.hpp"
#include "cuda/common/device.hpp"
#include "cuda/common/schedule.cuh"
#include "cuda/sm90/decode/producer.cuh"
#include "cuda/sm90/decode/smem_optin.hpp"
#include "cuda/sm90/mla/consumer.cuh"
#include "cuda/sm90/mla/mla.hpp"

namespace flashmfa::cuda::sm90 {

// Grid (row tiles of 64, parts, h_kv), 384 threads: warpgroup 0 produces, 1 and 2 consume.
template <class T>
__global__ void __launch_bounds__(MlaTraits::kThreads, 1)
mla_kernel(const __grid_constant__ detail::DecodeParams p, const __grid_constant__ Schedule sched,
           const __grid_constant__ CUtensorMap k_map, const __grid_constant__ CUtensorMap k_hi_map) {
  using Tr = MlaTraits;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t base = uint32_t(align_up(smem_addr(smem_raw), kTileAlign));
  const SmemView sm(base, Tr::kPlan);
  const int part = blockIdx.y, kv_head = blockIdx.z;
  const int role = __shfl_sync(~0u, int(threadIdx.x) / kWarpgroupThreads, 0);  // uniform

  if (threadIdx.x == 0) {
    for (int s = 0; s < Tr::kStages; ++s) {
      for (int a = 0; a < Tr::kAtoms; ++a) mbar_init(sm.full_bar(s, a), 1);
      // Half release: each half counts the warps of the warpgroup that frees it; otherwise
      // barrier 0 counts every consumer warp (and barrier 1 is unused).
      const bool half = Tr::half_release(p);
      mbar_init(sm.empty_bar(s, 0), half ? kWarpsPerWarpgroup : Tr::kReadersPerSlot);
      if constexpr (Tr::kHalfRelease) mbar_init(sm.empty_bar(s, 1), kWarpsPerWarpgroup);
    }
    fence_mbar_init();
    launch_dependents();
  }
  __syncthreads();

  if (role == 0) {
    setmaxnreg_dec<kProducerRegs>();
    if (threadIdx.x == 0) {
      tma_prefetch_map(&k_map);
      if constexpr (Tr::kWideBoxes) tma_prefetch_map(&k_hi_map);
      Producer<Tr>{p, sched, &k_map, &k_map, sm, kv_head, 0, &k_hi_map}.run(part);
    }
  } else {
    setmaxnreg_inc<kConsumerRegs>();
    const int tid = int(threadIdx.x) - kWarpgroupThreads;
    MlaConsumer<T>{{p, sched, sm, kv_head, role - 1, tid, int(blockIdx.x) * kRowsPerWarpgroup}}
        .run(part);
  }
}

template <class T>
void launch_mla_typed(const detail::DecodeParams& p, const Schedule& sched,
                      const CUtensorMap& k_map, const CUtensorMap& k_hi_map,
                      cudaStream_t stream) {
  auto* kernel = &mla_kernel<T>;
  constexpr size_t kSmem = MlaTraits::kPlan.launch_bytes();
  opt_in_smem<&mla_kernel<T>>(kSmem);
  const dim3 grid((p.s_q * p.q_per_kv + kRowsPerWarpgroup - 1) / kRowsPerWarpgroup,
                  sched.num_parts, p.h_kv);
  kernel<<<grid, MlaTraits::kThreads, kSmem, stream>>>(p, sched, k_map, k_hi_map);
  FLASHMFA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace flashmfa::cuda::sm90
