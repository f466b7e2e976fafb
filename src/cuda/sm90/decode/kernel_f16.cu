// flashmfa CUDA, Hopper path: the f16 instances of the decode kernel for 16-bit caches
// (config.hpp's list).
#include "cuda/sm90/decode/kernel.cuh"

namespace flashmfa::cuda::sm90 {
#define FLASHMFA_SM90_F16(D, WG, SPLIT) FLASHMFA_SM90_INSTANTIATE_FMT(__half, D, WG, SPLIT, false)
FLASHMFA_SM90_KERNELS(FLASHMFA_SM90_F16)
}  // namespace flashmfa::cuda::sm90
