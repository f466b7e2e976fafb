// flashmfa CUDA, Hopper path: the producer -- one thread that walks its part's work items and
// streams every KV tile into the shared-memory ring with TMA bulk-tensor copies.
//
// The tensor maps view a cache as (d, h_kv, page_size, num_pages) with the cache's own
// strides, so one 64-token tile of KV head h is the box (0..D, h, t0..t0+63, page) of
// kAtoms copies of 64 columns. Page indices come from the block table, one per tile (a page
// holds >= 64 tokens). A page outside [0, num_pages) is never loaded: the slot is released
// with zero bytes, its `valid` is 0, and the consumers clear and mask it.
#pragma once

#include <cuda.h>

#include "core/params.hpp"
#include "cuda/common/schedule.cuh"
#include "cuda/sm90/decode/ptx.cuh"
#include "cuda/sm90/decode/traits.cuh"
#include "flashmfa/flashmfa.hpp"

namespace flashmfa::cuda::sm90 {

template <int D, int WARPGROUPS, bool KV_SPLIT>
struct Producer {
  using Tr = Traits<D, WARPGROUPS, KV_SPLIT>;

  const detail::DecodeParams& p;
  const Schedule& sched;
  const CUtensorMap* k_map;
  const CUtensorMap* v_map;
  const SmemView& sm;
  int kv_head;

  // One tile of `map` into the ring slot at `pos` (waits for the slot to be free first).
  __device__ void load_tile(RingPos& pos, const CUtensorMap* map, bool ok, int valid,
                            int token_in_page, int page, uint64_t policy) const {
    // Free slots complete the phase before the one the consumers wait on: a fresh barrier
    // counts as having completed phase "1", so the first pass does not block.
    mbar_wait(sm.empty_bar(pos.stage), pos.phase ^ 1);
    st_shared(sm.valid_at(pos.stage), int32_t(valid));  // published by the arrive (release)
    const uint32_t full = sm.full_bar(pos.stage);
    if (ok) {
      mbar_arrive_expect_tx(full, Tr::kSlotBytes);
      const uint32_t dst = sm.slot(pos.stage);
#pragma unroll
      for (int a = 0; a < Tr::kAtoms; ++a)
        tma_load_4d(dst + a * kAtomBytes, map, full, a * kAtomCols, kv_head, token_in_page, page,
                    policy);
    } else {
      mbar_arrive(full);
    }
    pos.advance();
  }

  __device__ void run(int part) const {
    const uint64_t policy = l2_evict_first_policy();
    RingPos ring0 = ring_of<Tr::kStages, KV_SPLIT>(0), ring1 = ring_of<Tr::kStages, KV_SPLIT>(1);
    for (PartWalker w(sched, part); w.valid(); w.next()) {
      const WorkItem it = w.item();
      const int32_t* table = p.block_table + int64_t(it.seq) * p.bt_sb;
#pragma unroll 1
      for (int blk = it.block_begin; blk < it.block_end; ++blk) {
        const int token = blk * kBlockN;
        const int32_t page = table[token >> p.log2_page_size];
        const bool ok = page >= 0 && page < p.num_pages;
        if (!ok) atomicOr(&sched.header->error_flags, uint32_t(kFlagPageOutOfRange));
        const int valid = ok ? min(kBlockN, it.seqlen - token) : 0;
        const int in_page = token & (p.page_size - 1);
        auto load = [&](RingPos& pos) {
          load_tile(pos, k_map, ok, valid, in_page, page, policy);
          if (!p.v_aliases_k) load_tile(pos, v_map, ok, valid, in_page, page, policy);
        };
        // Two calls rather than a reference chosen at run time: that would put the rings in
        // local memory.
        if (tile_owner<KV_SPLIT>(blk, it.block_begin)) load(ring1);
        else load(ring0);
      }
    }
  }
};

}  // namespace flashmfa::cuda::sm90
