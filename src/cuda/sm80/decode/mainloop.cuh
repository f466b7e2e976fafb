// flashmfa CUDA, portable path: the two tensor-core products of one KV tile.
//
//   S (BLOCK_M, BLOCK_N) = Q (BLOCK_M, D_K) K^T        warp (wm, wn): 16 rows x S_COLS cols
//   O (BLOCK_M, D_V)    += P (BLOCK_M, BLOCK_N) V      warp w: all rows x D_V / 8 cols
//
// Both read their operands from swizzled shared memory with ldmatrix (K and P as stored, V
// transposed, since V is [token][d] and the B operand wants pairs along the token axis).
// Each thread precomputes the swizzled offsets of its ldmatrix rows once; inside the unrolled
// k loops only compile-time offsets are added.
#pragma once

#include <cstdint>

#include "cuda/sm80/decode/ptx.cuh"
#include "cuda/sm80/decode/traits.cuh"

namespace flashmfa::cuda::sm80 {

// The 16x16 A (or 16x16 B) ldmatrix.x4 of k-step ks reads chunk 2 ks + hi of its row, where hi
// picks the k half. Swizzled, that is 8 (ks / 4) + ((2 (ks % 4)) ^ hi ^ row % 8): four offsets
// per thread cover every k-step, the rest is an immediate.
constexpr int kXorPeriod = 4;  // k-steps per 128-byte swizzle group (8 chunks / 2 per step)

template <class Tr>
class SProduct {
 public:
  static constexpr int S_MT = Tr::S_MT, S_NT = Tr::S_NT, ROW = Tr::KV_ROW_BYTES;
  static constexpr int K_ROW = Tr::STAGE_PITCH;  // K rows: the stage's pitch

  __device__ SProduct(int wm, int wn, int lane) {
    const int r7 = lane & 7;
    const int a_row = wm * Tr::S_ROWS + (lane & 15), a_hi = lane >> 4;
    const int b_row = wn * Tr::S_COLS + (lane & 7) + ((lane >> 4) << 3), b_hi = (lane >> 3) & 1;
#pragma unroll
    for (int kk = 0; kk < kXorPeriod; ++kk) {
      q_off_[kk] = uint32_t(a_row * ROW + (((2 * kk) ^ a_hi ^ r7) << 4));
      k_off_[kk] = Tr::stage_offset(b_row, 2 * kk + b_hi);  // + the group's 128 bytes below
    }
  }

  // acc (S_MT, S_NT, 4): this warp's S_ROWS x S_COLS slice of Q K^T (raw scores, fp32).
  __device__ void run(uint32_t q_tile, uint32_t k_tile, float (&acc)[S_MT][S_NT][4]) const {
    using Mma = MmaOp<typename Tr::T>;
#pragma unroll
    for (int i = 0; i < S_MT; ++i)
#pragma unroll
      for (int n = 0; n < S_NT; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[i][n][e] = 0.f;
#pragma unroll
    for (int ks = 0; ks < Tr::K_STEPS; ++ks) {
      const uint32_t group = (ks / kXorPeriod) * 128;
      uint32_t a[S_MT][4];
#pragma unroll
      for (int i = 0; i < S_MT; ++i)  // 16-row steps keep row % 8: same swizzle term
        ldsm_x4(q_tile + q_off_[ks % kXorPeriod] + group + i * kMmaM * ROW, a[i]);
      if constexpr (S_NT == 1) {
        uint32_t b[2];
        ldsm_x2(k_tile + k_off_[ks % kXorPeriod] + group, b);
#pragma unroll
        for (int i = 0; i < S_MT; ++i) Mma::run(acc[i][0], a[i], b[0], b[1]);
      } else {
#pragma unroll
        for (int np = 0; np < S_NT / 2; ++np) {
          uint32_t b[4];
          ldsm_x4(k_tile + k_off_[ks % kXorPeriod] + group + np * 2 * kMmaN * K_ROW, b);
#pragma unroll
          for (int i = 0; i < S_MT; ++i) {
            Mma::run(acc[i][2 * np], a[i], b[0], b[1]);
            Mma::run(acc[i][2 * np + 1], a[i], b[2], b[3]);
          }
        }
      }
    }
  }

 private:
  uint32_t q_off_[kXorPeriod], k_off_[kXorPeriod];
};

template <class Tr>
class PVProduct {
  using Mma = MmaOp<typename Tr::T>;

 public:
  static constexpr int MT = Tr::MT, O_NT = Tr::O_NT;
  static constexpr int V_LOADS = O_NT == 1 ? 1 : O_NT / 2;  // ldmatrix per k-step

  __device__ PVProduct(int warp, int lane) {
#pragma unroll
    for (int ks = 0; ks < Tr::PV_STEPS; ++ks)
      p_off_[ks] = swizzle<Tr::P_ROW_BYTES>(lane & 15, 2 * ks + (lane >> 4));
    // Rows k 0-7 / 8-15 of the step for lanes 0-7 / 8-15 (and again for 16-31, the next
    // 8 columns); .trans turns the [token][d] rows into B fragments.
    const int v_row = (lane & 7) + ((lane >> 3) & 1) * 8;
    const int c0 = warp * (Tr::O_COLS / kChunkElems);
#pragma unroll
    for (int np = 0; np < V_LOADS; ++np)
      v_off_[np] = Tr::stage_offset(v_row, c0 + 2 * np + (O_NT == 1 ? 0 : lane >> 4));
  }

  // o (MT, O_NT, 4) += P (BLOCK_M, BLOCK_N) * V (BLOCK_N, this warp's columns).
  __device__ void run(uint32_t p_tile, uint32_t v_tile, float (&o)[MT][O_NT][4]) const {
#pragma unroll
    for (int ks = 0; ks < Tr::PV_STEPS; ++ks) {
      // 16-row steps keep row % 8, so the swizzle term is unchanged.
      const uint32_t step = ks * kMmaK * Tr::STAGE_PITCH;
      if constexpr (V_LOADS == 1) {
        // Narrow slices (<= 16 columns): one V fragment per step; stream P by m-tile so only
        // one A fragment is live (the 2-CTA register budget of the narrow heads).
        uint32_t b[4];
        if constexpr (O_NT == 1) {
          ldsm_x2_trans(v_tile + v_off_[0] + step, reinterpret_cast<uint32_t(&)[2]>(b));
        } else {
          ldsm_x4_trans(v_tile + v_off_[0] + step, b);
        }
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          uint32_t a[4];
          ldsm_x4(p_tile + p_off_[ks] + mt * kMmaM * Tr::P_ROW_BYTES, a);
#pragma unroll
          for (int n = 0; n < O_NT; ++n) Mma::run(o[mt][n], a, b[2 * n], b[2 * n + 1]);
        }
      } else {
        // Wide slices: all m-tiles of P first, then every V fragment feeds MT MMAs.
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
          ldsm_x4(p_tile + p_off_[ks] + mt * kMmaM * Tr::P_ROW_BYTES, a[mt]);
#pragma unroll
        for (int np = 0; np < V_LOADS; ++np) {
          uint32_t b[4];
          ldsm_x4_trans(v_tile + v_off_[np] + step, b);
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            Mma::run(o[mt][2 * np], a[mt], b[0], b[1]);
            Mma::run(o[mt][2 * np + 1], a[mt], b[2], b[3]);
          }
        }
      }
    }
  }

 private:
  uint32_t p_off_[Tr::PV_STEPS], v_off_[V_LOADS];
};

}  // namespace flashmfa::cuda::sm80
