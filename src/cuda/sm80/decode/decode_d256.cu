// flashmfa CUDA, portable path: the sm_80 decode kernels of head-dim family D_K = 256
// (every FLASHMFA_SM80_TILES_256 entry of config.hpp, bf16 and f16).
#include "cuda/sm80/decode/instantiate.cuh"

FLASHMFA_SM80_DEFINE_FAMILY(256)
