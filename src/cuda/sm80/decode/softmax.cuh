// flashmfa CUDA, portable path: the online softmax of the sm_80 decode kernel, in the exp2
// domain (scores pre-multiplied by softmax_scale * log2 e, so every exponential is one ex2).
//
// A row's scores are spread over the WN warps of its S slice, and its output over all 8 warps
// (each owns a column slice of O). Per tile:
//   1. S warps mask their scores and publish per-warp row maxima to `red` (WN, BLOCK_M);
//   2. after a barrier, EVERY thread folds the WN maxima of the rows it holds in O into the
//      running max m, and derives alpha = exp2(m_old - m_new) to rescale O; all warps read the
//      same values in the same order, so their m agree bit for bit;
//   3. S warps write P = exp2(S - m) to shared memory and keep partial row sums l over their own
//      columns (rescaled by the same alpha); the partial sums meet only in the epilogue.
// m moves only when a tile's max passes it by more than a slack (running_max.cuh), so alpha is
// exactly 1 on most tiles and the O rescale is skipped. A row with nothing visible keeps
// m = -inf: alpha is 1 and exp2 is evaluated against 0 instead, so -inf - -inf never produces
// NaN and P stays exactly 0.
#pragma once

#include <cstdint>

#include "cuda/common/quad.cuh"
#include "cuda/common/running_max.cuh"
#include "cuda/sm80/decode/ptx.cuh"
#include "cuda/sm80/decode/traits.cuh"

namespace flashmfa::cuda::sm80 {

constexpr float kNegInf = -__builtin_huge_valf();

template <class Tr>
class OnlineSoftmax {
 public:
  static constexpr int MT = Tr::MT, S_MT = Tr::S_MT, S_NT = Tr::S_NT, BLOCK_M = Tr::BLOCK_M;

  __device__ OnlineSoftmax() {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) m_[mt][0] = m_[mt][1] = kNegInf;
#pragma unroll
    for (int i = 0; i < S_MT; ++i) ms_[i][0] = ms_[i][1] = kNegInf, l_[i][0] = l_[i][1] = 0.f;
  }

  // Row (within the tile) of S-fragment element (i, h) of this lane: m-tile i of the warp's
  // S_ROWS-row slice, half h.
  __device__ static int s_row(int wm, int i, int h, int lane) {
    return wm * Tr::S_ROWS + i * kMmaM + (lane >> 2) + 8 * h;
  }

  // Step 1 (S warps). acc: raw scores of rows s_row(wm, i, h), columns
  // col = S_COLS wn + 8 n + 2 (lane % 4) + {0, 1} of tile `tile`. Token j = tile * BLOCK_N + col
  // is visible to row (i, h) iff j <= limit[i][h] (seqlen and causal rule) and its page was not
  // skipped. Only tiles that reach past the smallest limit of the CTA or hold a skipped page
  // need the per-element test (`masked`, uniform over the CTA); interior tiles skip it. Scores
  // stay raw (the scale is positive, so max commutes with it); exponentiate's FMA scales them.
  __device__ void mask_and_max(float (&acc)[S_MT][S_NT][4], int tile, bool masked,
                               const int (&limit)[S_MT][2], const uint8_t* bad, float scale_log2,
                               int wm, int wn, int lane, float* red) const {
    if (masked) {
#pragma unroll
      for (int i = 0; i < S_MT; ++i)
#pragma unroll
        for (int n = 0; n < S_NT; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int col = wn * Tr::S_COLS + n * kMmaN + 2 * (lane & 3) + (e & 1);
            const int j = tile * Tr::BLOCK_N + col;
            if (j > limit[i][e >> 1] || bad[col]) acc[i][n][e] = kNegInf;
          }
    }
#pragma unroll
    for (int i = 0; i < S_MT; ++i) {
      float mx[2] = {kNegInf, kNegInf};
#pragma unroll
      for (int n = 0; n < S_NT; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) mx[e >> 1] = fmaxf(mx[e >> 1], acc[i][n][e]);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        // The 4 lanes of a quad hold one row's columns.
        mx[h] = quad_max(mx[h]);
        if ((lane & 3) == 0) red[wn * BLOCK_M + s_row(wm, i, h, lane)] = mx[h] * scale_log2;
      }
    }
  }

  // Step 2 (every thread, after the barrier). alpha (MT, 2): the factor O's rows scale by.
  // The S rows of this thread (one of the O m-tiles, chosen by the run-time wm) are folded a
  // second time into ms_ / alpha_s from the same inputs, hence to the same values: picking
  // them out of m_ would need a run-time index, which sends m_ to local memory.
  __device__ void update_max(const float* red, int wm, int lane, float (&alpha)[MT][2],
                             float (&alpha_s)[S_MT][2]) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        alpha[mt][h] = fold(red, mt * kMmaM + (lane >> 2) + 8 * h, m_[mt][h]);
#pragma unroll
    for (int i = 0; i < S_MT; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) alpha_s[i][h] = fold(red, s_row(wm, i, h, lane), ms_[i][h]);
  }

  // Step 3 (S warps): P = exp2(S - m) as T into the swizzled P tile (and, with split_p, the
  // rounding residue P - T(P) into p_lo_tile); l += row sums.
  __device__ void exponentiate(const float (&acc)[S_MT][S_NT][4], const float (&alpha_s)[S_MT][2],
                               float scale_log2, int wm, int wn, int lane, uint32_t p_tile,
                               bool split_p, uint32_t p_lo_tile) {
#pragma unroll
    for (int i = 0; i < S_MT; ++i) {
      float m_row[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        // Fully masked so far: every score is -inf; exp2 against 0 keeps P at exactly 0.
        m_row[h] = ms_[i][h] == kNegInf ? 0.f : ms_[i][h];
        l_[i][h] *= alpha_s[i][h];
      }
      const int row = s_row(wm, i, 0, lane);
#pragma unroll
      for (int n = 0; n < S_NT; ++n) {
        float pv[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          pv[e] = exp2_approx(fmaf(acc[i][n][e], scale_log2, -m_row[e >> 1]));
          l_[i][e >> 1] += pv[e];
        }
        using T = typename Tr::T;
        const int chunk = (wn * Tr::S_COLS) / kChunkElems + n;
        const uint32_t at0 = swizzle<Tr::P_ROW_BYTES>(row, chunk) + 4 * (lane & 3);
        const uint32_t at1 = swizzle<Tr::P_ROW_BYTES>(row + 8, chunk) + 4 * (lane & 3);
        const uint32_t hi0 = pack2<T>(pv[0], pv[1]), hi1 = pack2<T>(pv[2], pv[3]);
        st_shared_b32(p_tile + at0, hi0);
        st_shared_b32(p_tile + at1, hi1);
        if (split_p) {
          const float2 r0 = unpack2<T>(hi0), r1 = unpack2<T>(hi1);
          st_shared_b32(p_lo_tile + at0, pack2<T>(pv[0] - r0.x, pv[1] - r0.y));
          st_shared_b32(p_lo_tile + at1, pack2<T>(pv[2] - r1.x, pv[3] - r1.y));
        }
      }
    }
  }

  // Epilogue, S warps: this warp's row sums (over its S_COLS) into red, for combine_sums.
  __device__ void publish_sums(int wm, int wn, int lane, float* red) const {
#pragma unroll
    for (int i = 0; i < S_MT; ++i) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float l = quad_sum(l_[i][h]);
        if ((lane & 3) == 0) red[wn * BLOCK_M + s_row(wm, i, h, lane)] = l;
      }
    }
  }

  // Epilogue, every thread (after the barrier): full row sums of the rows it holds in O.
  __device__ void combine_sums(const float* red, int lane, float (&l)[MT][2]) const {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = mt * kMmaM + (lane >> 2) + 8 * h;
        float s = 0.f;
#pragma unroll
        for (int w = 0; w < Tr::WN; ++w) s += red[w * BLOCK_M + row];
        l[mt][h] = s;
      }
    }
  }

  __device__ float max_of(int mt, int h) const { return m_[mt][h]; }

 private:
  // m <- the running max after the maxima of `row` from every S warp (next_running_max: it
  // moves only past a slack); returns the rescale exp2(m_old - m_new), exactly 1 if it did not.
  __device__ static float fold(const float* red, int row, float& m) {
    float mx = red[row];
#pragma unroll
    for (int w = 1; w < Tr::WN; ++w) mx = fmaxf(mx, red[w * BLOCK_M + row]);
    const float m_new = next_running_max(m, mx);
    const float alpha = rescale_factor(m, m_new);
    m = m_new;
    return alpha;
  }

  float m_[MT][2];     // running max of the O rows this thread holds (exp2 domain)
  float ms_[S_MT][2];  // the same running max, for the rows this thread holds in S
  float l_[S_MT][2];   // partial sums of this thread's S rows over its own S columns
};

// O rows scale with their alpha: (MT, O_NT, 4) fragments, elements 0-1 row h = 0, 2-3 h = 1.
// Once a row's running max settles, alpha is exactly 1 for tile after tile (running_max.cuh):
// the warp skips the multiplies (a warp-uniform branch) unless one of its rows moved.
template <class Tr>
__device__ __forceinline__ void rescale_o(float (&o)[Tr::MT][Tr::O_NT][4],
                                          const float (&alpha)[Tr::MT][2]) {
  if (!warp_must_rescale(alpha)) return;
#pragma unroll
  for (int mt = 0; mt < Tr::MT; ++mt)
#pragma unroll
    for (int n = 0; n < Tr::O_NT; ++n) {
      o[mt][n][0] *= alpha[mt][0], o[mt][n][1] *= alpha[mt][0];
      o[mt][n][2] *= alpha[mt][1], o[mt][n][3] *= alpha[mt][1];
    }
}

}  // namespace flashmfa::cuda::sm80
