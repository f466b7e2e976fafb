// Does compute-sanitizer's racecheck model the synchronization patterns of the sm_90a kernels?
// Each kernel hands data from one consumer warpgroup to the other through shared memory, in a
// block of 384 threads whose first warpgroup never joins the barriers (the producer's place).
//   bar_sync   : writer stores; bar.sync(3, 256) by both warpgroups; reader loads   (correct)
//   bar_arrive : writer stores, bar.arrive(4, 256); reader bar.sync(4, 256), loads (correct)
//   syncthreads: every thread of the block at __syncthreads between store and load (correct)
//   racy       : no barrier at all                                                  (a race)
//   bar_sync_lane0: as bar_sync, but only lane 0 of each group of 4 stores (the pattern of
//                the sm90 kernels' per-row statistics: one lane of each quad owns a row) (correct)
//   mixed      : as bar_sync, with a per-warpgroup bar.sync(wg, 128) before it (the MFA
//                kernel's tail clearing beside its KV-split merge)                   (correct)
//   with_arrive: a bar.sync exchange on one buffer beside a bar.arrive exchange on another, as
//                in the MLA kernel; only the bar.sync buffer's reports matter here  (correct)
//   with_mbar  : as bar_sync, after every consumer thread waited on an mbarrier that a
//                producer thread completed (the TMA ring's waits)                    (correct)
//   mbar_ring  : writer stores, __syncwarp, lane 0 of each warp arrives on a "full" mbarrier;
//                reader waits on it, loads and then overwrites the words (as the MFA kernel
//                clears a V tile's tail), __syncwarp, lane 0 arrives on "empty"; the writer
//                waits on "empty" before the next round (the FP8 dequantizing warps' ring)
//                                                                                    (correct)
// Build and run on the GPU machine:
//   nvcc -arch=sm_90a -lineinfo -o /tmp/probe tools/racecheck-probe/probe.cu
//   for k in bar_sync bar_arrive syncthreads racy bar_sync_lane0 mixed with_arrive with_mbar \
//       mbar_ring; do
//     compute-sanitizer --tool racecheck /tmp/probe $k; done
#include <cstdio>
#include <cstring>

__device__ __forceinline__ void bar_sync(int id, int n) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void bar_arrive(int id, int n) {
  asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(n) : "memory");
}

__device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(unsigned bar) {
  asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
  asm volatile(
      "{\n.reg .pred p;\nW: mbarrier.try_wait.parity.acquire.cta.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra W;\n}\n" ::"r"(bar), "r"(parity) : "memory");
}

// Writer warpgroup 1 hands 128 words to reader warpgroup 2, four rounds, bar.sync on both sides
// (the correct pattern), with the extra ingredient MODE adds.
template <int MODE>
__global__ void __launch_bounds__(384, 1) handoff_plus(int* out) {
  __shared__ int buf[128], side[128];
  __shared__ unsigned long long bar;
  const int wg = threadIdx.x / 128, t = threadIdx.x % 128;
  const unsigned b = static_cast<unsigned>(__cvta_generic_to_shared(&bar));
  if (threadIdx.x == 0) mbar_init(b, 1);
  __syncthreads();
  if (wg == 0) {
    if (MODE == 7 && t == 0) mbar_arrive(b);  // completes phase 0
    return;
  }
  for (int round = 0; round < 4; ++round) {
    if (MODE == 7 && round == 0) mbar_wait(b, 0);
    if (MODE == 5) bar_sync(wg, 128);  // ids 1 and 2, as the kernels' per-warpgroup barriers
    if (MODE == 6) {  // the bar.arrive exchange on `side`, as in the MLA kernel
      if (wg == 1) { side[t] = round; bar_arrive(4, 256); }
      else { bar_sync(4, 256); out[512 + round * 128 + t] = side[t]; }
    }
    if (wg == 1) buf[t] = t * 5 + round;
    bar_sync(3, 256);
    if (wg == 2) out[round * 128 + t] = buf[t];
    bar_sync(3, 256);
  }
}

template <int MODE>
__global__ void handoff(int* out) {
  __shared__ int buf[128];
  if (MODE == 4) {  // lane 0 of each quad writes its quad's word; bar.sync on both sides
    const int wg = threadIdx.x / 128, t = threadIdx.x % 128;
    if (wg == 0) return;
    for (int round = 0; round < 4; ++round) {
      if (wg == 1 && t % 4 == 0) buf[t / 4] = t + round;
      bar_sync(3, 256);
      if (wg == 2) out[round * 128 + t] = buf[t / 4];
      bar_sync(3, 256);
    }
    return;
  }
  const int wg = threadIdx.x / 128, t = threadIdx.x % 128;
  if (MODE == 2) {
    if (wg == 1) buf[t] = t * 3;
    __syncthreads();
    if (wg == 2) out[t] = buf[t];
    return;
  }
  if (wg == 0) return;  // the producer warpgroup: never at the consumers' barriers
  for (int round = 0; round < 4; ++round) {
    if (wg == 1) {
      buf[t] = t * 3 + round;
      if (MODE == 0) bar_sync(3, 256);
      if (MODE == 1) bar_arrive(4, 256);
      if (MODE == 0) bar_sync(3, 256);   // the reader is done before the next round's store
      if (MODE == 1) bar_sync(5, 256);
    } else {
      if (MODE == 0) bar_sync(3, 256);
      if (MODE == 1) bar_sync(4, 256);
      out[round * 128 + t] = buf[t];
      if (MODE == 0) bar_sync(3, 256);
      if (MODE == 1) bar_arrive(5, 256);
    }
  }
}

// The FP8 hand-off: a one-slot ring between warpgroups 1 (writer) and 2 (reader) on mbarriers
// alone, one arrival per warp after __syncwarp.
__global__ void __launch_bounds__(384, 1) handoff_mbar(int* out) {
  __shared__ int buf[128];
  __shared__ unsigned long long full, empty;
  const int wg = threadIdx.x / 128, t = threadIdx.x % 128;
  const unsigned f = static_cast<unsigned>(__cvta_generic_to_shared(&full));
  const unsigned e = static_cast<unsigned>(__cvta_generic_to_shared(&empty));
  if (threadIdx.x == 0) {
    mbar_init(f, 4);
    mbar_init(e, 4);
  }
  __syncthreads();
  if (wg == 0) return;
  for (int round = 0; round < 4; ++round) {
    const unsigned parity = round & 1;
    if (wg == 1) {
      if (round > 0) mbar_wait(e, parity ^ 1);
      buf[t] = t * 7 + round;
      __syncwarp();
      if (t % 32 == 0) mbar_arrive(f);
    } else {
      mbar_wait(f, parity);
      out[round * 128 + t] = buf[t];
      buf[t] = 0;
      __syncwarp();
      if (t % 32 == 0) mbar_arrive(e);
    }
  }
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "bar_sync";
  int* out = nullptr;
  cudaMalloc(&out, 1024 * sizeof(int));
  if (!strcmp(mode, "bar_sync")) handoff<0><<<1, 384>>>(out);
  else if (!strcmp(mode, "bar_arrive")) handoff<1><<<1, 384>>>(out);
  else if (!strcmp(mode, "syncthreads")) handoff<2><<<1, 384>>>(out);
  else if (!strcmp(mode, "bar_sync_lane0")) handoff<4><<<1, 384>>>(out);
  else if (!strcmp(mode, "mixed")) handoff_plus<5><<<1, 384>>>(out);
  else if (!strcmp(mode, "with_arrive")) handoff_plus<6><<<1, 384>>>(out);
  else if (!strcmp(mode, "with_mbar")) handoff_plus<7><<<1, 384>>>(out);
  else if (!strcmp(mode, "mbar_ring")) handoff_mbar<<<1, 384>>>(out);
  else handoff<3><<<1, 384>>>(out);
  const cudaError_t e = cudaDeviceSynchronize();
  printf("%s: %s\n", mode, cudaGetErrorString(e));
  return e == cudaSuccess ? 0 : 1;
}
