// flashmfa CUDA, Hopper path: the f16 instances of the decode kernel for FP8 caches
// (config.hpp's FP8 list).
#include "cuda/sm90/decode/kernel.cuh"

namespace flashmfa::cuda::sm90 {
#define FLASHMFA_SM90_FP8_F16(D, WG, SPLIT) \
  FLASHMFA_SM90_INSTANTIATE_FMT(__half, D, WG, SPLIT, true)
FLASHMFA_SM90_FP8_KERNELS(FLASHMFA_SM90_FP8_F16)
}  // namespace flashmfa::cuda::sm90
