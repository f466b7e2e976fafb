// flashmfa CUDA, Hopper path: compile-time traits of one decode kernel instance -- thread
// roles, register split, named barriers and the device view of the shared-memory plan.
#pragma once

#include <cstdint>

#include "core/params.hpp"
#include "cuda/common/schedule.cuh"
#include "cuda/sm90/decode/config.hpp"
#include "cuda/sm90/decode/ptx.cuh"
#include "cuda/sm90/decode/softmax.cuh"
#include "cuda/sm90/decode/wgmma.cuh"

namespace flashmfa::cuda::sm90 {

// Named barriers (bar.sync ids); 0 belongs to __syncthreads, used only before the role split.
// The same id serves every purpose of its group of threads (a barrier only counts arrivals).
enum class NamedBarrier : int {
  kConsumers = 1,  // every consumer thread: a shared slot's tail is cleared, the shared Q
                   // tile is stored, KV-split merge steps
  kWarpgroup = 2,  // + warpgroup index (up to 3), 128 threads: its Q tile is stored / its
                   // slot's tail is cleared (a slot read by that warpgroup alone)
  kPReady = 5,     // + the warpgroup that wrote it, 256 threads (MLA): a P tile and its row
                   // state are in shared memory (bar.arrive by the writer, bar.sync by the reader)
  kTurn = 7,       // + warpgroup, 256 threads (row split): that warpgroup may issue its next
                   // GEMM (bar.arrive by the other after issuing its own, bar.sync by it)
  kWiden = 9,      // the producer warpgroup, 128 threads (MLA, FP8): a step of widening a raw
                   // tile is done (mla/fp8.cuh)
  kMeasureCopy = 10,  // producer warps 1-3, 96 threads (measuring builds, FP8 decode: a raw
                      // tile's copy is written; kernel.cuh, copy_raw_tiles)
};

// FP8: the cache is fp8_row (config.hpp): a raw ring, and each consumer warpgroup converts its
// raw tiles into its own two 16-bit tiles (kStages = 2 WARPGROUPS "slots": 2w and 2w + 1 are
// warpgroup w's). Three consumer warpgroups: FP8 caches only (a KV split three ways).
template <int D, int WARPGROUPS, bool KV_SPLIT = false, bool FP8 = false>
struct Traits {
  static_assert(D % kAtomCols == 0, "rows are whole 128-byte swizzle atoms");
  static_assert(WARPGROUPS >= 1 && WARPGROUPS <= 3, "one to three consumer warpgroups");
  static_assert(kBlockN % kWgmmaK == 0 && kBlockN == kWgmmaN, "one S tile per wgmma N");
  static_assert(kRowsPerWarpgroup == kWgmmaM, "a consumer warpgroup owns one wgmma M tile");
  static_assert(!KV_SPLIT || WARPGROUPS >= 2, "a KV split takes two or three warpgroups");
  static_assert(WARPGROUPS < 3 || (KV_SPLIT && FP8), "three warpgroups: the FP8 KV split only");

  static constexpr bool kKvSplit = KV_SPLIT;
  static constexpr int kWarpgroups = WARPGROUPS;
  // The parts the rings are split into: one per warpgroup under a KV split (RingPos).
  static constexpr int kRingParts = KV_SPLIT ? WARPGROUPS : 1;
  static constexpr bool kFullPerAtom = false;  // one full barrier per slot
  static constexpr bool kHalfRelease = false;  // one empty barrier per slot
  static constexpr bool kWideBoxes = false;    // 4-D maps, one box per 64-column atom
  static constexpr bool kSmallPages = true;    // pages of >= kMinPageSize (tile_source_paged)
  static constexpr bool kFp8 = FP8;
  static constexpr int kStages = stages_for(D, WARPGROUPS, KV_SPLIT, FP8);
  static_assert(kStages >= (FP8 ? fp8_stages(WARPGROUPS) : kMinStages), "the ring does not fit");
  static constexpr int kRawStages = FP8 ? raw_stages_for(D, WARPGROUPS, KV_SPLIT) : 0;
  static_assert(!FP8 || kRawStages >= min_raw_stages(WARPGROUPS), "the raw ring does not fit");
  static_assert(kRawStages % kRingParts == 0, "a raw ring of whole parts");
  static_assert(!FP8 || KV_SPLIT, "FP8 caches are compiled for the KV-split form only");
  // The ring the consumers wait on: the 16-bit one, or (FP8) the raw one.
  static constexpr int kConsumerRingStages = FP8 ? kRawStages : kStages;
  // Arrivals that fill a 16-bit slot: the producer's, with the TMA bytes (FP8: unused). A raw
  // slot: the TMA lane's plus one cp.async arrival per lane of the producer warp that streams
  // it; it is freed by one arrival per warp of the consumer warpgroup that converted it.
  static constexpr int kFullArrivals = 1;
  static constexpr int kRawFullArrivals = 1 + kWarpSize;
  static constexpr int kRawEmptyArrivals = kWarpsPerWarpgroup;
  static constexpr uint32_t kRawTileBytes = uint32_t(kBlockN) * D;  // e4m3 rows of a raw slot
  // Query rows per CTA: 64 per warpgroup, or 64 shared by all under a KV split.
  static constexpr int kBlockM = KV_SPLIT ? kRowsPerWarpgroup : WARPGROUPS * kRowsPerWarpgroup;

  static constexpr int kAtoms = D / kAtomCols;          // 64-column atoms per row
  static constexpr int kQkSteps = D / kWgmmaK;          // k-steps of S = Q K^T
  static constexpr int kStepsPerAtom = kAtomCols / kWgmmaK;
  static constexpr int kPvSteps = kBlockN / kWgmmaK;    // k-steps of O += P V
  static constexpr int kConsumerThreads = WARPGROUPS * kWarpgroupThreads;
  static constexpr int kConsumerWarps = WARPGROUPS * kWarpsPerWarpgroup;
  static constexpr int kThreads = kConsumerThreads + kWarpgroupThreads;  // + the producer's
  // Warps that read each slot (the arrivals its empty barrier waits for).
  static constexpr int kReadersPerSlot = KV_SPLIT ? kWarpsPerWarpgroup : kConsumerWarps;
  static constexpr SmemPlan kPlan = decode_plan(D, WARPGROUPS, kStages, KV_SPLIT, kRawStages);
  static constexpr uint32_t kSlotBytes = uint32_t(kBlockN) * D * kElemBytes;
  static constexpr uint32_t kQBytes = uint32_t(kRowsPerWarpgroup) * D * kElemBytes;
  // The consumer threads that stage a shared Q tile: all of them, or (three warpgroups, whose
  // 384 threads do not divide the tile's 16-byte units) the first two warpgroups.
  static constexpr int kQueryThreads = WARPGROUPS == 3 ? 2 * kWarpgroupThreads : kConsumerThreads;

  // Register split (setmaxnreg) when a producer and two or three consumer warpgroups share the
  // registers: each consumer holds a 64 x D f32 output tile (128 registers at D = 256) plus S,
  // P and P's rounding rest; the producer walks the schedule and the pages. With one consumer
  // warpgroup every thread may already use 255, so nothing is redistributed.
  static constexpr bool kSplitRegisters = WARPGROUPS >= 2;
  static constexpr int kProducerRegs = WARPGROUPS == 3 ? kDecode3ProducerRegs : kDecodeProducerRegs;
  static constexpr int kConsumerRegs = WARPGROUPS == 3 ? kDecode3ConsumerRegs : kDecodeConsumerRegs;
};

// The device view of SmemPlan: .shared addresses of its pieces.
struct SmemView {
  uint32_t q;      // (QTILES, 64, D)
  uint32_t kv;     // (STAGES, BLOCK_N, D)
  uint32_t xchg;   // (64 x D/2) f32, KV split only
  uint32_t stats;  // (W, 64, 2) f32, KV split only; the warpgroups' parts stats_stride apart
  uint32_t raw;    // (RAW_STAGES, raw slot), FP8 only
  uint32_t full;   // (STAGES, full_per_stage) mbarriers
  uint32_t empty;  // (STAGES, empty_per_stage) mbarriers
  uint32_t raw_full, raw_empty;  // (RAW_STAGES) mbarriers, FP8 only
  uint32_t q_full, q_empty;      // mbarriers of a Q tile loaded by TMA (MLA, 16-bit caches)
  uint32_t raw_rows;             // (RAW_STAGES) i32, FP8 decode: each raw slot's loaded rows
  uint32_t stamps;               // phase-clock builds: the load stamps (phase_stamps)
  uint32_t slot_bytes;
  uint32_t q_bytes;
  uint32_t raw_bytes;
  uint32_t full_per_stage;
  uint32_t empty_per_stage;
  uint32_t stats_stride;
  uint32_t xchg_stride;

  __device__ SmemView(uint32_t base, SmemPlan plan)
      : q(base + uint32_t(plan.q)), kv(base + uint32_t(plan.kv)),
        xchg(base + uint32_t(plan.xchg)), stats(base + uint32_t(plan.stats)),
        raw(base + uint32_t(plan.raw)), full(base + uint32_t(plan.full)),
        empty(base + uint32_t(plan.empty)), raw_full(base + uint32_t(plan.raw_full)),
        raw_empty(base + uint32_t(plan.raw_empty)), q_full(base + uint32_t(plan.q_full)),
        q_empty(base + uint32_t(plan.q_empty)), raw_rows(base + uint32_t(plan.raw_rows)),
        stamps(base + uint32_t(plan.total)),
        slot_bytes(uint32_t(plan.slot_bytes)), q_bytes(uint32_t(plan.q_bytes)),
        raw_bytes(uint32_t(plan.raw_bytes)), full_per_stage(uint32_t(plan.full_per_stage)),
        empty_per_stage(uint32_t(plan.empty_per_stage)),
        stats_stride(uint32_t(plan.stats_stride)), xchg_stride(uint32_t(plan.xchg_stride)) {}

  __device__ uint32_t slot(int stage) const { return kv + uint32_t(stage) * slot_bytes; }
  // Phase-clock builds: the load stamps, past the last barrier (phase_clock.cuh, kPhaseStampBytes).
  // (Past the plan's total: the FP8 MLA plans place their raw-full barriers after q_empty.)
  __device__ uint32_t phase_stamps() const { return stamps; }
  __device__ uint32_t query(int warpgroup) const { return q + uint32_t(warpgroup) * q_bytes; }
  // KV split merge: exchange cell `cell` (one 64 x 64 f32 atom of O in fragment order): the Q
  // tile holds the first q_bytes / kXchgCellBytes, each xchg tile (xchg_stride apart) as many.
  static constexpr uint32_t kXchgCellBytes = uint32_t(kRowsPerWarpgroup) * kAtomCols * 4;
  __device__ uint32_t xchg_cell(int cell) const {
    const int per_tile = int(q_bytes / kXchgCellBytes), tile = cell / per_tile;
    const uint32_t at = uint32_t(cell % per_tile) * kXchgCellBytes;
    return tile == 0 ? q + at : xchg + uint32_t(tile - 1) * xchg_stride + at;
  }
  // The slot's full barrier, or that of its 64-column atom `atom` (full_per_stage > 1).
  __device__ uint32_t full_bar(int stage, int atom = 0) const {
    return full + (uint32_t(stage) * full_per_stage + atom) * sizeof(uint64_t);
  }
  // The slot's empty barrier, or that of its half `half` (empty_per_stage 2: MLA).
  __device__ uint32_t empty_bar(int stage, int half = 0) const {
    return empty + (uint32_t(stage) * empty_per_stage + half) * sizeof(uint64_t);
  }
  // FP8: raw slot `stage` (its e4m3 rows; the scales follow them) and its barriers.
  __device__ uint32_t raw_slot(int stage) const { return raw + uint32_t(stage) * raw_bytes; }
  __device__ uint32_t raw_full_bar(int stage) const {
    return raw_full + stage * sizeof(uint64_t);
  }
  __device__ uint32_t raw_empty_bar(int stage) const {
    return raw_empty + stage * sizeof(uint64_t);
  }
  // FP8 decode: where the producer puts the rows it loaded into raw slot `stage` (TileSource's
  // valid), written before its arrival on the slot's full barrier and read after the wait.
  __device__ uint32_t raw_rows_at(int stage) const {
    return raw_rows + stage * uint32_t(sizeof(int32_t));
  }
};

// Byte offset of 16-byte unit `unit` (of D / 8) in row `row` of a 128B-swizzled tile whose
// atom columns are atom_bytes apart (kAtomBytes: 64 rows): the pattern TMA writes and wgmma
// reads.
__device__ __forceinline__ uint32_t swizzled_offset(int row, int unit,
                                                   uint32_t atom_bytes = kAtomBytes) {
  constexpr int kUnitsPerAtomRow = kSwizzleRowBytes / kDescUnitBytes;  // 8
  const int atom = unit / kUnitsPerAtomRow, u = unit % kUnitsPerAtomRow;
  return uint32_t(atom) * atom_bytes + uint32_t(row) * kSwizzleRowBytes +
         uint32_t((u ^ (row % kSwizzleGroupRows)) * kDescUnitBytes);
}

// Where tile `blk` of work item `it` comes from, and how many of its 64 rows hold tokens of the
// sequence: 0 when a page index it needs lies outside [0, num_pages) (the tile is never
// loaded). On 16-bit caches the producer and the consumers each derive it from the block
// table (read-only during the kernel), so nothing about a slot passes through shared memory
// beside the TMA bytes themselves; on FP8 caches the producer puts `valid` beside each raw
// slot (SmemView::raw_rows_at), which keeps the block-table read off the consumers' chain.
struct TileSource {
  int page;      // page index from the block table (of the tile's first token)
  int in_page;   // first token of the tile inside its page
  int valid;     // rows [0, valid) hold loaded tokens
  bool page_ok;
  // Pages smaller than a tile (tile_source_paged): the tile's rows lie in `pages` pages (at
  // least one); page j holds rows [j, j + 1) * page_size, its index page_at(j). (The maps'
  // boxes are then one page tall, so the producer branches on the page size, not on `pages`.)
  // The entries are read once, together, into registers: one round trip per tile.
  int pages = 1;
  int later[kMaxPagesPerTile - 1] = {};
  __device__ int page_at(int j) const {
    int v = page;
#pragma unroll
    for (int i = 1; i < kMaxPagesPerTile; ++i) v = j == i ? later[i - 1] : v;
    return v;
  }
};
// Pages of at least a tile (the MLA kernels): one block-table entry per tile.
__device__ __forceinline__ TileSource tile_source(const detail::DecodeParams& p,
                                                  const WorkItem& it, int blk) {
  const int token = blk * kBlockN;
  TileSource t;
  t.page = p.block_table[int64_t(it.seq) * p.bt_sb + (token >> p.log2_page_size)];
  t.page_ok = t.page >= 0 && t.page < p.num_pages;
  t.valid = t.page_ok ? min(kBlockN, it.seqlen - token) : 0;
  t.in_page = token & (p.page_size - 1);
  return t;
}
// Any page size the decode kernel takes (>= kMinPageSize): a tile of smaller pages needs the
// entries of the pages its tokens occupy -- only those, so that no entry past the sequence's
// last page (possibly past the block table's row) is read -- and every one of them in range.
__device__ __forceinline__ TileSource tile_source_paged(const detail::DecodeParams& p,
                                                        const WorkItem& it, int blk) {
  TileSource t = tile_source(p, it, blk);
  if (p.page_size >= kBlockN) return t;
  const int token = blk * kBlockN;
  const int rows = min(kBlockN, it.seqlen - token);
  t.pages = (rows + p.page_size - 1) >> p.log2_page_size;
  const int32_t* entries =
      p.block_table + int64_t(it.seq) * p.bt_sb + (token >> p.log2_page_size);
#pragma unroll
  for (int j = 1; j < kMaxPagesPerTile; ++j) t.later[j - 1] = j < t.pages ? entries[j] : 0;
#pragma unroll
  for (int j = 1; j < kMaxPagesPerTile; ++j) {
    const int page = t.later[j - 1];
    t.page_ok = t.page_ok && (j >= t.pages || (page >= 0 && page < p.num_pages));
  }
  t.valid = t.page_ok ? rows : 0;
  return t;
}
// The source of a tile for a kernel whose traits say whether it takes pages smaller than a tile.
template <class Tr>
__device__ __forceinline__ TileSource tile_source_for(const detail::DecodeParams& p,
                                                      const WorkItem& it, int blk) {
  if constexpr (Tr::kSmallPages) return tile_source_paged(p, it, blk);
  else return tile_source(p, it, blk);
}

// Position of a slot in a ring of slots [begin, end) and the parity of its current fill.
// Producer and consumers advance identical copies through the same sequence of tiles.
//
// Parity waits are only exact while a waiter is never two fills ahead of the slot: waiting for
// fill k on a barrier that has completed only k - 2 fills sees the same parity and passes. A
// consumer that reads every slot of its ring cannot get there (fill k - 1 needed its own
// release), but warpgroups taking turns over the tiles of one shared ring can, since each
// skips the others' slots. So under a KV split each warpgroup has a private sub-ring.
struct RingPos {
  int stage = 0, begin = 0, end = 1;
  uint32_t phase = 0;
  RingPos() = default;
  __device__ RingPos(int first, int last) : stage(first), begin(first), end(last) {}
  __device__ void advance() {
    if (++stage == end) {
      stage = begin;
      phase ^= 1;
    }
  }
};

// The slots of part `part` of a ring of STAGES split into PARTS (a KV split: one per consumer
// warpgroup; the first parts take one more slot when PARTS does not divide STAGES).
template <int STAGES, int PARTS>
__device__ __forceinline__ RingPos ring_of(int part) {
  if constexpr (PARTS == 1) return RingPos(0, STAGES);
  return RingPos((part * STAGES + PARTS - 1) / PARTS, ((part + 1) * STAGES + PARTS - 1) / PARTS);
}

// Of two consumer warpgroups taking turns over a work item's tiles (MLA's S = Q K^T), the one
// that takes tile `blk`.
__device__ __forceinline__ int alternate_owner(int blk, int block_begin) {
  return (blk - block_begin) & 1;
}
// Which part of the ring carries tile `blk` of a work item (a KV split into PARTS warpgroups:
// every PARTS-th tile each).
template <int PARTS>
__device__ __forceinline__ int tile_owner(int blk, int block_begin) {
  return PARTS == 1 ? 0 : int(uint32_t(blk - block_begin) % PARTS);
}

// What every consumer warpgroup of a CTA knows about itself, and the synchronization it shares
// with the other consumers (CONSUMER_THREADS: all consumer threads of the CTA).
template <int CONSUMER_THREADS>
struct ConsumerBase {
  const detail::DecodeParams& p;
  const Schedule& sched;
  const SmemView& sm;
  int kv_head;
  int warpgroup;  // 0 .. CONSUMER_THREADS / 128 - 1
  int tid;        // thread index among all consumer threads
  int first_row;  // this warpgroup's first query row of the KV head

  __device__ int wg_tid() const { return tid % kWarpgroupThreads; }
  __device__ int warp() const { return wg_tid() / kWarpSize; }
  __device__ int lane() const { return tid % kWarpSize; }

  __device__ void sync_own() const {
    named_barrier_sync(int(NamedBarrier::kWarpgroup) + warpgroup, kWarpgroupThreads);
  }
  __device__ void sync_all() const {
    named_barrier_sync(int(NamedBarrier::kConsumers), CONSUMER_THREADS);
  }

  // One arrival per warp on the slot's empty barrier, after the warp's reads of it completed.
  __device__ void release(const RingPos& pos) const {
    __syncwarp();
    if (lane() == 0) mbar_arrive(sm.empty_bar(pos.stage));
  }

  // Last visible token + 1 of the thread's two rows (causal: query token tq sees cached tokens
  // j <= seqlen - s_q + tq). Rows past s_q * q_per_kv see everything; they are not written.
  __device__ void visible_rows(const WorkItem& it, int (&visible)[kRowsPerThread]) const {
#pragma unroll
    for (int h = 0; h < kRowsPerThread; ++h) {
      const int row = first_row + 16 * warp() + lane() / kQuadLanes + 8 * h;
      visible[h] = p.causal ? max(0, it.seqlen - p.s_q + row / p.q_per_kv + 1) : it.seqlen;
    }
  }
};

}  // namespace flashmfa::cuda::sm90
