// flashmfa CUDA, portable path: the table of compiled sm_80 decode kernels. Each head-dim
// family's instantiation file (decode_d<D_K>.cu) returns its entries; decode.cu searches them.
// Host-only header: kernels appear as opaque `const void*` launch handles.
#pragma once

#include <span>

#include "cuda/sm80/decode/config.hpp"

namespace flashmfa::cuda::sm80 {

struct KernelEntry {
  TileKey key;
  const void* kernel;  // &decode_kernel<Traits<...>>, for cudaLaunchKernel / cudaFuncSetAttribute
  int min_blocks;      // the __launch_bounds__ minimum (1: up to 255 registers a thread)
};

#define FLASHMFA_SM80_DECLARE_FAMILY(DK) std::span<const KernelEntry> kernels_d##DK();
FLASHMFA_SM80_FAMILIES(FLASHMFA_SM80_DECLARE_FAMILY)
#undef FLASHMFA_SM80_DECLARE_FAMILY

}  // namespace flashmfa::cuda::sm80
