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
#include "cuda/sm90/decode/ptx.cuh"
#include "cuda/sm90/decode/traits.cuh"
#include "cuda/sm90/decode/wgmma.cuh"

namespace flashmfa::cuda::sm90 {

constexpr uint32_t kKMajorLbo = kDescUnitBytes;  // unused by swizzled K-major operands
constexpr int kUnitElems = kDescUnitBytes / kElemBytes;  // 8 elements per 16-byte load

// Copies the 64 query rows of work item `seq` starting at query row first_row into a swizzled Q
// tile, shared over THREADS threads (thread index tid); rows past `rows` (s_q * q_per_kv) are
// zero, so their scores are finite and simply never written out. Tile row r is query row
// first_row + r = t * q_per_kv + head_in_group.
template <class T, int D, int THREADS>
__device__ void load_query(const detail::DecodeParams& p, int seq, int kv_head, int first_row,
                           uint32_t q_tile, int tid) {
  constexpr int kUnitsPerRow = D / kUnitElems;
  constexpr int kUnits = kRowsPerWarpgroup * kUnitsPerRow;
  constexpr int kPerThread = kUnits / THREADS;
  constexpr int kBatch = kPerThread < 8 ? kPerThread : 8;  // loads in flight before stores
  static_assert(kUnits % (THREADS * kBatch) == 0, "whole batches per thread");
  const int rows = p.s_q * p.q_per_kv;
  const T* q = static_cast<const T*>(p.q) + int64_t(seq) * p.q_sb;
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
        v[j] = *reinterpret_cast<const uint4*>(q + t * p.q_ss + head * p.q_sh + u * kUnitElems);
      }
    }
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const int i = (b + j) * THREADS + tid;
      const int r = i / kUnitsPerRow, u = i % kUnitsPerRow;
      st_shared(q_tile + swizzled_offset(r, u), v[j]);
    }
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

// s (64 x 64 f32) = Q (64 x D) K^T (D x 64 tokens). Waits for completion.
template <class T, int D>
__device__ __forceinline__ void gemm_qk(float (&s)[kAccRegs], uint32_t q_tile, uint32_t k_slot) {
  using Tr = Traits<D, 1>;
  const uint64_t desc_q = make_desc(q_tile, kKMajorLbo, kSwizzleGroupBytes);
  const uint64_t desc_k = make_desc(k_slot, kKMajorLbo, kSwizzleGroupBytes);
  wgmma_fence();
  static_for<Tr::kQkSteps>([&](auto kk) {
    constexpr uint32_t kOff = (kk / Tr::kStepsPerAtom) * kAtomBytes +
                              (kk % Tr::kStepsPerAtom) * kWgmmaK * kElemBytes;
    wgmma_ss<T, kOff>(s, desc_q, desc_k, kk > 0);
  });
  wgmma_commit();
  wgmma_wait<0>();
  fence_regs(s);
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

// o (64 x D f32, as D/64 accumulator tiles) += P (64 x 64 tokens, registers) V (64 x D).
// Waits for completion. With `precise`, a second pass adds (P - round(P)) V: P rounded to
// 16 bits alone errs by up to 2^-9 relative per weight, which the sum over a few hundred
// tokens averages out but a row that sees only a handful of tokens does not (see config.hpp,
// kPreciseMaxTokens). The wgmma reads its A registers asynchronously, so the second pass waits
// for the first before it overwrites them.
template <class T, int D>
__device__ __forceinline__ void gemm_pv(float (&o)[D / kAtomCols][kAccRegs],
                                        const float (&pr)[kAccRegs], uint32_t v_slot,
                                        bool precise) {
  using Tr = Traits<D, 1>;
  constexpr uint32_t kStepBytes = kWgmmaK * kSwizzleRowBytes;  // 16 tokens down
  const uint64_t desc_v = make_desc(v_slot, kAtomBytes, kSwizzleGroupBytes);
  uint32_t a[Tr::kPvSteps][4];
  auto pass = [&] {
    wgmma_fence();
    static_for<Tr::kPvSteps>([&](auto kk) {
      static_for<Tr::kAtoms>([&](auto at) {
        wgmma_rs<T, at * kAtomBytes + kk * kStepBytes>(o[at], a[kk], desc_v);
      });
    });
    wgmma_commit();
    wgmma_wait<0>();
#pragma unroll
    for (int at = 0; at < Tr::kAtoms; ++at) fence_regs(o[at]);
  };
#pragma unroll
  for (int kk = 0; kk < Tr::kPvSteps; ++kk)
#pragma unroll
    for (int j = 0; j < 4; ++j) a[kk][j] = pack2<T>(pr[8 * kk + 2 * j], pr[8 * kk + 2 * j + 1]);
  pass();
  if (precise) {
#pragma unroll
    for (int kk = 0; kk < Tr::kPvSteps; ++kk)
#pragma unroll
      for (int j = 0; j < 4; ++j)
        a[kk][j] = pack2<T>(rounding_rest<T>(pr[8 * kk + 2 * j]),
                            rounding_rest<T>(pr[8 * kk + 2 * j + 1]));
    pass();
  }
}

}  // namespace flashmfa::cuda::sm90
