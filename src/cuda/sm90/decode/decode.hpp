// flashmfa CUDA, Hopper path (sm_90a only): the warp-specialized split-KV decode kernel's host
// interface. TMA bulk-tensor copies through the page table into a shared-memory ring, wgmma
// for S = Q K^T and O += P V, one producer warp and one or two consumer warpgroups.
//
// Mirrors sm80/decode/decode.hpp: the backend asks supports(), then choose(), records the
// config's block_m / block_n in the plan, and launches with the plan's schedule.
#pragma once

#include <cuda_runtime.h>

#include "core/params.hpp"
#include "cuda/common/device.hpp"
#include "cuda/common/schedule.cuh"

namespace flashmfa::cuda::sm90 {

struct KernelConfig {
  int block_m = 0;        // query rows (s_q x heads of one KV head) per CTA: 64 per warpgroup
  int block_n = 0;        // KV tokens per block
  int threads = 0;
  size_t smem_bytes = 0;  // dynamic shared memory per CTA
  int ctas_per_sm = 0;    // resident CTAs per SM (for the scheduler's num_parts)
  int warpgroups = 0;     // consumer warpgroups (1 or 2)
  bool kv_split = false;  // two warpgroups on the same 64 rows, alternate KV tiles
  int stages = 0;         // ring slots
  int d = 0;              // d_k (= d_v, except for MLA)
  bool mla = false;       // the MLA kernel (mla/): d_k 576, d_v 512 from the K rows
  bool fp8 = false;       // an fp8_row cache: raw ring, converted by the consumers (dequant.cuh)
};

// Whether this path computes p on `dev`: a compute capability 9.0 device; bf16/f16; either
// d_k = d_v in {128, 256} (V separate or aliasing K; 16-bit or fp8_row cache) or MLA (d_k 576,
// d_v 512, V aliasing K; 16-bit or fp8_mla cache); page_size >= 16 (MLA: >= 64); 16-byte
// aligned cache, q pointers and strides (TMA and vector loads).
// Nothing about out: a plan made before the outputs exist (Python) picks the same kernel.
// Host only.
bool supports(const detail::DecodeParams& p, const DeviceInfo& dev);

// The tile configuration for p on `dev` (host only; p must be supported).
KernelConfig choose(const detail::DecodeParams& p, const DeviceInfo& dev);

// A specific configuration (tests and tuning): `warpgroups` consumers, KV split or row split.
// stages == 0 when it does not fit or is not compiled.
KernelConfig make_config(const detail::DecodeParams& p, const DeviceInfo& dev, int warpgroups,
                         bool kv_split);

// Launches grid (ceil(s_q * q_per_kv / block_m), sched.num_parts, h_kv) on `stream`. Encodes
// the K / V tensor maps from p's pointers on every call (a plan is reused across layers whose
// caches differ); no allocation, no synchronization, so it can be captured in a CUDA graph.
void launch(const detail::DecodeParams& p, const Schedule& sched, const KernelConfig& cfg,
            cudaStream_t stream);

}  // namespace flashmfa::cuda::sm90
