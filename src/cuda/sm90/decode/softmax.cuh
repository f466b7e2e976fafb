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
  // numerator is one FFMA and one ex2. alpha[h]: the factor the output rows must be multiplied
  // by before this tile's P V is added.
  __device__ void step(float (&s)[kAccRegs], const int (&limit)[kRowsPerThread], float scale_log2,
                       int t, float (&alpha)[kRowsPerThread]) {
    constexpr int kCols = acc_col(kAccRegs - 1, kQuadLanes - 1) + 1;  // 64
    float tile_max[kRowsPerThread] = {-INFINITY, -INFINITY};
    if (__all_sync(~0u, limit[0] >= kCols && limit[1] >= kCols)) {
#pragma unroll
      for (int i = 0; i < kAccRegs; ++i) tile_max[acc_row(i)] = fmaxf(tile_max[acc_row(i)], s[i]);
    } else {
#pragma unroll
      for (int i = 0; i < kAccRegs; ++i) {
        const int h = acc_row(i);
        s[i] = acc_col(i, t) < limit[h] ? s[i] : -INFINITY;
        tile_max[h] = fmaxf(tile_max[h], s[i]);
      }
    }
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
    for (int i = 0; i < kAccRegs; ++i) {
      const int h = acc_row(i);
      s[i] = exp2_approx(fmaf(s[i], scale_log2, -base[h]));
      sum[h] += s[i];
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
