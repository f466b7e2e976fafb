// flashmfa CUDA: the backend entry points the host core calls (cuda_backend.hpp). Picks the
// kernel, cuts the work into parts, lays out the workspace, launches scheduler, decode and
// combine kernels on the caller's stream. Nothing here allocates or synchronizes, except
// read_error_flags, which exists to synchronize.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/common/combine.hpp"
#include "cuda/common/device.hpp"
#include "cuda/common/scheduler.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda/sm80/decode/decode.hpp"
#if FLASHMFA_HAS_SM90
#include "cuda/sm90/decode/decode.hpp"
#endif

namespace flashmfa::cuda {
namespace {

// Kernel ids recorded in Plan::kernel.
enum class KernelId : int { sm80_decode = 0, sm90_decode = 1 };

// Whether the sm_90a kernel computes p on dev (compiled in, a 9.0 device, a covered shape).
bool sm90_takes(const detail::DecodeParams& p, const DeviceInfo& dev) {
#if FLASHMFA_HAS_SM90
  return sm90::supports(p, dev);
#else
  (void)p, (void)dev;
  return false;
#endif
}

// One split's fixed overhead (loading Q, the epilogue, its combine row) costs about as much as
// streaming this many KV tokens; the scheduler charges it per sequence (see schedule.cuh).
#ifndef FLASHMFA_FIXED_COST_TOKENS  // a tuning switch for A/B builds
#define FLASHMFA_FIXED_COST_TOKENS 320
#endif
constexpr int kFixedCostTokens = FLASHMFA_FIXED_COST_TOKENS;
int fixed_cost_blocks(int block_n) { return std::max(1, kFixedCostTokens / block_n); }

cudaStream_t as_stream(Stream s) { return static_cast<cudaStream_t>(s); }

WorkspaceLayout layout(const detail::DecodeParams& p, const Plan& plan) {
  return WorkspaceLayout(p.b, plan.num_parts, plan.num_slots, int64_t(p.h_q) * p.s_q, p.d_v);
}

template <class T>
T* at(const Plan& plan, size_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(plan.workspace) + offset);
}

Schedule schedule_view(const detail::DecodeParams& p, const Plan& plan) {
  const WorkspaceLayout w = layout(p, plan);
  Schedule s{};
  s.header = at<ScheduleHeader>(plan, w.header);
  s.prefix_cost = at<int32_t>(plan, w.prefix_cost);
  s.seqlen = at<int32_t>(plan, w.seqlen);
  s.slot_begin = at<int32_t>(plan, w.slot_begin);
  s.num_splits = at<int32_t>(plan, w.num_splits);
  s.part_first_seq = at<int32_t>(plan, w.part_first_seq);
  s.o_partial = at<PartialElem>(plan, w.o_partial);
  s.o_scale = at<float>(plan, w.o_scale);
  s.lse_partial = at<float>(plan, w.lse_partial);
  s.b = p.b;
  s.num_parts = plan.num_parts;
  s.num_slots = plan.num_slots;
  s.block_n = plan.block_n;
  s.fixed_cost = fixed_cost_blocks(plan.block_n);
  return s;
}

}  // namespace

bool available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

const char* arch_list() { return FLASHMFA_CUDA_ARCH_LIST; }

void configure(const detail::DecodeParams& p, int device, Plan& plan) {
  const DeviceInfo& dev = device_info(device);
  const bool hopper = plan.key.path != DecodeArgs::Path::portable && sm90_takes(p, dev);
  if (plan.key.path == DecodeArgs::Path::hopper && !hopper)
    detail::fail_arg(Status::unsupported, "path", "a shape the Hopper fast path covers",
                     "hopper requested for " + plan.key.variant.name() + " on " + dev.name);
  int ctas_per_sm = 0;
#if FLASHMFA_HAS_SM90
  if (hopper) {
    const sm90::KernelConfig cfg = sm90::choose(p, dev);
    plan.kernel = static_cast<int>(KernelId::sm90_decode);
    plan.block_m = cfg.block_m;
    plan.block_n = cfg.block_n;
    ctas_per_sm = cfg.ctas_per_sm;
  }
#endif
  if (!hopper) {
    const sm80::KernelConfig cfg = sm80::choose(p, dev);
    plan.kernel = static_cast<int>(KernelId::sm80_decode);
    plan.block_m = cfg.block_m;
    plan.block_n = cfg.block_n;
    ctas_per_sm = cfg.ctas_per_sm;
  }
  // Enough parts that every SM holds ctas_per_sm CTAs when the row tiles and KV heads of one
  // part are counted in; one split per part at most for each sequence end (schedule.cuh).
  const int row_tiles = (detail::rows_per_kv_head(p) + plan.block_m - 1) / plan.block_m;
#ifdef FLASHMFA_MEASURE_SM_DIVISOR  // measuring builds only: a grid for a fraction of the SMs
  const int ctas = std::max(1, dev.sm_count * ctas_per_sm / FLASHMFA_MEASURE_SM_DIVISOR);
#else
  const int ctas = dev.sm_count * ctas_per_sm;
#endif
  // (The scheduler may leave a few parts idle: one part per sequence for equal lengths.)
  plan.num_parts = std::max(1, ctas / (row_tiles * p.h_kv));
  plan.num_slots = 2 * plan.num_parts;
  // Limits of the launches and of the scheduler's 32-bit cost axis, checked before any work.
  constexpr int64_t kMaxGridY = 65535;  // the combine kernel's grid.y is the batch
  if (p.b > kMaxGridY)
    detail::fail_arg(Status::unsupported, "q.shape[0] (b)",
                     "<= " + std::to_string(kMaxGridY) + " sequences on CUDA", p.b);
  const int64_t capacity = int64_t(p.max_pages) * p.page_size;
  const int64_t max_cost =
      int64_t(p.b) * ((capacity + plan.block_n - 1) / plan.block_n +
                      fixed_cost_blocks(plan.block_n));
  if (max_cost >= (int64_t(1) << 31))
    detail::fail_arg(Status::unsupported, "b * max_pages_per_seq * page_size",
                     "below 2^31 KV blocks of " + std::to_string(plan.block_n) + " tokens",
                     std::to_string(max_cost) + " blocks (b " + std::to_string(p.b) +
                         ", block-table capacity " + std::to_string(capacity) + " tokens)");
}

size_t workspace_bytes(const detail::DecodeParams& p, const Plan& plan) {
  return layout(p, plan).total;
}

void plan(const detail::DecodeParams& p, const Plan& plan, Stream stream) {
  if (p.b == 0) return;
  const Schedule s = schedule_view(p, plan);
  SchedulerArgs a{};
  a.header = s.header;
  a.prefix_cost = const_cast<int32_t*>(s.prefix_cost);
  a.seqlen = const_cast<int32_t*>(s.seqlen);
  a.slot_begin = const_cast<int32_t*>(s.slot_begin);
  a.num_splits = const_cast<int32_t*>(s.num_splits);
  a.part_first_seq = const_cast<int32_t*>(s.part_first_seq);
  a.b = p.b;
  a.num_parts = s.num_parts;
  a.block_n = s.block_n;
  a.fixed_cost = s.fixed_cost;
  a.page_size = p.page_size;
  a.max_pages = p.max_pages;
  DeviceGuard guard(plan.key.device.id);
  launch_scheduler(p.seqlens, a, as_stream(stream));
}

void run(const detail::DecodeParams& p, const Plan& plan, Stream stream) {
  const Schedule s = schedule_view(p, plan);
  const DeviceInfo& dev = device_info(plan.key.device.id);
  DeviceGuard guard(plan.key.device.id);
  if (plan.kernel == static_cast<int>(KernelId::sm90_decode)) {
#if FLASHMFA_HAS_SM90
    // The plan fixed block_n and the parts for this kernel; tensors whose pointers or strides
    // it cannot take (TMA needs 16-byte alignment) cannot silently switch kernels.
    if (!sm90::supports(p, dev))
      throw Error(Status::invalid_argument,
                  "flashmfa: the plan chose the sm_90 kernel, but these tensors' alignment or "
                  "strides do not suit it (16-byte aligned caches and q); plan again for them");
    sm90::launch(p, s, sm90::choose(p, dev), as_stream(stream));
#endif
  } else {
    sm80::launch(p, s, sm80::choose(p, dev), as_stream(stream));
  }
  // One part splits nothing (schedule.cuh): no combine to launch.
  if (plan.num_parts > 1) launch_combine(p, s, as_stream(stream));
}

uint32_t read_error_flags(const Plan& plan, Stream stream) {
  DeviceGuard guard(plan.key.device.id);
  auto* header = static_cast<ScheduleHeader*>(plan.workspace);  // the layout's first piece
  // Read and clear on the caller's stream, so that the clear is ordered before its next run.
  uint32_t flags = 0;
  FLASHMFA_CUDA_CHECK(cudaMemcpyAsync(&flags, &header->error_flags, sizeof(flags),
                                      cudaMemcpyDeviceToHost, as_stream(stream)));
  FLASHMFA_CUDA_CHECK(cudaMemsetAsync(&header->error_flags, 0, sizeof(flags), as_stream(stream)));
  FLASHMFA_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
  return flags;
}

}  // namespace flashmfa::cuda
