// flashmfa CUDA: append_kv (cuda_backend.hpp), new tokens' K / V rows into a paged cache in
// every cache format (flashmfa.hpp: AppendArgs, CacheFormat).
//
// One warp per row: (sequence, token, KV head) of k_new in blockIdx.y 0, of v_new in blockIdx.y
// 1; 8 warps per CTA. A warp first works out where its row goes, from the length and the
// block table in device memory: a sequence whose length is below s_new (a negative position) or
// beyond the block table is skipped whole, a row whose page index is outside [0, num_pages) is
// skipped, and lane 0 ors the ErrorFlag bit into p.error_flags. Otherwise the lanes load the
// row (16 bytes each when every pointer and stride allows it, else one value each) and
//   native   store it as it is;
//   fp8_row  reduce the row's amax over the warp, store e4m3(x / scale) with scale = amax / 448,
//            lane 0 the scale into k_scale / v_scale;
//   fp8_mla  the same per 128-value group of the 512 latent values, the 4 scales at byte 512,
//            then the 64 RoPE values as they are at byte 528.
// Identical bytes to the CPU backend: both take the scale and the division from core/fp8.hpp
// (correctly rounded f32, whatever the compiler flags), and the rounding to e4m3 is
// cvt.rn.satfinite.e4m3x2.f32 from sm_89 on, fp8.hpp's encoder (the CPU's own) before.
//
// The kernel is memory-bound: each row is read once and written once. One warp per row leaves
// lanes idle on short rows (d 64 with 16-byte lanes: 8 of 32), which matters little for the few
// thousand rows of one decode step, whose cost is the launch.
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "core/fp8.hpp"
#include "cuda/common/device.hpp"
#include "cuda/cuda_backend.hpp"

namespace flashmfa::cuda {
namespace {

using detail::AppendParams;

constexpr int kWarpSize = 32;
constexpr int kWarpsPerCta = 8;
constexpr int kThreads = kWarpsPerCta * kWarpSize;
constexpr int kMaxRow = Variant::mla().d_k;  // values in the widest row of any variant
constexpr int kVecBytes = 16;                // a lane's access in the vector layout
constexpr int kVecValues = kVecBytes / 2;    // 16-bit values per lane access
constexpr int64_t kMaxGridX = std::numeric_limits<int32_t>::max();

// N consecutive 16-bit values of a row, moved in one access (N = 8: 16 bytes).
template <int N>
struct alignas(2 * N) Values {
  uint16_t v[N];
};
// Their e4m3 bytes.
template <int N>
struct alignas(N) Bytes {
  uint8_t v[N];
};

__device__ __forceinline__ float to_float(DType dtype, uint16_t bits) {
  return dtype == DType::bf16 ? __uint_as_float(uint32_t(bits) << 16)
                              : __half2float(__ushort_as_half(bits));
}

__device__ __forceinline__ float warp_max(float x) {
  for (int off = kWarpSize / 2; off > 0; off /= 2) x = fmaxf(x, __shfl_xor_sync(~0u, x, off));
  return x;
}

// detail::quantize_e4m3 of two values (lo goes to the lower byte).
__device__ __forceinline__ uint16_t quantize_pair(float lo, float hi, float scale) {
  if (!(scale > 0.0f)) return 0;
  lo = detail::div_rn(lo, scale);
  hi = detail::div_rn(hi, scale);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  uint16_t pair;  // the first source operand lands in the upper byte
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(pair) : "f"(hi), "f"(lo));
  return pair;
#else
  return uint16_t(detail::float_to_e4m3(lo) | detail::float_to_e4m3(hi) << 8);
#endif
}

template <int N>
__device__ __forceinline__ Bytes<N> quantize(DType dtype, const Values<N>& x, float scale) {
  Bytes<N> q;
  if constexpr (N == 1) {
    q.v[0] = uint8_t(quantize_pair(to_float(dtype, x.v[0]), 0.0f, scale));
  } else {
    static_assert(N % 2 == 0);
#pragma unroll
    for (int j = 0; j < N; j += 2) {
      const uint16_t pair =
          quantize_pair(to_float(dtype, x.v[j]), to_float(dtype, x.v[j + 1]), scale);
      q.v[j] = uint8_t(pair), q.v[j + 1] = uint8_t(pair >> 8);
    }
  }
  return q;
}

template <int N>
__device__ __forceinline__ float amax_of(DType dtype, const Values<N>& x) {
  float m = 0.0f;
#pragma unroll
  for (int j = 0; j < N; ++j) m = fmaxf(m, fabsf(to_float(dtype, x.v[j])));
  return m;
}

// a[i] with a register-resident array (a dynamic index would put it in local memory).
template <int N>
__device__ __forceinline__ float pick(const float (&a)[N], int i) {
  float r = a[0];
#pragma unroll
  for (int k = 1; k < N; ++k) r = i == k ? a[k] : r;
  return r;
}

// Stores v at dst: in one access in the vector layout (ALIGNED: the host checked every pointer
// and stride), else byte by byte, since an MLA row of a u8 view may start at any address.
template <bool ALIGNED, class T>
__device__ __forceinline__ void store_raw(uint8_t* dst, const T& v) {
  if constexpr (ALIGNED) {
    *reinterpret_cast<T*>(dst) = v;
  } else {
    uint8_t b[sizeof(T)];
    memcpy(b, &v, sizeof(T));
#pragma unroll
    for (int k = 0; k < int(sizeof(T)); ++k) dst[k] = b[k];
  }
}

// N: 16-bit values per lane access, kVecValues (every pointer and stride allows 16-byte
// accesses) or 1.
template <int N>
__global__ void __launch_bounds__(kThreads) append_kernel(const __grid_constant__ AppendParams p) {
  static_assert(N == 1 || N == kVecValues);
  static_assert(kMaxRow % N == 0 && MlaFp8Row::kGroup % N == 0 && MlaFp8Row::kLatent % N == 0);
  constexpr bool kAligned = N > 1;
  constexpr int kSteps = (kMaxRow / N + kWarpSize - 1) / kWarpSize;  // accesses per lane
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerCta + threadIdx.x / kWarpSize;
  if (row >= int64_t(p.b) * p.s_new * p.h_kv) return;
  const int kv = int(row % p.h_kv), t = int(row / p.h_kv % p.s_new);
  const int i = int(row / (int64_t(p.h_kv) * p.s_new));
  const bool is_v = blockIdx.y == 1;

  // Where the row goes. Every lane reads the same words: the decision is warp-uniform.
  const int len = p.seqlens[i];
  uint32_t flag = 0;
  int64_t page = 0;
  int slot = 0;
  if (len < p.s_new) {
    flag = kFlagSeqlenNegative;
  } else if (int64_t(len) > int64_t(p.max_pages) * p.page_size) {
    flag = kFlagSeqlenTooLong;
  } else {
    const int pos = len - p.s_new + t;
    page = p.block_table[i * p.bt_sb + (pos >> p.log2_page_size)];
    slot = pos & (p.page_size - 1);
    if (page < 0 || page >= p.num_pages) flag = kFlagPageOutOfRange;
  }
  if (flag != 0) {
    if (lane == 0 && p.error_flags != nullptr) atomicOr(p.error_flags, flag);
    return;
  }

  // The row, [n] 16-bit values: value c * N + j sits in lane c % 32, step c / 32.
  const int n = is_v ? p.d_v : p.d_k;
  const uint16_t* src =
      is_v ? static_cast<const uint16_t*>(p.v_new) + i * p.vn_sb + t * p.vn_ss + kv * p.vn_sh
           : static_cast<const uint16_t*>(p.k_new) + i * p.kn_sb + t * p.kn_ss + kv * p.kn_sh;
  Values<N> x[kSteps] = {};
#pragma unroll
  for (int s = 0; s < kSteps; ++s) {
    const int c = lane + s * kWarpSize;
    if (c * N < n) x[s] = *reinterpret_cast<const Values<N>*>(src + c * N);
  }
  // Offset of the cache row in elements of the cache's dtype (bytes for the FP8 formats).
  const int64_t off = is_v ? page * p.v_sp + slot * p.v_st + kv * p.v_sh
                           : page * p.k_sp + slot * p.k_st + kv * p.k_sh;

  switch (p.kv_format) {
    case CacheFormat::native: {
      uint16_t* dst = static_cast<uint16_t*>(is_v ? p.v : p.k) + off;
#pragma unroll
      for (int s = 0; s < kSteps; ++s) {
        const int c = lane + s * kWarpSize;
        if (c * N < n) *reinterpret_cast<Values<N>*>(dst + c * N) = x[s];
      }
      return;
    }
    case CacheFormat::fp8_row: {
      float amax = 0.0f;
#pragma unroll
      for (int s = 0; s < kSteps; ++s)
        if ((lane + s * kWarpSize) * N < n) amax = fmaxf(amax, amax_of(p.dtype, x[s]));
      const float scale = detail::e4m3_scale_for(warp_max(amax));
      uint8_t* dst = static_cast<uint8_t*>(is_v ? p.v : p.k) + off;
#pragma unroll
      for (int s = 0; s < kSteps; ++s) {
        const int c = lane + s * kWarpSize;
        if (c * N < n) *reinterpret_cast<Bytes<N>*>(dst + c * N) = quantize(p.dtype, x[s], scale);
      }
      if (lane == 0) {
        if (is_v) p.v_scale[page * p.vs_sp + slot * p.vs_st + kv * p.vs_sh] = scale;
        else p.k_scale[page * p.ks_sp + slot * p.ks_st + kv * p.ks_sh] = scale;
      }
      return;
    }
    case CacheFormat::fp8_mla: {
      constexpr int kGroupAccesses = MlaFp8Row::kGroup / N;
      constexpr int kLatentAccesses = MlaFp8Row::kLatent / N;
      float amax[MlaFp8Row::kScales] = {};
#pragma unroll
      for (int s = 0; s < kSteps; ++s) {
        const int c = lane + s * kWarpSize;
        if (c >= kLatentAccesses) continue;
        const float m = amax_of(p.dtype, x[s]);
        // Every group takes a value (0 from the other groups' accesses), so that amax stays in
        // registers: a conditional update is turned into a dynamic index into local memory.
#pragma unroll
        for (int g = 0; g < MlaFp8Row::kScales; ++g)
          amax[g] = fmaxf(amax[g], c / kGroupAccesses == g ? m : 0.0f);
      }
      float scale[MlaFp8Row::kScales];
#pragma unroll
      for (int g = 0; g < MlaFp8Row::kScales; ++g)
        scale[g] = detail::e4m3_scale_for(warp_max(amax[g]));
      uint8_t* dst = static_cast<uint8_t*>(p.k) + off;
#pragma unroll
      for (int s = 0; s < kSteps; ++s) {
        const int c = lane + s * kWarpSize;
        if (c < kLatentAccesses) {
          const Bytes<N> q = quantize(p.dtype, x[s], pick(scale, c / kGroupAccesses));
          *reinterpret_cast<Bytes<N>*>(dst + c * N) = q;
        } else if (c * N < n) {  // the RoPE part, in k_new's dtype
          store_raw<kAligned>(dst + MlaFp8Row::kRopeOffset + 2 * (c * N - MlaFp8Row::kLatent),
                              x[s]);
        }
      }
      if (lane < MlaFp8Row::kScales)
        store_raw<kAligned>(dst + MlaFp8Row::kScaleOffset + sizeof(float) * lane,
                            pick(scale, lane));
      return;
    }
  }
}

// A stride that moves whole vectors of `elems` elements, or never moves (a dimension of one).
bool stride_moves(int64_t stride, int extent, int64_t elems) {
  return extent <= 1 || stride % elems == 0;
}

// Whether every row of p's inputs and caches starts on a 16-byte boundary (and the rows hold
// whole 16-byte accesses), so that lanes move 16 bytes at a time.
bool vector_layout(const AppendParams& p) {
  auto input = [&](const void* ptr, int64_t sb, int64_t ss, int64_t sh, int d) {
    return d % kVecValues == 0 && aligned(ptr, kVecBytes) && stride_moves(sb, p.b, kVecValues) &&
           stride_moves(ss, p.s_new, kVecValues) && stride_moves(sh, p.h_kv, kVecValues);
  };
  // Cache strides count elements of the cache's dtype: 2 bytes, or 1 for the FP8 formats.
  const int64_t cache_vec = p.kv_format == CacheFormat::native ? kVecValues : kVecBytes;
  auto cache = [&](const void* ptr, int64_t sp, int64_t st, int64_t sh) {
    return aligned(ptr, kVecBytes) && stride_moves(sp, p.num_pages, cache_vec) &&
           stride_moves(st, p.page_size, cache_vec) && stride_moves(sh, p.h_kv, cache_vec);
  };
  const bool k = input(p.k_new, p.kn_sb, p.kn_ss, p.kn_sh, p.d_k) &&
                 cache(p.k, p.k_sp, p.k_st, p.k_sh);
  const bool v = p.d_v == 0 || (input(p.v_new, p.vn_sb, p.vn_ss, p.vn_sh, p.d_v) &&
                                cache(p.v, p.v_sp, p.v_st, p.v_sh));
  return k && v;
}

}  // namespace

void append_kv(const detail::AppendParams& p, int device, Stream stream) {
  const int64_t rows = int64_t(p.b) * p.s_new * p.h_kv;
  if (rows == 0) return;
  if (p.d_k > kMaxRow || p.d_v > kMaxRow)  // every supported variant's rows fit
    throw Error(Status::unsupported, "flashmfa: the append kernel takes rows of at most " +
                                         std::to_string(kMaxRow) + " values");
  const int64_t ctas = (rows + kWarpsPerCta - 1) / kWarpsPerCta;
  if (ctas > kMaxGridX)
    detail::fail_arg(Status::unsupported, "b * s_new * h_kv",
                     "at most " + std::to_string(kMaxGridX * kWarpsPerCta) + " rows on CUDA",
                     rows);
  const dim3 grid(static_cast<unsigned>(ctas), p.d_v > 0 ? 2 : 1);
  DeviceGuard guard(device);
  const auto s = static_cast<cudaStream_t>(stream);
  if (vector_layout(p))
    append_kernel<kVecValues><<<grid, kThreads, 0, s>>>(p);
  else
    append_kernel<1><<<grid, kThreads, 0, s>>>(p);
  FLASHMFA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace flashmfa::cuda
