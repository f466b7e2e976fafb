// flashmfa CUDA, Hopper path: the consumer warpgroup's tile operations -- staging Q, S = Q K^T,
// clearing the rows of a slot that hold no loaded token, and O += P V.
//
// Shared-memory operands are 128B-swizzled tiles of 64-column atoms (traits.cuh). For
// S = Q K^T both operands are K-major: k-step kk reads atom kk / 4 at byte 32 (kk % 4). For
// O += P V the V tile is MN-major (d contiguous): k-step kk (16 tokens) starts 16 rows down,
// and output atom a reads V's atom a. P never leaves registers: the f32 accumulator layout of
// a 64x64 S tile, packed to 16-bit pairs, is exactly wgmma's A-register fragment for m64k16.
#pragma once

#include "core/params.hpp"
#include "cuda/common/fp8_dequant.cuh"
#include "cuda/sm90/decode/ptx.cuh"
#include "cuda/sm90/decode/traits.cuh"
#include "cuda/sm90/decode/wgmma.cuh"

namespace flashmfa::cuda::sm90 {

constexpr uint32_t kKMajorLbo = kDescUnitBytes;  // unused by swizzled K-major operands
constexpr int kUnitElems = kDescUnitBytes / kElemBytes;  // 8 elements per 16-byte load
// MLA's Q (19 MB for 128 sequences x 128 heads, read once per CTA) is read evict-first, so that
// it does not push the partials of split sequences out of L2 before the combine reads them
// (docs/perf-notes.md M.8); the decode kernel's Q (4 MB at MFA h_q 64) is too small to matter
// and measured 0.5% slower with the hint. load_query's EVICT_FIRST; the MLA consumer passes this.
#ifndef FLASHMFA_SM90_Q_EVICT_FIRST
#define FLASHMFA_SM90_Q_EVICT_FIRST 1
#endif
constexpr bool kMlaQueryEvictFirst = FLASHMFA_SM90_Q_EVICT_FIRST != 0;

// Eight 16-bit values times x (exact for a power of two, away from T's range limits).
template <class T>
__device__ __forceinline__ uint4 scale_unit(uint4 v, float x) {
  using T2 = typename Pair<T>::Type;
  const T2 f = Pair<T>::splat(x);
  auto mul = [&](uint32_t w) { return bits_of(__hmul2(from_bits<T2>(w), f)); };
  return make_uint4(mul(v.x), mul(v.y), mul(v.z), mul(v.w));
}

// Copies the 64 query rows of work item `seq` starting at query row first_row into a swizzled Q
// tile, shared over THREADS threads (thread index tid); rows past `rows` (s_q * q_per_kv) are
// zero, so their scores are finite and simply never written out. Tile row r is query row
// first_row + r = t * q_per_kv + head_in_group. EVICT_FIRST: Q is read with an L2 evict-first
// policy (kMlaQueryEvictFirst). SCALED_FROM: columns [SCALED_FROM, D) are stored times
// tail_scale (the FP8 MLA kernel's RoPE part, sm90/mla/consumer.cuh). ROWS: the tile's rows,
// whose 128-byte atom rows are ROWS * 128 bytes apart (fewer than 64: the FP8 MLA raw-buffer
// form, config.hpp).
template <class T, int D, int THREADS, bool EVICT_FIRST = false, int SCALED_FROM = D,
          int ROWS = kRowsPerWarpgroup>
__device__ void load_query(const detail::DecodeParams& p, int seq, int kv_head, int first_row,
                           uint32_t q_tile, int tid, float tail_scale = 1.f) {
  constexpr int kUnitsPerRow = D / kUnitElems;
  constexpr int kUnits = ROWS * kUnitsPerRow;
  constexpr int kPerThread = kUnits / THREADS;
  constexpr uint32_t kQueryAtomBytes = uint32_t(ROWS) * kSwizzleRowBytes;
  // Loads in flight before their stores: all of them up to 9, else the largest divisor of
  // kPerThread up to 8 (more bought nothing once the next item's Q is prefetched:
  // docs/perf-notes.md M.2).
  constexpr int kBatch = kPerThread <= 9 ? kPerThread : kPerThread % 8 == 0 ? 8
                       : kPerThread % 6 == 0 ? 6 : kPerThread % 4 == 0 ? 4
                       : kPerThread % 2 == 0 ? 2 : 1;
  static_assert(kUnits % (THREADS * kBatch) == 0, "whole batches per thread");
  const int rows = p.s_q * p.q_per_kv;
  const T* q = static_cast<const T*>(p.q) + int64_t(seq) * p.q_sb;
  const uint64_t policy = EVICT_FIRST ? l2_evict_first_policy() : 0;
  // The row and swizzle arithmetic below does not depend on the work item, so the compiler
  // would hoist all of it out of the item loop and keep ~40 registers live across the KV
  // loop (spilling at D = 256). Opaque copies of first_row and tid make it per-item work.
  asm volatile("" : "+r"(first_row), "+r"(tid));
#pragma unroll
  for (int b = 0; b < kPerThread; b += kBatch) {
    uint4 v[kBatch];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const int i = (b + j) * THREADS + tid;
      const int r = i / kUnitsPerRow, u = i % kUnitsPerRow;
      const int row = first_row + r;
      v[j] = make_uint4(0, 0, 0, 0);
      if (row < rows) {
        const int t = row / p.q_per_kv, head = kv_head * p.q_per_kv + row % p.q_per_kv;
        const T* src = q + t * p.q_ss + head * p.q_sh + u * kUnitElems;
        v[j] = EVICT_FIRST ? ld_global_hint(src, policy) : *reinterpret_cast<const uint4*>(src);
        if constexpr (SCALED_FROM < D)
          if (u * kUnitElems >= SCALED_FROM) v[j] = scale_unit<T>(v[j], tail_scale);
      }
    }
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const int i = (b + j) * THREADS + tid;
      const int r = i / kUnitsPerRow, u = i % kUnitsPerRow;
      st_shared(q_tile + swizzled_offset(r, u, kQueryAtomBytes), v[j]);
    }
  }
}

// The next work item's Q is fetched into L2 this many KV tiles before the current item ends
// (at its start when it is shorter): at an item switch load_query then waits for L2, not for
// DRAM behind the KV stream (docs/perf-notes.md M.2). FLASHMFA_SM90_Q_PREFETCH=0: no prefetch.
#ifndef FLASHMFA_SM90_Q_PREFETCH
#define FLASHMFA_SM90_Q_PREFETCH 1
#endif
constexpr int kQueryPrefetchTiles = 8;

// Whether tile blk of an item of tiles [begin, end) is where the next item's Q is prefetched.
__device__ __forceinline__ bool query_prefetch_tile(int blk, int begin, int end) {
  return FLASHMFA_SM90_Q_PREFETCH && blk == max(begin, end - kQueryPrefetchTiles);
}

// Fetches the 128-byte lines of the 64 query rows that load_query would read for sequence
// `seq` into L2 (prefetch.global.L2, no registers written), shared over THREADS threads.
template <class T, int D, int THREADS>
__device__ void prefetch_query(const detail::DecodeParams& p, int seq, int kv_head, int first_row,
                               int tid) {
  constexpr int kLineElems = kL2LineBytes / int(sizeof(T));
  constexpr int kLinesPerRow = (D + kLineElems - 1) / kLineElems;
  const int rows = p.s_q * p.q_per_kv;
  const T* q = static_cast<const T*>(p.q) + int64_t(seq) * p.q_sb;
  for (int i = tid; i < kRowsPerWarpgroup * kLinesPerRow; i += THREADS) {
    const int row = first_row + i / kLinesPerRow, line = i % kLinesPerRow;
    if (row >= rows) continue;
    const int t = row / p.q_per_kv, head = kv_head * p.q_per_kv + row % p.q_per_kv;
    const T* at = q + t * p.q_ss + head * p.q_sh + line * kLineElems;
    asm volatile("prefetch.global.L2 [%0];\n" ::"l"(at));
  }
}

// Zeroes rows [valid, BLOCK_N) of a slot, shared over all `threads` consumer threads (thread
// index tid). TMA copies whole boxes, so a sequence's last tile carries rows past its end that
// may hold NaN, and a skipped page leaves the slot as it was: P is 0 there, but 0 * NaN is NaN.
template <int D>
__device__ void clear_tail(uint32_t slot, int valid, int tid, int threads) {
  constexpr int kUnitsPerRow = D / kUnitElems;
  const int units = (kBlockN - valid) * kUnitsPerRow;
  for (int i = tid; i < units; i += threads) {
    const int r = valid + i / kUnitsPerRow, u = i % kUnitsPerRow;
    // The position inside the row is irrelevant (the whole row is cleared): skip the swizzle.
    st_shared(slot + (u / 8) * kAtomBytes + r * kSwizzleRowBytes + (u % 8) * kDescUnitBytes,
              make_uint4(0, 0, 0, 0));
  }
}

// The 16-bit rounding error of p, as a second 16-bit value: p ~= hi + lo to ~2^-17.
template <class T>
__device__ __forceinline__ float rounding_rest(float x);
template <>
__device__ __forceinline__ float rounding_rest<__nv_bfloat16>(float x) {
  return x - __bfloat162float(__float2bfloat16_rn(x));
}
template <>
__device__ __forceinline__ float rounding_rest<__half>(float x) {
  return x - __half2float(__float2half_rn(x));
}

struct NoWait {
  __device__ void operator()(int) const {}
};
struct Nothing {
  __device__ void operator()() const {}
};

// Issues s (64 x 64 f32) = Q (64 x D) K^T (D x 64 tokens) as one wgmma group; the caller
// waits for it (wgmma_wait) and fences s before reading it. before_atom(a) runs before the
// k-steps that read 64-column atom a of the K tile (a wait for that atom's bytes). The atoms
// are taken in the order FIRST_ATOM, FIRST_ATOM + 1, ..., wrapping around (MLA: the half of
// the tile that lands first). Q's atoms are Q_ATOM_BYTES apart (fewer than 64 rows staged: the
// FP8 MLA raw-buffer form, whose rows past them read the next atom's and are never stored).
template <class T, int D, int FIRST_ATOM = 0, uint32_t Q_ATOM_BYTES = kAtomBytes,
          class BeforeAtom = NoWait>
__device__ __forceinline__ void issue_qk(float (&s)[kAccRegs], uint32_t q_tile, uint32_t k_slot,
                                         BeforeAtom before_atom = {}) {
  constexpr int kAtoms = D / kAtomCols;
  constexpr int kStepsPerAtom = kAtomCols / kWgmmaK;
  const uint64_t desc_q = make_desc(q_tile, kKMajorLbo, kSwizzleGroupBytes);
  const uint64_t desc_k = make_desc(k_slot, kKMajorLbo, kSwizzleGroupBytes);
  wgmma_fence();
  static_for<kAtoms>([&](auto i) {
    constexpr int at = (i + FIRST_ATOM) % kAtoms;
    before_atom(at);
    static_for<kStepsPerAtom>([&](auto k) {
      constexpr uint32_t kOff = at * kAtomBytes + k * kWgmmaK * kElemBytes;
      // wgmma_ss adds kOff to both descriptors; Q's atom sits (kAtomBytes - Q_ATOM_BYTES) * at
      // bytes nearer. The address field counts 16-byte units, and the 64-bit sum
      // desc_q - kQueryBack + kOff / 16 is exact, so the field ends at Q's atom.
      constexpr uint64_t kQueryBack = uint64_t(at) * (kAtomBytes - Q_ATOM_BYTES) / kDescUnitBytes;
      wgmma_ss<T, kOff>(s, desc_q - kQueryBack, desc_k, i + k > 0);
    });
  });
  wgmma_commit();
}

// s = Q K^T; waits for completion. `meanwhile()` runs while the wgmma does (FP8: a conversion).
template <class T, int D, class Meanwhile = Nothing>
__device__ __forceinline__ void gemm_qk(float (&s)[kAccRegs], uint32_t q_tile, uint32_t k_slot,
                                        Meanwhile meanwhile = {}) {
  issue_qk<T, D>(s, q_tile, k_slot);
  meanwhile();
  wgmma_wait<0>();
  fence_regs(s);
}

// Q in registers (FP8 caches at d 128, consumer.cuh): this thread's m64k16 A fragments of the
// D / 16 k-steps of S = Q K^T, read once per work item from the staged Q tile (swizzled as TMA
// writes it). Fragment j of a k-step holds columns 2 (lane % 4) + {0, 1} (+ 8 for j >= 2) of
// row 16 warp + lane / 4 (+ 8 for odd j): the layout pack_p gives P.
template <int D>
__device__ __forceinline__ void load_query_fragments(uint32_t q_tile, int wg_tid,
                                                     uint32_t (&qf)[D / kWgmmaK][4]) {
  const int warp = wg_tid / kWarpSize, lane = wg_tid % kWarpSize;
  const int row0 = 16 * warp + lane / kQuadLanes, col0 = 2 * (lane % kQuadLanes);
#pragma unroll
  for (int kk = 0; kk < D / kWgmmaK; ++kk)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int row = row0 + 8 * (j & 1), col = kWgmmaK * kk + 8 * (j >> 1) + col0;
      qf[kk][j] = uint32_t(ld_shared_s32(q_tile + swizzled_offset(row, col / kUnitElems) +
                                         uint32_t(col % kUnitElems) * kElemBytes));
    }
}

// s = Q K^T with Q's fragments from registers (load_query_fragments): S's k-steps read only K
// from shared memory. Waits for completion; `meanwhile()` runs while the wgmma does.
template <class T, int D, class Meanwhile = Nothing>
__device__ __forceinline__ void gemm_qk_rs(float (&s)[kAccRegs],
                                           const uint32_t (&qf)[D / kWgmmaK][4], uint32_t k_slot,
                                           Meanwhile meanwhile = {}) {
  constexpr int kStepsPerAtom = kAtomCols / kWgmmaK;
  const uint64_t desc_k = make_desc(k_slot, kKMajorLbo, kSwizzleGroupBytes);
  wgmma_fence();
  static_for<D / kWgmmaK>([&](auto kk) {
    constexpr uint32_t kOff =
        (kk / kStepsPerAtom) * kAtomBytes + (kk % kStepsPerAtom) * kWgmmaK * kElemBytes;
    wgmma_rs<T, kOff, 0>(s, qf[kk], desc_k, kk > 0);
  });
  wgmma_commit();
  meanwhile();
  wgmma_wait<0>();
  fence_regs(s);
}

constexpr int kPvSteps = kBlockN / kWgmmaK;  // k-steps of O += P V: 16 tokens each

// P (64 x 64 tokens) as wgmma A fragments, one per 16-token k-step: the f32 accumulator layout
// of S packed to 16-bit pairs (`rest`: the rounding rest of each value instead, see gemm_pv).
template <class T, bool REST = false>
__device__ __forceinline__ void pack_p(const float (&pr)[kAccRegs], uint32_t (&a)[kPvSteps][4]) {
  auto value = [](float x) {
    if constexpr (REST) return rounding_rest<T>(x);
    else return x;
  };
#pragma unroll
  for (int kk = 0; kk < kPvSteps; ++kk)
#pragma unroll
    for (int j = 0; j < 4; ++j)
      a[kk][j] = pack2<T>(value(pr[8 * kk + 2 * j]), value(pr[8 * kk + 2 * j + 1]));
}

template <int ATOMS>
__device__ __forceinline__ void fence_acc(float (&o)[ATOMS][kAccRegs]) {
#pragma unroll
  for (int at = 0; at < ATOMS; ++at) fence_regs(o[at]);
}

// O += P V over 256 output columns (MFA / MFA-KR d 256, each MLA warpgroup's half) as one
// m64n256k16 per 16-token k-step instead of four m64n64k16. FLASHMFA_SM90_PV_N256=0 builds
// the four-instruction form (same-machine A/B).
#ifndef FLASHMFA_SM90_PV_N256
#define FLASHMFA_SM90_PV_N256 1
#endif
constexpr bool kPvN256 = FLASHMFA_SM90_PV_N256 != 0;
constexpr int kPvN256Atoms = 4;

// Issues o (64 x 64 * ATOMS f32) += P (registers) V (64 tokens x 64 * ATOMS columns from
// v_slot, MN-major, one 64-column atom per kAtomBytes) as one wgmma group; the caller waits.
template <class T, int ATOMS>
__device__ __forceinline__ void issue_pv(float (&o)[ATOMS][kAccRegs],
                                         const uint32_t (&a)[kPvSteps][4], uint32_t v_slot) {
  constexpr uint32_t kStepBytes = kWgmmaK * kSwizzleRowBytes;  // 16 tokens down
  const uint64_t desc_v = make_desc(v_slot, kAtomBytes, kSwizzleGroupBytes);
  // The accumulators (just rescaled) and the A fragments (just packed) must be final before
  // wgmma.fence: otherwise the compiler may sink that arithmetic below it, and ptxas then
  // injects its own waits around the wgmma (C7519) and serializes them.
  fence_acc(o);
#pragma unroll
  for (int kk = 0; kk < kPvSteps; ++kk)
#pragma unroll
    for (int j = 0; j < 4; ++j) asm volatile("" ::"r"(a[kk][j]) : "memory");
  wgmma_fence();
  if constexpr (kPvN256 && ATOMS == kPvN256Atoms) {
    static_for<kPvSteps>([&](auto kk) { wgmma_rs_n256<T, kk * kStepBytes>(o, a[kk], desc_v); });
  } else {
    static_for<kPvSteps>([&](auto kk) {
      static_for<ATOMS>([&](auto at) {
        wgmma_rs<T, at * kAtomBytes + kk * kStepBytes>(o[at], a[kk], desc_v);
      });
    });
  }
  wgmma_commit();
}

// o (64 x D f32, as D/64 accumulator tiles) += P (64 x 64 tokens, registers) V (64 x D).
// Waits for completion. With `precise`, a second pass adds (P - round(P)) V: P rounded to
// 16 bits alone errs by up to 2^-9 relative per weight, which the sum over a few hundred
// tokens averages out but a row that sees only a handful of tokens does not (see config.hpp,
// kPreciseMaxTokens). The wgmma reads its A registers asynchronously, so the second pass waits
// for the first before it overwrites them. `meanwhile()` runs while the first pass does.
template <class T, int D, class Meanwhile = Nothing>
__device__ __forceinline__ void gemm_pv(float (&o)[D / kAtomCols][kAccRegs],
                                        const float (&pr)[kAccRegs], uint32_t v_slot,
                                        bool precise, Meanwhile meanwhile = {}) {
  uint32_t a[kPvSteps][4];
  pack_p<T>(pr, a);
  issue_pv<T, D / kAtomCols>(o, a, v_slot);
  meanwhile();
  wgmma_wait<0>();
  fence_acc(o);
  if (precise) {
    pack_p<T, true>(pr, a);
    issue_pv<T, D / kAtomCols>(o, a, v_slot);
    wgmma_wait<0>();
    fence_acc(o);
  }
}

}  // namespace flashmfa::cuda::sm90
