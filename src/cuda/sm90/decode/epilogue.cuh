// flashmfa CUDA, Hopper path: the epilogue -- one consumer warpgroup's normalized output rows
// and log-sum-exps, either straight to out / lse (an unsplit sequence) or to a partial slot
// that the combine kernel merges (schedule.cuh).
#pragma once

#include "core/params.hpp"
#include "cuda/common/schedule.cuh"
#include "cuda/sm90/decode/config.hpp"
#include "cuda/sm90/decode/ptx.cuh"
#include "cuda/sm90/decode/softmax.cuh"
#include "cuda/sm90/decode/wgmma.cuh"

namespace flashmfa::cuda::sm90 {

// The thread's rows are first_row + 16 w + g + 8 h (softmax.cuh); each writes pairs of
// adjacent columns (4-byte T2 stores), the quad covering 8 consecutive ones (partial rows:
// partials.cuh).
//
// o holds ATOMS 64-column accumulator tiles of a D_V-column row, whose first is output column
// 64 * col_atom0; only tiles [AT_BEGIN, AT_END) are written (the two warpgroups of a KV split
// each finalize half of the columns; each MLA warpgroup owns half of d_v); lse only when
// write_lse.
template <class T, int D_V, int ATOMS, int AT_BEGIN = 0, int AT_END = ATOMS>
__device__ void store_rows(const detail::DecodeParams& p, const Schedule& sched,
                           const WorkItem& it, int kv_head, int first_row, int warp, int lane,
                           float (&o)[ATOMS][kAccRegs], const float (&inv_sum)[kRowsPerThread],
                           const float (&lse)[kRowsPerThread], bool write_lse = true,
                           int col_atom0 = 0) {
  constexpr int kBlocks = kWgmmaN / 8;              // 8-column blocks of an atom
  constexpr int kGroupCols = D_V / kPartialGroups;  // columns per partial scale
  constexpr int kGroupBlocks = kGroupCols / 8;      // blocks per group
  static_assert(kGroupCols % 8 == 0 && kAtomCols % kGroupCols == 0, "groups inside atoms");
  static_assert(kBlocks % 2 == 0, "blocks stored two by two");
  const int rows = p.s_q * p.q_per_kv;
  const int g = lane / kQuadLanes, t = lane % kQuadLanes;
  const bool pairs = out_pairs_aligned(p);  // else two 16-bit stores per pair
  // Normalize in place: no second copy of the tile is ever live.
#pragma unroll
  for (int at = AT_BEGIN; at < AT_END; ++at)
#pragma unroll
    for (int i = 0; i < kAccRegs; ++i) o[at][i] *= inv_sum[acc_row(i)];
  if (it.slot >= 0) {
    // Partial row kv * rows + r of slot it.slot (the combine kernel's indexing), one scale per
    // group of kGroupCols columns (partials.cuh): a group is kGroupBlocks of the quad's 8-column
    // blocks c of one atom; blocks are stored two by two. The quad shuffles run on the whole
    // warp (it.slot is the same for every thread), rows past `rows` only skip their stores.
#pragma unroll
    for (int h = 0; h < kRowsPerThread; ++h) {
      const int row = first_row + 16 * warp + g + 8 * h;
      const bool mine = row < rows;
      const int64_t prow = int64_t(it.slot) * p.h_q * p.s_q + int64_t(kv_head) * rows + row;
      PartialElem* dst = sched.o_partial + prow * p.d_v + col_atom0 * kAtomCols;
#pragma unroll
      for (int at = AT_BEGIN; at < AT_END; ++at) {
        float inv[kBlocks];
#pragma unroll
        for (int g0 = 0; g0 < kBlocks; g0 += kGroupBlocks) {
          float amax = 0.f;
#pragma unroll
          for (int c = g0; c < g0 + kGroupBlocks; ++c)
            amax = fmaxf(amax, fmaxf(fabsf(o[at][4 * c + 2 * h]), fabsf(o[at][4 * c + 2 * h + 1])));
          const GroupScale s = group_scale(quad_max(amax));
#pragma unroll
          for (int c = g0; c < g0 + kGroupBlocks; ++c) inv[c] = s.inv;
          const int group = ((col_atom0 + at) * kAtomCols + 8 * g0) / kGroupCols;
          if (mine && t == 0) sched.o_scale[prow * kPartialGroups + group] = s.scale;
        }
#pragma unroll
        for (int c = 0; c < kBlocks; c += 2) {
          const int i = 4 * c + 2 * h, j = i + 4;  // block c's pair, block c + 1's
          store_partial_blocks(dst + at * kAtomCols + 8 * c, t, o[at][i] * inv[c],
                               o[at][i + 1] * inv[c], o[at][j] * inv[c + 1],
                               o[at][j + 1] * inv[c + 1], mine);
        }
      }
      if (mine && t == 0 && write_lse) sched.lse_partial[prow] = lse[h];
    }
    return;
  }
#pragma unroll
  for (int h = 0; h < kRowsPerThread; ++h) {
    const int row = first_row + 16 * warp + g + 8 * h;
    if (row >= rows) continue;
    const int tq = row / p.q_per_kv, head = kv_head * p.q_per_kv + row % p.q_per_kv;
    T* out = static_cast<T*>(p.out) + int64_t(it.seq) * p.o_sb + int64_t(tq) * p.o_ss +
             int64_t(head) * p.o_sh + col_atom0 * kAtomCols + 2 * t;
#pragma unroll
    for (int at = AT_BEGIN; at < AT_END; ++at)
#pragma unroll
      for (int c = 0; c < kWgmmaN / 8; ++c) {
        const int i = 4 * c + 2 * h;
        const uint32_t v = pack2<T>(o[at][i], o[at][i + 1]);
        T* dst = out + at * kAtomCols + 8 * c;
        if (pairs) {
          *reinterpret_cast<uint32_t*>(dst) = v;
        } else {
          reinterpret_cast<uint16_t*>(dst)[0] = uint16_t(v);
          reinterpret_cast<uint16_t*>(dst)[1] = uint16_t(v >> 16);
        }
      }
    if (t == 0 && write_lse)
      p.lse[int64_t(it.seq) * p.lse_sb + head * p.lse_sh + tq * p.lse_ss] = lse[h];
  }
}

}  // namespace flashmfa::cuda::sm90
