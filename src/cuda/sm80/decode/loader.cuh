// flashmfa CUDA, portable path: the global -> shared gathers of the sm_80 decode kernel.
//
// K/V rows are gathered through the block table with 16-byte cp.async copies, one commit group
// per tile so the next tiles stream in while the current one computes. Loader thread l (the
// CTA's threads from Tr::KV_LOAD_FIRST_THREAD on) covers rows (l / 8) + KV_ROWS_PER_PASS i of
// a tile and 16-byte chunks (l % 8) + 8 c of each row: a warp instruction reads 4 rows x 128
// contiguous bytes, and every loader thread needs the page of only LOAD_ROWS rows, which it
// fetches one tile ahead (fetch_pages) so the block-table read never stalls the copies. The
// other threads issue no K/V copy (their commit groups stay empty). Q is copied by all threads.
// Traits::BULK_ROWS tiles on sm_90 builds take issue_rows_bulk instead: one bulk copy per row.
#pragma once

#include <cstdint>

#include "cuda/sm80/decode/ptx.cuh"
#include "cuda/sm80/decode/traits.cuh"
#include "flashmfa/flashmfa.hpp"

namespace flashmfa::cuda::sm80 {

// Copies one 16-byte chunk global -> shared, or zero-fills it when !valid. `vec` (uniform over
// the grid) picks cp.async; otherwise the chunk's elements (E: uint16_t for 16-bit rows,
// uint8_t for FP8 rows) are loaded one by one and stored with one shared store, for views whose
// rows are not 16-byte aligned.
template <class E>
__device__ __forceinline__ void copy_chunk(uint32_t dst, const E* src, bool valid, bool vec) {
  if (vec) {
    cp_async_16(dst, src, valid);
    return;
  }
  constexpr int kBits = 8 * int(sizeof(E)), kPerWord = 32 / kBits;
  uint32_t w[4] = {0u, 0u, 0u, 0u};
  if (valid) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      w[i] = uint32_t(src[kPerWord * i]);
#pragma unroll
      for (int e = 1; e < kPerWord; ++e) w[i] |= uint32_t(src[kPerWord * i + e]) << (kBits * e);
    }
  }
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(dst), "r"(w[0]), "r"(w[1]),
               "r"(w[2]), "r"(w[3])
               : "memory");
}

// Where one pipeline stage of K/V rows lands. 16-bit caches: k / v are the stage's swizzled
// tiles. FP8 caches: k / v are the stage's raw rows (row-major, rows as stored) and k_sc / v_sc
// its rows' f32 scales (fp8_row).
struct StageDst {
  uint32_t k, v, k_sc, v_sc;
};

template <class Tr>
class Loader {
 public:
  static constexpr int BLOCK_N = Tr::BLOCK_N, BLOCK_M = Tr::BLOCK_M;
  static constexpr int LOAD_ROWS = Tr::LOAD_ROWS;

  __device__ Loader(const KernelParams& kp, int kv)
      : kp_(kp), kv_(kv), row_lane_(threadIdx.x / kLoadThreadsPerRow),
        chunk_lane_(threadIdx.x % kLoadThreadsPerRow),
        kv_row_lane_((int(threadIdx.x) - Tr::KV_LOAD_FIRST_THREAD) / kLoadThreadsPerRow) {}

  __device__ bool kv_loader() const {
    return !Tr::SPLIT_LOADS || int(threadIdx.x) >= Tr::KV_LOAD_FIRST_THREAD;
  }

  // Page index of each of this thread's rows of tile `tile`; rows past the sequence's end
  // (whose block-table entries may be sentinels) are not looked up.
  __device__ void fetch_pages(const WorkItem& it, int tile, int (&pages)[LOAD_ROWS]) const {
    const detail::DecodeParams& p = kp_.p;
    if (!kv_loader()) return;
    const int32_t* bt = p.block_table + int64_t(it.seq) * p.bt_sb;
#pragma unroll
    for (int i = 0; i < LOAD_ROWS; ++i) {
      const int j = tile * BLOCK_N + kv_row_lane_ + Tr::KV_ROWS_PER_PASS * i;
      pages[i] = j < it.seqlen ? __ldg(bt + (j >> p.log2_page_size)) : -1;
    }
  }

  // Starts the copies of tile `tile` into one stage: K rows, and V rows when V has its own
  // cache. Rows past the end and rows of out-of-range pages are zero-filled; the latter are
  // marked in `bad` (1 byte per row) for the mask and flagged in the schedule header. Returns
  // whether this thread skipped a page.
  __device__ bool issue_kv(const WorkItem& it, int tile, const int (&pages)[LOAD_ROWS],
                           const StageDst& dst, uint8_t* bad) const {
    const detail::DecodeParams& p = kp_.p;
    if (!kv_loader()) return false;
    const bool v_separate = !p.v_aliases_k;
    bool saw_bad = false;
#pragma unroll
    for (int i = 0; i < LOAD_ROWS; ++i) {
      const int row = kv_row_lane_ + Tr::KV_ROWS_PER_PASS * i;
      const int j = tile * BLOCK_N + row;
      const bool in_seq = j < it.seqlen;
      const bool page_ok = pages[i] >= 0 && pages[i] < p.num_pages;
      const bool ok = in_seq && page_ok;
      if (in_seq && !page_ok && chunk_lane_ == 0)
        atomicOr(&kp_.sched.header->error_flags, uint32_t(kFlagPageOutOfRange));
      if (chunk_lane_ == 0) bad[row] = uint8_t(in_seq && !page_ok);
      saw_bad |= in_seq && !page_ok;
      // 64-bit offsets: page * k_sp alone can pass 2^31 elements in a large cache.
      const int64_t page = ok ? pages[i] : 0;
      const int64_t slot = j & (p.page_size - 1);
      const int64_t k_off = page * p.k_sp + slot * p.k_st + int64_t(kv_) * p.k_sh;
      const int64_t v_off = page * p.v_sp + slot * p.v_st + int64_t(kv_) * p.v_sh;
      if constexpr (Tr::FP8) {
        issue_raw_row<Tr::RAW_K_ROW_BYTES, Tr::RAW_K_PASSES>(
            dst.k, row, static_cast<const uint8_t*>(p.k) + k_off, ok);
        if (v_separate)
          issue_raw_row<Tr::RAW_V_ROW_BYTES, Tr::RAW_V_PASSES>(
              dst.v, row, static_cast<const uint8_t*>(p.v) + v_off, ok);
        if constexpr (Tr::FMT == CacheFormat::fp8_row) {
          const int64_t ks = page * p.ks_sp + slot * p.ks_st + int64_t(kv_) * p.ks_sh;
          const int64_t vs = page * p.vs_sp + slot * p.vs_st + int64_t(kv_) * p.vs_sh;
          if (chunk_lane_ == 0) cp_async_4(dst.k_sc + row * sizeof(float), p.k_scale + ks, ok);
          if (chunk_lane_ == 1 && v_separate)
            cp_async_4(dst.v_sc + row * sizeof(float), p.v_scale + vs, ok);
        }
      } else {
        const uint16_t* k_row = static_cast<const uint16_t*>(p.k) + k_off;
#pragma unroll
        for (int c = 0; c < Tr::K_CHUNKS_PER_THREAD; ++c) {
          const int chunk = chunk_lane_ + kLoadThreadsPerRow * c;
          copy_chunk(dst.k + Tr::stage_offset(row, chunk), k_row + chunk * kChunkElems, ok,
                     kp_.kv_vec);
        }
        if (v_separate) {
          const uint16_t* v_row = static_cast<const uint16_t*>(p.v) + v_off;
#pragma unroll
          for (int c = 0; c < Tr::V_CHUNKS_PER_THREAD; ++c) {
            const int chunk = chunk_lane_ + kLoadThreadsPerRow * c;
            copy_chunk(dst.v + Tr::stage_offset(row, chunk), v_row + chunk * kChunkElems, ok,
                       kp_.kv_vec);
          }
        }
      }
    }
    return saw_bad;
  }

  // Traits::BULK_ROWS on sm_90 (kp.kv_vec): loader thread l < BLOCK_N copies row l of tile
  // `tile` with one bulk copy (K, and V when it has its own cache) completing on `full`; rows
  // past the end and rows of pages outside [0, num_pages) (flagged, marked in `bad`) are zeroed
  // with plain stores instead. Each of those BLOCK_N threads arrives on `full` once. Returns
  // whether this thread skipped a page.
  __device__ bool issue_rows_bulk(const WorkItem& it, int tile, const StageDst& dst,
                                  uint8_t* bad, uint32_t full) const {
    const int l = int(threadIdx.x) - Tr::KV_LOAD_FIRST_THREAD;
    if (l < 0 || l >= BLOCK_N) return false;
    const detail::DecodeParams& p = kp_.p;
    const int j = tile * BLOCK_N + l;
    const bool in_seq = j < it.seqlen;
    const int page =
        in_seq ? __ldg(p.block_table + int64_t(it.seq) * p.bt_sb + (j >> p.log2_page_size)) : -1;
    const bool page_ok = page >= 0 && page < p.num_pages;
    if (in_seq && !page_ok) atomicOr(&kp_.sched.header->error_flags, uint32_t(kFlagPageOutOfRange));
    bad[l] = uint8_t(in_seq && !page_ok);
    const bool v_separate = !p.v_aliases_k;
    const uint32_t k_dst = dst.k + Tr::stage_offset(l, 0), v_dst = dst.v + Tr::stage_offset(l, 0);
    constexpr uint32_t kKBytes = Tr::D_K * kElemBytes, kVBytes = Tr::D_V * kElemBytes;
    if (in_seq && page_ok) {
      const int64_t slot = j & (p.page_size - 1);
      const uint16_t* k_src = static_cast<const uint16_t*>(p.k) +
                              (int64_t(page) * p.k_sp + slot * p.k_st + int64_t(kv_) * p.k_sh);
      mbar_arrive_expect_tx(full, kKBytes + (v_separate ? kVBytes : 0));
      bulk_copy(k_dst, k_src, kKBytes, full);
      if (v_separate)
        bulk_copy(v_dst,
                  static_cast<const uint16_t*>(p.v) +
                      (int64_t(page) * p.v_sp + slot * p.v_st + int64_t(kv_) * p.v_sh),
                  kVBytes, full);
    } else {
      for (int c = 0; c < Tr::K_CHUNKS; ++c) sts_zero16(k_dst + c * kChunkBytes);
      if (v_separate)
        for (int c = 0; c < Tr::V_CHUNKS; ++c) sts_zero16(v_dst + c * kChunkBytes);
      fence_proxy_async();  // before a later bulk copy overwrites these rows
      mbar_arrive(full);
    }
    return in_seq && !page_ok;
  }

  // Starts the copy of this CTA's query tile: row r of the tile is (token t, head h) =
  // ((row0 + r) / q_per_kv, kv * q_per_kv + (row0 + r) % q_per_kv); rows past `rows` are zero.
  __device__ void issue_q(const WorkItem& it, int row0, int rows, uint32_t q_tile) const {
    const detail::DecodeParams& p = kp_.p;
    const uint16_t* q = static_cast<const uint16_t*>(p.q);
#pragma unroll
    for (int i = 0; i < Tr::Q_PASSES; ++i) {
      const int r = row_lane_ + kLoadRowsPerPass * i;
      if (r >= BLOCK_M) break;
      const int rg = row0 + r;
      const bool valid = rg < rows;
      const int t = valid ? rg / p.q_per_kv : 0;
      const int h = valid ? kv_ * p.q_per_kv + rg % p.q_per_kv : 0;
      const uint16_t* q_row = q + (int64_t(it.seq) * p.q_sb + int64_t(t) * p.q_ss +
                                   int64_t(h) * p.q_sh);
      const uint32_t dst = uint32_t(r * Tr::KV_ROW_BYTES + ((chunk_lane_ ^ (r & 7)) << 4));
#pragma unroll
      for (int c = 0; c < Tr::K_CHUNKS_PER_THREAD; ++c)
        copy_chunk(q_tile + dst + c * 128,
                   q_row + (chunk_lane_ + kLoadThreadsPerRow * c) * kChunkElems, valid,
                   kp_.q_vec);
    }
  }

 private:
  // One FP8 row as stored (ROW_BYTES: whole 16-byte chunks) into row `row` of a raw stage;
  // the row's 8 threads take chunks chunk_lane + 8 c.
  template <int ROW_BYTES, int PASSES>
  __device__ void issue_raw_row(uint32_t stage, int row, const uint8_t* src, bool ok) const {
#pragma unroll
    for (int c = 0; c < PASSES; ++c) {
      const int chunk = chunk_lane_ + kLoadThreadsPerRow * c;
      if (chunk * kChunkBytes < ROW_BYTES)
        copy_chunk(stage + row * ROW_BYTES + chunk * kChunkBytes, src + chunk * kChunkBytes,
                      ok, kp_.kv_vec);
    }
  }

  const KernelParams& kp_;
  int kv_, row_lane_, chunk_lane_, kv_row_lane_;
};

}  // namespace flashmfa::cuda::sm80
