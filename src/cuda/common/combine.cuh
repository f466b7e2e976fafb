// flashmfa CUDA: the combine step as device code -- merging the partial slots of a split
// sequence (schedule.cuh) into out and lse -- used by the combine kernel (combine.cu).
//
// Partial k of a row holds o_k (normalized over its tokens) and lse_k (natural log, -inf when
// the split saw no token). The row's result is
//
//   lse = log sum_k exp(lse_k),   out = sum_k exp(lse_k - lse) o_k
//
// computed in one pass over the partials (combine_chunk): each thread keeps its own running max
// m, sum l = sum exp(lse_k - m) and accumulator, rescaling them when m grows, so every lse_k and
// o_k load of a batch is in flight together; the threads' states are merged at the end. A row
// whose partials are all empty gets out = 0 and lse = -inf.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "core/params.hpp"
#include "cuda/common/schedule.cuh"

namespace flashmfa::cuda::combine {

constexpr int kColsPerThread = 4;  // one float4 of a row per thread
constexpr int kBatch = 8;          // partials in flight per thread

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

__device__ __forceinline__ void fma4(float4& acc, float w, const float4& v) {
  acc.x = fmaf(w, v.x, acc.x), acc.y = fmaf(w, v.y, acc.y);
  acc.z = fmaf(w, v.z, acc.z), acc.w = fmaf(w, v.w, acc.w);
}

__device__ __forceinline__ void scale4(float4& acc, float w) {
  acc.x *= w, acc.y *= w, acc.z *= w, acc.w *= w;
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

// Four columns of an out row (PAIRS: as two packed 16-bit pairs).
template <class T, bool PAIRS>
__device__ __forceinline__ void store4(T* dst, const float4& acc) {
  if constexpr (PAIRS) {
    using P2 = typename Pair<T>::type;
    reinterpret_cast<P2*>(dst)[0] = Pair<T>::make(acc.x, acc.y);
    reinterpret_cast<P2*>(dst)[1] = Pair<T>::make(acc.z, acc.w);
  } else {
    dst[0] = from_float<T>(acc.x), dst[1] = from_float<T>(acc.y);
    dst[2] = from_float<T>(acc.z), dst[3] = from_float<T>(acc.w);
  }
}

// One thread's share of a chunk, exchanged through shared memory at the end.
struct Partial {
  float4 acc;
  float m, l;
};

// Float4 columns [col4, col4 + cols4) of partial row `row` of split sequence seq, by THREADS
// threads (index tid, cols4 <= THREADS): cols4 column threads times THREADS / cols4 split
// groups, group g taking partials g, g + G, g + 2G, ... `scratch` holds THREADS entries;
// `sync` is a barrier over exactly these threads (called twice: the scratch may be reused by
// the next call). Writes lse when col4 == 0.
template <class T, bool PAIRS, int THREADS, class Sync>
__device__ void combine_chunk(const detail::DecodeParams& p, const Schedule& s, int seq, int row,
                              int col4, int cols4, int tid, Partial* scratch, Sync sync) {
  const int n = s.num_splits[seq];
  const int rows_all = p.h_q * p.s_q;  // partial rows of one sequence: (kv, t, head-in-group)
  const int64_t slot0 = s.slot_begin[seq];
  const int groups = THREADS / cols4;
  const int g = tid / cols4, c = tid % cols4;
  const int64_t row_stride4 = int64_t(rows_all) * (p.d_v / kColsPerThread);  // between slots
  const float* lse_k = s.lse_partial + slot0 * rows_all + row;
  const float4* o_k =
      reinterpret_cast<const float4*>(s.o_partial + (slot0 * rows_all + row) * p.d_v) + col4 + c;

  float m = -INFINITY, l = 0.f;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  if (g < groups) {  // threads past cols4 * groups idle (cols4 not dividing THREADS)
    for (int k0 = g; k0 < n; k0 += kBatch * groups) {
      float lse[kBatch];
      float4 v[kBatch];
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const int k = k0 + j * groups;
        lse[j] = k < n ? lse_k[int64_t(k) * rows_all] : -INFINITY;
        v[j] = k < n ? o_k[k * row_stride4] : make_float4(0.f, 0.f, 0.f, 0.f);
      }
      float mb = m;
#pragma unroll
      for (int j = 0; j < kBatch; ++j) mb = fmaxf(mb, lse[j]);
      if (mb == -INFINITY) continue;  // nothing seen yet
      const float rescale = __expf(m - mb);  // m = -inf: 0 (acc and l are 0 anyway)
      scale4(acc, rescale);
      l *= rescale;
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const float w = __expf(lse[j] - mb);  // empty partial or past n: 0
        l += w;
        fma4(acc, w, v[j]);
      }
      m = mb;
    }
  }
  scratch[tid] = Partial{acc, m, l};
  sync();
  if (g == 0) {
    float mx = -INFINITY;
    for (int j = 0; j < groups; ++j) mx = fmaxf(mx, scratch[j * cols4 + c].m);
    float4 sum = make_float4(0.f, 0.f, 0.f, 0.f);
    float total = 0.f;
    if (mx != -INFINITY) {
      for (int j = 0; j < groups; ++j) {
        const Partial& q = scratch[j * cols4 + c];
        const float w = __expf(q.m - mx);
        total += w * q.l;
        fma4(sum, w, q.acc);
      }
      scale4(sum, 1.f / total);
    }
    const float lse = mx == -INFINITY ? -INFINITY : mx + __logf(total);
    T* out = out_row<T>(p, seq, row, lse, col4 == 0 && c == 0);
    store4<T, PAIRS>(out + (col4 + c) * kColsPerThread, sum);
  }
  sync();
}

}  // namespace flashmfa::cuda::combine
