// flashmfa CUDA, portable path: the seesaw form of the decode kernel, for MLA's compute-bound
// tile (576-wide rows, V = the first 512 columns of K, 64 query rows x 64 tokens, 16-bit cache,
// pages of a multiple of 64 tokens).
//
// The plain kernel (kernel.cuh) runs S, the softmax and P V of each tile one after the other
// with the whole CTA; while four warps run the softmax chain between S and P V (a quarter of
// the tile's time, docs/perf-notes.md J.1) the tensor pipes idle. Here the 8 warps form two
// groups of 4, and tile t of a work item is owned by group t % 2, which computes S_t with its
// 2 x 2 warp grid, runs the softmax from the running max the other group published after tile
// t - 1, and publishes P_t and its running max. Every warp keeps its own 64 columns of O (as in
// the plain kernel), so both groups add P_t V_t. Per group and own tile t:
//
//   take P_{t-1}: bar.sync PREADY[other] -> running max, O *= alpha -> O += P_{t-1} V_{t-1}
//   bar.sync DONE[other] (its P V_{t-1} is done: P and its stage are free)
//   S_t = Q K_t^T, issuing tile t+1's copies into the other group's stage, one per k-step
//   row maxima (bar.sync GROUP) -> running max, O *= alpha -> P_t -> bar.sync GROUP
//   bar.arrive PREADY[own] -> O += P_t V_t -> bar.arrive DONE[own]
//
// so one group's softmax runs beside the other group's P V and S. Stage g always holds group
// g's tiles; a tile's copies complete on its stage's mbarrier (cp.async.mbarrier.arrive), which
// both groups wait on before reading it. A tile's page holds all its 64 rows (page size a
// multiple of 64), so a skipped page masks the whole tile.
#pragma once

#include <cstdint>

#include "cuda/sm80/decode/epilogue.cuh"
#include "cuda/sm80/decode/loader.cuh"
#include "cuda/sm80/decode/mainloop.cuh"
#include "cuda/sm80/decode/softmax.cuh"
#include "cuda/sm80/decode/traits.cuh"

namespace flashmfa::cuda::sm80 {

constexpr int kGroupWarps = 4, kGroupThreads = kGroupWarps * 32;
// Named barriers (0 is __syncthreads); each id plus the group it belongs to.
constexpr int kBarGroup = 1;   // the group's 128 threads
constexpr int kBarPReady = 3;  // the owner's P, running max published (arrive: owner, sync: other)
constexpr int kBarDone = 5;    // the owner's P V done (arrive: owner, sync: the next owner)

// The tile shapes the seesaw kernel is built for.
template <class Tr>
constexpr bool kSeesawTile = Tr::D_K == 576 && Tr::D_V == 512 && Tr::BLOCK_M == 64 &&
                             Tr::BLOCK_N == 64 && !Tr::FP8 && Tr::S_WARPS == kGroupWarps;

// The copies of one tile into a stage, issued by one group: group thread gt covers rows
// r0 + 16 i (i < 4), 16-byte chunks cl + 8 c (c < 9) of each: exactly one copy per k-step of
// S = Q K^T (36), so the other group's tile streams in while this group computes S.
template <class Tr>
struct TileCopy {
  static constexpr int kRows = 4, kChunks = Tr::K_CHUNKS / kLoadThreadsPerRow, kRowStride = 16;
  static_assert(kRows * kChunks == Tr::K_STEPS && kRows * kRowStride == Tr::BLOCK_N,
                "one copy per k-step covers the tile");
  const uint16_t* src = nullptr;  // chunk cl of row r0 of the tile
  int64_t row_step = 0;           // 16 rows, in elements
  uint32_t dst = 0;               // chunk cl of row r0 of the stage (swizzled)
  uint32_t valid = 0;             // bit i: row r0 + 16 i is in the sequence on a valid page

  TileCopy() = default;  // copies nothing (the item has no next tile to fetch)

  // `tile` of item `it` into the stage at `stage`; gt: thread index within the group. Flags a
  // page outside [0, num_pages) in the schedule header and zero-fills its rows instead.
  __device__ TileCopy(const KernelParams& kp, const WorkItem& it, int kv, int tile, int gt,
                      uint32_t stage) {
    const detail::DecodeParams& p = kp.p;
    const int r0 = gt / kLoadThreadsPerRow, cl = gt % kLoadThreadsPerRow;
    const int first = tile * Tr::BLOCK_N;
    const int page = __ldg(p.block_table + int64_t(it.seq) * p.bt_sb + (first >> p.log2_page_size));
    const bool page_ok = page >= 0 && page < p.num_pages;
    if (!page_ok && gt == 0) atomicOr(&kp.sched.header->error_flags, uint32_t(kFlagPageOutOfRange));
#pragma unroll
    for (int i = 0; i < kRows; ++i)
      valid |= uint32_t(page_ok && first + r0 + kRowStride * i < it.seqlen) << i;
    const int64_t slot = (first & (p.page_size - 1)) + r0;
    src = static_cast<const uint16_t*>(p.k) + (int64_t(page_ok ? page : 0) * p.k_sp +
                                               slot * p.k_st + int64_t(kv) * p.k_sh) +
          cl * kChunkElems;
    row_step = kRowStride * p.k_st;
    dst = stage + uint32_t(r0 * Tr::KV_ROW_BYTES + ((cl ^ (r0 & 7)) << 4));
  }

  // Copy ks of 36 (rows keep r0 % 8 in 16-row steps: same swizzle term).
  __device__ void issue(int ks) const {
    const int i = ks / kChunks, c = ks % kChunks;
    cp_async_16(dst + uint32_t(i * kRowStride * Tr::KV_ROW_BYTES + c * 128),
                src + i * row_step + c * kLoadThreadsPerRow * kChunkElems, (valid >> i) & 1u);
  }
};

template <class Tr>
__global__ void __launch_bounds__(kThreads, 1)
decode_seesaw_kernel(const __grid_constant__ KernelParams kp) {
  static_assert(kSeesawTile<Tr> && kThreads == 2 * kGroupThreads, "MLA's 64 x 64 tile, 2 groups");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");  // as decode_kernel
#endif
  constexpr int BLOCK_M = Tr::BLOCK_M, BLOCK_N = Tr::BLOCK_N, MT = Tr::MT, O_NT = Tr::O_NT;
  constexpr int kRed = Tr::WN * BLOCK_M;  // floats of one group's `red` block
  extern __shared__ __align__(kSmemAlign) uint8_t smem[];

  const detail::DecodeParams& p = kp.p;
  constexpr SeesawPlan plan(Tr::D_K, BLOCK_M, BLOCK_N);
  const uint32_t smem_base = smem_addr(smem);
  const uint32_t q_tile = smem_base + uint32_t(plan.q);
  const uint32_t p_tile = smem_base + uint32_t(plan.p);
  float* red = reinterpret_cast<float*>(smem + plan.red);
  float* stats = reinterpret_cast<float*>(smem + plan.stats);
  const uint8_t* zeros = smem + plan.zeros;
  auto stage = [&](int s) { return smem_base + uint32_t(plan.stage + s * plan.stage_bytes); };
  auto full = [&](int s) { return smem_base + uint32_t(plan.full + s * sizeof(uint64_t)); };

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = warp / kGroupWarps, other = 1 - g, gt = threadIdx.x % kGroupThreads;
  const int wm = (warp % kGroupWarps) / Tr::WN, wn = warp % Tr::WN;
  const int kv = blockIdx.z, row0 = blockIdx.x * BLOCK_M;
  const int rows = p.s_q * p.q_per_kv;

  if (threadIdx.x < BLOCK_N / 4) reinterpret_cast<uint32_t*>(smem + plan.zeros)[threadIdx.x] = 0;
  if (threadIdx.x == 0) {
    mbar_init(full(0), kGroupThreads);
    mbar_init(full(1), kGroupThreads);
  }
  __syncthreads();
  uint32_t phase = 0;  // bit s: parity of the fill of stage s this thread waits for next

  const Loader<Tr> loader(kp, kv);
  const SProduct<Tr> s_product(wm, wn, lane);
  const PVProduct<Tr> pv_product(warp, lane);

  for (PartWalker walker(kp.sched, blockIdx.y); walker.valid(); walker.next()) {
    const WorkItem it = walker.item();
    const int n = it.block_end - it.block_begin;

    int limit[Tr::S_MT][2];  // as decode_kernel: last visible token of this thread's S rows
#pragma unroll
    for (int i = 0; i < Tr::S_MT; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int rg = row0 + OnlineSoftmax<Tr>::s_row(wm, i, h, lane);
        const int t = rg < rows ? rg / p.q_per_kv : p.s_q - 1;
        limit[i][h] = it.seqlen - 1 - (p.causal ? p.s_q - 1 - t : 0);
      }
    const int min_limit = it.seqlen - 1 - (p.causal ? p.s_q - 1 : 0);

    // Prologue: Q (all threads, one commit group, waited for here); group g copies tile g of
    // the item into stage g (completing on its mbarrier, not waited for).
    if (n > 0) {
      loader.issue_q(it, row0, rows, q_tile);
      cp_async_commit();
      if (g < n) {
        const TileCopy<Tr> copy(kp, it, kv, it.block_begin + g, gt, stage(g));
#pragma unroll
        for (int ks = 0; ks < Tr::K_STEPS; ++ks) copy.issue(ks);
        cp_async_mbar_arrive(full(g));
      }
      cp_async_wait<0>();  // the committed groups (Q); the uncommitted tile copies are not waited
      __syncthreads();
    }

    OnlineSoftmax<Tr> softmax;
    float o[MT][O_NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < O_NT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[mt][nt][e] = 0.f;

    for (int t = g;; t += 2) {
      if (t >= 1 && t - 1 < n) {  // the other group's tile t - 1, in the other stage
        named_sync(kBarPReady + other, kThreads);
        float alpha[MT][2];
        softmax.take(stats, wm, lane, alpha);
        rescale_o<Tr>(o, alpha);
        mbar_wait(full(other), (phase >> other) & 1u);
        phase ^= 1u << other;
        pv_product.run(p_tile, stage(other), o);
      }
      if (t >= n) break;

      // Own tile t. The other group's P V_{t-1} is done: P and the other stage are free.
      if (t >= 1) named_sync(kBarDone + other, kThreads);
      mbar_wait(full(g), (phase >> g) & 1u);
      phase ^= 1u << g;
      const int tile = it.block_begin + t;
      // Tile t + 1 (the other group's) streams into the other stage during S; tiles 0 and 1
      // came with the prologue.
      const bool copy_next = t + 1 < n && t + 1 >= 2;
      const TileCopy<Tr> copy = copy_next ? TileCopy<Tr>(kp, it, kv, tile + 1, gt, stage(other))
                                          : TileCopy<Tr>();
      float acc[Tr::S_MT][Tr::S_NT][4];
      s_product.run(q_tile, stage(g), acc, [&](int ks) {
        if (copy_next) copy.issue(ks);
      });
      if (copy_next) cp_async_mbar_arrive(full(other));

      const int page = __ldg(p.block_table + int64_t(it.seq) * p.bt_sb +
                             ((tile * BLOCK_N) >> p.log2_page_size));
      const bool tile_bad = page < 0 || page >= p.num_pages;  // its rows were zero-filled
      if (tile_bad) {
#pragma unroll
        for (int i = 0; i < Tr::S_MT; ++i)
#pragma unroll
          for (int nt = 0; nt < Tr::S_NT; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][nt][e] = kNegInf;
      }
      const bool masked = !tile_bad && (tile + 1) * BLOCK_N - 1 > min_limit;
      softmax.mask_and_max(acc, tile, masked, limit, zeros, kp.scale_log2, wm, wn, lane,
                           red + g * kRed);
      named_sync(kBarGroup + g, kGroupThreads);  // the group's row maxima are in red

      float alpha[MT][2], alpha_s[Tr::S_MT][2];
      softmax.update_max(red + g * kRed, wm, lane, alpha, alpha_s);
      softmax.publish_max(stats, wm, wn, lane);
      rescale_o<Tr>(o, alpha);
      softmax.exponentiate(acc, alpha_s, kp.scale_log2, wm, wn, lane, p_tile, false, 0u);
      named_sync(kBarGroup + g, kGroupThreads);  // the group's P and running max are complete
      named_arrive(kBarPReady + g, kThreads);

      pv_product.run(p_tile, stage(g), o);
      if (t + 1 < n) named_arrive(kBarDone + g, kThreads);
    }

    // Epilogue: every product of the item is done; red holds each group's row-sum shares.
    __syncthreads();
    softmax.publish_sums(wm, wn, lane, red + g * kRed);
    __syncthreads();
    float l[MT][2];
    softmax.template combine_sums<2>(red, lane, l);
    write_output<Tr>(kp, it, kv, row0, rows, warp, lane, o, l, softmax);
    __syncthreads();  // red, Q, P and the stages are reused by the next work item
  }
}

}  // namespace flashmfa::cuda::sm80
