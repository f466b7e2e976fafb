// flashmfa CUDA, Hopper path: the MLA kernel's producer warpgroup for FlashMLA's FP8 rows
// (fp8_mla, 656 bytes: 512 e4m3 latent values, 4 f32 scales, 64 RoPE values in q's dtype).
//
// Two forms. In place (Tr::kRawBuffer false, more than 32 query rows): shared memory has no
// room for a raw ring beside Q and the two 16-bit slots (config.hpp, mla_fp8_plan), so a raw
// tile lands inside the slot it becomes and is widened there:
//
//   thread 0:     wait for the slot to be free (empty) -> one TMA copy per latent box (64 rows
//                 x 128 bytes, 128B-swizzled) into atoms 4..7, the scales (64 x 16 bytes) into
//                 the end of atom 3, the RoPE values (64 x 64, swizzled) into atom 8; on
//                 kMlaFp8Landings raw-full barriers (2: boxes 0, 1 and the scales; boxes 2, 3
//                 and RoPE)
//   all 128:      each landed part widened into its atoms at once -> fence.proxy.async -> one
//                 arrival per warp on the full barrier of the atoms (kMlaFp8Publishes groups,
//                 1: every atom once the tile is widened; S = Q K^T follows them)
//
// The consumers (consumer.cuh, MlaTraits<true>) read the slot exactly as a 16-bit one. Tiles
// go in order, each issued once its slot is free and widened once it has landed, so a tile is
// widened while the consumers work on the one before it. (Finer landings and publications,
// and issuing the next load between boxes, measured slower: docs/perf-notes.md K.3, K.4.)
//
// Raw buffer (Tr::kRawBuffer, at most 32 query rows: Q staged as 32 rows, config.hpp
// mla_fp8_raw_plan): the four latent boxes and the scales land in a buffer of their own, on
// kMlaFp8Landings raw-full barriers, and the widening goes buffer -> slot:
//
//   all 128:      wait for the slot to be free; thread 0 copies the RoPE values into atom 8 on
//                 the slot's full barrier (its expect_tx, beside the four warps' arrivals)
//   per landing:  wait for it -> widen its boxes into their atoms -> bar.sync (its boxes are
//                 read) -> thread 0 issues the next tile's copies into those boxes
//   all 128:      fence.proxy.async -> one arrival per warp on the slot's full barrier
//
// so each landing of the next tile is in flight while the rest of this one is widened and
// while the producer waits for the next slot (docs/perf-notes.md V.1).
//
// Widening: thread t owns row r = t % 64 (a warp's lanes are 32 consecutive rows, so eight
// lanes of one 16-byte access phase cover the 8 rows of a swizzle period: no bank conflicts)
// and chunks c = 4 h .. 4 h + 3, h = t / 64, of every box: chunk c of box b holds values
// [128 b + 16 c, + 16), which become 16-byte units 2 (c % 4), + 1 of atom 2 b + h. Value =
// T(e4m3 * T(scale of the row's group b)) (common/fp8_dequant.cuh), as on every backend; bf16
// slots hold it times 2^-kFp8Shift, which the consumers undo (consumer.cuh, MlaTraits).
// In place, box b's output overwrites atoms 2b, 2b + 1: free (b = 0, 1; atom 3's scales are
// read first), boxes 0 and 1 (b = 2, after a barrier), box 2 and box 3 itself (b = 3: its
// chunks are loaded into registers and a barrier passed before any store).
#pragma once

#include <cuda.h>

#include "core/params.hpp"
#include "cuda/common/fp8_dequant.cuh"
#include "cuda/common/phase_clock.cuh"
#include "cuda/common/schedule.cuh"
#include "cuda/sm90/decode/ptx.cuh"
#include "cuda/sm90/decode/traits.cuh"
#include "flashmfa/flashmfa.hpp"

namespace flashmfa::cuda::sm90 {

template <class T, class Tr>
struct MlaFp8Producer {
  static constexpr int kChunks = 4;  // 16-byte chunks per thread per box
  static constexpr int kBoxesPerLanding = kMlaFp8Boxes / kMlaFp8Landings;
  static constexpr int kBoxesPerPublish = kMlaFp8Boxes / kMlaFp8Publishes;

  const detail::DecodeParams& p;
  const Schedule& sched;
  const SmemView& sm;
  int kv_head;
  int t;  // 0..127
  const CUtensorMap* latent_map;  // (512 bytes, h_kv, page_size, num_pages), 128-byte box
  const CUtensorMap* scale_map;   // (4 f32, h_kv, page_size, num_pages)
  const CUtensorMap* rope_map;    // (64 T, h_kv, page_size, num_pages)

  __device__ int row() const { return t % kBlockN; }
  __device__ int half() const { return t / kBlockN; }
  __device__ void sync() const { named_barrier_sync(int(NamedBarrier::kWiden), kWarpgroupThreads); }

  // The raw-full barrier of latent box `box` (box 0 also carries the scales; in place, box 3
  // RoPE). The raw buffer has one per landing, for every tile.
  __device__ uint32_t landed_bar(int stage, int box) const {
    if constexpr (Tr::kRawBuffer) stage = 0;
    return sm.raw_full +
           uint32_t((stage * kMlaFp8Boxes + box / kBoxesPerLanding) * sizeof(uint64_t));
  }

  // Thread 0: the raw tile `src` into the slot at `pos` once the consumers released it, each
  // latent box on its own barrier so that it is widened as soon as it lands.
  __device__ void issue(const RingPos& pos, const TileSource& src, uint64_t policy) const {
    mbar_wait(sm.empty_bar(pos.stage), pos.phase ^ 1);
    const uint32_t slot = sm.slot(pos.stage);
#pragma unroll
    for (int b = 0; b < kMlaFp8Boxes; ++b) {
      const uint32_t full = landed_bar(pos.stage, b);
      if (b % kBoxesPerLanding == 0) {  // the landing's one arrival
        if (!src.page_ok) {  // nothing loaded: the consumers clear and mask every row
          mbar_arrive(full);
          continue;
        }
        const bool first = b == 0, last = b + kBoxesPerLanding == kMlaFp8Boxes;
        mbar_arrive_expect_tx(full, kBoxesPerLanding * kMlaFp8BoxBytes +
                                        (first ? kMlaFp8ScaleBytes : 0) +
                                        (last ? kMlaFp8RopeBytes : 0));
      }
      if (!src.page_ok) continue;
      tma_load_4d(slot + (kMlaFp8LatentAtom + b) * kAtomBytes, latent_map, full,
                  b * int(kMlaFp8BoxBytes / kBlockN), kv_head, src.in_page, src.page, policy);
      if (b == 0)
        tma_load_4d(slot + kMlaFp8ScaleOffset, scale_map, full, 0, kv_head, src.in_page,
                    src.page, policy);
      if (b == kMlaFp8Boxes - 1)
        tma_load_4d(slot + (kMlaAtoms - 1) * kAtomBytes, rope_map, full, 0, kv_head,
                    src.in_page, src.page, policy);
    }
  }

  // Address of 16-byte unit `unit` (0..7) of this thread's row in atom `atom` of `slot`
  // (the 128B swizzle: unit ^ row % 8).
  __device__ uint32_t unit_at(uint32_t slot, int atom, int unit) const {
    const int r = row();
    return slot + uint32_t(atom) * kAtomBytes + uint32_t(r) * kSwizzleRowBytes +
           uint32_t((unit ^ (r % kSwizzleGroupRows)) * kDescUnitBytes);
  }
  // This thread's raw chunks of latent box `box`, the boxes 8 KB apart from `boxes` (in place:
  // atom kMlaFp8LatentAtom of the slot; otherwise the raw buffer).
  __device__ void load_box(uint32_t boxes, int box, uint32_t (&in)[kChunks][4]) const {
    static_assert(kMlaFp8BoxBytes == kAtomBytes, "a latent box is one atom's bytes");
#pragma unroll
    for (int k = 0; k < kChunks; ++k) ld_shared(unit_at(boxes, box, kChunks * half() + k), in[k]);
  }
  __device__ uint32_t boxes_in(uint32_t slot) const {
    return Tr::kRawBuffer ? sm.raw : slot + kMlaFp8LatentAtom * kAtomBytes;
  }
  // Their 16-bit values into atom 2 box + half.
  __device__ void store_box(uint32_t slot, int box, const uint32_t (&in)[kChunks][4],
                            const TileRowScale<T>& scale) const {
    const int atom = 2 * box + half();
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      uint32_t out[8];
      dequant_chunk<T>(in[k], scale, out);
      st_shared(unit_at(slot, atom, 2 * k), make_uint4(out[0], out[1], out[2], out[3]));
      st_shared(unit_at(slot, atom, 2 * k + 1), make_uint4(out[4], out[5], out[6], out[7]));
    }
  }
  __device__ void widen_box(uint32_t slot, int box, float scale) const {
    uint32_t in[kChunks][4];
    load_box(boxes_in(slot), box, in);
    store_box(slot, box, in, TileRowScale<T>(scale));
  }
  // Stores of this warp are complete and visible to wgmma: one arrival per warp on `full`.
  __device__ void publish(uint32_t full) const {
    fence_proxy_async();
    __syncwarp();
    if (t % kWarpSize == 0) mbar_arrive(full);
  }

  // All 128 threads: the raw tile at `pos`, part by part as it lands, into the 16-bit slot;
  // the widened atoms are published in kMlaFp8Publishes groups (the last with the RoPE atom,
  // landed with the last box).
  // `probe`: phase clocks of this tile (phase_clock.cuh).
  __device__ void widen(const RingPos& pos, bool probe = false) const {
    const uint32_t slot = sm.slot(pos.stage);
    auto landed = [&](int box) {
      if (box % kBoxesPerLanding == 0) mbar_wait(landed_bar(pos.stage, box), pos.phase);
    };
    auto done = [&](int box) {
      if (box % kBoxesPerPublish == kBoxesPerPublish - 1)
        publish(sm.full_bar(pos.stage, 2 * (box + 1 - kBoxesPerPublish)));
    };
    landed(0);
    if (probe && t == 0) FLASHMFA_PHASE(2);
    uint32_t scales[4];
    ld_shared(slot + kMlaFp8ScaleOffset + uint32_t(row()) * 4 * uint32_t(sizeof(float)), scales);
    widen_box(slot, 0, __uint_as_float(scales[0]));
    done(0);
    sync();  // every thread has read the scales (atom 3)
    landed(1);
    widen_box(slot, 1, __uint_as_float(scales[1]));
    done(1);
    sync();  // boxes 0 and 1 (atoms 4, 5) are read
    landed(2);
    if (probe && t == 0) FLASHMFA_PHASE(3);
    widen_box(slot, 2, __uint_as_float(scales[2]));
    done(2);
    landed(3);
    uint32_t last[kChunks][4];
    load_box(boxes_in(slot), 3, last);
    sync();  // box 2 (atom 6) and box 3 (atom 7) are read
    store_box(slot, 3, last, TileRowScale<T>(__uint_as_float(scales[3])));
    done(3);
    if (probe && t == 0) FLASHMFA_PHASE(4);
  }

  // Thread 0's walk over the tiles to load, in the widening's order, with the next tile's
  // block-table entry read one issue ahead (its latency off the widening's path).
  struct Loads {
    PartWalker walker;
    WorkItem it{};
    int blk = 0;
    bool more = false;
    RingPos pos{0, kMlaStages};
    TileSource src{};

    __device__ Loads(const MlaFp8Producer& pr, int part) : walker(pr.sched, part) {
      more = walker.valid();
      if (more) {
        it = walker.item();
        blk = it.block_begin;
      }
      skip_empty();
      if (more) src = tile_source(pr.p, it, blk);
    }
    __device__ void skip_empty() {
      while (more && blk >= it.block_end) {
        walker.next();
        more = walker.valid();
        if (more) {
          it = walker.item();
          blk = it.block_begin;
        }
      }
    }
    // The tile after this one, and its block-table entry.
    __device__ void advance(const MlaFp8Producer& pr) {
      ++blk;
      skip_empty();
      if (more) src = tile_source(pr.p, it, blk);
    }
    // In place: issues the next tile once its slot is free.
    __device__ void next(const MlaFp8Producer& pr, uint64_t policy) {
      pr.flag_bad_page(src);
      pr.issue(pos, src, policy);
      pos.advance();
      advance(pr);
    }
  };
  __device__ void flag_bad_page(const TileSource& src) const {
    if (!src.page_ok) atomicOr(&sched.header->error_flags, uint32_t(kFlagPageOutOfRange));
  }

  // Raw buffer, thread 0: landing `landing` of the tile `src` (its latent boxes; the scales
  // with the first) into the raw buffer, once the warps have read that landing's boxes of the
  // tile before.
  __device__ void issue_raw(int landing, const TileSource& src, uint64_t policy) const {
    const uint32_t full = landed_bar(0, landing * kBoxesPerLanding);
    if (!src.page_ok) {  // nothing loaded: the consumers clear and mask every row
      mbar_arrive(full);
      return;
    }
    mbar_arrive_expect_tx(full, kBoxesPerLanding * kMlaFp8BoxBytes +
                                    (landing == 0 ? kMlaFp8ScaleBytes : 0));
#pragma unroll
    for (int i = 0; i < kBoxesPerLanding; ++i) {
      const int b = landing * kBoxesPerLanding + i;
      tma_load_4d(sm.raw + uint32_t(b) * kMlaFp8BoxBytes, latent_map, full,
                  b * int(kMlaFp8BoxBytes / kBlockN), kv_head, src.in_page, src.page, policy);
    }
    if (landing == 0)
      tma_load_4d(sm.raw + kMlaFp8RawScaleOffset, scale_map, full, 0, kv_head, src.in_page,
                  src.page, policy);
  }
  // Raw buffer, thread 0, once the slot at `pos` is free: the tile's RoPE values (already
  // 16-bit and swizzled) into its last atom, on the full barrier that publishes that atom.
  __device__ void issue_rope(const RingPos& pos, const TileSource& src, uint64_t policy) const {
    const uint32_t full = sm.full_bar(pos.stage, Tr::full_index(kMlaAtoms - 1));
    if (!src.page_ok) {
      mbar_arrive(full);
      return;
    }
    mbar_arrive_expect_tx(full, kMlaFp8RopeBytes);
    tma_load_4d(sm.slot(pos.stage) + (kMlaAtoms - 1) * kAtomBytes, rope_map, full, 0, kv_head,
                src.in_page, src.page, policy);
  }

  // Raw buffer, all 128 threads: tile n (parity n % 2 of the raw-full barriers) from the raw
  // buffer into the slot at `pos`, whose RoPE values thread 0 requests once the slot is free
  // (`rope`: the tile's source); each landing's boxes, once read, take the next tile's (thread
  // 0, from `next` while next.more).
  __device__ void widen_raw(const RingPos& pos, uint32_t parity, const TileSource& rope,
                            const Loads& next, uint64_t policy, bool probe) const {
    const uint32_t slot = sm.slot(pos.stage);
    mbar_wait(sm.empty_bar(pos.stage), pos.phase ^ 1);
    if (t == 0) issue_rope(pos, rope, policy);
    if (probe && t == 0) FLASHMFA_PHASE(2);
    uint32_t scales[4];
#pragma unroll
    for (int landing = 0; landing < kMlaFp8Landings; ++landing) {
      mbar_wait(landed_bar(0, landing * kBoxesPerLanding), parity);
      if (probe && t == 0) FLASHMFA_PHASE(landing == 0 ? 3 : 5);
      if (landing == 0)
        ld_shared(sm.raw + kMlaFp8RawScaleOffset + uint32_t(row()) * 4 * uint32_t(sizeof(float)),
                  scales);
#pragma unroll
      for (int i = 0; i < kBoxesPerLanding; ++i) {
        const int b = landing * kBoxesPerLanding + i;
        widen_box(slot, b, __uint_as_float(scales[b]));
        if (b % kBoxesPerPublish == kBoxesPerPublish - 1)
          publish(sm.full_bar(pos.stage, 2 * (b + 1 - kBoxesPerPublish)));
      }
      sync();  // this landing's boxes (and the scales) are read
      if (t == 0 && next.more) {
        if (landing == 0) flag_bad_page(next.src);
        issue_raw(landing, next.src, policy);
      }
    }
    if (probe && t == 0) FLASHMFA_PHASE(4);
  }

  // Raw buffer: every tile of the part in order. Thread 0 issues tile 0's landings, then each
  // tile's widening issues the next one's, landing by landing.
  __device__ void run_raw(int part) const {
    const uint64_t policy = l2_evict_first_policy();
    Loads loads(*this, part);  // thread 0 walks it; the others only read tile 0's source
    if (t == 0 && loads.more) {
      flag_bad_page(loads.src);
#pragma unroll
      for (int landing = 0; landing < kMlaFp8Landings; ++landing)
        issue_raw(landing, loads.src, policy);
    }
    TileSource rope = loads.src;  // the source of the tile being widened (thread 0)
    if (t == 0) loads.advance(*this);
    RingPos pos(0, kMlaStages);
    int n = 0;  // tiles so far
    for (PartWalker w(sched, part); w.valid(); w.next()) {
      const WorkItem it = w.item();
#pragma unroll 1
      for (int blk = it.block_begin; blk < it.block_end; ++blk, ++n) {
        if (n == kPhaseTile && t == 0) FLASHMFA_PHASE(1);
        if (n == kPhaseTile + 1 && t == 0) FLASHMFA_PHASE(12);
        widen_raw(pos, uint32_t(n) & 1u, rope, loads, policy, n == kPhaseTile);
        if (t == 0) {
          rope = loads.src;
          loads.advance(*this);
        }
        pos.advance();
      }
    }
  }

  // In place: every tile of the part in order; thread 0 issues it once its slot is free, then
  // all widen it. (Issuing the next tile's load between the boxes of this one, as soon as its
  // slot was free, measured 6-7% slower: docs/perf-notes.md K.)
  __device__ void run(int part) const {
    if constexpr (Tr::kRawBuffer) {
      run_raw(part);
      return;
    }
    const uint64_t policy = l2_evict_first_policy();
    Loads loads(*this, part);
    RingPos pos(0, kMlaStages);
    int n = 0;  // tiles so far (phase clocks only)
    for (PartWalker w(sched, part); w.valid(); w.next()) {
      const WorkItem it = w.item();
#pragma unroll 1
      for (int blk = it.block_begin; blk < it.block_end; ++blk, ++n) {
        if (t == 0) {
          loads.next(*this, policy);  // issue, then the next block-table read
          if (n == kPhaseTile) FLASHMFA_PHASE(1);
          if (n == kPhaseTile + 1) FLASHMFA_PHASE(5);
          if (n == kPhaseTile + 2) FLASHMFA_PHASE(12);
        }
        widen(pos, n == kPhaseTile);
        if (n == kPhaseTile + 1 && t == 0) FLASHMFA_PHASE(13);
        pos.advance();
      }
    }
  }
};

}  // namespace flashmfa::cuda::sm90
