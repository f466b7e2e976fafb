// flashmfa CUDA, Hopper path (sm_90a only): the MLA decode kernel's typed entry points, called
// by the sm90 host side (decode/launch.cu), which owns supports()/choose()/launch().
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include "core/params.hpp"
#include "cuda/common/schedule.cuh"

namespace flashmfa::cuda::sm90 {

// Defined in kernel_bf16.cu / kernel_f16.cu. k_map: the cache as a 576-column tensor map whose
// box is one 64-column atom; with kMlaWideBoxes, the 5-D map whose box is the first half of a
// tile, and k_hi_map the one whose box is the second half (launch.cu, make_wide_map). q_map:
// q as the map of make_query_map, whose box is one atom of a CTA's 64 query rows (the producer
// then loads each item's Q tile), or nullptr (the consumers load it).
template <class T>
void launch_mla_typed(const detail::DecodeParams& p, const Schedule& sched,
                      const CUtensorMap& k_map, const CUtensorMap& k_hi_map,
                      const CUtensorMap* q_map, cudaStream_t stream);

// Defined in kernel_fp8_bf16.cu / kernel_fp8_f16.cu: an fp8_mla cache (FlashMLA's 656-byte
// rows) as three maps (launch.cu, make_mla_fp8_maps): the 512 latent bytes as four 128-byte
// boxes, the 4 scales, the 64 RoPE values in T (mla/fp8.cuh).
template <class T>
void launch_mla_fp8_typed(const detail::DecodeParams& p, const Schedule& sched,
                          const CUtensorMap& latent_map, const CUtensorMap& scale_map,
                          const CUtensorMap& rope_map, cudaStream_t stream);

}  // namespace flashmfa::cuda::sm90
