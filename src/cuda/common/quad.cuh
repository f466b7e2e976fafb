// flashmfa CUDA: reductions over one accumulator row. In the mma.sync (sm80) and wgmma (sm90)
// accumulator layouts a row's columns are held by the 4 lanes of a quad (lanes 4k .. 4k + 3);
// these combine the quad's values with two shuffles. Every lane of the warp calls them
// together (full mask: a partial one would make the compiler wrap each shuffle in a loop over
// whichever lanes arrive).
#pragma once

namespace flashmfa::cuda {

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(~0u, x, 1));
  return fmaxf(x, __shfl_xor_sync(~0u, x, 2));
}

__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(~0u, x, 1);
  return x + __shfl_xor_sync(~0u, x, 2);
}

}  // namespace flashmfa::cuda
