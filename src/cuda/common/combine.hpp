// flashmfa CUDA: the combine kernel, which merges the partial results of split sequences.
#pragma once

#include <cuda_runtime.h>

#include "core/params.hpp"
#include "cuda/common/schedule.cuh"

namespace flashmfa::cuda {

// For every sequence cut into more than one split: lse = log(sum_k exp(lse_k)) and
// out = sum_k exp(lse_k - lse) * o_k over its partial slots. Grid-stable (the grid depends on
// shapes only), so it can sit in a CUDA graph while lengths change.
// With sched.early_combine, the combine reads each partial slot once its writers have counted
// it written (schedule.cuh) instead of waiting for the whole decode grid first.
void launch_combine(const detail::DecodeParams& p, const Schedule& sched, cudaStream_t stream);

// Whether the combine of these shapes on `device` can read slot by slot: its CTA-per-row layout
// (few rows: long sequences cut into many splits), launched as a programmatic dependent of the
// decode grid. Shapes only, so the answer holds for every call of a plan.
bool combine_reads_slot_by_slot(const detail::DecodeParams& p, int device);

}  // namespace flashmfa::cuda
