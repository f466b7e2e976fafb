// flashmfa CUDA, Hopper path: warp-group MMA (wgmma) for the decode kernel -- shared-memory
// matrix descriptors for 128-byte-swizzled tiles and the m64n64k16 instructions the kernel
// issues (S = Q K^T with both operands in shared memory, O += P V with P from registers).
//
// One instruction shape only: N = 64 fits one 128-byte swizzle atom of a 16-bit row, so a
// d-wide operand is d/64 independent atoms and no descriptor ever spans two of them; the
// 32 accumulator registers per instruction keep the inline assembly short.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>
#include <utility>

namespace flashmfa::cuda::sm90 {

constexpr int kWgmmaM = 64, kWgmmaN = 64, kWgmmaK = 16;
constexpr int kAccRegs = kWgmmaM * kWgmmaN / 128;  // f32 accumulators per thread: 32

// Swizzle geometry shared by TMA (CU_TENSOR_MAP_SWIZZLE_128B) and wgmma (layout type 1): rows
// of 128 bytes, 8-row groups of 1024 bytes in which 16-byte unit u of row r sits at u ^ (r % 8).
constexpr int kSwizzleRowBytes = 128;
constexpr int kSwizzleGroupRows = 8;
constexpr int kSwizzleGroupBytes = kSwizzleRowBytes * kSwizzleGroupRows;  // 1024: tile alignment
constexpr int kDescUnitBytes = 16;       // descriptor fields count 16-byte units
constexpr uint64_t kLayoutSwizzle128 = 1;  // sm_90 descriptor layout_type for 128B swizzle

// A wgmma shared-memory matrix descriptor:
//   bits  0-13  start address >> 4
//   bits 16-29  leading-dimension byte offset >> 4
//   bits 32-45  stride-dimension byte offset >> 4
//   bits 62-63  layout type
// K-major operands (Q, K for S = Q K^T): rows of 128 bytes along K; the stride offset is the
// distance between 8-row groups (1024); the leading offset is unused for swizzled K-major.
// MN-major operand (V for O += P V: d contiguous, tokens along K): the stride offset is again
// the distance between 8-token groups, the leading offset the distance between 64-column atoms.
__device__ __forceinline__ uint64_t make_desc(uint32_t smem_byte_addr, uint32_t lbo_bytes,
                                              uint32_t sbo_bytes) {
  constexpr uint32_t kAddrMask = (1u << 14) - 1;
  uint64_t desc = (smem_byte_addr / kDescUnitBytes) & kAddrMask;
  desc |= uint64_t((lbo_bytes / kDescUnitBytes) & kAddrMask) << 16;
  desc |= uint64_t((sbo_bytes / kDescUnitBytes) & kAddrMask) << 32;
  desc |= kLayoutSwizzle128 << 62;
  return desc;
}

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// Keeps the compiler from moving reads or writes of accumulator registers across a
// wgmma_wait (the asm statements above do not name the registers the hardware writes).
// Calls f(std::integral_constant<int, I>{}) for I = 0 .. N-1: a loop whose index is a
// constant expression (the wgmma offsets above are template arguments).
template <int N, class F, int... I>
__device__ __forceinline__ void static_for_impl(F&& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}
template <int N, class F>
__device__ __forceinline__ void static_for(F&& f) {
  static_for_impl<N>(f, std::make_integer_sequence<int, N>{});
}

template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

// d (64x64 f32) = [d +] A (64x16, K-major, shared) * B (16x64, K-major, shared), the
// operands at OFFSET bytes past the descriptors' start addresses. The offset is added inside
// the instruction sequence (an immediate) so that the compiler keeps one base descriptor per
// operand live instead of hoisting one 64-bit descriptor per k-step out of the KV loop.
// accumulate = 0 ignores d's old contents (the first k-step of S).
template <class T, uint32_t OFFSET>
__device__ __forceinline__ void wgmma_ss(float (&d)[kAccRegs], uint64_t desc_a, uint64_t desc_b,
                                         int accumulate) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "{\n.reg .pred p;\n.reg .b64 da, db;\nsetp.ne.b32 p, %34, 0;\n"
        "add.s64 da, %32, %35;\nadd.s64 db, %33, %35;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, da, db, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]),
        "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
        "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),
        "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(OFFSET / kDescUnitBytes));
  } else {
    asm volatile(
        "{\n.reg .pred p;\n.reg .b64 da, db;\nsetp.ne.b32 p, %34, 0;\n"
        "add.s64 da, %32, %35;\nadd.s64 db, %33, %35;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, da, db, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]),
        "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
        "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),
        "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(OFFSET / kDescUnitBytes));
  }
}

// d (64x64 f32) += A (64x16 from registers, the m64k16 A fragment) * B (16x64, MN-major,
// shared; imm-trans-b = 1) at OFFSET bytes past desc_b's start address.
template <class T, uint32_t OFFSET>
__device__ __forceinline__ void wgmma_rs(float (&d)[kAccRegs], const uint32_t (&a)[4],
                                         uint64_t desc_b) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "{\n.reg .pred p;\n.reg .b64 db;\nsetp.ne.b32 p, %37, 0;\n"
        "add.s64 db, %36, %38;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, db, p, 1, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]),
        "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
        "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),
        "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1), "n"(OFFSET / kDescUnitBytes));
  } else {
    asm volatile(
        "{\n.reg .pred p;\n.reg .b64 db;\nsetp.ne.b32 p, %37, 0;\n"
        "add.s64 db, %36, %38;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, db, p, 1, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]),
        "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
        "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),
        "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1), "n"(OFFSET / kDescUnitBytes));
  }
}

}  // namespace flashmfa::cuda::sm90
