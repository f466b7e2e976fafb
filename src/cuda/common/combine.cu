// flashmfa CUDA: combine kernel (see combine.hpp).
//
// Two layouts, chosen from the shapes (so the grid never depends on the lengths):
//
// Few rows (b * h_q * s_q below kWarpLayoutRowsPerSm per SM: long sequences cut into many
// splits, e.g. b = 1): one CTA per (partial row, sequence, column chunk), grid (h_q * s_q, b,
// chunks), 256 threads, so that each row's many partials are read with many loads in flight.
// The row's d_v / 8 groups of 8 columns are cut into `chunks` equal chunks (a power of two,
// chosen on the host so that the grid has about two CTAs per SM while a chunk keeps >= 8
// groups; 1 when the rows alone fill the GPU); combine::combine_chunk (combine.cuh) merges one
// chunk in one pass over the partials. MFA at b = 1 (64 rows, d_v 256): 4 chunks of 8 column
// threads x 32 split groups, 256 CTAs; MLA at b = 1 (128 rows, d_v 512): 4 chunks of 16 x 16.
//
// Many rows (serving batches, where a split sequence has two or three partials): one warp per
// (sequence, row), 8 warps per CTA, lanes over 8-column groups, splits in a loop. The
// CTA-per-row layout would launch b * h_q * s_q CTAs of 256 threads for a few loads each
// (measured on MFA h_q 64 b 128 8k varlen: 94.5% of copy bandwidth with this layout, 88.2% with
// one CTA per row).
//
// Both layouts merge in one pass (combine.cuh's RowMerge); in the warp layout each lane takes
// all of its columns' partials, so no lane waits for another. Sequences with one split
// (written directly by the decode kernel) exit at once; a row whose splits are all empty
// (lse_k = -inf) gets out = 0 and lse = -inf.
//
// Programmatic dependent launch: on devices of compute capability >= 9.0 the kernel is
// launched with programmatic stream serialization, so its CTAs may be scheduled while the decode
// grid drains (the decode kernels execute griddepcontrol.launch_dependents). Every CTA executes
// griddepcontrol.wait, which returns once the decode grid has completed and its memory is
// visible, before it reads a partial or writes out (so the combine grid never completes before
// the decode grid either). The sequence's num_splits and slot_begin are loaded before it: the
// scheduler kernel of plan() wrote them, and it completed before the decode grid (launched
// without programmatic serialization) started, so before any CTA of this grid exists. Their
// L2 round trip then overlaps the decode grid's tail instead of following it.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <string>
#include <type_traits>

#include "cuda/common/combine.cuh"
#include "cuda/common/combine.hpp"
#include "cuda/common/device.hpp"
#include "cuda/common/phase_clock.cuh"

namespace flashmfa::cuda {
namespace {

constexpr int kWarpSize = 32;
constexpr int kThreads = 256;
using combine::kColsPerThread;
using combine::out_row;
using combine::store8;
// With a plain __launch_bounds__(256), ptxas (nvcc 13, sm_80 and sm_90) aims at 32-40
// registers and interleaves the FMAs with the loads, keeping ~3 of a batch of 8 in
// flight; a minimum of 4 CTAs per SM (<= 64 registers) lets it issue all of a batch's loads
// first (combine::kBatch = 6: 16 bytes and a scale each; 8 would spill), and keeps a b 8 MLA
// grid (1024 CTAs) to two waves.
constexpr int kMinCtasPerSm = 4;
// The warp-per-row layout from this many partial rows per SM on.
constexpr int kWarpLayoutRowsPerSm = 16;
// The CTA-per-row layout cuts rows into column chunks until the grid has this many CTAs per
// SM, keeping at least kMinChunkCols 8-column groups (64 columns) a chunk.
constexpr int kChunkCtasPerSm = 2;
constexpr int kMinChunkCols = 8;

__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// A split sequence of a serving batch has a few partials: the warp layout loads 4 of them at a
// time (4 / COLS, so 4 groups in flight per lane), within 64 registers.
constexpr int kRowsBatch = 4;

// The warp-per-row layout: warp w of CTA (x, seq) combines partial row x * kWarpsPerCta + w,
// lane l owning 8-column groups l, l + 32, ... (COLS of them), each lane over all the row's
// partials in one pass (no shuffles: every lane computes the same lse).
constexpr int kWarpsPerCta = kThreads / kWarpSize;
template <class T, bool PAIRS, int COLS>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
combine_rows_kernel(const __grid_constant__ detail::DecodeParams p,
                    const __grid_constant__ Schedule s) {
  const int seq = blockIdx.y, lane = threadIdx.x % kWarpSize;
  if (threadIdx.x == 0) FLASHMFA_PHASE(0);
  const int n = s.num_splits[seq];  // written by plan(), before the decode grid (see the top)
  const int64_t slot0 = s.slot_begin[seq];
  grid_dependency_wait();  // before any read of a partial
  if (threadIdx.x == 0) FLASHMFA_PHASE(1);
  const int rows_all = p.h_q * p.s_q;
  const int row = blockIdx.x * kWarpsPerCta + threadIdx.x / kWarpSize;
  if (row >= rows_all) return;
  if (n <= 1) return;  // written directly by the decode kernel
  const int cols = p.d_v / kColsPerThread;
  int col[COLS];
#pragma unroll
  for (int j = 0; j < COLS; ++j) col[j] = lane + kWarpSize * j < cols ? lane + kWarpSize * j : -1;
  combine::RowMerge<COLS> merged;
  const combine::PartialRow partials =
      combine::partial_row(s, p.d_v, slot0 * rows_all + row, rows_all);
  merged.template add<kRowsBatch / COLS>(s.lse_partial + slot0 * rows_all + row, rows_all,
                                              partials, col, 0, 1, n);
  if (can_discard(s, p.d_v)) combine::drop_lines(partials, col, 0, 1, n);
  T* out = out_row<T>(p, seq, row, merged.lse(), lane == 0);
#pragma unroll
  for (int j = 0; j < COLS; ++j)
    if (col[j] >= 0) store8<T, PAIRS>(out + col[j] * kColsPerThread, merged.out(j));
  if (threadIdx.x == 0) FLASHMFA_PHASE(2);
}

// PAIRS: out rows are 4-byte aligned (pointer and strides, checked on the host), so columns are
// written as packed 16-bit pairs; otherwise element by element.
template <class T, bool PAIRS>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
combine_kernel(const __grid_constant__ detail::DecodeParams p, const __grid_constant__ Schedule s) {
  const int row = blockIdx.x, seq = blockIdx.y, chunk = blockIdx.z;
  if (threadIdx.x == 0) FLASHMFA_PHASE(0);
  const int n = s.num_splits[seq];  // written by plan(), before the decode grid (see the top)
  const int64_t slot0 = s.slot_begin[seq];
  grid_dependency_wait();  // before any read of a partial
  if (threadIdx.x == 0) FLASHMFA_PHASE(1);
  __shared__ combine::Partial scratch[kThreads];
  if (n <= 1) return;  // written directly by the decode kernel
  // This CTA's columns: groups [chunk * cols, +cols) of the row (<= 64 <= kThreads).
  const int cols = p.d_v / kColsPerThread / int(gridDim.z);
  combine::combine_chunk<T, PAIRS, kThreads>(p, s, seq, n, slot0, row, chunk * cols, cols,
                                             threadIdx.x, scratch, [] { __syncthreads(); });
  if (threadIdx.x == 0) FLASHMFA_PHASE(2);
}

// Whether the combine kernels that run on the current device were compiled with the
// griddepcontrol.wait (PTX target >= 9.0: the image a cc 9.x device loads from an sm_90 or later
// build). Programmatic serialization without that wait would let them read partials that the
// decode grid has not flushed, so the attribute is set only when this holds. Every instance
// comes from this file's one -gencode list, so the answer is per device (asked of the kernel
// being launched); cudaFuncGetAttributes is not a stream operation (legal under capture).
constexpr int kMaxDevices = 64;  // devices whose per-device answers below are kept
bool waits_for_grid(const void* kernel, int device) {
  static std::array<int8_t, kMaxDevices> cache{};  // 0 unknown, 1 no, 2 yes
  static std::mutex mu;
  if (device < 0 || device >= kMaxDevices) return false;
  std::lock_guard<std::mutex> lock(mu);
  int8_t& c = cache[device];
  if (c == 0) {
    cudaFuncAttributes attr{};
    FLASHMFA_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
    c = attr.ptxVersion >= 90 ? 2 : 1;
  }
  return c == 2;
}

// The combine's CTAs take the SMs that decode CTAs leave (programmatic dependent launch), and
// the next call's decode CTAs take them back. A decode kernel holds nearly all of an SM's
// shared memory, so it runs with the largest shared-memory carveout; with the driver's own
// choice for the combine (a few KB of shared memory) an SM may switch its L1 / shared split at
// both hand-overs. The combine therefore prefers the decode kernels' carveout (measured: MFA
// b = 1 -0.3 us, other rows unchanged; docs/perf-notes.md P.1). FLASHMFA_COMBINE_MAX_SHARED=0
// leaves the driver's choice.
#ifndef FLASHMFA_COMBINE_MAX_SHARED
#define FLASHMFA_COMBINE_MAX_SHARED 1
#endif
// Once per device for the three kernels of an instance (not a stream operation: legal under
// capture).
template <class T, bool PAIRS>
void prefer_max_shared(int device) {
  if (!FLASHMFA_COMBINE_MAX_SHARED || device < 0 || device >= kMaxDevices) return;
  static std::array<std::once_flag, kMaxDevices> once;
  std::call_once(once[device], [] {
    for (const void* kernel : {reinterpret_cast<const void*>(&combine_kernel<T, PAIRS>),
                               reinterpret_cast<const void*>(&combine_rows_kernel<T, PAIRS, 1>),
                               reinterpret_cast<const void*>(&combine_rows_kernel<T, PAIRS, 2>)})
      FLASHMFA_CUDA_CHECK(cudaFuncSetAttribute(
          kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
          int(cudaSharedmemCarveoutMaxShared)));
  });
}

template <class T, bool PAIRS>
void launch_typed(const detail::DecodeParams& p, const Schedule& sched, cudaStream_t stream) {
  int device = 0;
  FLASHMFA_CUDA_CHECK(cudaGetDevice(&device));
  const DeviceInfo& dev = device_info(device);
  // Shapes only decide the layout and the grid: grid-stable under graph replay.
  const int rows_all = p.h_q * p.s_q;
  const bool warp_rows = int64_t(rows_all) * p.b >= int64_t(kWarpLayoutRowsPerSm) * dev.sm_count;
  const int cols = p.d_v / kColsPerThread;
  // Warp layout: 8-column groups per lane (d_v <= 512: at most 2).
  auto* rows_kernel = cols <= kWarpSize ? &combine_rows_kernel<T, PAIRS, 1>
                                        : &combine_rows_kernel<T, PAIRS, 2>;
  auto* kernel = warp_rows ? rows_kernel : &combine_kernel<T, PAIRS>;
  int chunks = 1;
  while (!warp_rows && int64_t(rows_all) * p.b * chunks < int64_t(kChunkCtasPerSm) * dev.sm_count &&
         cols % (2 * chunks) == 0 && cols / (2 * chunks) >= kMinChunkCols)
    chunks *= 2;
  prefer_max_shared<T, PAIRS>(device);
  FLASHMFA_PHASE_REPORT();
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = warp_rows ? dim3((rows_all + kWarpsPerCta - 1) / kWarpsPerCta, p.b)
                          : dim3(rows_all, p.b, chunks);
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  const bool pdl =
      dev.cc_major >= 9 && waits_for_grid(reinterpret_cast<const void*>(kernel), device);
  cfg.attrs = pdl ? attr : nullptr;
  cfg.numAttrs = pdl ? 1 : 0;
  FLASHMFA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, p, sched));
}

}  // namespace

void launch_combine(const detail::DecodeParams& p, const Schedule& sched, cudaStream_t stream) {
  if (p.b == 0 || p.h_q * p.s_q == 0) return;
  // Every supported d_v is 64, 128, 256 or 512: whole 8-column groups in each of the partial
  // rows' scale groups (partials.cuh), at most 2 groups per lane of the warp layout.
  constexpr int kDvStep = kPartialGroups * kColsPerThread, kMaxDv = 2 * kWarpSize * kColsPerThread;
  if (p.d_v % kDvStep != 0 || p.d_v > kMaxDv)
    throw Error(Status::unsupported, "flashmfa: the combine kernel needs d_v % " +
                                         std::to_string(kDvStep) + " == 0 and d_v <= " +
                                         std::to_string(kMaxDv) + ", got " + std::to_string(p.d_v));
  const bool pairs = out_pairs_aligned(p);
  if (p.dtype == DType::bf16) {
    if (pairs) launch_typed<__nv_bfloat16, true>(p, sched, stream);
    else launch_typed<__nv_bfloat16, false>(p, sched, stream);
  } else {
    if (pairs) launch_typed<__half, true>(p, sched, stream);
    else launch_typed<__half, false>(p, sched, stream);
  }
}

}  // namespace flashmfa::cuda
