// flashmfa CUDA, Hopper path, measuring builds only (docs/perf-notes.md T): the speed of e4m3
// tensor-core math on an FP8 MFA-KR cache, which issue 8 asks to measure beside the bf16 math the
// kernel runs (consumer.cuh, item_fp8). FLASHMFA_MEASURE_FP8_MATH:
//   1  S = Q K^T as e4m3 wgmma (m64n64k32) straight from the raw slot; the slot is converted to
//      16 bits for P V while S runs, and released once S is done;
//   2  both GEMMs in e4m3: also O += P V (m64n256k32, P from registers, V from the raw slot); no
//      conversion at all;
//   3  mode 2 with a lower bound of V's transpose in the chain: while S runs, the warpgroup
//      copies the raw tile into its 16-bit slot (16 KB in, 16 KB out, one byte permute per word,
//      conflict-free addresses, 64B-swizzled like the operand P V then reads from there) -- the
//      shared-memory traffic and the least ALU work of any transpose, not its data movement;
//   4  mode 3's copy made off the consumers' chain, by the producer warpgroup's idle warps 1-3
//      (FA3's arrangement): each raw tile into the 16-bit slot of the same index, published on
//      that slot's full barrier, which the consumer waits on before its P V.
// The operands are the right size and in the right memory but not in the right layout: Q's
// 16-bit tile is read as if it held e4m3 rows, the raw slot as if TMA had swizzled it (and, for
// P V, as if it were transposed: 8-bit wgmma takes K-major B only), and P's packed 16-bit pairs
// as e4m3 fragments. So the results are wrong by design (the bench times them only with
// FLASHMFA_MEASURE_TIME_FAILED), while the tensor work, the shared-memory bytes and the schedule
// are those of a real e4m3 kernel, less the cost of the layouts it would need: Q quantized per
// item, P's accumulators moved into 8-bit fragment order (shuffles), and V transposed per tile.
// Each column of S is still multiplied by its token's scale, as a real kernel must.
#pragma once

#include <cstdint>

#include "cuda/sm90/decode/ptx.cuh"
#include "cuda/sm90/decode/wgmma.cuh"

#ifndef FLASHMFA_MEASURE_FP8_MATH
#define FLASHMFA_MEASURE_FP8_MATH 0
#endif
#if FLASHMFA_MEASURE_FP8_MATH && (!defined(FLASHMFA_FP8_FOLD) || FLASHMFA_FP8_FOLD)
// Its e4m3 scores are not times 2^-kFp8Shift (common/fp8_dequant.cuh).
#error "FLASHMFA_MEASURE_FP8_MATH needs -DFLASHMFA_FP8_FOLD=0"
#endif

namespace flashmfa::cuda::sm90 {

constexpr int kMeasureFp8Math = FLASHMFA_MEASURE_FP8_MATH;

#if FLASHMFA_MEASURE_FP8_MATH
constexpr int kE4m3K = 32;                 // k of one 8-bit wgmma: 32 bytes of each row
constexpr uint64_t kLayoutSwizzle64 = 2;   // sm_90 descriptor layout_type for 64B swizzle
constexpr int kSwizzle64RowBytes = 64;     // rows of the 64B-swizzled V operand: 64 tokens
constexpr uint32_t kSwizzle64GroupBytes = kSwizzleGroupRows * kSwizzle64RowBytes;

__device__ __forceinline__ uint64_t with_layout(uint64_t desc, uint64_t layout) {
  return (desc & ~(uint64_t(3) << 62)) | (layout << 62);
}

// d (64x64 f32) = [d +] A (64x32 e4m3, K-major, shared) * B (32x64 e4m3, K-major, shared).
template <uint32_t OFFSET>
__device__ __forceinline__ void wgmma_ss_e4m3(float (&d)[kAccRegs], uint64_t desc_a,
                                              uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\n.reg .b64 da, db;\nsetp.ne.b32 p, %34, 0;\n"
      "add.s64 da, %32, %35;\nadd.s64 db, %33, %35;\n"
      "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, da, db, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),
        "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]),
        "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(OFFSET / kDescUnitBytes));
}

// d (64 x 256 f32, four m64n64 fragments in order) += A (64x32 e4m3, registers) * B (32 x 256
// e4m3, K-major, shared).
template <uint32_t OFFSET>
__device__ __forceinline__ void wgmma_rs_e4m3_n256(float (&d)[4][kAccRegs], const uint32_t (&a)[4],
                                                   uint64_t desc_b) {
  asm volatile(
      "{\n.reg .b64 db;\nadd.s64 db, %132, %133;\n"
      "wgmma.mma_async.sync.aligned.m64n256k32.f32.e4m3.e4m3 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, {%128, %129, %130, %131}, db, 1, 1, 1;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[0][4]),
        "+f"(d[0][5]), "+f"(d[0][6]), "+f"(d[0][7]), "+f"(d[0][8]), "+f"(d[0][9]),
        "+f"(d[0][10]), "+f"(d[0][11]), "+f"(d[0][12]), "+f"(d[0][13]), "+f"(d[0][14]),
        "+f"(d[0][15]), "+f"(d[0][16]), "+f"(d[0][17]), "+f"(d[0][18]), "+f"(d[0][19]),
        "+f"(d[0][20]), "+f"(d[0][21]), "+f"(d[0][22]), "+f"(d[0][23]), "+f"(d[0][24]),
        "+f"(d[0][25]), "+f"(d[0][26]), "+f"(d[0][27]), "+f"(d[0][28]), "+f"(d[0][29]),
        "+f"(d[0][30]), "+f"(d[0][31]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
        "+f"(d[1][3]), "+f"(d[1][4]), "+f"(d[1][5]), "+f"(d[1][6]), "+f"(d[1][7]),
        "+f"(d[1][8]), "+f"(d[1][9]), "+f"(d[1][10]), "+f"(d[1][11]), "+f"(d[1][12]),
        "+f"(d[1][13]), "+f"(d[1][14]), "+f"(d[1][15]), "+f"(d[1][16]), "+f"(d[1][17]),
        "+f"(d[1][18]), "+f"(d[1][19]), "+f"(d[1][20]), "+f"(d[1][21]), "+f"(d[1][22]),
        "+f"(d[1][23]), "+f"(d[1][24]), "+f"(d[1][25]), "+f"(d[1][26]), "+f"(d[1][27]),
        "+f"(d[1][28]), "+f"(d[1][29]), "+f"(d[1][30]), "+f"(d[1][31]), "+f"(d[2][0]),
        "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[2][4]), "+f"(d[2][5]),
        "+f"(d[2][6]), "+f"(d[2][7]), "+f"(d[2][8]), "+f"(d[2][9]), "+f"(d[2][10]),
        "+f"(d[2][11]), "+f"(d[2][12]), "+f"(d[2][13]), "+f"(d[2][14]), "+f"(d[2][15]),
        "+f"(d[2][16]), "+f"(d[2][17]), "+f"(d[2][18]), "+f"(d[2][19]), "+f"(d[2][20]),
        "+f"(d[2][21]), "+f"(d[2][22]), "+f"(d[2][23]), "+f"(d[2][24]), "+f"(d[2][25]),
        "+f"(d[2][26]), "+f"(d[2][27]), "+f"(d[2][28]), "+f"(d[2][29]), "+f"(d[2][30]),
        "+f"(d[2][31]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
        "+f"(d[3][4]), "+f"(d[3][5]), "+f"(d[3][6]), "+f"(d[3][7]), "+f"(d[3][8]),
        "+f"(d[3][9]), "+f"(d[3][10]), "+f"(d[3][11]), "+f"(d[3][12]), "+f"(d[3][13]),
        "+f"(d[3][14]), "+f"(d[3][15]), "+f"(d[3][16]), "+f"(d[3][17]), "+f"(d[3][18]),
        "+f"(d[3][19]), "+f"(d[3][20]), "+f"(d[3][21]), "+f"(d[3][22]), "+f"(d[3][23]),
        "+f"(d[3][24]), "+f"(d[3][25]), "+f"(d[3][26]), "+f"(d[3][27]), "+f"(d[3][28]),
        "+f"(d[3][29]), "+f"(d[3][30]), "+f"(d[3][31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "n"(OFFSET / kDescUnitBytes));
}

// Issues s (64 x 64 f32) = Q (64 x D e4m3) K^T (D x 64 tokens e4m3, the raw slot) as one wgmma
// group: D / 32 k-steps over 128-byte atoms of 64 rows (8 KB each).
template <int D>
__device__ __forceinline__ void issue_qk_e4m3(float (&s)[kAccRegs], uint32_t q_tile,
                                              uint32_t raw) {
  constexpr int kSteps = D / kE4m3K;
  constexpr int kStepsPerAtom = kSwizzleRowBytes / kE4m3K;
  constexpr uint32_t kAtom = kBlockN * kSwizzleRowBytes;
  const uint64_t desc_q = make_desc(q_tile, kDescUnitBytes, kSwizzleGroupBytes);
  const uint64_t desc_k = make_desc(raw, kDescUnitBytes, kSwizzleGroupBytes);
  wgmma_fence();
  static_for<kSteps>([&](auto k) {
    constexpr uint32_t kOff = (k / kStepsPerAtom) * kAtom + (k % kStepsPerAtom) * kE4m3K;
    wgmma_ss_e4m3<kOff>(s, desc_q, desc_k, k > 0);
  });
  wgmma_commit();
}

// One 16-byte unit c of the stand-in for V's transpose (mode 3, 4): the raw tile's unit c, its
// words mixed by one byte permute each, to unit c of `dst` (64-byte rows, 64B-swizzled).
__device__ __forceinline__ void copy_unit(const uint32_t (&in)[4], uint32_t dst, int c) {
  constexpr int kRowUnits = kSwizzle64RowBytes / kDescUnitBytes;
  const int row = c / kRowUnits, u = c % kRowUnits;
  uint32_t out[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) out[k] = __byte_perm(in[k], in[(k + 1) % 4], 0x6420);
  st_shared(dst + uint32_t(row * kSwizzle64RowBytes + ((u ^ ((row >> 1) & 3)) * kDescUnitBytes)),
            make_uint4(out[0], out[1], out[2], out[3]));
}

// Mode 3's stand-in for V's transpose (see above): the raw tile (64 x D bytes) into `dst`, shared
// over one warpgroup (thread t), the loads of four units issued before their stores.
template <int D>
__device__ __forceinline__ void transpose_bound(uint32_t raw, uint32_t dst, int t) {
  constexpr int kPerThread = kBlockN * D / kDescUnitBytes / kWarpgroupThreads;
#pragma unroll
  for (int b = 0; b < kPerThread; b += 4) {
    uint32_t in[4][4];
#pragma unroll
    for (int j = 0; j < 4; ++j) ld_shared(raw + uint32_t(((b + j) * kWarpgroupThreads + t) * kDescUnitBytes), in[j]);
#pragma unroll
    for (int j = 0; j < 4; ++j) copy_unit(in[j], dst, (b + j) * kWarpgroupThreads + t);
  }
}

// Mode 4's copy: the same bytes and swizzle, shared over THREADS threads.
template <int D, int THREADS>
__device__ __forceinline__ void transpose_bound_strided(uint32_t raw, uint32_t dst, int t) {
  constexpr int kChunks = kBlockN * D / kDescUnitBytes;
#pragma unroll 2  // the producer warpgroup runs with 24 registers (setmaxnreg)
  for (int c = t; c < kChunks; c += THREADS) {
    uint32_t in[4];
    ld_shared(raw + uint32_t(c * kDescUnitBytes), in);
    copy_unit(in, dst, c);
  }
}

// P (64 x 64 tokens) as e4m3 A fragments of 2 k-steps, four values per word (the conversion a
// real kernel runs; the shuffles into 8-bit fragment order it would also need are left out).
__device__ __forceinline__ void pack_p_e4m3(const float (&pr)[kAccRegs], uint32_t (&a)[2][4]) {
#pragma unroll
  for (int kk = 0; kk < 2; ++kk)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float* x = pr + 16 * kk + 4 * j;
      uint16_t lo, hi;
      asm("cvt.rn.satfinite.e4m3x2.f32 %0, %2, %1;" : "=h"(lo) : "f"(x[0]), "f"(x[1]));
      asm("cvt.rn.satfinite.e4m3x2.f32 %0, %2, %1;" : "=h"(hi) : "f"(x[2]), "f"(x[3]));
      a[kk][j] = uint32_t(lo) | (uint32_t(hi) << 16);
    }
}

// Issues o (64 x 256 f32) += P (64 x 64 tokens, registers: 2 k-steps of 4 words) V (the raw slot
// read as 256 rows of 64 token bytes, 64B-swizzled) as one wgmma group.
__device__ __forceinline__ void issue_pv_e4m3(float (&o)[4][kAccRegs], const uint32_t (&a)[2][4],
                                              uint32_t raw) {
  const uint64_t desc_v =
      with_layout(make_desc(raw, kDescUnitBytes, kSwizzle64GroupBytes), kLayoutSwizzle64);
#pragma unroll
  for (int at = 0; at < 4; ++at) fence_regs(o[at]);
#pragma unroll
  for (int kk = 0; kk < 2; ++kk)
#pragma unroll
    for (int j = 0; j < 4; ++j) asm volatile("" ::"r"(a[kk][j]) : "memory");
  wgmma_fence();
  wgmma_rs_e4m3_n256<0>(o, a[0], desc_v);
  wgmma_rs_e4m3_n256<kE4m3K>(o, a[1], desc_v);
  wgmma_commit();
}
#endif

}  // namespace flashmfa::cuda::sm90
