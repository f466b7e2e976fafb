// flashmfa internal: the validated, flattened form of DecodeArgs that every backend reads.
// Plain data only (no std:: types), so CUDA kernels take it by value.
#pragma once

#include <cstdint>

#include "flashmfa/flashmfa.hpp"
#include "flashmfa/tensor.hpp"

namespace flashmfa::detail {

struct DecodeParams {
  DType dtype;          // of q and out (and of native caches, MLA's FP8 RoPE part)
  CacheFormat kv_format;  // how cached rows are stored (flashmfa.hpp); strides are in
                          // elements of the cache's dtype (bytes for the FP8 formats)
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
  const float* k_scale; // fp8_row: [num_pages, page_size, h_kv], one scale per K row
  int64_t ks_sp, ks_st, ks_sh;
  const float* v_scale; // fp8_row: V rows' scales; equals k_scale when v_aliases_k
  int64_t vs_sp, vs_st, vs_sh;
  const int32_t* block_table;  // [b, max_pages]
  int64_t bt_sb;
  const int32_t* seqlens;      // [b], stride 1
  void* out;            // [b, s_q, h_q, d_v]
  int64_t o_sb, o_ss, o_sh;
  float* lse;           // [b, h_q, s_q]
  int64_t lse_sb, lse_sh, lse_ss;
};

// The validated, flattened form of AppendArgs (same conventions as DecodeParams).
struct AppendParams {
  DType dtype;            // of k_new and v_new
  CacheFormat kv_format;
  int b, s_new, h_kv;
  int d_k, d_v;           // row widths of k_new and v_new (d_v = 0: no V cache)
  int page_size, log2_page_size, max_pages, num_pages;
  const void* k_new;      // [b, s_new, h_kv, d_k]
  int64_t kn_sb, kn_ss, kn_sh;
  const void* v_new;      // [b, s_new, h_kv, d_v] or null
  int64_t vn_sb, vn_ss, vn_sh;
  void* k;                // the caches, as in DecodeParams (written)
  int64_t k_sp, k_st, k_sh;
  void* v;
  int64_t v_sp, v_st, v_sh;
  float* k_scale;         // fp8_row only (written)
  int64_t ks_sp, ks_st, ks_sh;
  float* v_scale;
  int64_t vs_sp, vs_st, vs_sh;
  const int32_t* block_table;
  int64_t bt_sb;
  const int32_t* seqlens;  // lengths after the append
  uint32_t* error_flags;   // [1] or null: ErrorFlag bits of rows the CUDA kernel skipped
};

// Rows of one KV head's query tile: s_q tokens x q_per_kv heads, row r = t * q_per_kv + h.
inline int rows_per_kv_head(const DecodeParams& p) { return p.s_q * p.q_per_kv; }

}  // namespace flashmfa::detail
