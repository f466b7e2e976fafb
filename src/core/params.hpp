// flashmfa internal: the validated, flattened form of DecodeArgs that every backend reads.
// Plain data only (no std:: types), so CUDA kernels take it by value.
#pragma once

#include <cstdint>

#include "flashmfa/tensor.hpp"

namespace flashmfa::detail {

struct DecodeParams {
  DType dtype;          // of q, the caches and out
  int b;                // sequences
  int s_q;              // query tokens per sequence
  int h_q;              // query heads
  int h_kv;             // KV heads
  int q_per_kv;         // h_q / h_kv: query heads sharing one KV head
  int d_k;              // QK^T width (K row width)
  int d_v;              // PV width
  int page_size;        // tokens per page, a power of two in [1, 256]
  int log2_page_size;
  int max_pages;        // block-table columns
  int num_pages;        // pages in the cache
  bool causal;
  bool v_aliases_k;     // v == k, V is the first d_v columns of the K row
  float scale;          // softmax scale (natural-log domain)

  const void* q;        // [b, s_q, h_q, d_k]
  int64_t q_sb, q_ss, q_sh;
  const void* k;        // [num_pages, page_size, h_kv, d_k]
  int64_t k_sp, k_st, k_sh;
  const void* v;        // [num_pages, page_size, h_kv, d_v]; equals k when v_aliases_k
  int64_t v_sp, v_st, v_sh;
  const int32_t* block_table;  // [b, max_pages]
  int64_t bt_sb;
  const int32_t* seqlens;      // [b], stride 1
  void* out;            // [b, s_q, h_q, d_v]
  int64_t o_sb, o_ss, o_sh;
  float* lse;           // [b, h_q, s_q]
  int64_t lse_sb, lse_sh, lse_ss;
};

// Rows of one KV head's query tile: s_q tokens x q_per_kv heads, row r = t * q_per_kv + h.
inline int rows_per_kv_head(const DecodeParams& p) { return p.s_q * p.q_per_kv; }

}  // namespace flashmfa::detail
