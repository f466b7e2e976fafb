// flashmfa CUDA: the combine step as device code -- merging the partial slots of a split
// sequence (schedule.cuh) into out and lse -- used by the combine kernel (combine.cu).
//
// Partial k of a row holds o_k (normalized over its tokens; stored as partials.cuh describes)
// and lse_k (natural log, -inf when the split saw no token). The row's result is
//
//   lse = log sum_k exp(lse_k),   out = sum_k exp(lse_k - lse) o_k
//
// computed in one pass over the partials (RowMerge): each thread keeps its own running max m,
// sum l = sum exp(lse_k - m) and accumulator, rescaling them when m grows, so every lse_k and
// o_k load of a batch is in flight together; threads that shared a row's partials merge their
// states at the end (combine_chunk). A row whose partials are all empty gets out = 0 and
// lse = -inf.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "core/params.hpp"
#include "cuda/common/phase_clock.cuh"
#include "cuda/common/schedule.cuh"

namespace flashmfa::cuda::combine {

// A thread's unit of columns: 8 (16 bytes of fp16 partial, one scale).
constexpr int kColsPerThread = 8;
constexpr int kBatch = 6;  // partials in flight per thread

// Where partial k of one row lives: its values from o + k * o_stride (column group c at
// element kColsPerThread * c), its scales from scale + k * scale_stride (partials.cuh; column
// group c has scale group c / group_cols).
struct PartialRow {
  const PartialElem* o;
  int64_t o_stride;
  const float* scale;
  int64_t scale_stride;
  int group_cols;  // column groups per scale group: d_v / kPartialGroups / kColsPerThread
};

__device__ inline PartialRow partial_row(const Schedule& s, int d_v, int64_t first_row,
                                         int64_t row_stride) {
  return {s.o_partial + first_row * d_v, row_stride * d_v, s.o_scale + first_row * kPartialGroups,
          row_stride * kPartialGroups, d_v / kPartialGroups / kColsPerThread};
}

// Eight columns of a merge (a group's accumulator).
struct Cols8 {
  float v[kColsPerThread];
};

// Partials are scratch: the decode kernel writes them and one thread here reads each column
// group once. Left in L2 they stay dirty and are written back to DRAM when evicted, during the
// next call's KV stream (4.2 MB at MFA b = 1, ~8 MB for a b = 128 varlen batch), so every line
// of values is dropped after the merge (discard.global.L2: invalidated without a write-back;
// sm_80 on). The scales (1/32 of the bytes or less) share lines across rows and stay.
constexpr int kLineCols = kL2LineBytes / (kColsPerThread * int(sizeof(PartialElem)));  // groups

// Drops the L2 lines of the values of partials k = first, first + step, ... (k < n) of `row`
// at column groups col[j], once they have been used: the lane holding a line's first group
// drops it. A line is read by the kLineCols lanes of one kLineCols-aligned lane group, which
// all call this with the same first, step and n after their merge, so a __syncwarp over them
// orders every read before the drop.
template <int COLS>
__device__ void drop_lines(const PartialRow& row, const int (&col)[COLS], int first, int step,
                           int n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  static_assert(kLineCols <= 32, "a line within one warp");
  const int lane = int(threadIdx.x) % 32;
  __syncwarp(unsigned((1ull << kLineCols) - 1) << (lane / kLineCols * kLineCols));
  for (int k = first; k < n; k += step)
#pragma unroll
    for (int j = 0; j < COLS; ++j)
      if (col[j] >= 0 && col[j] % kLineCols == 0)
        asm volatile("discard.global.L2 [%0], 128;\n" ::"l"(row.o + k * row.o_stride +
                                                            col[j] * kColsPerThread)
                     : "memory");
#else
  (void)row, (void)col, (void)first, (void)step, (void)n;
#endif
}

template <class T> __device__ T from_float(float x);
template <> __device__ inline __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
template <> __device__ inline __half from_float(float x) { return __float2half_rn(x); }

template <class T> struct Pair;
template <> struct Pair<__nv_bfloat16> {
  using type = __nv_bfloat162;
  __device__ static type make(float a, float b) { return __floats2bfloat162_rn(a, b); }
};
template <> struct Pair<__half> {
  using type = __half2;
  __device__ static type make(float a, float b) { return __floats2half2_rn(a, b); }
};

// acc += w * the eight stored columns v (w includes their scale).
__device__ __forceinline__ void fma8(Cols8& acc, float w, const uint4& v) {
  const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = unpack_partial2(u[i]);
    acc.v[2 * i] = fmaf(w, f.x, acc.v[2 * i]);
    acc.v[2 * i + 1] = fmaf(w, f.y, acc.v[2 * i + 1]);
  }
}

__device__ __forceinline__ void scale8(Cols8& acc, float w) {
#pragma unroll
  for (int i = 0; i < kColsPerThread; ++i) acc.v[i] *= w;
}

// The out row of partial row `row` of sequence seq (partial row (kv, r), r = t * q_per_kv +
// h_in_group, belongs to head kv * q_per_kv + h); writes its lse when `write_lse`.
template <class T>
__device__ __forceinline__ T* out_row(const detail::DecodeParams& p, int seq, int row, float lse,
                                      bool write_lse) {
  const int rows = p.s_q * p.q_per_kv;
  const int kv = row / rows, r = row % rows;
  const int t = r / p.q_per_kv, head = kv * p.q_per_kv + r % p.q_per_kv;
  if (write_lse) p.lse[seq * p.lse_sb + head * p.lse_sh + t * p.lse_ss] = lse;
  return static_cast<T*>(p.out) + seq * p.o_sb + t * p.o_ss + head * p.o_sh;
}

// Eight columns of an out row (PAIRS: as packed 16-bit pairs).
template <class T, bool PAIRS>
__device__ __forceinline__ void store8(T* dst, const Cols8& acc) {
#pragma unroll
  for (int i = 0; i < kColsPerThread; i += 2) {
    if constexpr (PAIRS) {
      reinterpret_cast<typename Pair<T>::type*>(dst)[i / 2] = Pair<T>::make(acc.v[i], acc.v[i + 1]);
    } else {
      dst[i] = from_float<T>(acc.v[i]);
      dst[i + 1] = from_float<T>(acc.v[i + 1]);
    }
  }
}

// The running state of a one-pass merge over some of a row's partials, for COLS column
// groups: the largest lse_k seen (m), sum exp(lse_k - m) (l) and sum exp(lse_k - m) o_k.
template <int COLS>
struct RowMerge {
  float m = -INFINITY, l = 0.f;
  Cols8 acc[COLS];

  __device__ RowMerge() {
#pragma unroll
    for (int j = 0; j < COLS; ++j)
#pragma unroll
      for (int i = 0; i < kColsPerThread; ++i) acc[j].v[i] = 0.f;
  }

  // Partials k = first, first + step, ... (k < n) of `row`, BATCH of them loaded at a time:
  // lse_k at lse[k * lse_stride], column group col[j] (< 0: not this thread's).
  template <int BATCH>
  __device__ void add(const float* lse, int64_t lse_stride, const PartialRow& row,
                      const int (&col)[COLS], int first, int step, int n) {
    int group[COLS];
#pragma unroll
    for (int j = 0; j < COLS; ++j) group[j] = col[j] / row.group_cols;
    for (int k0 = first; k0 < n; k0 += BATCH * step) {
      float x[BATCH], sc[BATCH][COLS];
      uint4 v[BATCH][COLS];
#pragma unroll
      for (int b = 0; b < BATCH; ++b) {
        const int k = k0 + b * step;
        x[b] = k < n ? lse[k * lse_stride] : -INFINITY;
#pragma unroll
        for (int j = 0; j < COLS; ++j) {
          const bool mine = k < n && col[j] >= 0;
          v[b][j] = mine ? load_partial8(row.o + k * row.o_stride + col[j] * kColsPerThread)
                         : make_uint4(0, 0, 0, 0);
          sc[b][j] = mine ? row.scale[k * row.scale_stride + group[j]] : 0.f;
        }
      }
      float mb = m;
#pragma unroll
      for (int b = 0; b < BATCH; ++b) mb = fmaxf(mb, x[b]);
      if (mb == -INFINITY) continue;  // nothing seen yet
      rescale(__expf(m - mb));        // m = -inf: 0 (acc and l are 0 anyway)
#pragma unroll
      for (int b = 0; b < BATCH; ++b) {
        const float w = __expf(x[b] - mb);  // an empty partial, or past n: 0
        l += w;
#pragma unroll
        for (int j = 0; j < COLS; ++j) fma8(acc[j], w * sc[b][j], v[b][j]);
      }
      m = mb;
    }
  }

  // Folds in another state of the same columns (its max m2, sum l2, accumulator acc2).
  __device__ void merge(float m2, float l2, const Cols8 (&acc2)[COLS]) {
    const float mx = fmaxf(m, m2);
    if (mx == -INFINITY) return;
    const float a = __expf(m - mx), b = __expf(m2 - mx);
    l = l * a + l2 * b;
#pragma unroll
    for (int j = 0; j < COLS; ++j)
#pragma unroll
      for (int i = 0; i < kColsPerThread; ++i) acc[j].v[i] = acc[j].v[i] * a + acc2[j].v[i] * b;
    m = mx;
  }

  // The merged row: lse (-inf when every partial was empty) and column group j (0 then).
  __device__ float lse() const { return l > 0.f ? m + __logf(l) : -INFINITY; }
  __device__ Cols8 out(int j) const {
    Cols8 r = acc[j];
    scale8(r, l > 0.f ? 1.f / l : 0.f);
    return r;
  }

 private:
  __device__ void rescale(float r) {
    l *= r;
#pragma unroll
    for (int j = 0; j < COLS; ++j) scale8(acc[j], r);
  }
};

// One thread's share of a chunk, exchanged through shared memory at the end.
struct Partial {
  Cols8 acc;
  float m, l;
};

// Column groups [col0, col0 + cols) of partial row `row` of split sequence seq (n partials from
// slot slot0: the schedule's num_splits and slot_begin), by THREADS threads (index tid, cols <=
// THREADS): cols column threads times THREADS / cols split groups, group g taking partials g,
// g + G, g + 2G, ... `scratch` holds THREADS entries; `sync` is a barrier over exactly these
// threads (the last call: the scratch may be reused by the next call). Writes lse when
// col0 == 0.
template <class T, bool PAIRS, int THREADS, class Sync>
__device__ void combine_chunk(const detail::DecodeParams& p, const Schedule& s, int seq, int n,
                              int64_t slot0, int row, int col0, int cols, int tid,
                              Partial* scratch, Sync sync) {
  const int rows_all = p.h_q * p.s_q;  // partial rows of one sequence: (kv, t, head-in-group)
  const int groups = THREADS / cols;
  const int g = tid / cols, c = tid % cols;
  const float* lse_k = s.lse_partial + slot0 * rows_all + row;

  RowMerge<1> mine;
  const int col[1] = {col0 + c};
  // Threads past cols * groups idle (cols not dividing THREADS).
  if (g < groups) {
    mine.add<kBatch>(lse_k, rows_all, partial_row(s, p.d_v, slot0 * rows_all + row, rows_all),
                     col, g, groups, n);
    if (tid == 0) FLASHMFA_PHASE(3);
    // Whole lines when cols is a multiple of kLineCols (col0 is a multiple of cols). The
    // addresses are derived again (slot_begin reloaded), so that nothing of them stays live
    // across the merge's loads.
    if (can_discard(s, p.d_v) && cols % kLineCols == 0)
      drop_lines(partial_row(s, p.d_v, s.slot_begin[seq] * int64_t(rows_all) + row, rows_all),
                 col, g, groups, n);
    if (tid == 0) FLASHMFA_PHASE(4);
  }
  // The split groups' states merged as a tree: group g takes g + half's, half = 16, 8, .. 1
  // (up to 32 groups: 5 rounds instead of 31 merges in a row by group 0).
  scratch[tid] = Partial{mine.acc[0], mine.m, mine.l};
  sync();
  int half = 1;
  while (2 * half < groups) half *= 2;
  for (; half > 0; half /= 2) {
    if (g < half && g + half < groups) {
      const Partial& q = scratch[(g + half) * cols + c];
      const Cols8 acc2[1] = {q.acc};
      mine.merge(q.m, q.l, acc2);
      scratch[tid] = Partial{mine.acc[0], mine.m, mine.l};
    }
    sync();
  }
  if (tid == 0) FLASHMFA_PHASE(5);
  if (g == 0) {
    const float lse = mine.lse();
    T* out = out_row<T>(p, seq, row, lse, col0 == 0 && c == 0);
    store8<T, PAIRS>(out + (col0 + c) * kColsPerThread, mine.out(0));
  }
  sync();
}

}  // namespace flashmfa::cuda::combine
