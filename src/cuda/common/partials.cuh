// flashmfa CUDA: the format of the partial rows that split sequences leave for the combine
// (schedule.cuh) -- what every decode kernel's epilogue writes and the combine kernel reads.
//
// A partial row (d_v columns, normalized over its split's tokens) is stored as fp16 values,
// each the f32 value times a power of two `inv` chosen per group of d_v / kPartialGroups
// consecutive columns so that the group's largest magnitude lands in [2^14, 2^15). The value
// keeps fp16's 11 significant bits whatever its range (a bf16 cache reaches 3e38 where fp16
// stops at 65504) and the scaling itself is exact. The group's `scale` = 1 / inv is stored as
// a float beside the row:
//
//   o_partial [num_slots, h_q * s_q, d_v]             fp16
//   o_scale   [num_slots, h_q * s_q, kPartialGroups]  f32, value = o_partial * o_scale
//
// Half the bytes of f32 rows (MLA h_q 128, 8k varlen: ~34 -> ~17 MB written and read per call)
// for about a tenth more of the output's own rounding error at worst (docs/perf-notes.md M.10).
// A group lies inside one 64-column atom of the Hopper kernels' accumulators and is exactly one
// warp's columns in the portable kernel, so in both its maximum takes the two shuffles of the
// quad that holds a row. FLASHMFA_PARTIAL_F16=0 keeps f32 rows without scales.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#ifndef FLASHMFA_PARTIAL_F16
#define FLASHMFA_PARTIAL_F16 1
#endif

namespace flashmfa::cuda {

constexpr bool kPartialF16 = FLASHMFA_PARTIAL_F16 != 0;
using PartialElem = std::conditional_t<kPartialF16, __half, float>;
constexpr int kPartialGroups = 8;  // scale groups per partial row, d_v / 8 columns each

// How a partial value is stored: stored = value * inv, value = stored * scale.
struct GroupScale {
  float inv = 1.f, scale = 1.f;
};

// The scale of a group whose largest magnitude is amax (>= 0, or NaN). inv = 2^(141 - e) for
// amax's biased exponent e brings [2^(e - 127), 2^(e - 126)) to [2^14, 2^15); e is held at 15
// or more (amax below 2^-112: inv = 2^126), so that inv and scale are normal floats for every
// amax, inf and NaN included (e = 255: inf stays inf, NaN stays NaN).
__device__ __forceinline__ GroupScale group_scale(float amax) {
  if constexpr (!kPartialF16) return {};
  const int e = max(int(__float_as_uint(amax) >> 23), 15);
  return {__uint_as_float(uint32_t(268 - e) << 23), __uint_as_float(uint32_t(e - 14) << 23)};
}

// The largest of x over the four lanes of this lane's quad (lanes 4k..4k+3), which hold one
// accumulator row; only the quad needs to be converged.
__device__ __forceinline__ float quad_amax(float x) {
  const unsigned quad = 0xfu << (threadIdx.x % 32 / 4 * 4);
  x = fmaxf(x, __shfl_xor_sync(quad, x, 1));
  return fmaxf(x, __shfl_xor_sync(quad, x, 2));
}

// Two adjacent columns at dst (2-element aligned), already times inv.
__device__ __forceinline__ void store_partial_pair(PartialElem* dst, float x, float y) {
  if constexpr (kPartialF16)
    *reinterpret_cast<__half2*>(dst) = __floats2half2_rn(x, y);
  else
    *reinterpret_cast<float2*>(dst) = make_float2(x, y);
}

// Four stored columns, as loaded (kept packed while the load is in flight: 2 registers for
// fp16 values), and as floats (not yet times their scale).
using PartialPack = std::conditional_t<kPartialF16, uint2, float4>;
__device__ __forceinline__ PartialPack load_partial4(const PartialElem* src) {  // 4-aligned
  return *reinterpret_cast<const PartialPack*>(src);
}
__device__ __forceinline__ float4 unpack_partial4(const uint2& v) {
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&v.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&v.y));
  return make_float4(a.x, a.y, b.x, b.y);
}
__device__ __forceinline__ float4 unpack_partial4(const float4& v) { return v; }

}  // namespace flashmfa::cuda
