// flashmfa-bench: checking a timed path against flashmfa::decode_reference before any number is
// reported. Benchmark problems are large (MLA b=128 s_k=32768 is a 4.8 GB cache and hours of
// float64 reference), so the check runs on a sample: a few sequences (the shortest, the longest
// and random ones) and, in each, evenly spaced query heads. Each sampled sequence is copied out
// into a compact problem of its own (its pages renumbered 0..n-1), which is how a GPU run hands
// its data back, and the CPU runner uses the same path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "roofline.hpp"

namespace flashmfa::bench {

// One sequence of a problem, copied out: inputs and the timed path's outputs.
struct SeqSample {
  int seq = 0;                 // index in the batch
  int len = 0;                 // seqlens_k of the sequence
  std::vector<uint16_t> q;     // [s_q, h_q, d_k]      dtype bits
  std::vector<uint16_t> k;     // [n_pages, page_size, h_kv, d_k], page j = the sequence's j-th
  std::vector<uint16_t> v;     // [n_pages, page_size, h_kv, d_v]; empty when V aliases K
  // FP8 caches (Shape::fp8) instead of k / v: rows as stored, and fp8_row's scales.
  std::vector<uint8_t> k8;     // [n_pages, page_size, h_kv, row bytes (656 or d_k)]
  std::vector<uint8_t> v8;     // [n_pages, page_size, h_kv, d_v]; empty when V aliases K
  std::vector<float> ks, vs;   // [n_pages, page_size, h_kv]; empty for MLA (vs: aliased V)
  std::vector<uint16_t> out;   // [s_q, h_q, d_v]      what the timed path wrote
  std::vector<float> lse;      // [h_q, s_q]
};

// Pages a sequence of `len` tokens occupies (at least one, so that a zero-length sample still
// has a well-formed block table).
int pages_for(int len, int page_size);

// Which sequences to check: all when n >= b; else the shortest, the longest, then random
// distinct ones drawn from `seed`, up to n, in increasing order.
std::vector<int> pick_sequences(const std::vector<int>& lens, int n, uint64_t seed);

// Head stride S of the check: heads 0, S, 2S, ... are compared. S divides h_q / h_kv (so the
// sampled heads keep the query-to-KV-head mapping) and is the largest such divisor that still
// leaves at least `want` heads (S = 1 when h_q <= want).
int head_stride(int h_q, int h_kv, int want);

struct CheckResult {
  bool ok = true;
  double max_abs_out = 0;      // max |out - ref| over the checked elements (finite pairs)
  double max_abs_lse = 0;
  int64_t elements = 0;        // out elements compared
  std::string message;         // the first failure, when not ok
  std::string what;            // e.g. "4/128 sequences x 16/128 heads"
};

// Runs decode_reference on every sample (restricted to the heads 0, S, 2S, ...), one thread
// per sample up to the machine's hardware threads, and compares out and lse with the
// tolerances of the problem library.
CheckResult check_samples(const Shape& s, const std::vector<SeqSample>& samples, int stride,
                          int b_total);

}  // namespace flashmfa::bench
