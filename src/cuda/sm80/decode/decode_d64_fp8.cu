// flashmfa CUDA, portable path: the sm_80 decode kernels of head-dim family D_K = 64 for FP8
// caches (every FLASHMFA_SM80_TILES_64_fp8 entry of config.hpp, bf16 and f16 queries).
#include "cuda/sm80/decode/instantiate.cuh"

FLASHMFA_SM80_DEFINE_FAMILY(64_fp8)
