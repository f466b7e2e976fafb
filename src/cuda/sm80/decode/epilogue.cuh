// flashmfa CUDA, portable path: the epilogue of one work item of the sm_80 decode kernel.
// Normalizes O by the row sums and writes either the final out / lse (the work item is the
// whole sequence: slot < 0) or a partial row (partials.cuh) and its lse into the schedule's
// slot, which the combine kernel merges.
#pragma once

#include <cstdint>

#include "cuda/sm80/decode/ptx.cuh"
#include "cuda/sm80/decode/softmax.cuh"
#include "cuda/sm80/decode/traits.cuh"

namespace flashmfa::cuda::sm80 {

constexpr float kLn2 = 0.69314718055994530942f;

// o (MT, O_NT, 4): this warp's columns [O_COLS warp, +O_COLS) of rows 16 mt + lane / 4 + 8 h
// (elements 2h, 2h + 1 at columns 8 n + 2 (lane % 4) + {0, 1}); l (MT, 2): full row sums.
template <class Tr>
__device__ void write_output(const KernelParams& kp, const WorkItem& it, int kv, int row0,
                             int rows, int warp, int lane, const float (&o)[Tr::MT][Tr::O_NT][4],
                             const float (&l)[Tr::MT][2], const OnlineSoftmax<Tr>& softmax) {
  using T = typename Tr::T;
  static_assert(Tr::O_COLS == Tr::D_V / kPartialGroups, "a warp's columns: one scale group");
  const detail::DecodeParams& p = kp.p;
  const int col0 = warp * Tr::O_COLS + 2 * (lane & 3);
  const bool writes_lse = warp == 0 && (lane & 3) == 0;  // one thread per row
#pragma unroll
  for (int mt = 0; mt < Tr::MT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int rg = row0 + mt * kMmaM + (lane >> 2) + 8 * h;
      const bool mine = rg < rows;  // a row past the tile's end: nothing stored
      const float sum = l[mt][h];
      // sum == 0 only when the row saw nothing: out 0, lse -inf.
      const float inv = sum > 0.f ? 1.f / sum : 0.f;
      const float lse = sum > 0.f ? (softmax.max_of(mt, h) + log2f(sum)) * kLn2 : kNegInf;
      if (it.slot < 0) {
        if (!mine) continue;
        const int t = rg / p.q_per_kv, head = kv * p.q_per_kv + rg % p.q_per_kv;
        T* out = static_cast<T*>(p.out) +
                 (int64_t(it.seq) * p.o_sb + int64_t(t) * p.o_ss + int64_t(head) * p.o_sh);
#pragma unroll
        for (int n = 0; n < Tr::O_NT; ++n) {
          const float x = o[mt][n][2 * h] * inv, y = o[mt][n][2 * h + 1] * inv;
          T* dst = out + col0 + n * kMmaN;
          if (kp.out_vec) {
            *reinterpret_cast<uint32_t*>(dst) = pack2<T>(x, y);
          } else {
            dst[0] = from_float<T>(x);
            dst[1] = from_float<T>(y);
          }
        }
        if (writes_lse)
          p.lse[int64_t(it.seq) * p.lse_sb + int64_t(head) * p.lse_sh + int64_t(t) * p.lse_ss] =
              lse;
      } else {
        // Partial rows: [num_slots, h_q * s_q, d_v], row = kv * rows + r (schedule.cuh); the
        // warp's O_COLS columns are one scale group (partials.cuh), the quad holding the row.
        // The quad shuffles run on the whole warp (it.slot is the same for every thread).
        const int64_t prow = int64_t(it.slot) * (int64_t(p.h_q) * p.s_q) + int64_t(kv) * rows + rg;
        float amax = 0.f;
#pragma unroll
        for (int n = 0; n < Tr::O_NT; ++n)
          amax = fmaxf(amax, fmaxf(fabsf(o[mt][n][2 * h]), fabsf(o[mt][n][2 * h + 1])));
        const GroupScale s = group_scale(quad_max(amax * inv));
        const float w = inv * s.inv;
        const int quad_lane = lane & 3;
        PartialElem* dst = kp.sched.o_partial + prow * Tr::D_V + warp * Tr::O_COLS;
        if constexpr (Tr::O_NT == 1) {
          if (mine)
            store_partial_block(dst, quad_lane, o[mt][0][2 * h] * w, o[mt][0][2 * h + 1] * w);
        } else {
#pragma unroll
          for (int n = 0; n < Tr::O_NT; n += 2)
            store_partial_blocks(dst + n * kMmaN, quad_lane, o[mt][n][2 * h] * w,
                                 o[mt][n][2 * h + 1] * w, o[mt][n + 1][2 * h] * w,
                                 o[mt][n + 1][2 * h + 1] * w, mine);
        }
        if (mine && quad_lane == 0) kp.sched.o_scale[prow * kPartialGroups + warp] = s.scale;
        if (mine && writes_lse) kp.sched.lse_partial[prow] = lse;
      }
    }
  }
}

}  // namespace flashmfa::cuda::sm80
