// flashmfa CUDA, portable path (sm_80 and later): the split-KV decode kernel's host interface.
// Tensor cores through mma.sync, cp.async gathers through the block table.
#pragma once

#include <cuda_runtime.h>

#include "core/params.hpp"
#include "cuda/common/device.hpp"
#include "cuda/common/schedule.cuh"

namespace flashmfa::cuda::sm80 {

struct KernelConfig {
  int block_m = 0;        // query rows (s_q x heads of one KV head) per CTA
  int block_n = 0;        // KV tokens per block
  int threads = 0;
  size_t smem_bytes = 0;  // dynamic shared memory per CTA
  int ctas_per_sm = 0;    // resident CTAs per SM (for the scheduler's num_parts)
  int stages = 0;         // K/V tiles in the shared-memory pipeline
  bool split_p = false;   // P V as T(P) V + T(P - T(P)) V (see sm80 KernelParams)
};

// The tile configuration for p on `dev` (host only). Raises flashmfa::Error (unsupported) when
// no compiled tile fits the device's shared memory.
KernelConfig choose(const detail::DecodeParams& p, const DeviceInfo& dev);

// Launches grid (ceil(s_q * q_per_kv / block_m), sched.num_parts, h_kv) on `stream`.
void launch(const detail::DecodeParams& p, const Schedule& sched, const KernelConfig& cfg,
            cudaStream_t stream);

}  // namespace flashmfa::cuda::sm80
