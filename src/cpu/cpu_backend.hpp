// flashmfa internal: the CPU backend. Both entry points assume validate() and
// validate_host_indices() passed; they read only visible cache rows.
#pragma once

#include "core/params.hpp"

namespace flashmfa::cpu {

// The reference: float64 accumulation, one row at a time, written for obviousness. Every test
// compares against it.
void decode_reference(const detail::DecodeParams& p);

// The fast path: all cores, one (sequence, KV head, KV chunk) task at a time, float32
// accumulation in vectorizable loops, partial results merged by their LSE.
// num_threads <= 0 means std::thread::hardware_concurrency().
void decode_fast(const detail::DecodeParams& p, int num_threads = 0);

}  // namespace flashmfa::cpu
