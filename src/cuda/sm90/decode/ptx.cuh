// flashmfa CUDA, Hopper path: the PTX primitives the sm_90a decode kernel is built from --
// mbarriers, TMA bulk-tensor copies, proxy fences, named barriers, setmaxnreg and fast math.
// Raw PTX rather than CuTe: the kernel needs a handful of instructions, each wrapper is a few
// lines, and the build (2 shared cores here) stays fast. wgmma lives in wgmma.cuh.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstdio>

namespace flashmfa::cuda::sm90 {

// Shared-memory address in the .shared window, as mbarrier / TMA / wgmma operands expect.
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// ---- mbarrier ----------------------------------------------------------------------------

// Barriers and tiles are named by their .shared addresses (32 bits: half the registers of a
// generic pointer, and what the instructions take anyway).
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count)
               : "memory");
}

// Makes the inits visible to the async proxy (TMA completes transactions on these barriers).
__device__ __forceinline__ void fence_mbar_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// One arrival that also announces `bytes` of TMA transactions to wait for in this phase.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.release.cta.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar),
               "r"(bytes)
               : "memory");
}

// A plain arrival; release semantics, so the caller's earlier shared-memory accesses are
// ordered before whoever waits on the phase.
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0];\n" ::"r"(bar)
               : "memory");
}

// Whether the phase with parity `parity` has completed (acquire): mbarrier.try_wait suspends
// the thread for a while before it answers no; mbarrier.test_wait answers at once (phase
// clocks, to tell a wait that would block).
#define FLASHMFA_SM90_MBAR_PROBE(OP)                                                \
  uint32_t done;                                                                   \
  asm volatile("{\n.reg .pred p;\nmbarrier." OP                                    \
               ".parity.acquire.cta.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n" \
               : "=r"(done)                                                        \
               : "r"(bar), "r"(parity)                                             \
               : "memory");                                                        \
  return done != 0
__device__ __forceinline__ bool mbar_try_wait(uint32_t bar, uint32_t parity) {
  FLASHMFA_SM90_MBAR_PROBE("try_wait");
}
__device__ __forceinline__ bool mbar_test_wait(uint32_t bar, uint32_t parity) {
  FLASHMFA_SM90_MBAR_PROBE("test_wait");
}
#undef FLASHMFA_SM90_MBAR_PROBE

// Blocks until the phase with parity `parity` has completed. Test builds define
// FLASHMFA_SM90_WATCHDOG to turn a wait that never ends (a protocol bug) into a trap that
// names the barrier, instead of a hung device.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
#ifdef FLASHMFA_SM90_WATCHDOG
  constexpr long long kMaxPolls = 1ll << 22;
  for (long long i = 0; !mbar_try_wait(bar, parity); ++i) {
    if (i == kMaxPolls) {
      printf("sm90 watchdog: block (%d,%d,%d) thread %d waits on barrier 0x%x parity %u\n",
             blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, bar, parity);
      __trap();
    }
  }
#else
  while (!mbar_try_wait(bar, parity)) {
  }
#endif
}

// mbar_wait, and whether it had to block (phase clocks: a wait that blocked times a landing or
// a release; one that found the phase complete gives only an upper bound).
__device__ __forceinline__ bool mbar_wait_blocked(uint32_t bar, uint32_t parity) {
  if (mbar_test_wait(bar, parity)) return false;
  mbar_wait(bar, parity);
  return true;
}

// ---- plain shared-memory accesses by address -----------------------------------------------

__device__ __forceinline__ void st_shared(uint32_t addr, uint4 v) {
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(v.x), "r"(v.y),
               "r"(v.z), "r"(v.w)
               : "memory");
}
__device__ __forceinline__ void st_shared(uint32_t addr, int32_t v) {
  asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}
// A store only where `pred` holds, without a branch: code between a wgmma and its wait must not
// diverge, or ptxas serializes the wgmma (C7518).
__device__ __forceinline__ void st_shared_if(bool pred, uint32_t addr, int32_t v) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %0, 0;\n@p st.shared.b32 [%1], %2;\n}\n" ::"r"(
          int(pred)),
      "r"(addr), "r"(v)
      : "memory");
}
__device__ __forceinline__ int32_t ld_shared_s32(uint32_t addr) {
  int32_t v;
  asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(v) : "r"(addr) : "memory");
  return v;
}
__device__ __forceinline__ void ld_shared(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

// ---- cp.async (FP8 scales: 4 bytes per row) ---------------------------------------------

__device__ __forceinline__ void cp_async_4(uint32_t dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(src) : "memory");
}
// An arrival on `bar` once every earlier cp.async of this thread has landed. noinc: the
// arrival is one of those the barrier was initialized to expect.
__device__ __forceinline__ void cp_async_mbar_arrive(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}

// ---- TMA ---------------------------------------------------------------------------------

// Fetches the tensor map (a __grid_constant__ kernel parameter) into the descriptor cache
// before the first copy needs it.
__device__ __forceinline__ void tma_prefetch_map(const void* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// An L2 policy that marks KV lines evict-first: every tile is streamed once per CTA, and the
// L2 is better spent on the block table, Q, the partial results and a sibling row tile's
// copy of the same tile.
__device__ __forceinline__ uint64_t l2_evict_first_policy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}

// 16 bytes from global memory under an L2 cache policy.
__device__ __forceinline__ uint4 ld_global_hint(const void* src, uint64_t policy) {
  uint4 v;
  asm volatile("ld.global.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(src), "l"(policy));
  return v;
}

// One box of a 4-D tensor map, (c0, c1, c2, c3) innermost first, into shared memory at `dst`;
// completion is counted in bytes on `bar`.
__device__ __forceinline__ void tma_load_4d(uint32_t dst, const void* map, uint32_t bar, int c0,
                                            int c1, int c2, int c3, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      ".L2::cache_hint [%0], [%1, {%2, %3, %4, %5}], [%6], %7;\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3),
      "r"(bar), "l"(policy)
      : "memory");
}

// One box of a 5-D tensor map (the wide MLA boxes: c3 is the 64-column atom), as tma_load_4d.
__device__ __forceinline__ void tma_load_5d(uint32_t dst, const void* map, uint32_t bar, int c0,
                                            int c1, int c2, int c3, int c4, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      ".L2::cache_hint [%0], [%1, {%2, %3, %4, %5, %6}], [%7], %8;\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(c4),
      "r"(bar), "l"(policy)
      : "memory");
}

// Orders this thread's generic-proxy shared-memory writes (st.shared) before later
// async-proxy reads of them (wgmma operands, TMA overwrites). Needed by every thread that wrote,
// before the barrier that publishes the data.
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// ---- warp-group control ------------------------------------------------------------------

// Named barrier over `threads` threads (a multiple of 32); id 0 is __syncthreads'.
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Arrives at a named barrier without waiting; the threads that bar.sync on it see this
// thread's earlier shared-memory writes once they pass it (producer/consumer hand-off).
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Hands registers back to / takes them from the SM's pool for the whole warp group. Needs a
// register cap at entry (__launch_bounds__(threads, 1)); each role must be one branch.
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

// Programmatic dependent launch: lets the next kernel in the stream (the combine, when it is
// launched with the programmatic-serialization attribute) be scheduled as SMs free up; it still
// waits for this grid's completion and memory flush in its own griddepcontrol.wait.
__device__ __forceinline__ void launch_dependents() {
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}

// ---- math --------------------------------------------------------------------------------

// Two floats as one packed pair of T (lo in the low half: the lower column index).
template <class T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

}  // namespace flashmfa::cuda::sm90
