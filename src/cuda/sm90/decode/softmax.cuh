// flashmfa CUDA, Hopper path: the online softmax over one consumer warpgroup's S tile, in the
// wgmma accumulator layout.
//
// Accumulator layout of a 64x64 f32 wgmma result, per thread (warp w of the warpgroup, lane
// = 4 g + t): register 4 c + 2 h + e holds row 16 w + g + 8 h, column 8 c + 2 t + e. So each
// thread owns two rows (h = 0, 1), 16 columns of each, and the four lanes of a quad share a row.
#pragma once

#include <cmath>

#include "cuda/common/quad.cuh"
#include "cuda/common/running_max.cuh"
#include "cuda/sm90/decode/ptx.cuh"
#include "cuda/sm90/decode/wgmma.cuh"

namespace flashmfa::cuda::sm90 {

constexpr int kRowsPerThread = 2;
constexpr int kQuadLanes = 4;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ int acc_row(int i) { return (i % 4) / 2; }                 // h
__host__ __device__ constexpr int acc_col(int i, int t) { return 8 * (i / 4) + 2 * t + i % 2; }

// Running state of the thread's two rows, in the log2 domain: scores are multiplied by
// scale * log2(e) so that every exponential is one ex2.
struct OnlineSoftmax {
  float max[kRowsPerThread];  // running max of the scaled scores; -inf: nothing seen yet
  float sum[kRowsPerThread];  // this thread's share of the row sum (quad-reduced at the end)

  __device__ void reset() {
#pragma unroll
    for (int h = 0; h < kRowsPerThread; ++h) max[h] = -INFINITY, sum[h] = 0.f;
  }

  // s: the raw scores of one tile, overwritten with the numerators exp2(scale_log2 s - max)
  // (<= 2^kMaxSlack). Column c of row h is masked when c >= limit[h] (causal rule, sequence end,
  // skipped page); masking is a select, so a NaN score from a row past the end never survives.
  // Tiles that every row of the warp sees whole skip the masking (a warp-uniform branch). The
  // scale is > 0 (validated), so the max is taken over raw scores and scaled once, and each
  // numerator is one FFMA and one exponential. alpha[h]: the factor the output rows must be
  // multiplied by before this tile's P V is added.
  //
  // This runs between a tile's S and its P V, with nothing else on the tensor pipe in the MLA
  // seesaw, so its length is the chain's: the row maxima are trees (depth 4, not chains of 16
  // dependent FMNMX; docs/perf-notes.md O.1).
  __device__ void step(float (&s)[kAccRegs], const int (&limit)[kRowsPerThread], float scale_log2,
                       int t, float (&alpha)[kRowsPerThread]) {
    numerators(s, limit, scale_log2, t, alpha);
    accumulate(s);
  }

  // step() without the row sums: the caller adds the numerators with accumulate() once P has
  // been handed on (the MLA seesaw publishes P first; the sums are not on its chain).
  __device__ void numerators(float (&s)[kAccRegs], const int (&limit)[kRowsPerThread],
                             float scale_log2, int t, float (&alpha)[kRowsPerThread]) {
    constexpr int kCols = acc_col(kAccRegs - 1, kQuadLanes - 1) + 1;  // 64
    const bool whole = __all_sync(~0u, limit[0] >= kCols && limit[1] >= kCols);
    if (!whole) {
#pragma unroll
      for (int i = 0; i < kAccRegs; ++i)
        s[i] = acc_col(i, t) < limit[acc_row(i)] ? s[i] : -INFINITY;
    }
    float tile_max[kRowsPerThread];
    row_max(s, tile_max);
    float base[kRowsPerThread];
#pragma unroll
    for (int h = 0; h < kRowsPerThread; ++h) {
      // The running max moves only past a slack (running_max.cuh): alpha is exactly 1 on
      // most tiles, and the caller skips the O rescale when its whole warp's is.
      const float m = next_running_max(max[h], quad_max(tile_max[h]) * scale_log2);
      // A row that has seen nothing keeps max = -inf; subtracting 0 instead keeps
      // exp2(-inf - (-inf)) = NaN out: its numerators are exp2(-inf) = 0.
      base[h] = m == -INFINITY ? 0.f : m;
      alpha[h] = rescale_factor(max[h], m);
      max[h] = m;
      sum[h] *= alpha[h];
    }
#pragma unroll
    for (int i = 0; i < kAccRegs; ++i) s[i] = exp2_approx(fmaf(s[i], scale_log2, -base[acc_row(i)]));
  }

  // Adds one tile's numerators p (from numerators()) to the row sums.
  __device__ void accumulate(const float (&p)[kAccRegs]) {
    float tile_sum[kRowsPerThread];
    reduce_rows(p, [](float a, float b) { return a + b; }, tile_sum);
#pragma unroll
    for (int h = 0; h < kRowsPerThread; ++h) sum[h] += tile_sum[h];
  }

  // The thread's maxima of its two rows' 16 scores.
  __device__ static void row_max(const float (&s)[kAccRegs], float (&m)[kRowsPerThread]) {
    reduce_rows(s, [](float a, float b) { return fmaxf(a, b); }, m);
  }

  // op over each of the thread's two rows' 16 values (register 4 c + 2 h + e), as a tree of
  // depth 4 rather than a chain of 15 dependent instructions.
  template <class Op>
  __device__ static void reduce_rows(const float (&x)[kAccRegs], Op op,
                                     float (&out)[kRowsPerThread]) {
    constexpr int kPerRow = kAccRegs / kRowsPerThread;
    static_assert(kPerRow == 16, "four rounds");
#pragma unroll
    for (int h = 0; h < kRowsPerThread; ++h) {
      float v[kPerRow];
#pragma unroll
      for (int k = 0; k < kPerRow; ++k) v[k] = x[4 * (k / 2) + 2 * h + k % 2];
#pragma unroll
      for (int k = 0; k < 8; ++k) v[k] = op(v[k], v[k + 8]);
#pragma unroll
      for (int k = 0; k < 4; ++k) v[k] = op(v[k], v[k + 4]);
#pragma unroll
      for (int k = 0; k < 2; ++k) v[k] = op(v[k], v[k + 2]);
      out[h] = op(v[0], v[1]);
    }
  }

  // Final row sums and log-sum-exp (natural log; -inf for a row that saw nothing).
  __device__ void finish(float (&inv_sum)[kRowsPerThread], float (&lse)[kRowsPerThread]) const {
#pragma unroll
    for (int h = 0; h < kRowsPerThread; ++h) {
      const float total = quad_sum(sum[h]);
      const bool any = total > 0.f;
      inv_sum[h] = any ? 1.f / total : 0.f;
      lse[h] = any ? (max[h] + __log2f(total)) * kLn2 : -INFINITY;
    }
  }
};

}  // namespace flashmfa::cuda::sm90
