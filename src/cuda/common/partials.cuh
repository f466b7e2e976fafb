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
// for about a tenth more of the output's own rounding error at worst (docs/perf-notes.md M.10);
// a value below 2^-28 of its group's largest is kept with fewer bits (fp16's subnormals).
//
// Writers: a group lies inside one 64-column atom of the Hopper kernels' accumulators and is
// exactly one warp's columns in the portable kernel, so in both its maximum takes the two
// shuffles of the quad that holds a row (run by the whole warp, converged). The quad holds 8
// consecutive columns per 8-column block, 16 bytes of fp16: two blocks are stored together
// (one more shuffle) so that each store instruction of the quad fills whole 32-byte sectors,
// which L2 then never has to fill from DRAM first. Readers take 8 columns (16 bytes, one
// scale) at a time.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/common/quad.cuh"

namespace flashmfa::cuda {

using PartialElem = __half;
constexpr int kPartialGroups = 8;  // scale groups per partial row, d_v / 8 columns each

// How a partial value is stored: stored = value * inv, value = stored * scale.
struct GroupScale {
  float inv, scale;
};

// The scale of a group whose largest magnitude is amax (>= 0, or NaN). inv = 2^(141 - e) for
// amax's biased exponent e brings [2^(e - 127), 2^(e - 126)) to [2^14, 2^15); e is held at 15
// or more (amax below 2^-112: inv = 2^126), so that inv and scale are normal floats for every
// amax, inf and NaN included (e = 255: inf stays inf, NaN stays NaN).
__device__ __forceinline__ GroupScale group_scale(float amax) {
  const int e = max(int(__float_as_uint(amax) >> 23), 15);
  return {__uint_as_float(uint32_t(268 - e) << 23), __uint_as_float(uint32_t(e - 14) << 23)};
}

__device__ __forceinline__ uint32_t pack_partial2(float x, float y) {
  const __half2 h = __floats2half2_rn(x, y);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Two 8-column blocks of a row from the quad at `row` (the row's column 8c, 16-byte aligned):
// lane t (= lane % 4) holds columns 2t, 2t + 1 of the first block (a0, a1) and of the second
// (b0, b1), already times inv. After one exchange within each lane pair, even lanes store
// columns 2t .. 2t + 3 and odd ones 8 + 2t - 2 .. 8 + 2t + 1: four 8-byte stores that fill the
// 32 bytes of both blocks. Every lane of the warp calls it together; `store` false skips this
// lane's store (a row past the tile's end).
__device__ __forceinline__ void store_partial_blocks(PartialElem* row, int t, float a0, float a1,
                                                     float b0, float b1, bool store) {
  const uint32_t a = pack_partial2(a0, a1), b = pack_partial2(b0, b1);
  const bool odd = t & 1;
  const uint32_t other = __shfl_xor_sync(~0u, odd ? a : b, 1);
  if (store)
    *reinterpret_cast<uint2*>(row + (odd ? 8 + 2 * t - 2 : 2 * t)) =
        odd ? make_uint2(other, b) : make_uint2(a, other);
}

// One 8-column block (where a warp holds no second one): lane t stores columns 2t, 2t + 1.
__device__ __forceinline__ void store_partial_block(PartialElem* row, int t, float a0, float a1) {
  *reinterpret_cast<uint32_t*>(row + 2 * t) = pack_partial2(a0, a1);
}

// Eight stored columns (16-byte aligned), as loaded, and as floats not yet times their scale.
__device__ __forceinline__ uint4 load_partial8(const PartialElem* src) {
  return *reinterpret_cast<const uint4*>(src);
}
__device__ __forceinline__ float2 unpack_partial2(uint32_t u) {
  return __half22float2(*reinterpret_cast<const __half2*>(&u));
}

}  // namespace flashmfa::cuda
