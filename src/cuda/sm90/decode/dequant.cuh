// flashmfa CUDA, Hopper path, FP8 caches: the dequantizing warps (warps 1-3 of the producer
// warpgroup). They walk the same tiles in the same order as the producer and the consumers;
// per K (and V) tile they wait for the raw slot (e4m3 rows + scales, producer.cuh) and for a
// free 16-bit slot of the owning consumer warpgroup's ring, write the tile there in the layout
// TMA would have written (128B-swizzled atoms), value = T(e4m3 * T(scale)) (common/
// fp8_dequant.cuh, the portable kernel's arithmetic), and hand both slots on:
//
//   wait raw_full[r], empty[s] -> convert -> fence.proxy.async -> arrive full[s], raw_empty[r]
//
// The fence orders the generic-proxy stores before the consumers' wgmma reads them. Every slot
// is converted, also one whose page index was bad (its raw slot then holds stale bytes): the
// consumers mask such a tile as they do on a 16-bit cache, so these warps never read the block
// table (a global load per tile would sit on their chain).
#pragma once

#include "core/params.hpp"
#include "cuda/common/fp8_dequant.cuh"
#include "cuda/common/schedule.cuh"
#include "cuda/sm90/decode/ptx.cuh"
#include "cuda/sm90/decode/traits.cuh"

namespace flashmfa::cuda::sm90 {

template <class T, class Tr>
struct Dequantizer {
  static constexpr int kThreads = kDequantWarps * kWarpSize;
  static constexpr int kRowChunks = int(Tr::kRawTileBytes) / kBlockN / 16;  // 16 e4m3 per chunk
  static constexpr int kChunks = kBlockN * kRowChunks;

  const detail::DecodeParams& p;
  const Schedule& sched;
  const SmemView& sm;
  int t;  // 0 .. kThreads - 1

  // Chunk c = t + kThreads i: row c / kRowChunks, columns [16 col, 16 col + 16) -> 16-byte
  // units 2 col and 2 col + 1 of the row. Lanes 0-3 and 4-7 of a store phase write units of two
  // atoms at the same offsets; the second group stores its units in the other order, so that
  // each phase's eight 16-byte stores fall in distinct banks.
  __device__ void convert(uint32_t raw, uint32_t dst) const {
#pragma unroll 1
    for (int c = t; c < kChunks; c += kThreads) {
      const int row = c / kRowChunks, col = c % kRowChunks;
      const RowScale<T> rs(__int_as_float(
          ld_shared_s32(raw + Tr::kRawTileBytes + uint32_t(row) * uint32_t(sizeof(float)))));
      uint32_t in[4], out[8];
      ld_shared(raw + uint32_t(row * kRowChunks + col) * 16, in);
      dequant_chunk<T>(in, rs, out);
      const int flip = (col >> 2) & 1;
      const uint32_t a = dst + swizzled_offset(row, 2 * col + flip);
      const uint32_t b = dst + swizzled_offset(row, 2 * col + 1 - flip);
      st_shared(a, flip ? make_uint4(out[4], out[5], out[6], out[7])
                        : make_uint4(out[0], out[1], out[2], out[3]));
      st_shared(b, flip ? make_uint4(out[0], out[1], out[2], out[3])
                        : make_uint4(out[4], out[5], out[6], out[7]));
    }
  }

  __device__ void one(RingPos& raw, RingPos& pos) const {
    mbar_wait(sm.raw_full_bar(raw.stage), raw.phase);
    mbar_wait(sm.empty_bar(pos.stage), pos.phase ^ 1);
    convert(sm.raw_slot(raw.stage), sm.slot(pos.stage));
    fence_proxy_async();  // the stores are read by wgmma (async proxy)
    __syncwarp();
    if (t % kWarpSize == 0) {
      mbar_arrive(sm.full_bar(pos.stage));
      mbar_arrive(sm.raw_empty_bar(raw.stage));
    }
    raw.advance();
    pos.advance();
  }

  __device__ void run(int part) const {
    RingPos raw(0, Tr::kRawStages);
    RingPos ring0 = ring_of<Tr::kStages, Tr::kKvSplit>(0),
            ring1 = ring_of<Tr::kStages, Tr::kKvSplit>(1);
    for (PartWalker w(sched, part); w.valid(); w.next()) {
      const WorkItem it = w.item();
#pragma unroll 1
      for (int blk = it.block_begin; blk < it.block_end; ++blk) {
        auto fill = [&](RingPos& pos) {
          one(raw, pos);
          if (!p.v_aliases_k) one(raw, pos);
        };
        // Two calls, as in the producer: a ring chosen at run time would go to local memory.
        if (tile_owner<Tr::kKvSplit>(blk, it.block_begin)) fill(ring1);
        else fill(ring0);
      }
    }
  }
};

}  // namespace flashmfa::cuda::sm90
