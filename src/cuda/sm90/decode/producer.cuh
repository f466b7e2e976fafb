// flashmfa CUDA, Hopper path: the producer -- one thread that walks its part's work items and
// streams every KV tile into the shared-memory ring with TMA bulk-tensor copies.
//
// The tensor maps view a cache as (d, h_kv, page_size, num_pages) with the cache's own
// strides, so one 64-token tile of KV head h is the box (0..D, h, t0..t0+63, page) of
// kAtoms copies of 64 columns; MLA's maps (kWideBoxes) add the atom as a fifth dimension, so that
// each half of a tile is one copy. Page indices come from the block table: one per tile where a
// page holds >= 64 tokens; with smaller pages (the decode kernel: 16 or 32) the box is one page
// tall and a tile is one copy per page and atom, landing at its rows of the slot (each page's
// rows are whole 1 KB swizzle groups, so the pattern is the one a 64-row box writes). A tile
// that needs a page outside [0, num_pages) is never loaded: the slot is released with zero
// bytes, and the consumers (which read the same block-table entries, tile_source_paged, or on
// FP8 caches the rows the producer puts beside the raw slot) clear and mask all of its rows. MLA (16-bit caches) also takes each item's Q tile from the
// producer (q_map, load_query_tile).
//
// FP8 caches (Tr::kFp8): warp 0 streams raw tiles instead (pages smaller than a tile: warp w
// the tiles of consumer warpgroup w, kFp8WarpPerConsumer) into the raw ring (split between
// the consumer warpgroups as the 16-bit ring is) -- lane 0 the e4m3 rows by TMA
// (one box of 64 rows x d bytes, or one per page), every lane two of the rows' scales by
// cp.async, each lane's copies counted on the raw slot's full barrier -- and the owning
// consumer warpgroup converts it (dequant.cuh).
#pragma once

#include <cuda.h>

#include "core/params.hpp"
#include "cuda/common/phase_clock.cuh"
#include "cuda/common/schedule.cuh"
#include "cuda/sm90/decode/ptx.cuh"
#include "cuda/sm90/decode/traits.cuh"
#include "flashmfa/flashmfa.hpp"

namespace flashmfa::cuda::sm90 {

// Tr: the kernel's traits (Traits in traits.cuh, MlaTraits in mla/): kStages, kKvSplit, kAtoms
// (boxes of 64 columns per tile row), kSlotBytes, kFullPerAtom (a full barrier per box; with
// kWideBoxes, MLA, one box and barrier per half of the tile: mla_full_index), and
// kHalfRelease (MLA, where Tr::half_release(p): boxes [0, kMlaOutAtoms) and the rest of a slot
// are freed separately; the half of the warpgroup that owns the tile -- its S = Q K^T starts
// there -- is loaded first; otherwise the whole slot waits on barrier 0).
template <class Tr>
struct Producer {
  static constexpr bool KV_SPLIT = Tr::kKvSplit;
  // The parts of the ring: one per consumer warpgroup under a KV split (ring_of, tile_owner).
  static constexpr int kParts = KV_SPLIT ? Tr::kWarpgroups : 1;

  const detail::DecodeParams& p;
  const Schedule& sched;
  const CUtensorMap* k_map;
  const CUtensorMap* v_map;
  const SmemView& sm;
  int kv_head;
  int lane = 0;  // FP8: warp 0 (small pages: one per consumer) runs the producer; 16-bit: thread 0
  // Tr::kWideBoxes (MLA): k_map is the 5-D view whose box is a tile's first half, this one the
  // view whose box is its second half.
  const CUtensorMap* k_hi_map = nullptr;
  // MLA, 16-bit caches: q as a 4-D map (d, h_q, s_q, b) whose box is one 64-column atom of the
  // CTA's 64 query rows (launch.cu, make_query_map), or nullptr: the consumers load Q
  // themselves. row0: the CTA's first query row of the KV head.
  const CUtensorMap* q_map = nullptr;
  int row0 = 0;
  mutable ReleaseClock release_clock{};  // phase-clock builds (MLA half release)

  // Q by TMA: the item's Q tile, once the consumers have released the previous item's (they do
  // so after their last S = Q K^T of it), before the item's first KV tile, so that both land
  // together. `items`: the items loaded before this one (the barriers' phase).
  __device__ void load_query_tile(const WorkItem& it, int items, uint64_t policy) const {
    mbar_wait(sm.q_empty, uint32_t(items & 1) ^ 1);
    mbar_arrive_expect_tx(sm.q_full, uint32_t(kRowsPerWarpgroup) * Tr::kAtoms * kAtomCols *
                                         kElemBytes);
    const int t = row0 / p.q_per_kv, head = kv_head * p.q_per_kv + row0 % p.q_per_kv;
#pragma unroll
    for (int a = 0; a < Tr::kAtoms; ++a)
      tma_load_4d(sm.query(0) + a * kAtomBytes, q_map, sm.q_full, a * kAtomCols, head, t, it.seq,
                  policy);
  }

  // Boxes [FIRST, LAST) of a tile into the slot at `pos`, each on its own full barrier
  // (unrolled: the box offsets are immediates of the one producer thread's instruction stream).
  template <int FIRST, int LAST>
  __device__ void load_atoms(const RingPos& pos, const CUtensorMap* map, const TileSource& src,
                             uint64_t policy) const {
    const uint32_t dst = sm.slot(pos.stage);
#pragma unroll
    for (int a = FIRST; a < LAST; ++a) {
      const uint32_t full = sm.full_bar(pos.stage, a);
      if (src.page_ok) {
        mbar_arrive_expect_tx(full, kAtomBytes);
        tma_load_4d(dst + a * kAtomBytes, map, full, a * kAtomCols, kv_head, src.in_page,
                    src.page, policy);
      } else {
        mbar_arrive(full);
      }
    }
  }

  // Wide boxes: atoms [FIRST, LAST) of a tile as one copy (`map`'s box is exactly that wide),
  // on the full barrier of atom FIRST.
  template <int FIRST, int LAST>
  __device__ void load_box(const RingPos& pos, const CUtensorMap* map, const TileSource& src,
                           uint64_t policy) const {
    const uint32_t full = sm.full_bar(pos.stage, FIRST);
    stamp_issue(sm.phase_stamps(), land_stamp(pos.stage, FIRST == 0 ? 0 : 1));  // phase clocks
#ifdef FLASHMFA_MEASURE_SKIP_LOADS  // measuring builds: 1 odd row tiles, 2 all compute stale
    // tiles; 3 every copy reads the part's first tile again (L2 hits; results wrong)
    if (FLASHMFA_MEASURE_SKIP_LOADS <= 2 && (FLASHMFA_MEASURE_SKIP_LOADS == 2 || blockIdx.x % 2 == 1)) {
      mbar_arrive(full);
      return;
    }
    TileSource load_src = src;
    if (FLASHMFA_MEASURE_SKIP_LOADS == 3) {  // one tile per part, read by its row tiles
      load_src.page = int(blockIdx.y) % p.num_pages;
      load_src.in_page = 0;
    }
#else
    const TileSource& load_src = src;
#endif
    if (src.page_ok) {
      mbar_arrive_expect_tx(full, (LAST - FIRST) * kAtomBytes);
      tma_load_5d(sm.slot(pos.stage) + FIRST * kAtomBytes, map, full, 0, kv_head,
                  load_src.in_page, FIRST, load_src.page, policy);
    } else {
      mbar_arrive(full);
    }
  }

  // Atoms [FIRST, LAST) of a tile: one wide box (the half's own map), or one copy per atom.
  template <int FIRST, int LAST>
  __device__ void load_part(const RingPos& pos, const CUtensorMap* map, const TileSource& src,
                            uint64_t policy) const {
    if constexpr (Tr::kWideBoxes)
      load_box<FIRST, LAST>(pos, FIRST == 0 ? map : k_hi_map, src, policy);
    else
      load_atoms<FIRST, LAST>(pos, map, src, policy);
  }

  // Half release: each half of the slot as soon as it is free, `owner`'s half first. Free
  // slots complete the phase before the one the consumers wait on: a fresh barrier counts as
  // having completed phase "1", so the first pass does not block.
  __device__ void load_halves(const RingPos& pos, const CUtensorMap* map, const TileSource& src,
                              uint64_t policy, int owner) const {
    // Phase-clock builds: from the consumers' last release of the half to the copy's issue.
    auto wait_free = [&](int half) {
      const uint32_t bar = sm.empty_bar(pos.stage, half);
      if constexpr (kPhaseLand)
        release_clock.measure(sm.phase_stamps(), release_stamp(pos.stage, half), half,
                              [&] { return mbar_wait_blocked(bar, pos.phase ^ 1); });
      else
        mbar_wait(bar, pos.phase ^ 1);
    };
    auto lo = [&] {
      wait_free(0);
      load_part<0, kMlaOutAtoms>(pos, map, src, policy);
    };
    auto hi = [&] {
      wait_free(1);
      load_part<kMlaOutAtoms, Tr::kAtoms>(pos, map, src, policy);
    };
    if (owner == 0) {
      lo();
      hi();
    } else {
      hi();
      lo();
    }
  }

  // One tile of `map` into the ring slot at `pos` (waits for the slot to be free first).
  // `owner`: the consumer warpgroup that computes the tile's S = Q K^T (kHalfRelease only).
  __device__ void load_tile(RingPos& pos, const CUtensorMap* map, const TileSource& src,
                            uint64_t policy, int owner = 0) const {
    if constexpr (Tr::kHalfRelease) {
      if (Tr::half_release(p)) {
        load_halves(pos, map, src, policy, owner);
        pos.advance();
        return;
      }
    }
    mbar_wait(sm.empty_bar(pos.stage), pos.phase ^ 1);
    const uint32_t dst = sm.slot(pos.stage);
    if constexpr (Tr::kFullPerAtom) {  // one barrier per 64-column atom, or per wide box
      load_part<0, kMlaOutAtoms>(pos, map, src, policy);
      load_part<kMlaOutAtoms, Tr::kAtoms>(pos, map, src, policy);
    } else {
      const uint32_t full = sm.full_bar(pos.stage);
      if (!src.page_ok) {
        mbar_arrive(full);
      } else if (p.page_size >= kBlockN) {  // the tile inside one page: a 64-row box per atom
        mbar_arrive_expect_tx(full, Tr::kSlotBytes);
#pragma unroll
        for (int a = 0; a < Tr::kAtoms; ++a)
          tma_load_4d(dst + a * kAtomBytes, map, full, a * kAtomCols, kv_head, src.in_page,
                      src.page, policy);
      } else {  // pages smaller than the tile: a box one page tall per page and atom
        const uint32_t page_bytes = uint32_t(p.page_size) * kSwizzleRowBytes;  // of one atom
        mbar_arrive_expect_tx(full, uint32_t(src.pages) * page_bytes * Tr::kAtoms);
#pragma unroll
        for (int j = 0; j < kMaxPagesPerTile; ++j) {
          if (j >= src.pages) break;
#pragma unroll
          for (int a = 0; a < Tr::kAtoms; ++a)
            tma_load_4d(dst + a * kAtomBytes + j * page_bytes, map, full, a * kAtomCols, kv_head,
                        0, src.page_at(j), policy);
        }
      }
    }
    pos.advance();
  }

  // FP8: raw tile `src` of `map` and its scales (`scale` with its strides, in floats) into the
  // raw slot at `pos`. Called by every lane of a producer warp.
  __device__ void load_raw(RingPos& pos, const CUtensorMap* map, const float* scale,
                           int64_t s_sp, int64_t s_st, int64_t s_sh, const TileSource& src,
                           uint64_t policy) const {
    mbar_wait(sm.raw_empty_bar(pos.stage), pos.phase ^ 1);
    const uint32_t dst = sm.raw_slot(pos.stage), full = sm.raw_full_bar(pos.stage);
    // Lane 0 publishes the rows it loads beside the slot, before its arrival (a release): the
    // consumers read them after their wait instead of the block table (notes X.5).
    if (lane == 0) st_shared(sm.raw_rows_at(pos.stage), int32_t(src.valid));
#ifdef FLASHMFA_MEASURE_RAW_LOADS  // measuring builds (results wrong): bit 0 set, no scales
    // are copied; bit 1, no e4m3 rows (the consumers convert whatever the slot holds)
    constexpr bool kCopyScales = !(FLASHMFA_MEASURE_RAW_LOADS & 1);
    constexpr bool kCopyRows = !(FLASHMFA_MEASURE_RAW_LOADS & 2);
#else
    constexpr bool kCopyScales = true, kCopyRows = true;
#endif
    if (src.page_ok && p.page_size >= kBlockN) {
      if (lane == 0 && kCopyRows) {
        mbar_arrive_expect_tx(full, Tr::kRawTileBytes);
        tma_load_4d(dst, map, full, 0, kv_head, src.in_page, src.page, policy);
      } else if (lane == 0) {
        mbar_arrive(full);
      }
      const float* rows = scale + int64_t(src.page) * s_sp + int64_t(src.in_page) * s_st +
                          int64_t(kv_head) * s_sh;
      if (kCopyScales) {
#pragma unroll
        for (int r = lane; r < kBlockN; r += kWarpSize)
          cp_async_4(dst + Tr::kRawTileBytes + r * uint32_t(sizeof(float)), rows + r * s_st);
      }
      cp_async_mbar_arrive(full);
    } else if (src.page_ok) {  // pages smaller than the tile: a box and scales per page
      const uint32_t page_bytes = uint32_t(p.page_size) * (Tr::kRawTileBytes / kBlockN);
      if (lane == 0) {
        mbar_arrive_expect_tx(full, uint32_t(src.pages) * page_bytes);
#pragma unroll
        for (int j = 0; j < kMaxPagesPerTile; ++j)
          if (j < src.pages)
            tma_load_4d(dst + j * page_bytes, map, full, 0, kv_head, 0, src.page_at(j), policy);
      }
      // Rows past the loaded pages are never read (the conversion writes zeros there). One row
      // at a time: unrolled, the producer's 40 registers spill.
      const float* head = scale + int64_t(kv_head) * s_sh;
#pragma unroll 1
      for (int r = lane; r < kBlockN; r += kWarpSize) {
        const int j = r >> p.log2_page_size;
        if (j < src.pages)
          cp_async_4(dst + Tr::kRawTileBytes + r * uint32_t(sizeof(float)),
                     head + int64_t(src.page_at(j)) * s_sp +
                         int64_t(r & (p.page_size - 1)) * s_st);
      }
      cp_async_mbar_arrive(full);
    } else {  // the same 1 + 32 arrivals, no bytes
      if (lane == 0) mbar_arrive(full);
      mbar_arrive(full);
    }
    pos.advance();
  }

  // The position in each part of a ring of STAGES slots. load_into(owner, f) calls f with the
  // part of consumer warpgroup `owner`, chosen by unrolled compile-time indices rather than a
  // reference picked at run time (that would put the positions in local memory).
  template <int STAGES>
  struct Rings {
    RingPos part[kParts];
    __device__ Rings() {
#pragma unroll
      for (int w = 0; w < kParts; ++w) part[w] = ring_of<STAGES, kParts>(w);
    }
    template <class F>
    __device__ void load_into(int owner, F&& f) {
#pragma unroll
      for (int w = 0; w < kParts; ++w)
        if (owner == w) f(part[w]);
    }
  };

  // The raw ring, each tile into the part of the consumer warpgroup that owns it (ring_of):
  // tiles first, first + step, ... of every item (one producer warp: every tile; one per
  // consumer warpgroup: warp w from tile w on, every kParts-th one -- the tiles of warpgroup w).
  __device__ void run_raw(int part, uint64_t policy, int first, int step) const {
    Rings<Tr::kRawStages> raw;
    for (PartWalker w(sched, part); w.valid(); w.next()) {
      const WorkItem it = w.item();
#pragma unroll 1
      for (int blk = it.block_begin + first; blk < it.block_end; blk += step) {
        const TileSource src = tile_source_for<Tr>(p, it, blk);
        if (!src.page_ok && lane == 0)
          atomicOr(&sched.header->error_flags, uint32_t(kFlagPageOutOfRange));
        raw.load_into(tile_owner<kParts>(blk, it.block_begin), [&](RingPos& pos) {
          load_raw(pos, k_map, p.k_scale, p.ks_sp, p.ks_st, p.ks_sh, src, policy);
          if (!p.v_aliases_k)
            load_raw(pos, v_map, p.v_scale, p.vs_sp, p.vs_st, p.vs_sh, src, policy);
        });
      }
    }
  }

  // FP8: producer warp `warp` of `warps` (1, or one per consumer warpgroup's part).
  __device__ void run(int part, int warp = 0, int warps = 1) const {
    const uint64_t policy = l2_evict_first_policy();
    if constexpr (Tr::kFp8) run_raw(part, policy, warp, warps);
    else run_tiles(part, policy);
  }

  // 16-bit caches: thread 0 streams every tile (K, then V unless aliased) of the part.
  __device__ void run_tiles(int part, uint64_t policy) const {
    Rings<Tr::kStages> ring;
    int items = 0;
    for (PartWalker w(sched, part); w.valid(); w.next(), ++items) {
      const WorkItem it = w.item();
      if (q_map != nullptr) load_query_tile(it, items, policy);
#pragma unroll 1
      for (int blk = it.block_begin; blk < it.block_end; ++blk) {
        const TileSource src = tile_source_for<Tr>(p, it, blk);
        if (!src.page_ok) atomicOr(&sched.header->error_flags, uint32_t(kFlagPageOutOfRange));
        if (blk == it.block_begin) FLASHMFA_PHASE(2);
        ring.load_into(tile_owner<kParts>(blk, it.block_begin), [&](RingPos& pos) {
          load_tile(pos, k_map, src, policy, alternate_owner(blk, it.block_begin));
          if (!p.v_aliases_k) load_tile(pos, v_map, src, policy);
        });
      }
    }
    release_clock.store();
  }
};

}  // namespace flashmfa::cuda::sm90
