// flashmfa CUDA, portable path: instantiation of one head-dim family of the sm_80 decode
// kernel from the tile table in config.hpp. A family file is a single line:
//
//   FLASHMFA_SM80_DEFINE_FAMILY(576)   // every FLASHMFA_SM80_TILES_576 entry, bf16 and f16
//
// A family's kernels (native and FP8 tiles) compile in one translation unit.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda/sm80/decode/kernel.cuh"
#include "cuda/sm80/decode/registry.hpp"

#define FLASHMFA_SM80_TRAITS(T, DK, DV, BM, BN, FMT) Traits<T, DK, DV, BM, BN, CacheFormat::FMT>
#define FLASHMFA_SM80_ENTRY_T(T, DTYPE, DK, DV, BM, BN, FMT)                                   \
  KernelEntry{TileKey{DType::DTYPE, CacheFormat::FMT, DK, DV, BM, BN},                        \
              reinterpret_cast<const void*>(                                                 \
                  &decode_kernel<FLASHMFA_SM80_TRAITS(T, DK, DV, BM, BN, FMT)>),              \
              FLASHMFA_SM80_TRAITS(T, DK, DV, BM, BN, FMT)::MIN_BLOCKS},

#define FLASHMFA_SM80_ENTRY(DK, DV, BM, BN, FMT)                    \
  FLASHMFA_SM80_ENTRY_T(__nv_bfloat16, bf16, DK, DV, BM, BN, FMT)   \
  FLASHMFA_SM80_ENTRY_T(__half, f16, DK, DV, BM, BN, FMT)

#define FLASHMFA_SM80_DEFINE_FAMILY(DK)                                            \
  namespace flashmfa::cuda::sm80 {                                                 \
  std::span<const KernelEntry> kernels_d##DK() {                                   \
    static const KernelEntry table[] = {FLASHMFA_SM80_TILES_##DK(FLASHMFA_SM80_ENTRY)}; \
    return table;                                                                  \
  }                                                                                \
  }
