// flashmfa CUDA: the split-KV schedule shared by the scheduler, every decode kernel and the
// combine kernel.
//
// Cost model. Sequence i costs c_i = n_i + F units, where n_i = ceil(L_i / BLOCK_N) is its
// number of KV blocks and F (fixed_cost) stands for the per-split overhead (loading Q, the
// epilogue, a combine row). Sequences are laid end to end on one cost axis,
//
//     P_0 = 0,  P_{i+1} = P_i + c_i            seq i occupies [P_i, P_{i+1}),
//                                               its block k sits at P_i + F + k,
//
// and the axis is cut into num_parts equal parts of `per_part` units; part p covers
// [p * per_part, (p + 1) * per_part). A part works on every sequence whose interval meets
// its own, on the blocks that fall inside it. So a long sequence is split over several parts,
// and a part can span several short sequences.
//
//   seq:    |F| 0 1 2 3 4 5 |F| 0 1 |F| 0 1 2 3 4 5 6 7 |
//   parts:  [ part 0        ][ part 1       ][ part 2    ]
//
// Sequence i touches parts floor(P_i / per_part) .. floor((P_{i+1} - 1) / per_part). If that
// is one part, the kernel writes its rows straight to out/lse; otherwise split k (0-based)
// writes to partial slot slot_begin[i] + k and the combine kernel merges them. Only a part's
// first and last sequence can be split, so num_slots <= 2 * num_parts.
#pragma once

#include <cstdint>

#include "core/params.hpp"
#include "cuda/common/partials.cuh"

namespace flashmfa::cuda {

// Whether every out row starts 4-byte aligned (the pointer, and every stride of a dimension
// with more than one element, even), so that two adjacent 16-bit columns can be stored as one
// 32-bit word. Validation guarantees element alignment only; kernels check this themselves.
__host__ __device__ inline bool out_pairs_aligned(const detail::DecodeParams& p) {
  return reinterpret_cast<uintptr_t>(p.out) % 4 == 0 && (p.b <= 1 || p.o_sb % 2 == 0) &&
         (p.s_q <= 1 || p.o_ss % 2 == 0) && (p.h_q <= 1 || p.o_sh % 2 == 0);
}

// Device-side header at the start of the workspace.
struct ScheduleHeader {
  uint32_t error_flags;   // ErrorFlag bits, or-ed by kernels; cleared by plan and by reads
  int32_t per_part;       // cost units per part (>= 1)
  int32_t num_slots_used; // partial slots the split sequences need (<= Schedule::num_slots)
  int32_t reserved;
};

// Everything a kernel needs to find its work. Pointers into the workspace; passed by value.
struct Schedule {
  ScheduleHeader* header;
  const int32_t* prefix_cost;     // [b + 1]  P_i
  const int32_t* seqlen;          // [b]      L_i clamped to [0, max_pages * page_size]
  const int32_t* slot_begin;      // [b]      first partial slot of seq i; -1: not split
  const int32_t* num_splits;      // [b]      parts that seq i is cut into (>= 1)
  const int32_t* part_first_seq;  // [num_parts] first sequence part p meets
  PartialElem* o_partial;         // [num_slots, h_q * s_q, d_v]  row = kv * rows + r
  float* o_scale;                 // [num_slots, h_q * s_q, kPartialGroups]  (partials.cuh)
  float* lse_partial;             // [num_slots, h_q * s_q]       natural log; -inf: empty
  int32_t b;
  int32_t num_parts;
  int32_t num_slots;
  int32_t block_n;                // KV tokens per block (the decode kernel's tile)
  int32_t fixed_cost;             // F, in blocks
};

// The combine drops each partial's L2 lines once merged (combine.cuh, discard.global.L2);
// FLASHMFA_COMBINE_DISCARD=0 keeps them.
#ifndef FLASHMFA_COMBINE_DISCARD
#define FLASHMFA_COMBINE_DISCARD 1
#endif
constexpr int kL2LineBytes = 128;  // what discard.global.L2 and prefetch.global.L2 act on

// Whether partial lines may be dropped: every partial row starts on a line (the workspace
// layout aligns o_partial to 256 bytes, but the workspace pointer comes from the caller).
__host__ __device__ inline bool can_discard(const Schedule& s, int d_v) {
  return FLASHMFA_COMBINE_DISCARD &&
         reinterpret_cast<uintptr_t>(s.o_partial) % kL2LineBytes == 0 &&
         (d_v * sizeof(PartialElem)) % kL2LineBytes == 0;
}

// One piece of a part's work: blocks [block_begin, block_end) of sequence seq.
struct WorkItem {
  int seq;
  int seqlen;       // clamped length of seq
  int block_begin;  // in units of Schedule::block_n tokens
  int block_end;
  int slot;         // partial slot to write, or -1: write out/lse directly
};

// Walks the sequences of part `part` in order:
//
//   for (PartWalker w(sched, part); w.valid(); w.next()) { WorkItem it = w.item(); ... }
//
// Every thread of a CTA can run it in lockstep (it reads a few global int32 per sequence).
class PartWalker {
 public:
  __device__ PartWalker(const Schedule& s, int part)
      : s_(s), per_(s.header->per_part), lo_(part * per_), hi_(lo_ + per_),
        seq_(s.part_first_seq[part]) {}

  __device__ bool valid() const { return seq_ < s_.b && s_.prefix_cost[seq_] < hi_; }
  __device__ void next() { ++seq_; }
  // The sequence of the part's next work item, or -1 when the current one is its last.
  __device__ int peek() const {
    const int n = seq_ + 1;
    return n < s_.b && s_.prefix_cost[n] < hi_ ? n : -1;
  }

  __device__ WorkItem item() const {
    const int p0 = s_.prefix_cost[seq_];
    const int len = s_.seqlen[seq_];
    const int blocks = (len + s_.block_n - 1) / s_.block_n;
    const int first = p0 + s_.fixed_cost;  // cost position of block 0
    WorkItem it;
    it.seq = seq_;
    it.seqlen = len;
    it.block_begin = clamp(lo_ - first, 0, blocks);
    it.block_end = clamp(hi_ - first, 0, blocks);
    const int slot0 = s_.slot_begin[seq_];
    it.slot = slot0 < 0 ? -1 : slot0 + (lo_ / per_ - p0 / per_);
    return it;
  }

 private:
  __device__ static int clamp(int x, int lo, int hi) { return x < lo ? lo : (x > hi ? hi : x); }
  const Schedule& s_;
  int per_, lo_, hi_, seq_;
};

}  // namespace flashmfa::cuda
