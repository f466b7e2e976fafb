// flashmfa internal: the CPU backend. Both entry points assume validate() and
// validate_host_indices() passed; they read only visible cache rows.
#pragma once

#include "core/params.hpp"

namespace flashmfa::cpu {

// How much rounding each reference element can legitimately absorb (dense layouts):
//   out[b, s_q, h_q, d_v]:  sum_j P_j |V_jd|                 (what rounding P moves out by)
//   lse[b, h_q, s_q]:       sum_j P_j * scale * sum_d |q_d K_jd|  (what rounding S moves lse by)
// Empty rows get 0.
struct ReferenceScales {
  float* out;
  float* lse;
};

// The reference: float64 accumulation, one row at a time, written for obviousness. Every test
// compares against it. `scales` (may be null) receives each element's error scale.
void decode_reference(const detail::DecodeParams& p, const ReferenceScales* scales = nullptr);

// The fast path: all cores, one (sequence, KV head, KV chunk) task at a time, float32
// accumulation in vectorizable loops, partial results merged by their LSE.
// num_threads <= 0 means std::thread::hardware_concurrency().
void decode_fast(const detail::DecodeParams& p, int num_threads = 0);

// Writes the new rows of an append (validate_append and validate_append_indices passed).
void append_kv(const detail::AppendParams& p);

}  // namespace flashmfa::cpu
