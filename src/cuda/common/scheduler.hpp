// flashmfa CUDA: the workspace layout and the scheduler kernel's launcher.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/common/device.hpp"
#include "cuda/common/schedule.cuh"

namespace flashmfa::cuda {

// Where each piece of the schedule lives in the workspace (byte offsets, each aligned).
struct WorkspaceLayout {
  static constexpr size_t kAlign = 256;
  size_t header = 0, prefix_cost = 0, seqlen = 0, slot_begin = 0, num_splits = 0,
         part_first_seq = 0, lse_partial = 0, o_partial = 0, o_scale = 0,
         total = 0;

  // b sequences, num_parts parts, num_slots partial slots of rows_all rows x d_v values
  // (partials.cuh).
  WorkspaceLayout(int64_t b, int64_t num_parts, int64_t num_slots, int64_t rows_all,
                  int64_t d_v) {
    size_t at = 0;
    auto take = [&](size_t bytes) {
      const size_t here = at;
      at = (at + bytes + kAlign - 1) / kAlign * kAlign;
      return here;
    };
    header = take(sizeof(ScheduleHeader));
    prefix_cost = take(sizeof(int32_t) * (b + 1));
    seqlen = take(sizeof(int32_t) * b);
    slot_begin = take(sizeof(int32_t) * (b + 1));
    num_splits = take(sizeof(int32_t) * b);
    part_first_seq = take(sizeof(int32_t) * num_parts);
    lse_partial = take(sizeof(float) * num_slots * rows_all);
    o_partial = take(sizeof(PartialElem) * num_slots * rows_all * d_v);
    o_scale = take(sizeof(float) * num_slots * rows_all * kPartialGroups);
    total = at;
  }
};

// What the scheduler kernel writes (pointers into one workspace).
struct SchedulerArgs {
  ScheduleHeader* header;
  int32_t* prefix_cost;     // [b + 1]
  int32_t* seqlen;          // [b]
  int32_t* slot_begin;      // [b + 1]
  int32_t* num_splits;      // [b]
  int32_t* part_first_seq;  // [num_parts]
  int b, num_parts, block_n, fixed_cost, page_size, max_pages;
};

void launch_scheduler(const int32_t* seqlens, const SchedulerArgs& args, cudaStream_t stream);

}  // namespace flashmfa::cuda
