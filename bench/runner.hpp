// flashmfa-bench: the two measurement back ends. Each measures its ceilings once, then runs
// one configuration at a time: build the problem, plan once, run once and check the result
// against the reference, then time. Plain C++ (no CUDA headers): the GPU side lives in .cu
// files, or in gpu_stub.cpp in a build without CUDA.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "roofline.hpp"

namespace flashmfa::bench {

struct RunConfig {
  int warmup = 0;
  int iters = 1;
  bool vs_reference = false;  // CPU: time decode_reference on the whole problem too
  int ref_iters = 1;
  int check_seqs = 4;
  int check_heads = 16;
  bool flush = true;          // CPU: evict the last-level cache before every timed run
  std::string path = "auto";  // CUDA: kernel family (DecodeArgs::Path): auto, portable, hopper
};

// Default repeat counts per backend (what --help states).
inline constexpr int kGpuWarmup = 10;
inline constexpr int kGpuIters = 100;
inline constexpr int kCpuWarmup = 1;
inline constexpr int kCpuIters = 5;
inline constexpr int kRefIters = 3;

// The lengths of a shape's sequences: s_k each, or normal(s_k, s_k/2) floored at s_q.
std::vector<int> shape_lengths(const Shape& s);

// Validates a shape through the library (flashmfa::workspace_size on a one-sequence problem)
// before anything large is allocated; lets flashmfa::Error through.
void preflight(const Shape& s);

// ---- CPU ----

struct CpuInfo {
  std::string model;        // /proc/cpuinfo's model name, or "unknown CPU"
  int threads = 1;          // hardware threads
  int64_t llc_bytes = 0;    // last-level cache
  int64_t memory_bytes = 0; // physical memory (0 where unknown)
  double clock_MHz = 0;     // /proc/cpuinfo's current clock of the first CPU (0 where unknown)
};
CpuInfo cpu_info();

// A multithreaded memcpy of a buffer 4x the last-level cache (bytes read + written) and a
// blocked fp32 matmul loop on all hardware threads, both as the median of several runs.
Ceilings measure_cpu_ceilings(const CpuInfo& cpu);

// Runs one configuration on the CPU backend (flashmfa::run on host tensors).
Row run_cpu(const Shape& s, const Ceilings& c, const RunConfig& cfg, const CpuInfo& cpu);

// ---- CUDA ----

struct GpuInfo {
  bool present = false;
  std::string why_not;      // when not present: what cudaGetDeviceCount / the build said
  int device = 0;
  std::string name;
  int sms = 0;
  double clock_MHz = 0;
  double memory_clock_MHz = 0;
  int memory_bus_bits = 0;
  int64_t l2_bytes = 0;
  int64_t total_memory = 0;
};
// Never throws: a build without CUDA, no driver or no device give present = false.
GpuInfo probe_gpu(int device);

// A device-to-device cudaMemcpy of 1 GiB (a quarter of the free memory if less, at least
// 256 MiB; bytes read + written) and an 8192^3 cuBLAS bf16 matmul with fp32 accumulation on
// random data, each the median of repeated runs; and the call floor, timed as the rows are
// (cfg's warm-up and replays): a CUDA graph of two empty kernels of one CTA per SM, the second
// launched as run() launches the combine.
Ceilings measure_gpu_ceilings(const GpuInfo& gpu, const RunConfig& cfg);

// Runs one configuration on the CUDA backend: device-generated random problem, checked on
// a sample against the host reference, then timed as CUDA-graph replays.
Row run_gpu(const Shape& s, const Ceilings& c, const RunConfig& cfg, const GpuInfo& gpu);

}  // namespace flashmfa::bench
