// flashmfa CUDA, Hopper path: the bf16 instances of the decode kernel for 16-bit caches
// (config.hpp's list).
#include "cuda/sm90/decode/kernel.cuh"

namespace flashmfa::cuda::sm90 {
#define FLASHMFA_SM90_BF16(D, WG, SPLIT) FLASHMFA_SM90_INSTANTIATE_FMT(__nv_bfloat16, D, WG, SPLIT, false)
FLASHMFA_SM90_KERNELS(FLASHMFA_SM90_BF16)
}  // namespace flashmfa::cuda::sm90
