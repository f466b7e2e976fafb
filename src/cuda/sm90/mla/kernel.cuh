// flashmfa CUDA, Hopper path: the MLA decode kernel (d_k 576, d_v 512, V = the first 512
// columns of the cached row) -- the producer warpgroup of decode/ streaming 576-wide K tiles
// into a two-slot ring (FP8 caches: the producer of fp8.cuh, which widens FlashMLA's 656-byte
// rows into the slots), and the seesaw consumers of consumer.cuh -- and its typed launchers.
// Included only by the instantiation files (kernel_bf16.cu, kernel_f16.cu, kernel_fp8_*.cu).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include "core/params.hpp"
#include "cuda/common/device.hpp"
#include "cuda/common/schedule.cuh"
#include "cuda/sm90/decode/producer.cuh"
#include "cuda/sm90/decode/smem_optin.hpp"
#include "cuda/sm90/mla/consumer.cuh"
#include "cuda/sm90/mla/fp8.cuh"
#include "cuda/sm90/mla/mla.hpp"

namespace flashmfa::cuda::sm90 {

// Grid (row tiles of 64, parts, h_kv), 384 threads: warpgroup 0 produces, 1 and 2 consume.
// 16-bit caches: map0 / map1 are k_map / k_hi_map (mla.hpp), map2 q's map when q_by_tma (the
// producer loads each item's Q tile; otherwise the consumers do). FP8: the latent, scale and
// RoPE maps (fp8.cuh); q_by_tma is 0. QROWS: the staged Q tile's rows (MlaTraits).
template <class T, bool FP8, int QROWS>
__global__ void __launch_bounds__(MlaTraits<FP8, QROWS>::kThreads, 1)
mla_kernel(const __grid_constant__ detail::DecodeParams p, const __grid_constant__ Schedule sched,
           const __grid_constant__ CUtensorMap map0, const __grid_constant__ CUtensorMap map1,
           const __grid_constant__ CUtensorMap map2, int q_by_tma) {
  using Tr = MlaTraits<FP8, QROWS>;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t base = uint32_t(align_up(smem_addr(smem_raw), kTileAlign));
  const SmemView sm(base, Tr::kPlan);
  const int part = blockIdx.y, kv_head = blockIdx.z;
  const int role = __shfl_sync(~0u, int(threadIdx.x) / kWarpgroupThreads, 0);  // uniform

  if (threadIdx.x == 0) {
    FLASHMFA_PHASE(0);
    for (int s = 0; s < Tr::kStages; ++s) {
      // FP8: the producer's four warps publish each group of widened atoms (fp8.cuh); with the
      // raw buffer, the RoPE atom's group also waits for its copy (thread 0's expect_tx).
      for (int a = 0; a < Tr::kAtoms; ++a)
        mbar_init(sm.full_bar(s, a),
                  !FP8 ? 1
                       : kWarpsPerWarpgroup +
                             (Tr::kRawBuffer && a == Tr::full_index(kMlaAtoms - 1) ? 1 : 0));
      // Half release: each half counts the warps of the warpgroup that frees it; otherwise
      // barrier 0 counts every consumer warp (and barrier 1 is unused).
      const bool half = Tr::half_release(p);
      mbar_init(sm.empty_bar(s, 0), half ? kWarpsPerWarpgroup : Tr::kReadersPerSlot);
      if constexpr (Tr::kHalfRelease) mbar_init(sm.empty_bar(s, 1), kWarpsPerWarpgroup);
      if constexpr (FP8)  // room for one raw-full barrier per latent box (per slot in place)
        for (int b = 0; b < kMlaFp8Boxes; ++b)
          if (!Tr::kRawBuffer || (s == 0 && b < kMlaFp8Landings))
            mbar_init(sm.raw_full + uint32_t((s * kMlaFp8Boxes + b) * sizeof(uint64_t)), 1);
    }
    mbar_init(sm.q_full, 1);                         // the producer's expect_tx
    mbar_init(sm.q_empty, Tr::kReadersPerSlot);      // each consumer warp, after its last S
    clear_release_stamps(sm.phase_stamps());         // phase-clock builds only
    fence_mbar_init();
    launch_dependents();
  }
  __syncthreads();

  if (role == 0) {
    if constexpr (FP8) {
      setmaxnreg_dec<kMlaFp8ProducerRegs>();
      if (threadIdx.x == 0) {
        tma_prefetch_map(&map0);
        tma_prefetch_map(&map1);
        tma_prefetch_map(&map2);
      }
      MlaFp8Producer<T, Tr>{p, sched, sm, kv_head, int(threadIdx.x), &map0, &map1, &map2}.run(part);
    } else {
      setmaxnreg_dec<kProducerRegs>();
      if (threadIdx.x == 0) {
        tma_prefetch_map(&map0);
        if constexpr (Tr::kWideBoxes) tma_prefetch_map(&map1);
        if (q_by_tma) tma_prefetch_map(&map2);
        Producer<Tr>{p,       sched, &map0, &map0, sm, kv_head, 0, &map1,
                     q_by_tma ? &map2 : nullptr, int(blockIdx.x) * kRowsPerWarpgroup}
            .run(part);
      }
    }
  } else {
    if constexpr (FP8) setmaxnreg_inc<kMlaFp8ConsumerRegs>();
    else setmaxnreg_inc<kConsumerRegs>();
    const int tid = int(threadIdx.x) - kWarpgroupThreads;
    MlaConsumer<T, Tr>{{p, sched, sm, kv_head, role - 1, tid, int(blockIdx.x) * kRowsPerWarpgroup}}
        .run(part, !FP8 && q_by_tma);
  }
}

template <class T, bool FP8, int QROWS = kRowsPerWarpgroup>
void launch_mla_kernel(const detail::DecodeParams& p, const Schedule& sched,
                       const CUtensorMap& map0, const CUtensorMap& map1, const CUtensorMap& map2,
                       bool q_by_tma, cudaStream_t stream) {
  using Tr = MlaTraits<FP8, QROWS>;
  auto* kernel = &mla_kernel<T, FP8, QROWS>;
  constexpr size_t kSmem = Tr::kPlan.launch_bytes();
  opt_in_smem<&mla_kernel<T, FP8, QROWS>>(kSmem);
  FLASHMFA_PHASE_REPORT();
  const dim3 grid((p.s_q * p.q_per_kv + kRowsPerWarpgroup - 1) / kRowsPerWarpgroup,
                  sched.num_parts, p.h_kv);
  kernel<<<grid, Tr::kThreads, kSmem, stream>>>(p, sched, map0, map1, map2, int(q_by_tma));
  FLASHMFA_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_mla_typed(const detail::DecodeParams& p, const Schedule& sched,
                      const CUtensorMap& k_map, const CUtensorMap& k_hi_map,
                      const CUtensorMap* q_map, cudaStream_t stream) {
  launch_mla_kernel<T, false>(p, sched, k_map, k_hi_map, q_map ? *q_map : k_map, q_map != nullptr,
                              stream);
}

template <class T>
void launch_mla_fp8_typed(const detail::DecodeParams& p, const Schedule& sched,
                          const CUtensorMap& latent_map, const CUtensorMap& scale_map,
                          const CUtensorMap& rope_map, cudaStream_t stream) {
  if (mla_fp8_raw_form(p.s_q * p.q_per_kv))
    launch_mla_kernel<T, true, kMlaFp8QRows>(p, sched, latent_map, scale_map, rope_map, false,
                                             stream);
  else
    launch_mla_kernel<T, true>(p, sched, latent_map, scale_map, rope_map, false, stream);
}

}  // namespace flashmfa::cuda::sm90
