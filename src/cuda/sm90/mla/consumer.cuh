// flashmfa CUDA, Hopper path: the MLA consumers -- two warpgroups on the same 64 query rows,
// each owning half of the 64 x 512 output (O is 256 f32 registers per thread for one
// warpgroup: too many), taking turns at S = Q K^T ("seesaw").
//
// Tile j of a work item is owned by warpgroup j % 2. Its owner computes S_j = Q K_j^T over
// all 576 columns, runs the online softmax from the row max the other warpgroup left after
// tile j - 1, and publishes P_j (16-bit, in its wgmma A-fragment order), the new row max and
// the rescale factor alpha_j; both warpgroups then add P_j V_j to their half of O (V_j = the
// first 512 columns of the K tile, the same shared-memory slot). Per warpgroup and own tile j:
//
//   take P_{j-1}, alpha_{j-1} (bar.sync) -> O *= alpha_{j-1} -> issue O += P_{j-1} V_{j-1}
//   -> wait K_j -> issue S_j = Q K_j^T -> wait P V_{j-1}, release j-1 -> wait S_j -> softmax_j
//   -> publish P_j (bar.arrive) -> O *= alpha_j -> O += P_j V_j -> release j
//
// so one warpgroup's softmax runs while the tensor cores work on the other's products, every
// 64 x 64 x 576 product is computed once, and a slot is released as soon as its P V are done
// (it does not wait for the next tile to land).
//
// Each item's Q tile (64 rows x 576) is loaded by TMA from the producer where q's layout allows
// (launch.cu, make_query_map): each warp releases it after its warpgroup's last S of the item,
// so the next item's Q lands during the last P V and the epilogue; otherwise the consumers
// load it themselves at the item's start.
//
// Half release (MlaTraits::half_release: more than 64 rows): warpgroup w's P V is the last
// read of atoms [4w, 4w + 4) of a slot (plus the rope atom, for w = 1): the owner's S = Q K^T
// read every atom before it published P, which the other warpgroup's P V follows. So each warpgroup frees its
// half alone, right after its own P V, and the producer reloads that half without waiting for
// the other one; the owner of the next tile in the slot (the warpgroup that freed its half
// first: it owned the tile before, too) starts S = Q K^T on its own half. A warpgroup waits
// only on the full barriers of the atoms it reads: the other half may already hold the next
// tile (its barriers two phases on). The hand-off is a named-barrier pair per
// direction; P and the row state sit in one buffer each because every thread reads exactly
// the words its counterpart (same thread index, same rows) wrote, before writing its own.
#pragma once

#include "core/params.hpp"
#include "cuda/common/fp8_dequant.cuh"
#include "cuda/common/phase_clock.cuh"
#include "cuda/common/schedule.cuh"
#include "cuda/sm90/decode/epilogue.cuh"
#include "cuda/sm90/decode/mainloop.cuh"
#include "cuda/sm90/decode/ptx.cuh"
#include "cuda/sm90/decode/softmax.cuh"
#include "cuda/sm90/decode/traits.cuh"

namespace flashmfa::cuda::sm90 {

// Measuring builds only (docs/perf-notes.md S.4, S.7): NO_KV_WAIT, with
// FLASHMFA_MEASURE_SKIP_LOADS=2 (no KV copies; the tiles are stale and the results wrong), the
// consumers never wait for a KV tile, so that no ring order binds the schedule; S_FIRST, an own
// tile's S = Q K^T is issued before the other warpgroup's P is taken, so that it runs during
// that warpgroup's softmax (correct with real loads too, but 25% slower with two slots: S.7).
#ifndef FLASHMFA_MEASURE_NO_KV_WAIT
#define FLASHMFA_MEASURE_NO_KV_WAIT 0
#endif
#ifndef FLASHMFA_MEASURE_S_FIRST
#define FLASHMFA_MEASURE_S_FIRST 0
#endif
#if FLASHMFA_MEASURE_NO_KV_WAIT && (!defined(FLASHMFA_MEASURE_SKIP_LOADS) || FLASHMFA_MEASURE_SKIP_LOADS != 2)
#error "FLASHMFA_MEASURE_NO_KV_WAIT needs FLASHMFA_MEASURE_SKIP_LOADS=2"
#endif
constexpr bool kMeasureNoKvWait = FLASHMFA_MEASURE_NO_KV_WAIT;
constexpr bool kMeasureSFirst = FLASHMFA_MEASURE_S_FIRST;
// Measuring builds only (docs/perf-notes.md AC.2; results wrong): NO_SOFTMAX, the owner packs
// its raw scores as P with alpha 1 instead of running the softmax, so that the seesaw's chain
// loses its softmax and what is left bounds the period (the loads, or the rest of the chain).
#ifndef FLASHMFA_MEASURE_NO_SOFTMAX
#define FLASHMFA_MEASURE_NO_SOFTMAX 0
#endif
constexpr bool kMeasureNoSoftmax = FLASHMFA_MEASURE_NO_SOFTMAX;

// FP8: fp8_mla caches, whose tiles the producer warpgroup widens into the slots (fp8.cuh).
// QROWS: the rows of the staged Q tile; kMlaFp8QRows (FP8 only, config.hpp mla_fp8_raw_form):
// 32-row atoms, whose freed shared memory holds a raw buffer (the raw-buffer form). wgmma still
// computes 64 rows: rows 32..63 read the next Q atom's rows (the last atom's, the start of slot
// 0, NaN or not), and each of those rows stays in its own quad -- its softmax, P, O rows and
// partial scales -- and is never stored (rows past s_q * q_per_kv, epilogue.cuh).
template <bool FP8 = false, int QROWS = kRowsPerWarpgroup>
struct MlaTraits {
  static_assert(QROWS == kRowsPerWarpgroup || (FP8 && QROWS == kMlaFp8QRows),
                "a short Q tile only with the FP8 raw buffer");
  static constexpr int kQueryRows = QROWS;
  static constexpr uint32_t kQueryAtomBytes = uint32_t(QROWS) * kSwizzleRowBytes;
  static constexpr bool kRawBuffer = QROWS < kRowsPerWarpgroup;
  static constexpr bool kKvSplit = false;  // one ring, both warpgroups read every slot
  static constexpr bool kFullPerAtom = true;  // S = Q K^T follows the atoms as they land
  static constexpr bool kHalfRelease = kMlaHalfRelease && !FP8;
  static constexpr bool kWideBoxes = kMlaWideBoxes;  // one TMA box per half (config.hpp)
  static constexpr bool kSmallPages = false;  // pages of >= 64 tokens: a tile in one page
  // Whether this launch frees the two halves of a slot separately (config.hpp); the producer
  // and the consumers derive it from the same parameters.
  __device__ static bool half_release(const detail::DecodeParams& p) {
    return kHalfRelease && p.s_q * p.q_per_kv > kMlaHalfReleaseRows;
  }
  // The full barrier that atom `atom` of a slot lands on (FP8: the widening publishes the
  // atoms in kMlaFp8Publishes groups, the last with the RoPE atom; fp8.cuh).
  __device__ static constexpr int full_index(int atom) {
    constexpr int kGroup = 2 * kMlaFp8Boxes / kMlaFp8Publishes;  // atoms per publication
    return !FP8 ? mla_full_index(atom) : min(atom, kMlaAtoms - 2) / kGroup * kGroup;
  }
  static constexpr bool kFp8 = FP8;
  // The warpgroup that adds the other's tile frees its slot before it waits for its own tile
  // (config.hpp, kMlaFp8EarlyRelease).
  static constexpr bool kEarlyRelease = FP8 && kMlaFp8EarlyRelease;
  static constexpr int kStages = kMlaStages;
  static constexpr int kAtoms = kMlaAtoms;                            // 64-column atoms per K row
  static constexpr int kOutAtoms = kMlaOutAtoms;                      // 4 per warpgroup
  static constexpr int kWarpgroups = 2;
  static constexpr int kConsumerThreads = kWarpgroups * kWarpgroupThreads;
  static constexpr int kThreads = kConsumerThreads + kWarpgroupThreads;
  static constexpr int kReadersPerSlot = kWarpgroups * kWarpsPerWarpgroup;
  static constexpr SmemPlan kPlan =
      !FP8 ? mla_plan() : kRawBuffer ? mla_fp8_raw_plan() : mla_fp8_plan();
  static constexpr uint32_t kSlotBytes = uint32_t(kBlockN) * kMlaDk * kElemBytes;
  static_assert(kPlan.launch_bytes() <= kSm90SmemOptin, "MLA plan exceeds shared memory");
  static_assert(kPlan.stats - kPlan.xchg == kPvSteps * 4 * kWarpgroupThreads * sizeof(uint32_t),
                "xchg holds one P tile in A-fragment order");
};

template <class T, class Tr = MlaTraits<>>
struct MlaConsumer : ConsumerBase<Tr::kConsumerThreads> {
  using Base = ConsumerBase<Tr::kConsumerThreads>;
  using Base::p, Base::sched, Base::sm, Base::kv_head, Base::warpgroup, Base::tid,
      Base::first_row, Base::wg_tid, Base::warp, Base::lane, Base::sync_own, Base::sync_all,
      Base::release;
  using Out = float[Tr::kOutAtoms][kAccRegs];
  // bf16 FP8 slots hold every latent value times 2^-kFp8Shift (common/fp8_dequant.cuh): Q's RoPE
  // part is staged times 2^-kFp8Shift too, so that every score comes out times 2^-kFp8Shift,
  // which the softmax scale undoes, and the output's normalization undoes it in O (exactly).
  static constexpr float kUnshift = Tr::kFp8 ? kFp8Unshift<T> : 1.0f;
  static constexpr int kQueryScaledFrom = kUnshift != 1.0f ? kMlaDv : kMlaDk;

  // stats: [0, 64) row max after the last published tile, [64, 128) its alpha, [128, 256) the
  // two warpgroups' row sums at the end of an item.
  __device__ uint32_t stat(int which, int row) const {
    return sm.stats + uint32_t((which * kRowsPerWarpgroup + row) * sizeof(float));
  }
  __device__ int row_of(int h) const { return 16 * warp() + lane() / kQuadLanes + 8 * h; }
  // Word (kk, j) of this thread's P fragment in xchg: consecutive threads, consecutive words.
  __device__ uint32_t p_word(int kk, int j) const {
    return sm.xchg + uint32_t(((kk * 4 + j) * kWarpgroupThreads + wg_tid()) * sizeof(uint32_t));
  }
  // This warpgroup's half of the V columns of the slot.
  __device__ uint32_t v_half(const RingPos& pos) const {
    return sm.slot(pos.stage) + uint32_t(warpgroup * Tr::kOutAtoms * kAtomBytes);
  }

  // Atoms [first, last) of the slot at `pos` have landed: one wait per full barrier they use.
  __device__ void wait_atoms(const RingPos& pos, int first, int last) const {
    if constexpr (kMeasureNoKvWait && !Tr::kFp8) return;
#pragma unroll 1
    for (int a = first; a < last; ++a)
      if (a == first || Tr::full_index(a) == a)
        mbar_wait(sm.full_bar(pos.stage, Tr::full_index(a)), pos.phase);
  }
  // Every atom of the slot at `pos` has landed (the owner: it reads them all).
  __device__ void wait_slot(const RingPos& pos) const { wait_atoms(pos, 0, Tr::kAtoms); }
  // The atoms of this warpgroup's V half have landed (the other warpgroup's tile: with half
  // release, the rest of the slot may already be two fills on).
  __device__ void wait_v_half(const RingPos& pos) const {
    if (!Tr::half_release(p)) return wait_slot(pos);
    wait_atoms(pos, warpgroup * Tr::kOutAtoms, (warpgroup + 1) * Tr::kOutAtoms);
  }
  // This warpgroup's reads of the slot at `pos` are complete: one arrival per warp (on its
  // half's barrier under half release).
  __device__ void release_slot(const RingPos& pos) const {
    if (!Tr::half_release(p)) return release(pos);
    __syncwarp();
    if (lane() == 0) {
      stamp_release(sm.phase_stamps(), release_stamp(pos.stage, warpgroup));  // phase clocks
      mbar_arrive(sm.empty_bar(pos.stage, warpgroup));
    }
  }

  // Q by TMA: this warp has read the item's Q tile for the last time (its warpgroup's last
  // S = Q K^T of the item has completed, or it owned no tile): the producer may load the next.
  __device__ void release_query() const {
    __syncwarp();
    if (lane() == 0) mbar_arrive(sm.q_empty);
  }

  // Skipped when the warp's rows all keep their running max (alpha exactly 1).
  __device__ static void scale(Out& o, const float (&alpha)[kRowsPerThread]) {
    if (!warp_must_rescale(alpha)) return;
#pragma unroll
    for (int at = 0; at < Tr::kOutAtoms; ++at)
#pragma unroll
      for (int i = 0; i < kAccRegs; ++i) o[at][i] *= alpha[acc_row(i)];
  }
  // The other warpgroup's tile rescales this warpgroup's share of the row sums as well.
  __device__ static void scale(OnlineSoftmax& softmax, const float (&alpha)[kRowsPerThread]) {
#pragma unroll
    for (int h = 0; h < kRowsPerThread; ++h) softmax.sum[h] *= alpha[h];
  }

  // Waits for the other warpgroup's P of its last tile, loads it, and moves the softmax state to
  // it.
  __device__ void take(uint32_t (&a)[kPvSteps][4], OnlineSoftmax& softmax,
                       float (&alpha)[kRowsPerThread], ChainClocks& clocks) const {
    named_barrier_sync(int(NamedBarrier::kPReady) + (1 - warpgroup), Tr::kConsumerThreads);
    clocks.steps.step(8);
#pragma unroll
    for (int kk = 0; kk < kPvSteps; ++kk)
#pragma unroll
      for (int j = 0; j < 4; ++j) a[kk][j] = uint32_t(ld_shared_s32(p_word(kk, j)));
#pragma unroll
    for (int h = 0; h < kRowsPerThread; ++h) {
      softmax.max[h] = __int_as_float(ld_shared_s32(stat(0, row_of(h))));
      alpha[h] = __int_as_float(ld_shared_s32(stat(1, row_of(h))));
    }
  }

  // Publishes this warpgroup's P and row state for the other warpgroup.
  __device__ void publish(const uint32_t (&a)[kPvSteps][4], const OnlineSoftmax& softmax,
                          const float (&alpha)[kRowsPerThread]) const {
#pragma unroll
    for (int kk = 0; kk < kPvSteps; ++kk)
#pragma unroll
      for (int j = 0; j < 4; ++j) st_shared(p_word(kk, j), int32_t(a[kk][j]));
    // The quad's other lanes read the previous row state before this lane overwrites it.
    __syncwarp();
    const bool writer = lane() % kQuadLanes == 0;
#pragma unroll
    for (int h = 0; h < kRowsPerThread; ++h) {
      st_shared_if(writer, stat(0, row_of(h)), __float_as_int(softmax.max[h]));
      st_shared_if(writer, stat(1, row_of(h)), __float_as_int(alpha[h]));
    }
    // The hand-off's start (phase-clock builds only).
    if (wg_tid() == 0) stamp_issue(sm.phase_stamps(), kHandoffStamp);
    named_barrier_arrive(int(NamedBarrier::kPReady) + warpgroup, Tr::kConsumerThreads);
  }

  // Own tile at `pos` (tokens [token, token + 64), `valid` of them loaded); `prev`: the other
  // warpgroup's tile just before it, if `has_prev`. P_{j-1} V_{j-1} is issued first and the
  // slot of j - 1 released as soon as it is done, whether or not tile j has landed: with two
  // slots the load of tile j + 1 waits for that release (issuing S_j first measured 20-30%
  // slower on every MLA row, and +37-65% again with half release: docs/perf-notes.md H.9). O is
  // only rescaled while no wgmma is in flight (ptxas would otherwise insert its own wait).
  // `probe`: phase clocks of the MLA FP8 chain (phase_clock.cuh), recorded by thread 0 of the
  // warpgroup.
  __device__ void own_tile(const RingPos& pos, int token, int valid, const RingPos& prev,
                           bool has_prev, const int (&visible)[kRowsPerThread], uint32_t q_tile,
                           Out& o, OnlineSoftmax& softmax, bool last_q_read,
                           ChainClocks& clocks, bool probe = false) const {
    probe = probe && wg_tid() == 0;
    // Chain clocks (phase-clock builds; docs/perf-notes.md R.2, R.3), the steps in program
    // order: 6 since the last own tile, 7 the other's V half landed, 8 `bar.sync` (deferred: the
    // wait shows in 9), 9 its row state loaded, 10 O rescaled, 0 its P V issued, 1 S issued,
    // 2 that P V done, 3 S done, 4 P published, 5 own P V done.
    ChainClock& clock = clocks.steps;
    clock.step(6);
    clock.count();
    uint32_t a_prev[kPvSteps][4];
    float alpha[kRowsPerThread];
    float s[kAccRegs];
    // After a wait (a loop), wgmma needs a fresh fence before it reads registers again. With
    // wide boxes (and FP8) only the first atom of each half has a barrier (`atom` is a constant
    // here).
    auto wait_atom = [&](int atom) {
      if (Tr::full_index(atom) != atom) return;
      if constexpr (kMeasureNoKvWait && !Tr::kFp8) {
        wgmma_fence();
        return;
      }
      // Phase-clock builds: the load latency of the half (16-bit caches, wide boxes).
      const uint32_t bar = sm.full_bar(pos.stage, atom);
      if constexpr (kPhaseLand && !Tr::kFp8 && Tr::kWideBoxes)
        clocks.land.measure(sm.phase_stamps(), land_stamp(pos.stage, atom == 0 ? 0 : 1),
                            [&] { return mbar_wait_blocked(bar, pos.phase); });
      else
        mbar_wait(bar, pos.phase);
      if (probe && warpgroup == 0 && atom == 0) FLASHMFA_PHASE(9);
      wgmma_fence();
    };
    // Half release: this warpgroup's half of the slot was freed (and reloaded) first.
    auto issue_s = [&] {
      if (!Tr::half_release(p) || warpgroup == 0)
        issue_qk<T, kMlaDk, 0, Tr::kQueryAtomBytes>(s, q_tile, sm.slot(pos.stage), wait_atom);
      else
        issue_qk<T, kMlaDk, Tr::kOutAtoms>(s, q_tile, sm.slot(pos.stage), wait_atom);
    };
    auto clear_short_tile = [&] {
      if (valid < kBlockN) {  // rows past the end (NaN in the tests) or an unloaded page
        wait_slot(pos);
        clear_tail<kMlaDk>(sm.slot(pos.stage), valid, wg_tid(), kWarpgroupThreads);
        fence_proxy_async();  // zeros read by wgmma; the other warpgroup syncs on publish()
        sync_own();
      }
    };
    // O += P_j V_j after O *= alpha_j, then the slot's release (the own tile's end).
    auto add_own = [&](const uint32_t (&a)[kPvSteps][4]) {
      scale(o, alpha);
      issue_pv<T, Tr::kOutAtoms>(o, a, v_half(pos));
      wgmma_wait<0>();
      fence_acc(o);
      release_slot(pos);
      clock.step(5);
    };
    // Softmax of S_j (after its wait), P_j packed and published with the row state.
    auto softmax_and_publish = [&](uint32_t (&a)[kPvSteps][4]) {
      int limit[kRowsPerThread];
#pragma unroll
      for (int h = 0; h < kRowsPerThread; ++h) limit[h] = min(visible[h], token + valid) - token;
      if constexpr (kMeasureNoSoftmax) {
#pragma unroll
        for (int h = 0; h < kRowsPerThread; ++h) alpha[h] = 1.f;
      } else {
        softmax.step(s, limit, p.scale * kLog2e * kUnshift, lane() % kQuadLanes, alpha);
      }
      pack_p<T>(s, a);
      publish(a, softmax, alpha);
    };
    if constexpr (kMeasureSFirst && !Tr::kFp8) {
      // Measuring builds only (see kMeasureSFirst): S_j, then P_{j-1} V_{j-1} behind it; the
      // softmax runs while that product does.
      clear_short_tile();
      issue_s();
      auto wait_s = [&] {
        wgmma_wait<0>();
        fence_regs(s);
        fence_acc(o);
      };
      if (has_prev) add_other(prev, a_prev, o, softmax, alpha, clocks, wait_s);
      else wait_s();
      if (last_q_read) release_query();
      uint32_t a[kPvSteps][4];
      softmax_and_publish(a);
      wgmma_wait<0>();  // unconditional: ptxas does not correlate the two has_prev branches
      fence_acc(o);
      if (has_prev) release_slot(prev);
      add_own(a);
      return;
    }
    if (has_prev) add_other(prev, a_prev, o, softmax, alpha, clocks);
    clock.step(0);
    if (Tr::kEarlyRelease && has_prev) {
      wgmma_wait<0>();
      fence_acc(o);
      release_slot(prev);
      if (probe && warpgroup == 1) FLASHMFA_PHASE(8);
      clock.step(2);
    }
    clear_short_tile();
    issue_s();
    clock.step(1);
    if (!Tr::kEarlyRelease && has_prev) {
      wgmma_wait<1>();  // P_{j-1} V_{j-1}: groups complete in order
      fence_acc(o);
      release_slot(prev);
      clock.step(2);
    }
    wgmma_wait<0>();
    fence_regs(s);
    clock.step(3);
    if (last_q_read) release_query();
    uint32_t a[kPvSteps][4];
    softmax_and_publish(a);
    clock.step(4);
    if (probe && warpgroup == 0) FLASHMFA_PHASE(7);
    add_own(a);
    clocks.handoff.finish_since();
    if (probe && warpgroup == 0) FLASHMFA_PHASE(10);
  }

  // Issues O += P V for the other warpgroup's tile at `pos`: waits for the atoms it reads (so
  // that the TMA bytes are visible to this warpgroup's wgmma too) and its P, rescales this
  // warpgroup's O and row-sum share by its alpha. `a` holds P until the product completes.
  // `before_rescale` runs right before O is rescaled (the measuring S-first order waits for its
  // S there: ptxas serializes every wgmma, C7514, if O is touched while one is in flight).
  template <class BeforeRescale = Nothing>
  __device__ void add_other(const RingPos& pos, uint32_t (&a)[kPvSteps][4], Out& o,
                            OnlineSoftmax& softmax, float (&alpha)[kRowsPerThread],
                            ChainClocks& clocks, BeforeRescale before_rescale = {}) const {
    wait_v_half(pos);
    clocks.steps.step(7);
    take(a, softmax, alpha, clocks);
    scale(softmax, alpha);
    clocks.steps.step(9);
    // From the publisher's stamp to here, where the row state has been used: a clock read right
    // after the deferred-blocking bar.sync can run before the barrier completes (notes R.3).
    clocks.handoff.since_stamp(sm.phase_stamps(), kHandoffStamp);
    before_rescale();
    scale(o, alpha);
    clocks.steps.step(10);
    issue_pv<T, Tr::kOutAtoms>(o, a, v_half(pos));
  }

  // The other warpgroup's tile at `pos` when it ends the item (no own tile follows).
  __device__ void other_tile(const RingPos& pos, Out& o, OnlineSoftmax& softmax) const {
    uint32_t a[kPvSteps][4];
    float alpha[kRowsPerThread];
    ChainClocks idle;  // an item's last tile is not timed
    add_other(pos, a, o, softmax, alpha, idle);
    wgmma_wait<0>();
    fence_acc(o);
    release_slot(pos);
  }

  // q_by_tma: the producer loads each item's Q tile (q_full), and each warp releases it after
  // its warpgroup's last S of the item (q_empty); otherwise the consumers load it themselves.
  __device__ void run(int part, bool q_by_tma) const {
    const uint32_t q_tile = sm.query(0);
    RingPos pos(0, Tr::kStages);  // both warpgroups walk every slot, in tile order
    int n = 0;                    // tiles so far (phase clocks only)
    uint32_t q_phase = 0;
    ChainClocks clocks;
    clocks.steps.begin();

    for (PartWalker w(sched, part); w.valid(); w.next()) {
      const WorkItem it = w.item();
      sync_all();  // the previous item's row sums have been read (and its products Q, when
                   // the consumers load Q themselves)
      if (q_by_tma) {
        mbar_wait(sm.q_full, q_phase);
        q_phase ^= 1;
      } else {
        load_query<T, kMlaDk, Tr::kConsumerThreads, kMlaQueryEvictFirst, kQueryScaledFrom,
                   Tr::kQueryRows>(p, it.seq, kv_head, first_row, q_tile, tid, 1.0f / kUnshift);
        fence_proxy_async();  // Q is read by wgmma
        sync_all();
      }
      if (!Tr::kFp8 && tid == 0) FLASHMFA_PHASE(3);  // Q staged (fp8.cuh uses 3 and 4)
      int visible[kRowsPerThread];
      Base::visible_rows(it, visible);

      Out o;
#pragma unroll
      for (int at = 0; at < Tr::kOutAtoms; ++at)
#pragma unroll
        for (int i = 0; i < kAccRegs; ++i) o[at][i] = 0.f;
      OnlineSoftmax softmax;
      softmax.reset();

      // Tiles in order; an own tile consumes the other warpgroup's tile pending before it.
      bool pending = false;
      RingPos pending_pos = pos;
#pragma unroll 1
      for (int blk = it.block_begin; blk < it.block_end; ++blk, ++n) {
        if (query_prefetch_tile(blk, it.block_begin, it.block_end))
          if (const int next = w.peek(); next >= 0)
            prefetch_query<T, kMlaDk, Tr::kConsumerThreads>(p, next, kv_head, first_row, tid);
        if (alternate_owner(blk, it.block_begin) == warpgroup) {
          // Phase clocks: warpgroup 0 follows tile kPhaseTile, warpgroup 1 the one after it.
          const bool probe = n == kPhaseTile + warpgroup;
          if (probe && wg_tid() == 0) FLASHMFA_PHASE(warpgroup == 0 ? 6 : 11);
          own_tile(pos, blk * kBlockN, tile_source(p, it, blk).valid, pending_pos, pending,
                   visible, q_tile, o, softmax, q_by_tma && blk + 2 >= it.block_end, clocks,
                   probe);
          pending = false;
        } else {
          pending = true;
          pending_pos = pos;
        }
        pos.advance();
      }
      if (pending) other_tile(pending_pos, o, softmax);
      // A warpgroup that owned no tile of the item (fewer than two tiles) has read no Q.
      if (q_by_tma && it.block_end - it.block_begin <= warpgroup) release_query();
      if (!Tr::kFp8 && tid == 0) FLASHMFA_PHASE(4);  // the item's tiles done (warpgroup 0)
      finish(it, o, softmax);
      if (!Tr::kFp8 && tid == 0) FLASHMFA_PHASE(5);  // stored
    }
    if (wg_tid() == 0) clocks.store(warpgroup);
  }

  // End of an item: both warpgroups hold the final row max; the row sum is the sum of their
  // shares (each added its own tiles' numerators and applied every alpha).
  __device__ void finish(const WorkItem& it, Out& o, const OnlineSoftmax& softmax) const {
    float l[kRowsPerThread];
#pragma unroll
    for (int h = 0; h < kRowsPerThread; ++h) {
      l[h] = quad_sum(softmax.sum[h]);
      if (lane() % kQuadLanes == 0) st_shared(stat(2 + warpgroup, row_of(h)), __float_as_int(l[h]));
    }
    sync_all();
    float inv[kRowsPerThread], lse[kRowsPerThread];
#pragma unroll
    for (int h = 0; h < kRowsPerThread; ++h) {
      const float total = l[h] + __int_as_float(ld_shared_s32(stat(3 - warpgroup, row_of(h))));
      const bool any = total > 0.f;
      inv[h] = any ? 1.f / total * kUnshift : 0.f;
      lse[h] = any ? (softmax.max[h] + __log2f(total)) * kLn2 : -INFINITY;
    }
    store_rows<T, kMlaDv, Tr::kOutAtoms>(p, sched, it, kv_head, first_row, warp(), lane(), o,
                                         inv, lse, warpgroup == 0, warpgroup * Tr::kOutAtoms);
  }
};

}  // namespace flashmfa::cuda::sm90
