// flashmfa-bench: the benchmark's vocabulary (one configuration, the measured ceilings, one
// result row) and the roofline arithmetic of DESIGN.md section 3, kept apart from any timing
// code so that tests can check it on known numbers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "flashmfa/flashmfa.hpp"

namespace flashmfa::bench {

// One decode configuration. s_k is the fixed length of every sequence, or the mean of the
// normal(s_k, s_k / 2) lengths (floored at s_q, drawn from `seed`) when varlen.
struct Shape {
  Variant variant = Variant::mla();
  DType dtype = DType::bf16;
  int b = 1;
  int s_q = 1;
  int s_k = 1;
  int h_q = 1;
  int h_kv = 1;
  int page_size = 64;
  bool varlen = false;
  bool causal = false;
  // The cache in FP8 (flashmfa::CacheFormat): MLA's 656-byte rows, e4m3 rows with one f32
  // scale each otherwise. q and out stay in dtype.
  bool fp8 = false;
  // fp8_row scales (not MLA) laid out head-major in memory, [num_pages, h_kv, page_size], and
  // passed as the [num_pages, page_size, h_kv] view with those strides: each KV head's scales of
  // a page are one contiguous run. false: the documented [num_pages, page_size, h_kv] layout.
  bool scales_head_major = false;
  uint64_t seed = 0;

  friend bool operator==(const Shape&, const Shape&) = default;
};

// "MLA", "MFA", "MFA-KR", "MQA" or "GQA": the family a shape belongs to (what the peers' files
// call their "variant"). MFA means one shared 256-wide K head and V head.
std::string family_name(const Variant& v, int h_kv);
// One line: "MLA 576/512 b=128 s_q=1 s_k=8192 varlen h_q=128 h_kv=1 page=64 bf16".
std::string describe(const Shape& s);

// The ceilings a roofline is drawn from, measured on the device that runs the benchmark.
struct Ceilings {
  double copy_GBps = 0;     // copy bandwidth, bytes read + written, 1e9 B/s
  double gemm_TFLOPS = 0;   // dense matmul rate, 1e12 FLOP/s; 0 = not measured
  std::string copy_method;  // how it was measured, in words
  std::string gemm_method;
  // CUDA: the shortest whole call the rows' timing can see (a graph of two empty kernels,
  // replayed as the rows are), in microseconds; 0 = not measured (CPU, older results).
  double floor_us = 0;
  std::string floor_method;
};

// The work of one decode call (DESIGN.md section 3). Causal masking is ignored, as peers do.
struct Work {
  double flops = 0;  // 2 * h_q * s_q * L * (d_k + d_v)
  double bytes = 0;  // the cache rows once, plus q read and out written
};

// total_len = sum of the sequences' lengths (L).
Work decode_work(const Shape& s, int64_t total_len);

// Bytes of one cached token (all KV heads) as stored: the K row, plus the V row when V is
// separate (FP8: MLA's 656-byte row, or d e4m3 bytes + a 4-byte scale per row).
int64_t cache_bytes_per_token(const Shape& s);

// max(bytes / copy bandwidth, flops / matmul rate) in microseconds. The matmul term is left
// out when gemm_TFLOPS is 0 (not measured).
double roofline_us(const Work& w, const Ceilings& c);

// Median, min and max of a set of timings in microseconds.
struct Timing {
  double median_us = 0, min_us = 0, max_us = 0;
  int samples = 0;
};
// Throws std::invalid_argument on an empty set.
Timing summarize(std::vector<double> samples_us);

// What a timing means against the work and the ceilings.
struct Metrics {
  double tflops = 0;        // flops / time, 1e12 FLOP/s
  double gbps = 0;          // bytes / time, 1e9 B/s
  double roofline_us = 0;
  double pct_roofline = 0;  // 100 * roofline_us / time
};
Metrics metrics(const Work& w, const Ceilings& c, double us);

// One benchmarked configuration.
struct Row {
  Shape shape;
  std::string backend;        // "cuda" or "cpu"
  int64_t total_len = 0;      // L: the lengths actually drawn
  double mean_len = 0;        // L / b
  Work work;
  Timing timing;
  Metrics m;                  // from timing.median_us
  // Correctness of the timed path against flashmfa::decode_reference.
  bool check_ok = false;
  double max_abs_err = 0;     // of out, over the checked rows
  double max_abs_err_lse = 0;
  std::string checked;        // what was checked, e.g. "4/128 sequences x 16/128 heads"
  std::string check_message;  // the comparison's verdict when it failed
  // How the time was taken: "cuda-graph", "cuda-direct" or "wall-clock"; replays timed.
  std::string method;
  int cache_copies = 1;       // rotated cache copies (so a small cache is not served from L2)
  std::string path = "auto";  // the kernel family asked for: auto, portable or hopper
  int kernel = -1;            // the plan's kernel id and CTAs along the KV axis
  int num_parts = 0;
  // CUDA: the median SM's effective clock over the timed replays (gpu_util.hpp, sm_clock_ghz);
  // 0 = not measured.
  double sm_clock_ghz = 0;
  // CPU only: the reference's median time on the same problem, and fast path's speed-up.
  double ref_us = 0;          // 0 = not timed
  double speedup_vs_ref = 0;
  std::string note;
};

}  // namespace flashmfa::bench
