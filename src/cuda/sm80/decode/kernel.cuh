// flashmfa CUDA, portable path: the split-KV decode kernel (sm_80 and later, mma.sync).
//
// Grid (ceil(rows / BLOCK_M), num_parts, h_kv), rows = s_q * q_per_kv: CTA (x, part, kv) owns
// query rows [BLOCK_M x, +BLOCK_M) of KV head kv (row r = token r / q_per_kv, head
// kv * q_per_kv + r % q_per_kv) and walks the work items of its part of the schedule. Row tiles
// are the fastest grid axis, so the CTAs reading one KV range run together and all but the
// first find it in L2.
//
// Per work item (blocks [begin, end) of one sequence), with STAGES shared-memory stages:
//
//   issue Q + tiles begin .. begin+STAGES-2             (one cp.async group per tile)
//   for each tile i:
//     wait for tile i; barrier A                        tile i landed; stage of i-1 is free
//     issue tile i+STAGES-1 into the stage of i-1
//     S = Q K_i^T (S warps); mask; row max -> red;  barrier B1
//     fold maxima, O *= alpha (all); P -> smem (S warps);  barrier B2
//     O += P V_i (all warps, each its own columns); with split_p also += (P - T(P)) V_i
//   row sums -> red; barrier; normalize and write out/lse or the partial slot; barrier
//
// V is K's stage buffer when p.v_aliases_k (each K tile is loaded once and feeds both
// products), else a stage buffer of its own filled from p.v through the same pages.
//
// MLA's 64 x 64 tile on sm_90 builds (Tr::BULK_ROWS, 16-byte aligned rows): each K row lands
// with one bulk copy into a padded stage row and "tile i landed" is the stage's mbarrier
// (loader.cuh, issue_rows_bulk); Q stays a cp.async group.
//
// FP8 caches (Tr::FP8): the stages hold raw rows, and right after barrier A the CTA
// dequantizes stage i into the single K (and V) tile (dequant.cuh), then meets at barrier D
// before S. Barrier A also ends the previous tile's reads of that tile.
#pragma once

#include <cstdint>

#include "cuda/sm80/decode/dequant.cuh"
#include "cuda/sm80/decode/epilogue.cuh"
#include "cuda/sm80/decode/loader.cuh"
#include "cuda/sm80/decode/mainloop.cuh"
#include "cuda/sm80/decode/softmax.cuh"
#include "cuda/sm80/decode/traits.cuh"

namespace flashmfa::cuda::sm80 {

template <class Tr>
__global__ void __launch_bounds__(kThreads, Tr::MIN_BLOCKS)
decode_kernel(const __grid_constant__ KernelParams kp) {
  static_assert(kThreads == kWarps * 32, "8 warps per CTA");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Programmatic dependent launch: once every CTA of this grid has started, the combine kernel
  // (launched with programmatic stream serialization on cc >= 9.0) may be scheduled on the SMs
  // this grid leaves free. It reads no partial (only the schedule plan() wrote) before its
  // griddepcontrol.wait, which returns only after this grid has completed and its writes are
  // visible, so the trigger's place does not matter for correctness. No effect unless the next
  // launch opted in.
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
  constexpr int BLOCK_M = Tr::BLOCK_M, BLOCK_N = Tr::BLOCK_N, MT = Tr::MT, O_NT = Tr::O_NT;
  extern __shared__ __align__(kSmemAlign) uint8_t smem[];

  const detail::DecodeParams& p = kp.p;
  const int stages = kp.stages;
  const SmemPlan plan(Tr::D_K, Tr::D_V, BLOCK_M, BLOCK_N, stages, !p.v_aliases_k, kp.split_p,
                      Tr::FMT);
  const uint32_t smem_base = smem_addr(smem);
  const uint32_t q_tile = smem_base + uint32_t(plan.q);
  const uint32_t p_tile = smem_base + uint32_t(plan.p);
  const uint32_t p_lo_tile = smem_base + uint32_t(plan.p_lo);  // split_p only
  float* red = reinterpret_cast<float*>(smem + plan.red);  // (WN, BLOCK_M)
  uint8_t* bad = smem + plan.bad;                            // (STAGES, BLOCK_N)
  // The 16-bit tiles the products read (FP8: k_stage is 0, one tile for every stage).
  auto k_stage = [&](int s) { return smem_base + uint32_t(plan.k + s * plan.k_stage); };
  // V aliases K: V tile = the K tile's first D_V columns, with K's pitch.
  auto v_stage = [&](int s) {
    return p.v_aliases_k ? k_stage(s) : smem_base + uint32_t(plan.v + s * plan.v_stage);
  };
  // Where the loads of stage s land: the tiles themselves, or (FP8) the stage's raw rows.
  auto stage_dst = [&](int s) {
    if constexpr (Tr::FP8)
      return StageDst{smem_base + uint32_t(plan.raw_k + s * plan.raw_k_stage),
                      smem_base + uint32_t(plan.raw_v + s * plan.raw_v_stage),
                      smem_base + uint32_t(plan.k_sc + s * BLOCK_N * sizeof(float)),
                      smem_base + uint32_t(plan.v_sc + s * BLOCK_N * sizeof(float))};
    else
      return StageDst{k_stage(s), v_stage(s), 0u, 0u};
  };

  // Bulk row copies (Traits::BULK_ROWS, sm_90 builds, rows 16-byte aligned): each stage's rows
  // complete on its mbarrier; elsewhere cp.async groups, one per tile.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const bool bulk = Tr::BULK_ROWS && kp.kv_vec;
#else
  const bool bulk = false;
#endif
  auto full = [&](int s) { return smem_base + uint32_t(plan.full + s * sizeof(uint64_t)); };
  if (bulk && threadIdx.x == 0)
    for (int s = 0; s < stages; ++s) mbar_init(full(s), BLOCK_N);
  if (bulk) __syncthreads();
  uint32_t phase = 0;  // bulk: bit s is the parity of the fill of stage s waited for next

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int kv = blockIdx.z, row0 = blockIdx.x * BLOCK_M;
  const int rows = p.s_q * p.q_per_kv;
  // S role: warp (wm, wn); warps past WM * WN only join the PV product.
  const bool s_warp = Tr::S_WARPS == kWarps || warp < Tr::S_WARPS;
  const int wm = s_warp ? warp / Tr::WN : 0, wn = s_warp ? warp % Tr::WN : 0;

  const Loader<Tr> loader(kp, kv);
  auto issue_tile = [&](const WorkItem& it, int tile, int stage, int (&pages)[Tr::LOAD_ROWS]) {
    if (bulk) return loader.issue_rows_bulk(it, tile, stage_dst(stage), bad + stage * BLOCK_N,
                                            full(stage));
    const bool saw_bad = loader.issue_kv(it, tile, pages, stage_dst(stage), bad + stage * BLOCK_N);
    loader.fetch_pages(it, tile + 1, pages);
    return saw_bad;
  };
  const SProduct<Tr> s_product(wm, wn, lane);
  const PVProduct<Tr> pv_product(warp, lane);

  for (PartWalker walker(kp.sched, blockIdx.y); walker.valid(); walker.next()) {
    const WorkItem it = walker.item();

    // Last visible token of this thread's S rows: seqlen - 1, less s_q - 1 - t when causal
    // (query token t sees cached tokens j <= seqlen - s_q + t). Padding rows see everything;
    // they are never written.
    int limit[Tr::S_MT][2];
#pragma unroll
    for (int i = 0; i < Tr::S_MT; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int rg = row0 + OnlineSoftmax<Tr>::s_row(wm, i, h, lane);
        const int t = rg < rows ? rg / p.q_per_kv : p.s_q - 1;
        limit[i][h] = it.seqlen - 1 - (p.causal ? p.s_q - 1 - t : 0);
      }

    // Smallest limit of any row of the CTA (token 0 under causal masking): tiles that end at or
    // before it are visible to every row.
    const int min_limit = it.seqlen - 1 - (p.causal ? p.s_q - 1 : 0);

    // Prologue: Q rides in the first tile's group. bad_bits: bit s is set when this thread
    // skipped a page in the tile it issued into stage s.
    int pages[Tr::LOAD_ROWS] = {};
    uint32_t bad_bits = 0;
    int write_stage = 0;
    if (it.block_begin < it.block_end) {
      if (!bulk) loader.fetch_pages(it, it.block_begin, pages);
      loader.issue_q(it, row0, rows, q_tile);
      for (int s = 0; s < stages - 1; ++s) {
        const int tile = it.block_begin + s;
        if (tile < it.block_end) {
          const bool saw_bad = issue_tile(it, tile, write_stage, pages);
          bad_bits = (bad_bits & ~(1u << write_stage)) | (uint32_t(saw_bad) << write_stage);
        }
        cp_async_commit();
        write_stage = write_stage + 1 == stages ? 0 : write_stage + 1;
      }
    }

    OnlineSoftmax<Tr> softmax;
    float o[MT][O_NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int n = 0; n < O_NT; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[mt][n][e] = 0.f;

    int read_stage = 0;
    for (int tile = it.block_begin; tile < it.block_end; ++tile) {
      if (bulk) {
        cp_async_wait<0>();  // Q (the only cp.async group)
        mbar_wait(full(read_stage), (phase >> read_stage) & 1u);
        phase ^= 1u << read_stage;
      } else {
        cp_async_wait_dyn(stages - 2);
      }
      // A: tile landed for everyone; every warp is done with the last stage. The barrier also
      // ORs the threads' "skipped a page in this tile" bits.
      const bool tile_bad = __syncthreads_or((bad_bits >> read_stage) & 1u);
      const bool masked = tile_bad || (tile + 1) * BLOCK_N - 1 > min_limit;

      const int ahead = tile + stages - 1;
      if (ahead < it.block_end) {
        const bool saw_bad = issue_tile(it, ahead, write_stage, pages);
        bad_bits = (bad_bits & ~(1u << write_stage)) | (uint32_t(saw_bad) << write_stage);
      }
      cp_async_commit();  // possibly empty: keeps the group count the wait relies on
      write_stage = write_stage + 1 == stages ? 0 : write_stage + 1;

      if constexpr (Tr::FP8) {
        dequantize_stage<Tr>(stage_dst(read_stage), k_stage(0), v_stage(0), !p.v_aliases_k);
        __syncthreads();  // D: the dequantized K (and V) tile is complete
      }

      float acc[Tr::S_MT][Tr::S_NT][4];
      if (s_warp) {
        s_product.run(q_tile, k_stage(read_stage), acc);
        softmax.mask_and_max(acc, tile, masked, limit, bad + read_stage * BLOCK_N,
                             kp.scale_log2, wm, wn, lane, red);
      }
      __syncthreads();  // B1: row maxima of every S warp are in red

      float alpha[MT][2], alpha_s[Tr::S_MT][2];
      softmax.update_max(red, wm, lane, alpha, alpha_s);
      rescale_o<Tr>(o, alpha);  // first: alpha dies before exponentiate's temporaries live
      if (s_warp)
        softmax.exponentiate(acc, alpha_s, kp.scale_log2, wm, wn, lane, p_tile, kp.split_p,
                             p_lo_tile);
      __syncthreads();  // B2: P is complete

      pv_product.run(p_tile, v_stage(read_stage), o);
      if (kp.split_p) pv_product.run(p_lo_tile, v_stage(read_stage), o);
      read_stage = read_stage + 1 == stages ? 0 : read_stage + 1;
    }

    // Epilogue. red is free: its last readers (update_max) ran before B2.
    if (s_warp) softmax.publish_sums(wm, wn, lane, red);
    __syncthreads();
    float l[MT][2];
    softmax.combine_sums(red, lane, l);
    write_output<Tr>(kp, it, kv, row0, rows, warp, lane, o, l, softmax);
    __syncthreads();  // red, Q and the stages are reused by the next work item
  }
}

}  // namespace flashmfa::cuda::sm80
