// flashmfa CUDA, Hopper path: the epilogue -- one consumer warpgroup's normalized output rows
// and log-sum-exps, either straight to out / lse (an unsplit sequence) or to a partial slot
// that the combine kernel merges (schedule.cuh).
#pragma once

#include "core/params.hpp"
#include "cuda/common/schedule.cuh"
#include "cuda/sm90/decode/config.hpp"
#include "cuda/sm90/decode/ptx.cuh"
#include "cuda/sm90/decode/softmax.cuh"
#include "cuda/sm90/decode/traits.cuh"
#include "cuda/sm90/decode/wgmma.cuh"

namespace flashmfa::cuda::sm90 {

// The thread's rows are first_row + 16 w + g + 8 h (softmax.cuh); each writes pairs of
// adjacent columns (4-byte T2 / 8-byte float2 stores), the quad covering 8 consecutive ones.
//
// o holds ATOMS 64-column accumulator tiles whose first is output column 64 * col_atom0; only
// tiles [AT_BEGIN, AT_END) are written (the two warpgroups of a KV split each finalize half of
// the columns; each MLA warpgroup owns half of d_v); lse only when write_lse.
template <class T, int ATOMS, int AT_BEGIN = 0, int AT_END = ATOMS>
__device__ void store_rows(const detail::DecodeParams& p, const Schedule& sched,
                           const WorkItem& it, int kv_head, int first_row, int warp, int lane,
                           float (&o)[ATOMS][kAccRegs], const float (&inv_sum)[kRowsPerThread],
                           const float (&lse)[kRowsPerThread], bool write_lse = true,
                           int col_atom0 = 0) {
  const int rows = p.s_q * p.q_per_kv;
  const int g = lane / kQuadLanes, t = lane % kQuadLanes;
  const bool pairs = out_pairs_aligned(p);  // else two 16-bit stores per pair
  // Normalize in place: no second copy of the tile is ever live.
#pragma unroll
  for (int at = AT_BEGIN; at < AT_END; ++at)
#pragma unroll
    for (int i = 0; i < kAccRegs; ++i) o[at][i] *= inv_sum[acc_row(i)];
#pragma unroll
  for (int h = 0; h < kRowsPerThread; ++h) {
    const int row = first_row + 16 * warp + g + 8 * h;
    if (row >= rows) continue;
    if (it.slot < 0) {
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
    } else {
      // Partial row kv * rows + r of slot it.slot (the combine kernel's indexing).
      const int64_t prow = int64_t(it.slot) * p.h_q * p.s_q + int64_t(kv_head) * rows + row;
      float* dst = sched.o_partial + prow * p.d_v + col_atom0 * kAtomCols + 2 * t;
#pragma unroll
      for (int at = AT_BEGIN; at < AT_END; ++at)
#pragma unroll
        for (int c = 0; c < kWgmmaN / 8; ++c) {
          const int i = 4 * c + 2 * h;
          *reinterpret_cast<float2*>(dst + at * kAtomCols + 8 * c) =
              make_float2(o[at][i], o[at][i + 1]);
        }
      if (t == 0 && write_lse) sched.lse_partial[prow] = lse[h];
    }
  }
}

// ---- split-KV fixup ----------------------------------------------------------------------
//
// A sequence split over n <= Schedule::fixup_max_splits parts is finished inside the decode
// kernel rather than by the combine kernel after the grid (docs/perf-notes.md M.4). Per group
// of 64 query rows (the threads that hold them: one warpgroup under a row split, both
// otherwise), every part's group takes a ticket once its rows are final. The one that takes
// the last ticket keeps its rows in registers and waits until the other n - 1 parts have
// written theirs; every other part writes its partial rows and counts them written. The last
// one then merges the others' rows (same thread, same fragment positions: the addresses differ
// only in the slot) into its own, writes out and lse, and resets both counters for the next
// call. No part waits on anything but parts that have already taken their ticket, so the wait
// always ends.

// Whether item `it` of this group is merged here.
__device__ __forceinline__ bool fixup_applies(const Schedule& s, const WorkItem& it) {
  return it.slot >= 0 && s.num_splits[it.seq] <= s.fixup_max_splits;
}

// This group's pair of counters (arrived, written) for item `it`.
__device__ __forceinline__ int* fixup_ticket(const detail::DecodeParams& p, const Schedule& s,
                                             const WorkItem& it, int kv_head, int first_row) {
  const int rows = p.s_q * p.q_per_kv;
  return s.tickets + (int64_t(it.seq) * p.h_kv + kv_head) * ((rows + 63) / 64) + first_row / 64;
}

// Out rows of a split item of at most fixup_max_splits parts: the fixup protocol above, then
// store_rows (directly to out / lse for the last part, to the partial slot for the others).
// Every thread of the group (gtid in [0, threads), named barriers bar + kFixupTicket /
// kFixupWritten) calls it together; the arguments are store_rows'.
template <class T, int ATOMS, int AT_BEGIN = 0, int AT_END = ATOMS>
__device__ void fixup_rows(const detail::DecodeParams& p, const Schedule& sched,
                           const WorkItem& it, int kv_head, int first_row, int warp, int lane,
                           float (&o)[ATOMS][kAccRegs], const float (&inv_sum)[kRowsPerThread],
                           const float (&lse)[kRowsPerThread], bool write_lse, int col_atom0,
                           int gtid, int threads, int bar) {
  const int n = sched.num_splits[it.seq];
  int* arrived = fixup_ticket(p, sched, it, kv_head, first_row);
  int* written = arrived + sched.ticket_groups;
  bool mine = false;
  if (gtid == 0) mine = atomicAdd(arrived, 1) == n - 1;
  const bool last = named_barrier_any(int(NamedBarrier::kFixupTicket) + bar, threads, mine);
  if (!last) {
    store_rows<T, ATOMS, AT_BEGIN, AT_END>(p, sched, it, kv_head, first_row, warp, lane, o,
                                           inv_sum, lse, write_lse, col_atom0);
    __threadfence();  // this thread's partial rows, before the group counts them written
    named_barrier_sync(int(NamedBarrier::kFixupWritten) + bar, threads);
    if (gtid == 0) atomicAdd(written, 1);
    return;
  }
  if (gtid == 0) {
    while (ld_acquire_gpu(written) < n - 1) __nanosleep(64);
    *arrived = 0;  // every part has arrived and written: ready for the next call
    *written = 0;
  }
  named_barrier_sync(int(NamedBarrier::kFixupWritten) + bar, threads);
  __threadfence();

  // Merge: out = sum_k exp(lse_k - lse) o_k over the parts' normalized rows, lse = log sum_k
  // exp(lse_k); this part's o_k is o * inv_sum, in registers. The others' values are read at
  // L2 (ld.global.cg), never from a stale L1 line.
  const int rows = p.s_q * p.q_per_kv, rows_all = p.h_q * p.s_q;
  const int g = lane / kQuadLanes, t = lane % kQuadLanes;
  const int first_slot = sched.slot_begin[it.seq];
  // lse of part k's row h (-inf: this part's own slot, past n, or a row not written).
  auto lse_of = [&](int k, int h) {
    const int slot = first_slot + k, row = first_row + 16 * warp + g + 8 * h;
    if (k >= n || slot == it.slot || row >= rows) return -INFINITY;
    return __ldcg(sched.lse_partial + int64_t(slot) * rows_all + int64_t(kv_head) * rows + row);
  };
  // Per row: the largest lse (base), 1 / sum_k exp(lse_k - base), the merged lse; this part's
  // rows scaled to their final weight in place.
  float base[kRowsPerThread], inv_total[kRowsPerThread], merged[kRowsPerThread];
  float ones[kRowsPerThread], w_self[kRowsPerThread];
#pragma unroll
  for (int h = 0; h < kRowsPerThread; ++h) {
    ones[h] = 1.f;
    float m = lse[h];
    for (int k = 0; k < n; ++k) m = fmaxf(m, lse_of(k, h));
    base[h] = m == -INFINITY ? 0.f : m;  // every part empty: out 0, lse -inf
    float total = __expf(lse[h] - base[h]);
    w_self[h] = total;
    for (int k = 0; k < n; ++k) total += __expf(lse_of(k, h) - base[h]);
    inv_total[h] = m == -INFINITY ? 0.f : 1.f / total;
    merged[h] = m == -INFINITY ? -INFINITY : base[h] + __logf(total);
    w_self[h] *= inv_total[h] * inv_sum[h];
  }
#pragma unroll
  for (int at = AT_BEGIN; at < AT_END; ++at)
#pragma unroll
    for (int i = 0; i < kAccRegs; ++i) o[at][i] *= w_self[acc_row(i)];
  // Addresses of part k's float2 at (atom at, row h, column group 0) for this thread, or null.
  auto row_src = [&](int k, int at, int h) -> const float2* {
    const int slot = first_slot + k, row = first_row + 16 * warp + g + 8 * h;
    if (row >= rows) return nullptr;
    const int64_t prow = int64_t(slot) * rows_all + int64_t(kv_head) * rows + row;
    return reinterpret_cast<const float2*>(sched.o_partial + prow * p.d_v +
                                           (col_atom0 + at) * kAtomCols + 2 * t);
  };
  // Every line the merge reads is requested into L2 first (a quad's four lanes share two
  // 128-byte lines per atom and row; no registers held), so that the loads below, in batches
  // the registers allow, wait for L2 rather than DRAM: most of the others' rows were written
  // long before (a part's first item is the end of the sequence its left neighbour ends with).
  if (t == 0)
    for (int k = 0; k < n; ++k) {
      if (first_slot + k == it.slot) continue;
#pragma unroll
      for (int at = AT_BEGIN; at < AT_END; ++at)
#pragma unroll
        for (int h = 0; h < kRowsPerThread; ++h)
          if (const float2* src = row_src(k, at, h))
#pragma unroll
            for (int c = 0; c < kWgmmaN / 8; c += 4)
              asm volatile("prefetch.global.L2 [%0];\n" ::"l"(src + 4 * c));
    }
  // The other parts one at a time (their weights reloaded, so that no per-part array stays
  // live beside O: the FP8 MLA consumers have 216 registers).
#pragma unroll 1
  for (int k = 0; k < n; ++k) {
    if (first_slot + k == it.slot) continue;
    float w[kRowsPerThread];
#pragma unroll
    for (int h = 0; h < kRowsPerThread; ++h) w[h] = __expf(lse_of(k, h) - base[h]) * inv_total[h];
#pragma unroll
    for (int at = AT_BEGIN; at < AT_END; ++at)
#pragma unroll
      for (int h = 0; h < kRowsPerThread; ++h) {
        const float2* src = row_src(k, at, h);
        if (src == nullptr) continue;
        float2 v[kWgmmaN / 8];
#pragma unroll
        for (int c = 0; c < kWgmmaN / 8; ++c) v[c] = __ldcg(src + 4 * c);
#pragma unroll
        for (int c = 0; c < kWgmmaN / 8; ++c) {
          const int i = 4 * c + 2 * h;
          o[at][i] = fmaf(w[h], v[c].x, o[at][i]);
          o[at][i + 1] = fmaf(w[h], v[c].y, o[at][i + 1]);
        }
      }
  }
  // Scratch read once: the lines are dropped from L2 without a write-back, by each quad's first
  // lane once the whole warp has used its values.
  if (can_discard(sched, p.d_v)) {
    __syncwarp();
    if (t == 0)
      for (int k = 0; k < n; ++k) {
        if (first_slot + k == it.slot) continue;
#pragma unroll
        for (int at = AT_BEGIN; at < AT_END; ++at)
#pragma unroll
          for (int h = 0; h < kRowsPerThread; ++h)
            if (const float2* src = row_src(k, at, h))
#pragma unroll
              for (int c = 0; c < kWgmmaN / 8; c += 4)
                asm volatile("discard.global.L2 [%0], 128;\n" ::"l"(src + 4 * c) : "memory");
      }
  }
  WorkItem done = it;
  done.slot = -1;  // out and lse, as for an unsplit sequence
  store_rows<T, ATOMS, AT_BEGIN, AT_END>(p, sched, done, kv_head, first_row, warp, lane, o, ones,
                                         merged, write_lse, col_atom0);
}

// store_rows, or fixup_rows for an item the kernel merges itself.
template <class T, int ATOMS, int AT_BEGIN = 0, int AT_END = ATOMS>
__device__ void finish_rows(const detail::DecodeParams& p, const Schedule& sched,
                            const WorkItem& it, int kv_head, int first_row, int warp, int lane,
                            float (&o)[ATOMS][kAccRegs], const float (&inv_sum)[kRowsPerThread],
                            const float (&lse)[kRowsPerThread], bool write_lse, int col_atom0,
                            int gtid, int threads, int bar) {
  if (fixup_applies(sched, it))
    fixup_rows<T, ATOMS, AT_BEGIN, AT_END>(p, sched, it, kv_head, first_row, warp, lane, o,
                                           inv_sum, lse, write_lse, col_atom0, gtid, threads, bar);
  else
    store_rows<T, ATOMS, AT_BEGIN, AT_END>(p, sched, it, kv_head, first_row, warp, lane, o,
                                           inv_sum, lse, write_lse, col_atom0);
}

}  // namespace flashmfa::cuda::sm90
