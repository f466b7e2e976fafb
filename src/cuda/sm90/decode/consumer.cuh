// flashmfa CUDA, Hopper path: the consumer warpgroups -- for every work item of the part, stage
// Q, then per KV tile: S = Q K^T, mask + online softmax, O += P V; then the epilogue.
//
// Two ways to use two consumer warpgroups (KV_SPLIT, KernelConfig::kv_split):
//   row split (more than 128 rows, launch.cu): each warpgroup owns 64 query rows and reads
//     every tile;
//   KV split (64 rows per CTA): both own the same 64 rows and take alternate tiles (each from its
//     own half of the ring, see RingPos), each with its own O and softmax state, merged
//     through shared memory at the end of the work item. This
//     doubles the consumer rate, which MFA-KR needs (32 KB of HBM per tile but the same two
//     GEMMs and softmax as MFA's 64 KB tile pair). FP8 caches at d 128 split three ways: three
//     warpgroups take every third tile (config.hpp, fp8_warpgroups).
//
// Slot hand-off per tile (ring order; MFA-KR uses one slot for both GEMMs):
//
//   wait full[K] -> [clear tail, if V aliases K] -> S = Q K^T -> [release K] -> softmax
//   -> [wait full[V] -> clear tail] -> O += P V -> release (V or K)
//
// A slot is released by one arrival per reading warp after its wgmma has completed, so the
// producer's next TMA into it cannot overtake a read.
//
// FP8 caches: the warpgroup waits on its half of the raw ring instead and converts each raw
// tile into one of its own two 16-bit tiles, while its previous GEMM runs (item_fp8).
#pragma once

#include "core/params.hpp"
#include "cuda/common/phase_clock.cuh"
#include "cuda/common/schedule.cuh"
#include "cuda/sm90/decode/dequant.cuh"
#include "cuda/sm90/decode/epilogue.cuh"
#include "cuda/sm90/decode/mainloop.cuh"
#include "cuda/sm90/decode/measure_fp8_math.cuh"
#include "cuda/sm90/decode/ptx.cuh"
#include "cuda/sm90/decode/softmax.cuh"
#include "cuda/sm90/decode/traits.cuh"

namespace flashmfa::cuda::sm90 {

template <class T, int D, int WARPGROUPS, bool KV_SPLIT, bool FP8 = false>
struct Consumer : ConsumerBase<WARPGROUPS * kWarpgroupThreads> {
  using Tr = Traits<D, WARPGROUPS, KV_SPLIT, FP8>;
  using Base = ConsumerBase<WARPGROUPS * kWarpgroupThreads>;
  using Base::p, Base::sched, Base::sm, Base::kv_head, Base::warpgroup, Base::tid,
      Base::first_row, Base::wg_tid, Base::warp, Base::lane, Base::sync_own, Base::sync_all,
      Base::release;
  // bf16 FP8 tiles hold every value times 2^-kFp8Shift (common/fp8_dequant.cuh): scores come out
  // times 2^-kFp8Shift, which the softmax scale undoes, and O too, which the output's
  // normalization undoes (merge_and_store: FP8 runs the KV split only), exactly.
  static constexpr float kUnshift = FP8 ? kFp8Unshift<T> : 1.0f;
  // FP8 at d 128: S = Q K^T with Q's fragments in registers (config.hpp, kFp8QueryRegisters);
  // two warpgroups only (three have 160 registers per thread: ptxas spills and serializes).
  static constexpr bool kQueryRegisters =
      FP8 && D == 128 && WARPGROUPS == 2 && kFp8QueryRegisters;
  static constexpr int kQueryFragments = kQueryRegisters ? Tr::kQkSteps : 1;

  // Waits for the slot at `pos`; clears its unloaded rows when it is about to serve as V, shared
  // among the threads that read the slot. `valid` is uniform over them, so all reach the barrier.
  // `valid`: the slot's loaded rows (tile_source_paged).
  __device__ void acquire(const RingPos& pos, bool serves_as_v, int valid) const {
    mbar_wait(sm.full_bar(pos.stage), pos.phase);
    if (serves_as_v && valid < kBlockN) {
      if constexpr (KV_SPLIT) {
        clear_tail<D>(sm.slot(pos.stage), valid, wg_tid(), kWarpgroupThreads);
        fence_proxy_async();  // the zeros are read by wgmma (async proxy)
        sync_own();
      } else {
        clear_tail<D>(sm.slot(pos.stage), valid, tid, Tr::kConsumerThreads);
        fence_proxy_async();
        sync_all();
      }
    }
  }

  // S of the tile of tokens [token, token + valid) into P (masked to each row's visible
  // tokens), the running max and sum updated, and O rescaled to the new max.
  __device__ void softmax_step(float (&s)[kAccRegs], int token, int valid,
                               const int (&visible)[kRowsPerThread],
                               float (&o)[Tr::kAtoms][kAccRegs], OnlineSoftmax& softmax) const {
    int limit[kRowsPerThread];
#pragma unroll
    for (int h = 0; h < kRowsPerThread; ++h) limit[h] = min(visible[h], token + valid) - token;
    float alpha[kRowsPerThread];
    softmax.step(s, limit, p.scale * kLog2e * kUnshift, lane() % kQuadLanes, alpha);
    if (!warp_must_rescale(alpha)) return;
#pragma unroll
    for (int at = 0; at < Tr::kAtoms; ++at)
#pragma unroll
      for (int i = 0; i < kAccRegs; ++i) o[at][i] *= alpha[acc_row(i)];
  }

  // FP8: the raw slot at `pos` into this warpgroup's 16-bit tile `buf` (rows [valid, 64)
  // zero), then the raw slot is released; returns valid, the rows the producer loaded (put
  // beside the slot before its arrival, so no block-table read is on the consumers' chain). The
  // first barrier makes sure every warp's wgmma that last read `buf` has completed (each warp
  // waited for its own), the second that the whole tile is written and fenced before any
  // warp's wgmma reads it.
  __device__ int take_raw(RingPos& pos, uint32_t buf) const {
    mbar_wait(sm.raw_full_bar(pos.stage), pos.phase);
    const int valid = ld_shared_s32(sm.raw_rows_at(pos.stage));
    sync_own();
    convert_raw_tile<T, D>(sm.raw_slot(pos.stage), buf, wg_tid(), valid);
    fence_proxy_async();
    sync_own();
    release_raw(pos);
    pos.advance();
    return valid;
  }
  // FP8: this warp's reads of the raw slot at `pos` are complete (one arrival per warp).
  __device__ void release_raw(const RingPos& pos) const {
    __syncwarp();
    if (lane() == 0) mbar_arrive(sm.raw_empty_bar(pos.stage));
  }

  // The tiles of one work item that this warpgroup owns, on an FP8 cache, with each conversion
  // overlapping a GEMM of this warpgroup (wgmma runs asynchronously; the conversion is shared-
  // memory and integer work): K of the item's first tile is converted up front, then per tile
  //
  //   issue S = Q K^T (kbuf) | convert V (vbuf)      -- MFA; MFA-KR: V is kbuf
  //   wait; softmax; issue O += P V | convert the next tile's K (into the tile no GEMM reads)
  //   wait
  //
  // MFA keeps K in buf[0] and V in buf[1]; MFA-KR alternates the two tiles between tiles.
  __device__ void item_fp8(RingPos& pos, const WorkItem& it, const int (&visible)[kRowsPerThread],
                           uint32_t q_tile, float (&o)[Tr::kAtoms][kAccRegs],
                           OnlineSoftmax& softmax, bool precise) const {
    constexpr int kStep = Tr::kRingParts;  // tile_owner: every kStep-th tile
    const bool aliased = p.v_aliases_k;
    uint32_t kbuf = sm.slot(kFp8TilesPerWarpgroup * warpgroup);
    uint32_t other = sm.slot(kFp8TilesPerWarpgroup * warpgroup + 1);
    int blk = it.block_begin + warpgroup;
    if (blk >= it.block_end) return;
    uint32_t qf[kQueryFragments][4];
    if constexpr (kQueryRegisters) load_query_fragments<D>(q_tile, wg_tid(), qf);
    int valid = take_raw(pos, kbuf);
#pragma unroll 1
    for (; blk < it.block_end; blk += kStep) {
      const int token = blk * kBlockN;
      float s[kAccRegs];
      auto convert_v = [&] {
        if (!aliased) take_raw(pos, other);  // V: the same rows as K's
      };
      if constexpr (kQueryRegisters) gemm_qk_rs<T, D>(s, qf, kbuf, convert_v);
      else gemm_qk<T, D>(s, q_tile, kbuf, convert_v);
      softmax_step(s, token, valid, visible, o, softmax);
      const uint32_t vbuf = aliased ? kbuf : other;
      const uint32_t next_buf = aliased ? other : kbuf;
      const bool more = blk + kStep < it.block_end;
      int next_valid = 0;
      gemm_pv<T, D>(o, s, vbuf, precise, [&] {
        if (more) next_valid = take_raw(pos, next_buf);
      });
      if (aliased) {
        const uint32_t t = kbuf;
        kbuf = other;
        other = t;
      }
      valid = next_valid;
    }
    sync_own();  // every warp's last wgmma on the tiles is done: the merge writes stats there
  }

#if FLASHMFA_MEASURE_FP8_MATH
  // Measuring builds only (measure_fp8_math.cuh; results wrong by design): an MFA-KR item with
  // S = Q K^T in e4m3 straight from the raw slot, each column scaled by its token's scale (read
  // before the slot is released); mode 1 converts the slot for a 16-bit P V while S runs, mode 2
  // runs P V in e4m3 from the raw slot too and converts nothing, mode 3 is mode 2 reading V from
  // a copy made while S runs (a transpose's lower bound), mode 4 from the producer warps' copy.
  __device__ void item_fp8_math(RingPos& pos, const WorkItem& it,
                                const int (&visible)[kRowsPerThread], uint32_t q_tile,
                                float (&o)[Tr::kAtoms][kAccRegs], OnlineSoftmax& softmax,
                                bool precise) const {
    static_assert(D == 256, "measured at d 256 only (P V as one m64n256k32 per k-step)");
    const uint32_t vbuf = sm.slot(2 * warpgroup);
#pragma unroll 1
    for (int blk = it.block_begin + warpgroup; blk < it.block_end; blk += 2) {
      const int valid = tile_source_for<Tr>(p, it, blk).valid;
      const uint32_t raw = sm.raw_slot(pos.stage);
      mbar_wait(sm.raw_full_bar(pos.stage), pos.phase);
      float s[kAccRegs];
      issue_qk_e4m3<D>(s, q_tile, raw);
      if constexpr (kMeasureFp8Math == 1 || kMeasureFp8Math == 3) {
        sync_own();  // every warp's P V on vbuf has completed
        if constexpr (kMeasureFp8Math == 1) convert_raw_tile<T, D>(raw, vbuf, wg_tid(), valid);
        else transpose_bound<D>(raw, vbuf, wg_tid());
        fence_proxy_async();
        sync_own();
      }
      float k_scale[kAccRegs / 2];
#pragma unroll
      for (int c = 0; c < kAccRegs / 2; ++c)
        k_scale[c] = __int_as_float(ld_shared_s32(
            raw + uint32_t(kBlockN * D +
                           acc_col(4 * (c / 2) + c % 2, lane() % kQuadLanes) * sizeof(float))));
      wgmma_wait<0>();
      fence_regs(s);
#pragma unroll
      for (int i = 0; i < kAccRegs; ++i) s[i] *= k_scale[(i / 4) * 2 + i % 2];
      if constexpr (kMeasureFp8Math == 1 || kMeasureFp8Math == 3) release_raw(pos);
      softmax_step(s, blk * kBlockN, valid, visible, o, softmax);
      if constexpr (kMeasureFp8Math == 1) {
        gemm_pv<T, D>(o, s, vbuf, precise);
      } else {
        uint32_t a[2][4];
        pack_p_e4m3(s, a);
        uint32_t v = raw;
        if constexpr (kMeasureFp8Math == 3) v = vbuf;
        if constexpr (kMeasureFp8Math == 4) {  // the producer warps' copy of this raw slot
          mbar_wait(sm.full_bar(pos.stage), pos.phase);
          v = sm.slot(pos.stage);
        }
        issue_pv_e4m3(o, a, v);
        wgmma_wait<0>();
        fence_acc(o);
        if constexpr (kMeasureFp8Math == 2 || kMeasureFp8Math == 4) release_raw(pos);
      }
      pos.advance();
    }
    sync_own();
  }
#endif

  // Row split with both warpgroups holding rows: the two take turns issuing GEMMs (S_j of
  // warpgroup 0, S_j of 1, P V_j of 0, P V_j of 1, ...), so that each one's softmax runs while
  // the other's GEMM has the tensor cores, instead of both softmaxes falling together and
  // leaving them idle (FA3's ping-pong). Warpgroup 1 gives the first turn (start) and warpgroup
  // 0 takes the one left over after the last GEMM (finish), so every barrier phase completes.
  __device__ bool pingpong() const {
    if constexpr (KV_SPLIT || WARPGROUPS != 2 || FP8) return false;
    const int second_first_row = first_row + (1 - warpgroup) * kRowsPerWarpgroup;
    return second_first_row < p.s_q * p.q_per_kv;  // warpgroup 1 holds rows too
  }
  __device__ void take_turn() const {
    named_barrier_sync(int(NamedBarrier::kTurn) + warpgroup, Tr::kConsumerThreads);
  }
  __device__ void pass_turn() const {
    named_barrier_arrive(int(NamedBarrier::kTurn) + (1 - warpgroup), Tr::kConsumerThreads);
  }
  __device__ void pingpong_start() const {
    if (pingpong() && warpgroup == 1) pass_turn();
  }
  __device__ void pingpong_finish() const {
    if (pingpong() && warpgroup == 0) take_turn();
  }

  // S = Q K^T, softmax, O += P V for the tile of tokens [token, token + 64).
  __device__ void tile(RingPos& pos, int token, int valid, const int (&visible)[kRowsPerThread],
                       uint32_t q_tile, float (&o)[Tr::kAtoms][kAccRegs], OnlineSoftmax& softmax,
                       bool precise) const {
    const bool aliased = p.v_aliases_k;
    const bool turns = pingpong();
    auto pass = [&] {
      if (turns) pass_turn();
    };
    acquire(pos, aliased, valid);
    float s[kAccRegs];
    if (turns) take_turn();
    gemm_qk<T, D>(s, q_tile, sm.slot(pos.stage), pass);
    if (!aliased) {
      release(pos);
      pos.advance();
    }
    softmax_step(s, token, valid, visible, o, softmax);
    if (!aliased) acquire(pos, true, valid);
    if (turns) take_turn();
    gemm_pv<T, D>(o, s, sm.slot(pos.stage), precise, pass);
    release(pos);
    pos.advance();
  }

  // A row-split warpgroup with no query rows (the second one of the last row tile) still takes
  // part in every slot hand-off and tail clearing, so that the ring and barriers keep moving.
  __device__ void run_idle(int part) const {
    RingPos pos = ring_of<Tr::kStages, Tr::kRingParts>(warpgroup);
    for (PartWalker w(sched, part); w.valid(); w.next()) {
      const WorkItem it = w.item();
      for (int blk = it.block_begin; blk < it.block_end; ++blk) {
        const int valid = tile_source_for<Tr>(p, it, blk).valid;
        acquire(pos, p.v_aliases_k, valid);
        if (!p.v_aliases_k) {
          release(pos);
          pos.advance();
          acquire(pos, true, valid);
        }
        release(pos);
        pos.advance();
      }
    }
  }

  __device__ void run(int part) const {
    const int rows = p.s_q * p.q_per_kv;
    if (!KV_SPLIT && first_row >= rows) return run_idle(part);
    const uint32_t q_tile = sm.query(KV_SPLIT ? 0 : warpgroup);
    RingPos pos = ring_of<Tr::kConsumerRingStages, Tr::kRingParts>(warpgroup);
    pingpong_start();

    for (PartWalker w(sched, part); w.valid(); w.next()) {
      const WorkItem it = w.item();
      if constexpr (KV_SPLIT) {
        sync_all();  // the previous item's merge has read the Q tile
        if (tid < Tr::kQueryThreads) {
          load_query<T, D, Tr::kQueryThreads>(p, it.seq, kv_head, first_row, q_tile, tid);
          fence_proxy_async();  // Q is read by wgmma
        }
        sync_all();
      } else {
        load_query<T, D, kWarpgroupThreads>(p, it.seq, kv_head, first_row, q_tile, wg_tid());
        fence_proxy_async();
        sync_own();
      }
      if (tid == 0) FLASHMFA_PHASE(3);
      int visible[kRowsPerThread];
      Base::visible_rows(it, visible);
      const bool precise = it.seqlen <= kPreciseMaxTokens;

      float o[Tr::kAtoms][kAccRegs];
#pragma unroll
      for (int at = 0; at < Tr::kAtoms; ++at)
#pragma unroll
        for (int i = 0; i < kAccRegs; ++i) o[at][i] = 0.f;
      OnlineSoftmax softmax;
      softmax.reset();

      if constexpr (FP8) {
#if FLASHMFA_MEASURE_FP8_MATH
        if constexpr (D == 256) {
          if (p.v_aliases_k) item_fp8_math(pos, it, visible, q_tile, o, softmax, precise);
          else item_fp8(pos, it, visible, q_tile, o, softmax, precise);
        } else
#endif
        item_fp8(pos, it, visible, q_tile, o, softmax, precise);
      } else {
#pragma unroll 1
        for (int blk = it.block_begin; blk < it.block_end; ++blk) {
          if (query_prefetch_tile(blk, it.block_begin, it.block_end))
            if (const int next = w.peek(); next >= 0) {
              if constexpr (KV_SPLIT)
                prefetch_query<T, D, Tr::kConsumerThreads>(p, next, kv_head, first_row, tid);
              else
                prefetch_query<T, D, kWarpgroupThreads>(p, next, kv_head, first_row, wg_tid());
            }
          // KV split: every kRingParts-th tile; row split: every tile.
          if (KV_SPLIT && tile_owner<Tr::kRingParts>(blk, it.block_begin) != warpgroup) continue;
          tile(pos, blk * kBlockN, tile_source_for<Tr>(p, it, blk).valid, visible, q_tile, o,
               softmax, precise);
          if (tid == 0 && blk == it.block_begin) FLASHMFA_PHASE(4);
        }
      }
      if (tid == 0) FLASHMFA_PHASE(5);

      if constexpr (KV_SPLIT) {
        merge_and_store(it, o, softmax);
      } else {
        float inv_sum[kRowsPerThread], lse[kRowsPerThread];
        softmax.finish(inv_sum, lse);
        store_rows<T, D, Tr::kAtoms>(p, sched, it, kv_head, first_row, warp(), lane(), o,
                                     inv_sum, lse);
      }
      if (tid == 0) FLASHMFA_PHASE(6);
    }
    pingpong_finish();
  }

  // KV split, end of a work item: each of the W warpgroups holds O, row max and row sum over
  // its tiles. Warpgroup w finalizes atoms [fin_begin(w), fin_begin(w + 1)) (W 2, d 256: two
  // each; W 3, d 128: one each for warpgroups 0 and 1): every warpgroup hands the atoms it does
  // not finalize to their finalizer, thread to thread (all have the same fragment layout for the
  // same rows), through exchange cells (SmemView::xchg_cell: the Q tile's, then xchg's), in the
  // order warpgroup 0's atoms, warpgroup 1's, ...
  static constexpr int kMergeParts = Tr::kRingParts;
  static constexpr int fin_begin(int w) { return (w * Tr::kAtoms + kMergeParts - 1) / kMergeParts; }
  static constexpr int fin_count(int w) { return fin_begin(w + 1) - fin_begin(w); }
  // The exchange cell of atom `a` of warpgroup w's O (an atom that w does not finalize).
  // hand_over<ME> / finalize<ME>: the two halves of the merge for warpgroup ME.
  static constexpr int cell_of(int w, int a) {
    int cell = 0;
    for (int v = 0; v < w; ++v) cell += Tr::kAtoms - fin_count(v);
    return cell + (a < fin_begin(w) ? a : a - fin_count(w));
  }

  template <int ME>
  __device__ void hand_over(const float (&o)[Tr::kAtoms][kAccRegs], int wtid) const {
#pragma unroll
    for (int a = 0; a < Tr::kAtoms; ++a) {
      if (a >= fin_begin(ME) && a < fin_begin(ME + 1)) continue;
      const uint32_t cell = sm.xchg_cell(cell_of(ME, a));
      // Element i of this thread's atom lives at (i * 128 + wtid) * 4: conflict-free.
#pragma unroll
      for (int i = 0; i < kAccRegs; ++i)
        st_shared(cell + uint32_t((i * kWarpgroupThreads + wtid) * 4), __float_as_int(o[a][i]));
    }
  }

  template <int ME>
  __device__ void finalize(const WorkItem& it, float (&o)[Tr::kAtoms][kAccRegs],
                           const float (&m)[kRowsPerThread], const float (&l)[kRowsPerThread],
                           int wtid, int warp, int lane) const {
    constexpr int kBegin = fin_begin(ME), kEnd = fin_begin(ME + 1);
    if constexpr (kBegin < kEnd) {
      const int g = lane / kQuadLanes;
      float f[kMergeParts][kRowsPerThread], inv[kRowsPerThread], lse[kRowsPerThread];
#pragma unroll
      for (int h = 0; h < kRowsPerThread; ++h) {
        const int row = 16 * warp + g + 8 * h;
        float mv[kMergeParts], lv[kMergeParts];
        float mx = -INFINITY;
#pragma unroll
        for (int v = 0; v < kMergeParts; ++v) {
          const uint32_t at = sm.stats + uint32_t(v) * sm.stats_stride + uint32_t(row * 2 * 4);
          mv[v] = v == ME ? m[h] : __int_as_float(ld_shared_s32(at));
          lv[v] = v == ME ? l[h] : __int_as_float(ld_shared_s32(at + 4));
          mx = fmaxf(mx, mv[v]);
        }
        const float base = mx == -INFINITY ? 0.f : mx;  // no tile seen by any: all zero
        float total = 0.f;
#pragma unroll
        for (int v = 0; v < kMergeParts; ++v) {
          f[v][h] = exp2_approx(mv[v] - base);
          total += f[v][h] * lv[v];
        }
        inv[h] = total > 0.f ? 1.f / total * kUnshift : 0.f;
        lse[h] = total > 0.f ? (base + __log2f(total)) * kLn2 : -INFINITY;
      }
#pragma unroll
      for (int a = kBegin; a < kEnd; ++a)
#pragma unroll
        for (int i = 0; i < kAccRegs; ++i) {
          float x = o[a][i] * f[ME][acc_row(i)];
#pragma unroll
          for (int v = 0; v < kMergeParts; ++v)
            if (v != ME)
              x += __int_as_float(ld_shared_s32(sm.xchg_cell(cell_of(v, a)) +
                                                uint32_t((i * kWarpgroupThreads + wtid) * 4))) *
                   f[v][acc_row(i)];
          o[a][i] = x;
        }
      store_rows<T, D, Tr::kAtoms, kBegin, kEnd>(p, sched, it, kv_head, first_row, warp, lane, o,
                                                 inv, lse, ME == 0);
    }
  }

  __device__ void merge_and_store(const WorkItem& it, float (&o)[Tr::kAtoms][kAccRegs],
                                  const OnlineSoftmax& softmax) const {
    static_assert(fin_count(0) > 0, "warpgroup 0 finalizes atoms and writes the LSE");
    // Opaque thread index: otherwise the item-invariant address arithmetic below is hoisted
    // out of the item loop and held in registers across the KV loop (load_query has the same).
    int me = tid;
    asm volatile("" : "+r"(me));
    const int wtid = me % kWarpgroupThreads, warp = wtid / kWarpSize, lane = me % kWarpSize;
    const int g = lane / kQuadLanes, t = lane % kQuadLanes;
    float m[kRowsPerThread], l[kRowsPerThread];
#pragma unroll
    for (int h = 0; h < kRowsPerThread; ++h) {
      m[h] = softmax.max[h];
      l[h] = quad_sum(softmax.sum[h]);
      const int row = 16 * warp + g + 8 * h;
      const uint32_t at = sm.stats + uint32_t(warpgroup) * sm.stats_stride + uint32_t(row * 2 * 4);
      if (t == 0) {
        st_shared(at, __float_as_int(m[h]));
        st_shared(at + 4, __float_as_int(l[h]));
      }
    }
    // The exchange cells are the Q tile and tiles the other warpgroups may still be reading
    // (their last GEMMs): nothing is written before every warpgroup is done with the item.
    sync_all();
    static_for<kMergeParts>([&](auto w) {
      if (warpgroup == w) hand_over<w>(o, wtid);
    });
    sync_all();
    static_for<kMergeParts>([&](auto w) {
      if (warpgroup == w) finalize<w>(it, o, m, l, wtid, warp, lane);
    });
  }
};

}  // namespace flashmfa::cuda::sm90
