// flashmfa CUDA, Hopper path: the tile table and the shared-memory plan of the sm_90a decode
// kernel. Host and device code both read this file (no CUDA-only constructs), so choose()
// sizes shared memory with exactly the arithmetic the kernel lays it out with.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda/common/phase_clock.cuh"

#if defined(__CUDACC__)
#define FLASHMFA_SM90_HD __host__ __device__
#else
#define FLASHMFA_SM90_HD
#endif

// Every (D, CONSUMER_WARPGROUPS, KV_SPLIT) the kernel is compiled for; each entry is
// instantiated for bf16 and f16 (kernel_bf16.cu, kernel_f16.cu). D = d_k = d_v; "V aliases K"
// (MFA-KR) and the number of KV heads are run-time parameters of the same kernel, so (256, ..)
// covers MFA and MFA-KR 256, (128, ..) MFA-KR 128 and GQA with d 128. One consumer warpgroup
// owns 64 query rows (wgmma's M). choose() takes (D, 2, true) -- two warpgroups share 64 rows
// and take alternate tiles, more rows take more 64-row CTAs -- or, for more than 128 rows of a
// 16-bit cache, (D, 2, false): two warpgroups on 128 rows that both read every tile
// (launch.cu, default_shape). The one-warpgroup form is kept for comparison.
#define FLASHMFA_SM90_KERNELS(X) \
  X(256, 1, false) X(256, 2, false) X(256, 2, true) X(128, 1, false) X(128, 2, false) X(128, 2, true)
// The forms compiled for FP8 caches (fp8_row): the ones choose() takes. d 128 runs three
// consumer warpgroups on 64 rows, taking every third tile (fp8_warpgroups; the registers of a
// 64 x 128 O leave room for a third), each streamed by a producer warp of its own: -6% on
// Llama-3 GQA FP8 at page 16, level at page 64, where the SM's shared units and not the number
// of chains set the period (docs/perf-notes.md Z.1, Z.2). FLASHMFA_SM90_FP8_D128_WARPGROUPS=2
// builds the two-warpgroup form instead, with Q in registers (kFp8QueryRegisters).
#ifndef FLASHMFA_SM90_FP8_D128_WARPGROUPS
#define FLASHMFA_SM90_FP8_D128_WARPGROUPS 3
#endif
#define FLASHMFA_SM90_FP8_KERNELS(X) X(256, 2, true) X(128, FLASHMFA_SM90_FP8_D128_WARPGROUPS, true)

namespace flashmfa::cuda::sm90 {

constexpr int kElemBytes = 2;           // bf16 / f16
constexpr int kWarpSize = 32;
constexpr int kWarpgroupThreads = 128;  // 4 warps issue one wgmma together
constexpr int kWarpsPerWarpgroup = kWarpgroupThreads / kWarpSize;
constexpr int kRowsPerWarpgroup = 64;   // wgmma M: query rows of one consumer warpgroup
constexpr int kBlockN = 64;             // KV tokens per tile (and per scheduler block)
// Pages: the decode kernel takes pages of >= 16 tokens (a tile of 64 spans up to four pages,
// one TMA box per page and atom: boxes of 16 rows are still whole 2 KB pieces of a swizzle
// atom); the MLA kernels take pages of >= 64 (a tile inside one page).
constexpr int kMinPageSize = 16;
constexpr int kMaxPagesPerTile = kBlockN / kMinPageSize;
constexpr int kMlaMinPageSize = kBlockN;
// 64 columns of 16-bit elements are one 128-byte swizzle atom: the TMA box width and the
// column granularity of every shared-memory tile.
constexpr int kAtomCols = 64;
constexpr int kAtomBytes = kBlockN * kAtomCols * kElemBytes;  // 8 KB: one atom column of a tile
constexpr int kTileAlign = 1024;        // 128B-swizzled tiles start on 1024-byte boundaries
// Dynamic shared memory one block may opt into on every sm_90 part (H100, H200, H800, H20):
// 227 KB. The ring depth is a compile-time constant derived from it (supports() checks the
// device), so ring indices and sub-ring bounds fold into the code instead of taking registers.
constexpr size_t kSm90SmemOptin = 232448;
// Ring depth: K and V tiles take one slot each, so MFA keeps stages / 2 tiles in flight. Four
// 32 KB slots already cover the ~1 us latency at one SM's share of HBM bandwidth (~23 GB/s);
// more absorb the consumers' per-sequence pauses (Q load, epilogue).
constexpr int kMinStages = 4;
// FP8 caches (fp8_row: d e4m3 bytes per row, one f32 scale per row in a side array): the raw
// tiles land in a second ring (kRaw*), split between the consumer warpgroups as the 16-bit
// ring is; each warpgroup converts its raw tiles into its own two 16-bit tiles (fp8_stages: two
// per warpgroup, one converted while a GEMM reads the other) and runs its GEMMs on those
// (sm90/decode/dequant.cuh, consumer.cuh). A raw slot is the 64 rows of d bytes, then their 64
// scales (f32).
constexpr int kFp8TilesPerWarpgroup = 2;
FLASHMFA_SM90_HD constexpr int fp8_stages(int warpgroups) {
  return kFp8TilesPerWarpgroup * warpgroups;
}
// The consumer warpgroups of the FP8 form of head dim d (FLASHMFA_SM90_FP8_KERNELS).
FLASHMFA_SM90_HD constexpr int fp8_warpgroups(int d) {
  return d == 128 ? FLASHMFA_SM90_FP8_D128_WARPGROUPS : 2;
}
// Two raw slots per warpgroup at least: K and V of one tile in flight.
FLASHMFA_SM90_HD constexpr int min_raw_stages(int warpgroups) { return 2 * warpgroups; }
// The raw ring's depth cap: 16 slots with two consumer warpgroups (d 128 fits 16 beside the
// 16-bit tiles, d 256 fits 4): up to eight tiles in flight per warpgroup (docs/perf-notes.md
// Y.1); 9 with three (3 per warpgroup, of the 12 that fit: 1-3% faster than 12 on Llama-3 GQA
// FP8 in two device calls, 6 no better, Z.4a). FLASHMFA_SM90_MAX_RAW_STAGES sets one cap for
// every form (A/B builds).
FLASHMFA_SM90_HD constexpr int max_raw_stages(int warpgroups) {
#ifdef FLASHMFA_SM90_MAX_RAW_STAGES
  return (void)warpgroups, FLASHMFA_SM90_MAX_RAW_STAGES;
#else
  return warpgroups == 3 ? 9 : 16;
#endif
}
constexpr int kRawAlign = 128;
// FP8 caches at d 128 with two consumer warpgroups (three have no registers for it): each holds
// Q's A fragments in registers (32 per thread, loaded once per work item) and issues S = Q K^T
// from registers, so that its k-steps read only K from shared memory, whose data pipe the
// conversions keep ~57% busy (docs/perf-notes.md Z.3: -13% of its wavefronts, -2 to -3% of the
// time). FLASHMFA_SM90_FP8_Q_REGISTERS=0: Q from shared memory (A/B).
#ifndef FLASHMFA_SM90_FP8_Q_REGISTERS
#define FLASHMFA_SM90_FP8_Q_REGISTERS 1
#endif
constexpr bool kFp8QueryRegisters = FLASHMFA_SM90_FP8_Q_REGISTERS != 0;
// FP8: producer warps that stream the raw ring when pages are smaller than a tile. By default
// one per consumer warpgroup: warp w streams the tiles of consumer warpgroup w into its part of
// the ring, as one warp's stream per tile (the entries, a TMA copy per page, each row's scale)
// is longer at page 16 than a tile's time (docs/perf-notes.md X.1, X.2). Pages of a tile or
// more keep one warp (two measured 7% slower on MFA at page 64).
// FLASHMFA_SM90_FP8_SMALL_PAGE_WARPS=1: one always.
#ifndef FLASHMFA_SM90_FP8_SMALL_PAGE_WARPS
#define FLASHMFA_SM90_FP8_SMALL_PAGE_WARPS 2
#endif
constexpr bool kFp8WarpPerConsumer = FLASHMFA_SM90_FP8_SMALL_PAGE_WARPS != 1;
// Three consumer warpgroups (d 128) take a warp per consumer at every page size: one warp
// walking the tiles in order stalls on the fullest of the three parts of the raw ring while the
// others run dry (docs/perf-notes.md Z.1: one warp measured +1.5% on Llama-3 GQA FP8 at page 64
// with parts of 4 slots, a warp each level with the two-warpgroup form). Pages of at least
// fp8_one_warp_min_page tokens take one producer warp. FLASHMFA_SM90_FP8_ONE_WARP_MIN_PAGE
// sets it for every form (measuring builds: 64 gives three warpgroups one warp at page 64).
constexpr int kLargerThanAnyPage = 1 << 30;
FLASHMFA_SM90_HD constexpr int fp8_one_warp_min_page(int warpgroups) {
#ifdef FLASHMFA_SM90_FP8_ONE_WARP_MIN_PAGE
  return (void)warpgroups, FLASHMFA_SM90_FP8_ONE_WARP_MIN_PAGE;
#else
  return warpgroups == 3 ? kLargerThanAnyPage : kBlockN;
#endif
}
FLASHMFA_SM90_HD constexpr size_t raw_slot_bytes(int d) {
  return size_t(kBlockN) * d + size_t(kBlockN) * sizeof(float);
}
// setmaxnreg split when a producer warpgroup and two consumer warpgroups share the registers.
// setmaxnreg only moves registers within the CTA's own allocation (168 per thread x 384 at
// launch = 64512; an increase beyond it blocks forever, perf notes I.3): 24 * 128 + 2 * 240 *
// 128 = 64512.
constexpr int kProducerRegs = 24;
constexpr int kConsumerRegs = 240;
// The decode kernel's split (not MLA's): its producer also walks pages smaller than a tile
// (tile_source_paged), which does not fit in 24 registers without spilling: 40 * 128 + 2 * 232
// * 128 = 64512.
constexpr int kDecodeProducerRegs = 40;
constexpr int kDecodeConsumerRegs = 232;
static_assert(kDecodeProducerRegs + 2 * kDecodeConsumerRegs == kProducerRegs + 2 * kConsumerRegs,
              "the decode kernel's split moves registers within the same allocation");
// Three consumer warpgroups (FP8, d 128): 512 threads start with 128 registers each; 32 * 128 +
// 3 * 160 * 128 = 65536. The producer's page walk fits 32 there (ptxas: no spills).
constexpr int kDecode3ProducerRegs = 32;
constexpr int kDecode3ConsumerRegs = 160;
static_assert((kDecode3ProducerRegs + 3 * kDecode3ConsumerRegs) * 128 == 65536,
              "three consumer warpgroups: the whole register file, moved within the allocation");
constexpr int kMaxStages = 8;
// Work items of sequences up to this length add a second P V pass with P's 16-bit rounding
// error (mainloop.cuh, gemm_pv): with few visible tokens the per-weight rounding (2^-9 in bf16)
// is not averaged out and would exceed the tests' bf16 tolerance (abs 8e-4 + rel 2^-6) on rows
// that see fewer than ~50 tokens. Such items cost <= 2 tiles, so the extra pass is free.
constexpr int kPreciseMaxTokens = 2 * kBlockN;

FLASHMFA_SM90_HD constexpr size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

// Byte offsets in the dynamic shared memory of one CTA, from a 1024-aligned base:
//
//   q      (QTILES, 64, D)          T, 128B-swizzled   query rows: one tile per consumer
//                                                      warpgroup, or one shared tile
//   kv     (STAGES, BLOCK_N, D)     T, 128B-swizzled   the TMA ring (K and V tiles, or K alone);
//                                                      FP8: each consumer warpgroup's two tiles
//   xchg   (form's)                                    data one consumer warpgroup hands the
//                                                      other (decode_plan, mla_plan)
//   stats  (form's)                 f32                per-row softmax state handed over
//   raw    (RAW_STAGES, raw slot)   e4m3 rows + f32    FP8 caches only: the raw ring
//   full   (STAGES, FULL_PER_STAGE) mbarrier           TMA bytes landed in the slot (or in
//                                                      one 64-column atom of it); FP8: unused
//   empty  (STAGES, EMPTY_PER_STAGE) mbarrier          the slot's consumer warps are done (MLA:
//                                                      with each half of the slot)
//   raw_full, raw_empty (RAW_STAGES) mbarrier          FP8: raw tile + scales landed / the
//                                                      warpgroup has converted it
//   raw_rows (RAW_STAGES)           i32                FP8 decode: the slot's loaded rows
//
// A D-wide tile is D / 64 atom columns of (BLOCK_N rows x 128 bytes), kAtomBytes apart.
struct SmemPlan {
  size_t q = 0, kv = 0, xchg = 0, stats = 0, raw = 0, full = 0, empty = 0, raw_full = 0,
         raw_empty = 0, q_full = 0, q_empty = 0, raw_rows = 0, total = 0;
  size_t slot_bytes = 0, q_bytes = 0, raw_bytes = 0;
  size_t stats_stride = 0;  // bytes between the warpgroups' parts of stats (decode_plan)
  size_t xchg_stride = 0;   // bytes between the tiles of exchange cells past Q's (decode_plan)
  int full_per_stage = 1;
  int empty_per_stage = 1;

  // q_rows: rows of a Q tile (fewer than 64: mla_fp8_raw_plan). raw_slot: the bytes of a raw
  // slot when not raw_slot_bytes(d), 1024-aligned (swizzled TMA boxes; mla_fp8_raw_plan).
  FLASHMFA_SM90_HD constexpr SmemPlan(int d, int q_tiles, int stages, size_t xchg_bytes,
                                      size_t stats_bytes, int full_barriers_per_stage = 1,
                                      int raw_stages = 0, int empty_barriers_per_stage = 1,
                                      int q_rows = kRowsPerWarpgroup, size_t raw_slot = 0) {
    full_per_stage = full_barriers_per_stage;
    empty_per_stage = empty_barriers_per_stage;
    slot_bytes = size_t(kBlockN) * d * kElemBytes;
    q_bytes = size_t(q_rows) * d * kElemBytes;
    raw_bytes = raw_stages == 0 ? 0 : raw_slot > 0 ? raw_slot : raw_slot_bytes(d);
    q = 0;
    kv = align_up(q + q_bytes * q_tiles, kTileAlign);
    xchg = kv + slot_bytes * stages;
    stats = xchg + xchg_bytes;
    raw = align_up(stats + stats_bytes, raw_slot > 0 ? kTileAlign : kRawAlign);
    full = align_up(raw + raw_bytes * raw_stages, sizeof(uint64_t));
    empty = full + sizeof(uint64_t) * stages * full_per_stage;
    raw_full = empty + sizeof(uint64_t) * stages * empty_per_stage;
    raw_empty = raw_full + sizeof(uint64_t) * raw_stages;
    q_full = raw_empty + sizeof(uint64_t) * raw_stages;  // Q by TMA (MLA): landed, free again
    q_empty = q_full + sizeof(uint64_t);
    total = q_empty + sizeof(uint64_t);
    stats_stride = stats_bytes / 2;
    xchg_stride = q_bytes;
  }
  // What the launch asks for: the plan plus room to align the runtime base to kTileAlign
  // (dynamic shared memory is only guaranteed 16-byte alignment), and in phase-clock builds
  // with load stamps the stamps right past the plan's last barrier (phase_clock.cuh).
  FLASHMFA_SM90_HD constexpr size_t launch_bytes() const {
    return total + kTileAlign + kPhaseStampBytes;
  }
};

// The MFA / MFA-KR / GQA kernel (decode/): one Q tile per consumer warpgroup, or one shared
// tile under a KV split, whose merge (consumer.cuh, merge_and_store) hands the 64-column atoms
// of O each warpgroup does not finalize to the one that does through exchange cells of one f32
// atom (16 KB) each: the (by then unused) Q tile's, then xchg's (both hold 64 x D/2 f32), with
// each warpgroup's row max and row sum in stats (2, 64, 2).
// FP8 caches add the raw ring (raw_stages > 0) and have no room for xchg and stats beside it:
// those live in the 16-bit tiles, which are idle during the merge -- the cells after Q's in the
// first tile of each warpgroup (slots 0, 2, 4: written after every warpgroup is done with the
// item), each warpgroup's stats in its own second tile (slots 1, 3, 5: written while another
// warpgroup may still run its last GEMMs on its own tiles).
FLASHMFA_SM90_HD constexpr SmemPlan decode_plan(int d, int warpgroups, int stages, bool kv_split,
                                                int raw_stages = 0) {
  const size_t q_bytes = size_t(kRowsPerWarpgroup) * d * kElemBytes;
  const size_t stats_bytes = sizeof(float) * 2 * kRowsPerWarpgroup * 2;
  if (raw_stages > 0) {
    SmemPlan plan(d, 1, stages, 0, 0, 1, raw_stages);
    plan.xchg = plan.kv;  // each warpgroup's first tile
    plan.xchg_stride = kFp8TilesPerWarpgroup * plan.slot_bytes;
    plan.stats = plan.kv + plan.slot_bytes;  // each warpgroup's second tile
    plan.stats_stride = kFp8TilesPerWarpgroup * plan.slot_bytes;
    plan.raw_rows = plan.total;  // per raw slot: the rows the producer loaded (producer.cuh)
    plan.total = plan.raw_rows + sizeof(int32_t) * raw_stages;
    return plan;
  }
  return SmemPlan(d, kv_split ? 1 : warpgroups, stages, kv_split ? q_bytes : 0,
                  kv_split ? stats_bytes : 0, 1, raw_stages);
}

// The deepest ring that fits an sm_90 block's shared memory (0 when not even kMinStages fit).
// FP8: fp8_stages 16-bit slots and the deepest raw ring that fits beside them, a whole number
// of slots per warpgroup.
FLASHMFA_SM90_HD constexpr int stages_for(int d, int warpgroups, bool kv_split, bool fp8 = false) {
  if (fp8)
    return decode_plan(d, warpgroups, fp8_stages(warpgroups), kv_split,
                       min_raw_stages(warpgroups))
                       .launch_bytes() <= kSm90SmemOptin
               ? fp8_stages(warpgroups)
               : 0;
  for (int s = kMaxStages; s >= kMinStages; --s)
    if (decode_plan(d, warpgroups, s, kv_split).launch_bytes() <= kSm90SmemOptin) return s;
  return 0;
}
FLASHMFA_SM90_HD constexpr int raw_stages_for(int d, int warpgroups, bool kv_split) {
  const int cap = max_raw_stages(warpgroups) / warpgroups * warpgroups;  // whole parts
  for (int r = cap; r >= min_raw_stages(warpgroups); r -= warpgroups)
    if (decode_plan(d, warpgroups, fp8_stages(warpgroups), kv_split, r).launch_bytes() <=
        kSm90SmemOptin)
      return r;
  return 0;
}

// MLA (mla/): K rows of 576 (V = their first 512 columns), one Q tile shared by both consumer
// warpgroups, two slots (all that fits beside Q: 3 x 72 KB), P of one 64 x 64 tile in xchg
// (16-bit, in the wgmma A-fragment order of the warpgroup that computed it), and in stats the
// row max and rescale factor of the last tile plus each warpgroup's row sums (4 x 64 f32).
// One full barrier per 64-column atom: S = Q K^T starts on the first atoms of a tile while
// the rest is still arriving. With kMlaHalfRelease, two empty barriers per slot: atoms
// [0, kMlaOutAtoms) (consumer warpgroup 0's V columns) and the rest (warpgroup 1's V columns
// and the rope atom) are freed and reloaded separately (mla/consumer.cuh) when a KV head has
// more than kMlaHalfReleaseRows query rows (the compute-bound shapes: -2.5% at h_q 128 on the
// H100; the memory-bound h_q 16 rows measured +1.2% with it, so they keep the whole-slot
// release). FLASHMFA_SM90_MLA_HALF_RELEASE=0 builds the whole-slot release only.
#ifndef FLASHMFA_SM90_MLA_HALF_RELEASE
#define FLASHMFA_SM90_MLA_HALF_RELEASE 1
#endif
constexpr int kMlaDk = 576, kMlaDv = 512, kMlaStages = 2;
constexpr bool kMlaHalfRelease = FLASHMFA_SM90_MLA_HALF_RELEASE != 0;
constexpr int kMlaOutAtoms = kMlaDv / kAtomCols / 2;  // V atoms per consumer warpgroup: 4
constexpr int kMlaHalfReleaseRows = 64;
// Wide boxes: each half of an MLA tile ([0, kMlaOutAtoms) and the rest) is one TMA copy of a
// 5-D view of the cache (launch.cu, make_wide_map) on the full barrier of the half's first
// atom, instead of one copy and one barrier per atom: 2 copies per tile instead of 9 for the
// one producer thread, whose instruction stream is on the MLA kernel's critical path (perf
// notes G.3). FLASHMFA_SM90_MLA_WIDE_BOXES=0 builds the per-atom copies (same-machine A/B).
#ifndef FLASHMFA_SM90_MLA_WIDE_BOXES
#define FLASHMFA_SM90_MLA_WIDE_BOXES 1
#endif
constexpr bool kMlaWideBoxes = FLASHMFA_SM90_MLA_WIDE_BOXES != 0;
// MLA (16-bit caches): the producer loads each item's Q tile by TMA, before the item's first KV
// tile and as soon as the consumers' last S of the item before has read Q (launch.cu,
// make_query_map, for the head counts whose 64-row tiles are a box of q); otherwise the
// consumer threads load it. FLASHMFA_SM90_MLA_Q_TMA=0: always the consumers.
#ifndef FLASHMFA_SM90_MLA_Q_TMA
#define FLASHMFA_SM90_MLA_Q_TMA 1
#endif
constexpr bool kMlaQueryTma = FLASHMFA_SM90_MLA_Q_TMA != 0;
constexpr int kMlaAtoms = kMlaDk / kAtomCols;  // 9
// The full barrier that atom `atom` of an MLA slot lands on: its own, or its half's first.
FLASHMFA_SM90_HD constexpr int mla_full_index(int atom) {
  return !kMlaWideBoxes ? atom : atom < kMlaOutAtoms ? 0 : kMlaOutAtoms;
}
FLASHMFA_SM90_HD constexpr SmemPlan mla_plan() {
  return SmemPlan(kMlaDk, 1, kMlaStages, size_t(kRowsPerWarpgroup) * kBlockN * kElemBytes,
                  sizeof(float) * 4 * kRowsPerWarpgroup, kMlaDk / kAtomCols, 0,
                  kMlaHalfRelease ? 2 : 1);
}

// MLA with FlashMLA's FP8 rows (fp8_mla: 512 e4m3 latent values, 4 f32 scales, 64 RoPE values
// in q's dtype; 656 bytes): the same Q tile, two 16-bit slots and consumers as mla_plan, no room
// for a raw ring, so each raw tile lands inside the slot it becomes (mla/fp8.cuh):
//
//   atoms 4..7   the 512 latent bytes of the 64 rows, four 128-byte boxes, 128B-swizzled
//   atom 3       its last 1 KB: the rows' 4 scales (16 bytes per row)
//   atom 8       the RoPE values, already 16-bit and swizzled: their final place
//
// and the producer warpgroup widens the latent boxes in place into atoms 0..7. Box b (values
// [128 b, 128 b + 128)) becomes atoms 2b and 2b + 1; in the order b = 0..3 each box's output
// only overwrites bytes already read (box 3's own atom 7 is held in registers first). Whole-slot
// release (the widening needs the whole slot), and raw-full barriers per slot beside mla_plan's
// barriers. The producer needs registers for the widening and its walk over the next loads:
// 72 (ptxas: 56 spill), the consumers keep 216 (no spills; 72 * 128 + 2 * 216 * 128 = 64512,
// as kProducerRegs / kConsumerRegs).
constexpr int kMlaFp8LatentAtom = 4;  // atom of latent box 0
constexpr int kMlaFp8Boxes = 4;       // 128-byte latent boxes (one per scale group)
constexpr uint32_t kMlaFp8BoxBytes = uint32_t(kBlockN) * 128;
constexpr uint32_t kMlaFp8ScaleBytes = uint32_t(kBlockN) * 4 * sizeof(float);
constexpr uint32_t kMlaFp8ScaleOffset = 4 * uint32_t(kAtomBytes) - kMlaFp8ScaleBytes;
constexpr uint32_t kMlaFp8RopeBytes = uint32_t(kAtomBytes);
constexpr uint32_t kMlaFp8TileBytes =
    kMlaFp8Boxes * kMlaFp8BoxBytes + kMlaFp8ScaleBytes + kMlaFp8RopeBytes;  // 64 x 656
static_assert(kMlaFp8TileBytes == uint32_t(kBlockN) * 656, "FlashMLA's 656-byte rows");
// FLASHMFA_SM90_MLA_FP8_EARLY_RELEASE (default 1): the consumer warpgroup that adds the other's
// tile frees its slot as soon as that P V is done, before it waits for its own tile, so the
// next tile's load does not wait for this one to land and be widened (-8% on MLA h_q 16 and
// 64, docs/perf-notes.md K.2); 0 keeps the 16-bit kernel's order (same-machine A/B).
#ifndef FLASHMFA_SM90_MLA_FP8_EARLY_RELEASE
#define FLASHMFA_SM90_MLA_FP8_EARLY_RELEASE 1
#endif
constexpr bool kMlaFp8EarlyRelease = FLASHMFA_SM90_MLA_FP8_EARLY_RELEASE != 0;
// The raw tile lands on kMlaFp8Landings barriers (latent boxes split evenly; the scales with
// the first, RoPE with the last) and each landed part is widened at once; the widened atoms are
// published to the consumers on kMlaFp8Publishes full barriers (S = Q K^T follows them). Two
// landings and one publication per tile: with the folded widening one publication measured
// 4-7% faster than two on every FP8 MLA row, one landing 15-20% slower (docs/perf-notes.md U.9).
#ifndef FLASHMFA_SM90_MLA_FP8_LANDINGS
#define FLASHMFA_SM90_MLA_FP8_LANDINGS 2
#endif
#ifndef FLASHMFA_SM90_MLA_FP8_PUBLISHES
#define FLASHMFA_SM90_MLA_FP8_PUBLISHES 1
#endif
constexpr int kMlaFp8Landings = FLASHMFA_SM90_MLA_FP8_LANDINGS;
constexpr int kMlaFp8Publishes = FLASHMFA_SM90_MLA_FP8_PUBLISHES;
static_assert(kMlaFp8Boxes % kMlaFp8Landings == 0 && kMlaFp8Boxes % kMlaFp8Publishes == 0,
              "whole boxes per landing and per publication");
constexpr int kMlaFp8ProducerRegs = 72;
constexpr int kMlaFp8ConsumerRegs = 216;
static_assert(kMlaFp8ProducerRegs + 2 * kMlaFp8ConsumerRegs == kProducerRegs + 2 * kConsumerRegs,
              "setmaxnreg moves registers within the CTA's allocation only");
FLASHMFA_SM90_HD constexpr SmemPlan mla_fp8_plan() {
  SmemPlan plan(kMlaDk, 1, kMlaStages, size_t(kRowsPerWarpgroup) * kBlockN * kElemBytes,
                sizeof(float) * 4 * kRowsPerWarpgroup, kMlaDk / kAtomCols, 0, 1);
  plan.raw_full = plan.total;  // raw-full barriers: room for one per latent box per slot
  plan.raw_empty = plan.raw_full + sizeof(uint64_t) * kMlaStages * kMlaFp8Boxes;
  plan.total = plan.raw_empty;
  return plan;
}

// FLASHMFA_SM90_MLA_FP8_RAW_BUFFER (default 1): a CTA with at most kMlaFp8QRows query rows
// (h_q s_q <= 32: DeepSeek-V3 TP8 at h_q 16, and its MTP at s_q 2) stages Q as 32-row atoms
// (36 KB instead of 72: wgmma reads Q's 8-row groups 1024 bytes apart, so rows 32..63 of its M
// are the next atom's rows, computed and never written out, mla/consumer.cuh), and the freed
// shared memory holds a raw buffer of its own: the four latent boxes (8 KB each, swizzled) and
// the scales (1 KB). The producer widens raw buffer -> slot and issues the next tile's copies
// into each landing's boxes as soon as it has read them, so the landings no longer wait for a
// slot to be released (mla/fp8.cuh); the RoPE atom still lands in its slot, on the slot's full
// barrier. Barriers: one raw-full per landing, after the plan (as mla_fp8_plan).
// FLASHMFA_SM90_MLA_FP8_RAW_BUFFER=0 builds the in-place form for every head count.
#ifndef FLASHMFA_SM90_MLA_FP8_RAW_BUFFER
#define FLASHMFA_SM90_MLA_FP8_RAW_BUFFER 1
#endif
constexpr bool kMlaFp8RawBuffer = FLASHMFA_SM90_MLA_FP8_RAW_BUFFER != 0;
constexpr int kMlaFp8QRows = 32;
constexpr uint32_t kMlaFp8RawScaleOffset = kMlaFp8Boxes * kMlaFp8BoxBytes;  // after the boxes
constexpr uint32_t kMlaFp8RawBytes = kMlaFp8RawScaleOffset + kMlaFp8ScaleBytes;
// Whether a launch with `rows` query rows per KV head (s_q * q_per_kv) takes the raw-buffer form.
FLASHMFA_SM90_HD constexpr bool mla_fp8_raw_form(int rows) {
  return kMlaFp8RawBuffer && rows <= kMlaFp8QRows;
}
FLASHMFA_SM90_HD constexpr SmemPlan mla_fp8_raw_plan() {
  SmemPlan plan(kMlaDk, 1, kMlaStages, size_t(kRowsPerWarpgroup) * kBlockN * kElemBytes,
                sizeof(float) * 4 * kRowsPerWarpgroup, kMlaDk / kAtomCols, 1, 1, kMlaFp8QRows,
                kMlaFp8RawBytes);
  plan.raw_full = plan.total;  // raw-full barriers: one per landing
  plan.raw_empty = plan.raw_full + sizeof(uint64_t) * kMlaFp8Landings;
  plan.total = plan.raw_empty;
  return plan;
}

}  // namespace flashmfa::cuda::sm90
