// flashmfa CUDA: the scheduler kernel. One CTA reads seqlens_k on the device and writes the
// split-KV schedule described in schedule.cuh: clamped lengths, the cost prefix P, the number
// of splits and the first partial slot of every sequence, and the first sequence of every part.
// No host synchronization: plan() can be captured in a CUDA graph and replayed with new lengths.
#include <cub/block/block_scan.cuh>

#include "cuda/common/scheduler.hpp"
#include "flashmfa/flashmfa.hpp"

namespace flashmfa::cuda {
namespace {

constexpr int kSchedulerThreads = 1024;
using BlockScan = cub::BlockScan<int, kSchedulerThreads>;

// Exclusive prefix sum of value(i) over i in [0, n) into out[0..n] (out[n] = total), with one
// CTA: each thread owns a contiguous chunk, chunk sums are scanned across the block.
template <class ValueFn>
__device__ int block_exclusive_scan(int n, ValueFn value, int32_t* out,
                                    typename BlockScan::TempStorage& tmp) {
  const int chunk = (n + kSchedulerThreads - 1) / kSchedulerThreads;
  const int begin = min(n, int(threadIdx.x) * chunk), end = min(n, begin + chunk);
  int local = 0;
  for (int i = begin; i < end; ++i) local += value(i);
  int offset, total;
  BlockScan(tmp).ExclusiveSum(local, offset, total);
  for (int i = begin; i < end; ++i) {
    out[i] = offset;
    offset += value(i);
  }
  if (threadIdx.x == 0) out[n] = total;
  __syncthreads();  // out[] is read back by every thread next
  return total;
}

// Whether value(i) is the same for every i in [0, n); `scratch` is a shared word (reset here).
template <class ValueFn>
__device__ bool block_all_equal(int n, ValueFn value, uint32_t& scratch) {
  __syncthreads();  // scratch may still be read by the caller's previous use
  if (threadIdx.x == 0) scratch = 0;
  __syncthreads();
  if (n > 0) {
    const int first = value(0);
    bool same = true;
    for (int i = threadIdx.x; i < n; i += kSchedulerThreads) same &= value(i) == first;
    if (!same) atomicOr(&scratch, 1u);
  }
  __syncthreads();
  const bool all = scratch == 0;
  __syncthreads();
  return all;
}

__global__ void __launch_bounds__(kSchedulerThreads)
schedule_kernel(const int32_t* __restrict__ seqlens_in, SchedulerArgs a) {
  __shared__ typename BlockScan::TempStorage scan_tmp;
  __shared__ uint32_t flags;
  if (threadIdx.x == 0) flags = 0;
  __syncthreads();

  // Clamp lengths into what the block table can address; flag what was wrong.
  const int64_t capacity = int64_t(a.max_pages) * a.page_size;
  uint32_t my_flags = 0;
  for (int i = threadIdx.x; i < a.b; i += kSchedulerThreads) {
    int len = seqlens_in[i];
    if (len < 0) { my_flags |= kFlagSeqlenNegative; len = 0; }
    if (len > capacity) { my_flags |= kFlagSeqlenTooLong; len = int(capacity); }
    a.seqlen[i] = len;
  }
  if (my_flags) atomicOr(&flags, my_flags);
  __syncthreads();

  const int block_n = a.block_n, fixed = a.fixed_cost;
  auto cost = [&](int i) { return (a.seqlen[i] + block_n - 1) / block_n + fixed; };
  const int total = block_exclusive_scan(a.b, cost, a.prefix_cost, scan_tmp);
  // Equal costs and a batch just short of the parts (at most ~3% of them idle): one part per
  // sequence, so nothing is split and the combine has nothing to do. Measured on the H100 (sm90
  // MFA kernel, b = 128 x 8k tokens, 132 parts): every sequence split in two (the equal cut)
  // 92.6% of copy bandwidth, one part each 98.9% (the decode alone 378 -> 360 us: a split
  // costs more than its fixed cost). Varying lengths keep the equal cut (the rule for them on
  // the host measured 94.5 -> 88.7% on MFA h64 8k varlen).
  __shared__ uint32_t scratch;
  const bool equal_costs = a.b > 0 && block_all_equal(a.b, cost, scratch);
  // (num_parts - b) / num_parts <= 1/32: never more than ~3% of the parts idle, so with fewer
  // than 32 parts (many KV heads or row tiles) the equal cut always stays.
  const bool one_per_sequence =
      equal_costs && a.b < a.num_parts && (a.num_parts - a.b) * 32 <= a.num_parts;
  const int per = one_per_sequence ? a.prefix_cost[1]
                                   : max(1, (total + a.num_parts - 1) / a.num_parts);

  // Splits per sequence; only split sequences take partial slots.
  for (int i = threadIdx.x; i < a.b; i += kSchedulerThreads) {
    const int first = a.prefix_cost[i] / per, last = (a.prefix_cost[i + 1] - 1) / per;
    a.num_splits[i] = last - first + 1;
  }
  __syncthreads();
  auto slots = [&](int i) { return a.num_splits[i] > 1 ? a.num_splits[i] : 0; };
  // The slot prefix goes to slot_begin; the pass below turns unsplit entries into -1.
  const int used = block_exclusive_scan(a.b, slots, a.slot_begin, scan_tmp);
  for (int i = threadIdx.x; i < a.b; i += kSchedulerThreads)
    if (a.num_splits[i] == 1) a.slot_begin[i] = -1;

  // First sequence of each part: the first i with P_{i+1} > p * per (binary search over P).
  for (int p = threadIdx.x; p < a.num_parts; p += kSchedulerThreads) {
    const int pos = p * per;
    int lo = 0, hi = a.b;  // answer in [lo, hi]; b means the part has no work
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (a.prefix_cost[mid + 1] > pos) hi = mid; else lo = mid + 1;
    }
    a.part_first_seq[p] = lo;
  }

  if (threadIdx.x == 0) {
    a.header->per_part = per;
    a.header->num_slots_used = used;
    // Flags accumulate until read_error_flags() clears them; plan() starts from zero.
    a.header->error_flags = flags;
  }
}

}  // namespace

void launch_scheduler(const int32_t* seqlens, const SchedulerArgs& args, cudaStream_t stream) {
  schedule_kernel<<<1, kSchedulerThreads, 0, stream>>>(seqlens, args);
  FLASHMFA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace flashmfa::cuda
