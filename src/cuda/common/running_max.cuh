// flashmfa CUDA: the running-max rule of every kernel's online softmax (sm80 and sm90).
//
// The online softmax keeps, per query row, a running max m of the scaled scores (log2 domain)
// and accumulates numerators exp2(x - m); when m moves, O and the row sum are multiplied by
// alpha = exp2(m_old - m_new). m does not have to be the exact max, only an upper bound close
// enough that the numerators stay well inside the range of P's 16-bit type: the result and the
// log-sum-exp (m + log2(sum)) are the same for any m. So m moves only when a tile's max exceeds
// it by more than kMaxSlack (lazy rescaling): every numerator stays <= 2^kMaxSlack = 256 (P's
// relative rounding in bf16 / f16 and the f32 sums do not depend on that scale), and once a row
// has seen its first tiles alpha is exactly 1 on nearly every tile, so the kernels skip the O
// rescale (128 multiplies a thread for a 64 x 256 warpgroup share) whenever a whole warp's alpha
// is 1. FLASHMFA_LAZY_RESCALE=0 builds the exact-max form (same-machine A/B; the skip stays).
#pragma once

#ifndef FLASHMFA_LAZY_RESCALE
#define FLASHMFA_LAZY_RESCALE 1
#endif

namespace flashmfa::cuda {

// 2^x with the SFU (ex2.approx: ~2 ulp, denormals flushed); exp2(-inf) = +0, which masked
// columns rely on. The one exponential of every softmax.
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

constexpr float kMaxSlack = FLASHMFA_LAZY_RESCALE ? 8.f : 0.f;  // log2 units: a factor of 256

// The running max after a tile whose max is `tile_max`. -inf (nothing seen) moves to any finite
// tile max; a NaN tile max never moves it.
__device__ __forceinline__ float next_running_max(float m, float tile_max) {
  return tile_max > m + kMaxSlack ? tile_max : m;
}

// The factor O and the row sum are multiplied by when the running max moves from m to m_new:
// exactly 1 when it does not move (also for a row that has seen nothing), 0 when it leaves -inf.
__device__ __forceinline__ float rescale_factor(float m, float m_new) {
  return m_new == m ? 1.f : exp2_approx(m - m_new);
}

// Whether any lane of the warp holds a factor other than 1. Warp-uniform: the caller branches on
// it and skips the O rescale.
template <int N>
__device__ __forceinline__ bool warp_must_rescale(const float (&alpha)[N]) {
  bool moved = false;
#pragma unroll
  for (int i = 0; i < N; ++i) moved |= alpha[i] != 1.f;
  return __any_sync(0xffffffffu, moved);
}
template <int M, int N>
__device__ __forceinline__ bool warp_must_rescale(const float (&alpha)[M][N]) {
  bool moved = false;
#pragma unroll
  for (int i = 0; i < M; ++i)
#pragma unroll
    for (int j = 0; j < N; ++j) moved |= alpha[i][j] != 1.f;
  return __any_sync(0xffffffffu, moved);
}

}  // namespace flashmfa::cuda
