// flashmfa-bench, CUDA side only (included by the .cu files): error checks, owning device
// buffers, events and graphs, and the device-side data generators. Benchmark problems are
// gigabytes (MLA b=128 s_k=32768: 4.8 GB of cache), so they are filled by kernels instead of
// on the host.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "flashmfa/tensor.hpp"

namespace flashmfa::bench::gpu {

// Throws std::runtime_error "<what>: <CUDA's message>" when err is not cudaSuccess.
void check(cudaError_t err, const char* what);

#define BENCH_CUDA(expr) ::flashmfa::bench::gpu::check((expr), #expr)

// An owning device allocation.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t bytes);
  ~Buffer();
  Buffer(Buffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; o.bytes_ = 0; }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* get() const { return ptr_; }
  template <class T> T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

class Event {
 public:
  Event();
  ~Event();
  Event(Event&& o) noexcept : e_(o.e_) { o.e_ = nullptr; }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

// Milliseconds between two recorded (and completed) events.
float elapsed_ms(const Event& from, const Event& to);

// An instantiated CUDA graph (owning).
class GraphExec {
 public:
  GraphExec() = default;
  explicit GraphExec(cudaGraphExec_t e) : e_(e) {}
  ~GraphExec();
  GraphExec(GraphExec&& o) noexcept : e_(o.e_) { o.e_ = nullptr; }
  GraphExec(const GraphExec&) = delete;
  GraphExec& operator=(const GraphExec&) = delete;
  cudaGraphExec_t get() const { return e_; }

 private:
  cudaGraphExec_t e_ = nullptr;
};

// n normal(0, std) values as dtype bits, a pure function of (seed, index).
void fill_normal(uint16_t* dst, size_t n, DType dtype, float std, uint64_t seed, cudaStream_t s);

// A paged cache [num_pages, page_size, row_elems]: rows r < valid_rows[page] get normal(0, std)
// values, every other row the dtype's NaN (valid_rows is a device array [num_pages]).
void fill_cache(uint16_t* cache, int64_t num_pages, int page_size, int64_t row_elems,
                const int32_t* valid_rows, DType dtype, float std, uint16_t nan_bits,
                uint64_t seed, cudaStream_t s);

// Captures what enqueue() puts on s into an instantiated graph; on failure (enqueue throws,
// or capture or instantiation fails) returns an empty exec and sets why (otherwise cleared).
GraphExec capture_graph(const std::function<void()>& enqueue, cudaStream_t s, std::string& why);

// Times iters calls of launch(i) enqueued back to back on s, after warmup untimed ones: an
// event follows each call, and a call's time is the gap between the events around it (what a
// loop of graph replays sees: the gaps between calls count). before() is enqueued after the
// warm-up, right before the first event, and after() after the last one; the stream is then
// synchronized. Returns each call's time in microseconds.
std::vector<double> time_back_to_back(const std::function<void(int)>& launch, int warmup, int iters,
                                      cudaStream_t s, const std::function<void()>& before = {},
                                      const std::function<void()>& after = {});

// Keeps the GPU busy for about `us` microseconds (lets the host queue timed work ahead).
void spin(double us, cudaStream_t s);

// The SM clock over a stretch of a stream: clock_probe, enqueued before and after it, records
// for each of `blocks` one-warp blocks its SM, that SM's cycle counter and the global
// nanosecond timer; sm_clock_ghz pairs the two records SM by SM and returns the median of
// cycles per nanosecond (0 when no SM appears in both). An effective clock: a counter may stop
// while its SM is idle, so gaps between kernels read as a lower clock.
struct ClockStamp {
  uint32_t smid;
  uint64_t cycles;
  uint64_t ns;
};
void clock_probe(ClockStamp* dst, int blocks, cudaStream_t s);
double sm_clock_ghz(const std::vector<ClockStamp>& before, const std::vector<ClockStamp>& after);

}  // namespace flashmfa::bench::gpu
