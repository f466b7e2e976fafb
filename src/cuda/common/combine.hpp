// flashmfa CUDA: the combine kernel, which merges the partial results of split sequences.
#pragma once

#include <cuda_runtime.h>

#include "core/params.hpp"
#include "cuda/common/schedule.cuh"

namespace flashmfa::cuda {

// For every sequence cut into more than one split: lse = log(sum_k exp(lse_k)) and
// out = sum_k exp(lse_k - lse) * o_k over its partial slots. Grid-stable (the grid depends on
// shapes only), so it can sit in a CUDA graph while lengths change.
void launch_combine(const detail::DecodeParams& p, const Schedule& sched, cudaStream_t stream);

}  // namespace flashmfa::cuda
