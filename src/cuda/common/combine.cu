// flashmfa CUDA: combine kernel (see combine.hpp). One warp per (sequence, query row); lanes
// own 4-column groups of the row, so partial rows are read as float4.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "cuda/common/combine.hpp"
#include "cuda/common/device.hpp"

namespace flashmfa::cuda {
namespace {

constexpr int kWarpSize = 32;
constexpr int kWarpsPerCta = 4;
constexpr int kColsPerLane = 4;  // one float4

template <class T> __device__ T from_float(float x);
template <> __device__ __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __half from_float(float x) { return __float2half_rn(x); }

template <class T>
__global__ void __launch_bounds__(kWarpsPerCta * kWarpSize)
combine_kernel(detail::DecodeParams p, Schedule s) {
  const int seq = blockIdx.y;
  const int rows_all = p.h_q * p.s_q;  // partial rows of one sequence: (kv, t, head-in-group)
  const int row = blockIdx.x * kWarpsPerCta + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows_all) return;
  const int n = s.num_splits[seq];
  if (n <= 1) return;  // written directly by the decode kernel
  const int slot0 = s.slot_begin[seq];
  const float* lse_k = s.lse_partial + int64_t(slot0) * rows_all + row;

  float m = -INFINITY;
  for (int k = lane; k < n; k += kWarpSize) m = fmaxf(m, lse_k[int64_t(k) * rows_all]);
  for (int off = kWarpSize / 2; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(~0u, m, off));
  float sum = 0.f;
  if (m != -INFINITY)
    for (int k = lane; k < n; k += kWarpSize) sum += __expf(lse_k[int64_t(k) * rows_all] - m);
  for (int off = kWarpSize / 2; off > 0; off /= 2) sum += __shfl_xor_sync(~0u, sum, off);
  const float lse = m == -INFINITY ? -INFINITY : m + __logf(sum);

  // Partial row (kv, r) with r = t * q_per_kv + h_in_group belongs to head kv * q_per_kv + h.
  const int rows = p.s_q * p.q_per_kv;
  const int kv = row / rows, r = row % rows;
  const int t = r / p.q_per_kv, head = kv * p.q_per_kv + r % p.q_per_kv;
  T* out = static_cast<T*>(p.out) + seq * p.o_sb + t * p.o_ss + head * p.o_sh;
  const float4* o_k =
      reinterpret_cast<const float4*>(s.o_partial + (int64_t(slot0) * rows_all + row) * p.d_v);
  const int64_t slot_stride4 = int64_t(rows_all) * p.d_v / kColsPerLane;
  for (int c4 = lane; c4 < p.d_v / kColsPerLane; c4 += kWarpSize) {
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    if (lse != -INFINITY) {
      for (int k = 0; k < n; ++k) {
        const float w = __expf(lse_k[int64_t(k) * rows_all] - lse);
        const float4 o = o_k[k * slot_stride4 + c4];
        acc.x += w * o.x, acc.y += w * o.y, acc.z += w * o.z, acc.w += w * o.w;
      }
    }
    T* dst = out + c4 * kColsPerLane;
    dst[0] = from_float<T>(acc.x), dst[1] = from_float<T>(acc.y);
    dst[2] = from_float<T>(acc.z), dst[3] = from_float<T>(acc.w);
  }
  if (lane == 0) p.lse[seq * p.lse_sb + head * p.lse_sh + t * p.lse_ss] = lse;
}

}  // namespace

void launch_combine(const detail::DecodeParams& p, const Schedule& sched, cudaStream_t stream) {
  const int rows_all = p.h_q * p.s_q;
  const dim3 grid((rows_all + kWarpsPerCta - 1) / kWarpsPerCta, p.b);
  const dim3 block(kWarpsPerCta * kWarpSize);
  if (p.dtype == DType::bf16)
    combine_kernel<__nv_bfloat16><<<grid, block, 0, stream>>>(p, sched);
  else
    combine_kernel<__half><<<grid, block, 0, stream>>>(p, sched);
  FLASHMFA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace flashmfa::cuda
