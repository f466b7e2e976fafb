// flashmfa-bench, CUDA side: RAII wrappers, the data generators, probe_gpu and the two
// ceilings (device copy bandwidth, cuBLAS bf16 matmul rate).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <functional>
#include <map>
#include <stdexcept>
#include <vector>

#include "gpu_util.hpp"
#include "runner.hpp"

namespace flashmfa::bench::gpu {

namespace {

constexpr int kThreads = 256;
constexpr int kWarpThreads = 32;
// Enough CTAs to fill any current GPU; the fill kernels stride over the rest.
constexpr int kMaxBlocks = 65536;
constexpr double kTwoToMinus24 = 1.0 / 16777216.0;
constexpr double kNsPerUs = 1e3;
constexpr double kMsToUs = 1e3;
// Host head start before the first timed call: a fixed part plus an estimate of the cost of
// queueing one graph launch and one event record.
constexpr double kHeadStartUs = 2000;
constexpr double kQueueCostUs = 20;

int blocks_for(size_t n) {
  return int(std::min<size_t>(kMaxBlocks, std::max<size_t>(1, (n + kThreads - 1) / kThreads)));
}

// splitmix64's finalizer: a well-mixed 64-bit hash of (seed, index).
__device__ __forceinline__ uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Box-Muller on two 24-bit uniforms from one hash: u1 in (0, 1], u2 in [0, 1).
__device__ __forceinline__ float normal_at(uint64_t seed, uint64_t i) {
  const uint64_t h = mix(seed ^ mix(i));
  const float u1 = float(double((h >> 40) + 1) * kTwoToMinus24);
  const float u2 = float(double(h & 0xffffffull) * kTwoToMinus24);
  return sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
}

__device__ __forceinline__ uint16_t to_bits(float x, bool bf16) {
  return bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(x)) : __half_as_ushort(__float2half_rn(x));
}

__global__ void fill_normal_kernel(uint16_t* __restrict__ dst, size_t n, bool bf16, float std,
                                   uint64_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    dst[i] = to_bits(std * normal_at(seed, i), bf16);
}

// cache: [num_pages, page_size, row_elems]; valid_rows: [num_pages].
__global__ void fill_cache_kernel(uint16_t* __restrict__ cache, size_t n, size_t page_elems,
                                  int64_t row_elems, const int32_t* __restrict__ valid_rows,
                                  bool bf16, float std, uint16_t nan_bits, uint64_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    const size_t page = i / page_elems;
    const int64_t row = int64_t(i % page_elems) / row_elems;
    cache[i] = row < valid_rows[page] ? to_bits(std * normal_at(seed, i), bf16) : nan_bits;
  }
}

__global__ void spin_kernel(uint64_t ns) {
  uint64_t start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    __nanosleep(1000);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < ns);
}

__global__ void clock_probe_kernel(ClockStamp* dst) {
  if (threadIdx.x != 0) return;
  ClockStamp st;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(st.smid));
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(st.ns));
  st.cycles = clock64();
  dst[blockIdx.x] = st;
}

// The call floor's two kernels (measure_gpu_ceilings): the first lets the second be scheduled
// at once and the second waits for the first grid, as the decode kernels and the combine do
// through griddepcontrol (sm_90 on; on older devices the second is a plain dependent launch).
__global__ void floor_first_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
__global__ void floor_second_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

void check_cublas(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(int(st)));
}

class Cublas {
 public:
  Cublas() { check_cublas(cublasCreate(&h_), "cublasCreate"); }
  ~Cublas() { cublasDestroy(h_); }
  Cublas(const Cublas&) = delete;
  Cublas& operator=(const Cublas&) = delete;
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

}  // namespace

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

Buffer::Buffer(size_t bytes) : bytes_(bytes) {
  if (bytes) BENCH_CUDA(cudaMalloc(&ptr_, bytes));
}
Buffer::~Buffer() {
  if (ptr_) cudaFree(ptr_);
}
Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

Stream::Stream() { BENCH_CUDA(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
Stream::~Stream() {
  if (s_) cudaStreamDestroy(s_);
}
Event::Event() { BENCH_CUDA(cudaEventCreate(&e_)); }
Event::~Event() {
  if (e_) cudaEventDestroy(e_);
}
GraphExec::~GraphExec() {
  if (e_) cudaGraphExecDestroy(e_);
}

float elapsed_ms(const Event& from, const Event& to) {
  float ms = 0;
  BENCH_CUDA(cudaEventElapsedTime(&ms, from.get(), to.get()));
  return ms;
}

void fill_normal(uint16_t* dst, size_t n, DType dtype, float std, uint64_t seed, cudaStream_t s) {
  if (n == 0) return;
  fill_normal_kernel<<<blocks_for(n), kThreads, 0, s>>>(dst, n, dtype == DType::bf16, std, seed);
  BENCH_CUDA(cudaGetLastError());
}

void fill_cache(uint16_t* cache, int64_t num_pages, int page_size, int64_t row_elems,
                const int32_t* valid_rows, DType dtype, float std, uint16_t nan_bits,
                uint64_t seed, cudaStream_t s) {
  const size_t page_elems = size_t(page_size) * size_t(row_elems);
  const size_t n = page_elems * size_t(num_pages);
  if (n == 0) return;
  fill_cache_kernel<<<blocks_for(n), kThreads, 0, s>>>(cache, n, page_elems, row_elems, valid_rows,
                                                       dtype == DType::bf16, std, nan_bits, seed);
  BENCH_CUDA(cudaGetLastError());
}

GraphExec capture_graph(const std::function<void()>& enqueue, cudaStream_t s, std::string& why) {
  BENCH_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  std::string err;
  try {
    enqueue();
  } catch (const std::exception& e) {
    err = e.what();
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(s, &graph);  // ends the capture whatever failed
  if (err.empty() && end != cudaSuccess) err = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(end);
  cudaGraphExec_t exec = nullptr;
  if (err.empty()) {
    const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
    if (inst != cudaSuccess) err = std::string("cudaGraphInstantiate: ") + cudaGetErrorString(inst);
  }
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();  // a failed capture leaves an error behind; callers handle `why`
  why = err;
  return GraphExec(err.empty() ? exec : nullptr);
}

std::vector<double> time_back_to_back(const std::function<void(int)>& launch, int warmup, int iters,
                                      cudaStream_t s, const std::function<void()>& before,
                                      const std::function<void()>& after) {
  for (int i = 0; i < warmup; ++i) launch(i);
  std::vector<Event> ev(static_cast<size_t>(iters) + 1);
  spin(kHeadStartUs + kQueueCostUs * iters, s);  // the host queues every timed call meanwhile
  if (before) before();
  BENCH_CUDA(cudaEventRecord(ev[0].get(), s));
  for (int i = 0; i < iters; ++i) {
    launch(i);
    BENCH_CUDA(cudaEventRecord(ev[size_t(i) + 1].get(), s));
  }
  if (after) after();
  BENCH_CUDA(cudaStreamSynchronize(s));
  std::vector<double> us(static_cast<size_t>(iters));
  for (size_t i = 0; i < us.size(); ++i) us[i] = elapsed_ms(ev[i], ev[i + 1]) * kMsToUs;
  return us;
}

void spin(double us, cudaStream_t s) {
  spin_kernel<<<1, 1, 0, s>>>(uint64_t(us * kNsPerUs));
  BENCH_CUDA(cudaGetLastError());
}

void clock_probe(ClockStamp* dst, int blocks, cudaStream_t s) {
  clock_probe_kernel<<<blocks, kWarpThreads, 0, s>>>(dst);
  BENCH_CUDA(cudaGetLastError());
}

double sm_clock_ghz(const std::vector<ClockStamp>& before, const std::vector<ClockStamp>& after) {
  std::map<uint32_t, ClockStamp> first;  // each SM's first record before the stretch
  for (const ClockStamp& b : before) first.emplace(b.smid, b);
  std::map<uint32_t, double> ghz;  // and after it
  for (const ClockStamp& a : after) {
    const auto it = first.find(a.smid);
    if (it == first.end() || ghz.count(a.smid) || a.ns <= it->second.ns) continue;
    ghz[a.smid] = double(a.cycles - it->second.cycles) / double(a.ns - it->second.ns);
  }
  std::vector<double> v;
  for (const auto& [sm, g] : ghz) v.push_back(g);
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

}  // namespace flashmfa::bench::gpu

namespace flashmfa::bench {

namespace {
constexpr size_t kGiB = size_t(1) << 30;
// Copy ceiling: 1 GiB copied (2 GiB moved), far beyond any L2; never more than a quarter of
// the free memory (source and destination), and never under 256 MiB.
constexpr size_t kCopyBytes = kGiB;
constexpr size_t kMinCopyBytes = kGiB / 4;
constexpr int kCopyWarmup = 3;
constexpr int kCopyReps = 20;
// Matmul ceiling: 8192^3 bf16 with fp32 accumulation, as DESIGN.md section 4 measured it.
constexpr int kGemmN = 8192;
constexpr int kGemmWarmup = 3;
constexpr int kGemmReps = 20;
constexpr uint64_t kCeilingSeed = 0xce111;
constexpr double kGiga = 1e9;
constexpr double kTera = 1e12;
constexpr double kMsPerS = 1e3;
constexpr double kKiloToMega = 1e-3;  // device attributes report kHz

double median(std::vector<double> v) { return summarize(std::move(v)).median_us; }
}  // namespace

GpuInfo probe_gpu(int device) {
  GpuInfo g;
  g.device = device;
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear it: "no GPU" is an answer, not an error state
    g.why_not = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
    return g;
  }
  if (n == 0) { g.why_not = "no CUDA device is visible"; return g; }
  if (device >= n) {
    g.why_not = "CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(n) +
                " visible)";
    return g;
  }
  if (!flashmfa::cuda_available()) {
    g.why_not = "the flashmfa library was built without its CUDA backend";
    return g;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
    cudaGetLastError();
    g.why_not = "cudaGetDeviceProperties failed";
    return g;
  }
  g.present = true;
  g.name = prop.name;
  g.sms = prop.multiProcessorCount;
  g.l2_bytes = prop.l2CacheSize;
  g.total_memory = int64_t(prop.totalGlobalMem);
  int khz = 0, bits = 0;
  if (cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, device) == cudaSuccess)
    g.clock_MHz = khz * kKiloToMega;
  if (cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, device) == cudaSuccess)
    g.memory_clock_MHz = khz * kKiloToMega;
  if (cudaDeviceGetAttribute(&bits, cudaDevAttrGlobalMemoryBusWidth, device) == cudaSuccess)
    g.memory_bus_bits = bits;
  cudaGetLastError();
  return g;
}

namespace {
// The call floor (Ceilings::floor_us): a graph of floor_first_kernel and floor_second_kernel,
// one CTA of kFloorThreads per SM each, the second launched with programmatic stream
// serialization where run() launches the combine so (compute capability >= 9.0).
constexpr int kFloorThreads = 128;
gpu::GraphExec capture_floor(const GpuInfo& info, cudaStream_t s) {
  using namespace gpu;
  int major = 0;
  BENCH_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, info.device));
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t second{};
  second.gridDim = dim3(unsigned(info.sms));
  second.blockDim = dim3(kFloorThreads);
  second.stream = s;
  second.attrs = &attr;
  second.numAttrs = major >= 9 ? 1 : 0;
  std::string why;
  GraphExec g = capture_graph(
      [&] {
        floor_first_kernel<<<info.sms, kFloorThreads, 0, s>>>();
        BENCH_CUDA(cudaGetLastError());
        BENCH_CUDA(cudaLaunchKernelEx(&second, floor_second_kernel));
      },
      s, why);
  if (!why.empty()) throw std::runtime_error("capturing the call floor's graph: " + why);
  return g;
}
}  // namespace

Ceilings measure_gpu_ceilings(const GpuInfo& info, const RunConfig& cfg) {
  using namespace gpu;
  BENCH_CUDA(cudaSetDevice(info.device));
  Ceilings c;
  Stream stream;
  const cudaStream_t s = stream.get();
  Event start, stop;

  size_t free_b = 0, total_b = 0;
  BENCH_CUDA(cudaMemGetInfo(&free_b, &total_b));
  const size_t bytes = std::max(kMinCopyBytes, std::min(kCopyBytes, free_b / 4));
  {
    Buffer src(bytes), dst(bytes);
    fill_normal(src.as<uint16_t>(), bytes / sizeof(uint16_t), DType::bf16, 1.0f, kCeilingSeed, s);
    std::vector<double> gbps;
    for (int i = 0; i < kCopyWarmup + kCopyReps; ++i) {
      BENCH_CUDA(cudaEventRecord(start.get(), s));
      BENCH_CUDA(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, s));
      BENCH_CUDA(cudaEventRecord(stop.get(), s));
      BENCH_CUDA(cudaEventSynchronize(stop.get()));
      if (i >= kCopyWarmup) gbps.push_back(2.0 * double(bytes) / (elapsed_ms(start, stop) / kMsPerS) / kGiga);
    }
    c.copy_GBps = median(gbps);
    c.copy_method = "cudaMemcpy device-to-device of " + std::to_string(bytes >> 20) +
                    " MiB, read + written, median of " + std::to_string(kCopyReps);
  }
  {
    const size_t n = kGemmN, elems = n * n;
    Buffer a(elems * 2), b(elems * 2), out(elems * 2);
    fill_normal(a.as<uint16_t>(), elems, DType::bf16, 1.0f, kCeilingSeed + 1, s);
    fill_normal(b.as<uint16_t>(), elems, DType::bf16, 1.0f, kCeilingSeed + 2, s);
    Cublas h;
    check_cublas(cublasSetStream(h.get(), s), "cublasSetStream");
    const float alpha = 1.0f, beta = 0.0f;
    std::vector<double> tflops;
    for (int i = 0; i < kGemmWarmup + kGemmReps; ++i) {
      BENCH_CUDA(cudaEventRecord(start.get(), s));
      check_cublas(cublasGemmEx(h.get(), CUBLAS_OP_N, CUBLAS_OP_N, int(n), int(n), int(n), &alpha,
                                a.get(), CUDA_R_16BF, int(n), b.get(), CUDA_R_16BF, int(n), &beta,
                                out.get(), CUDA_R_16BF, int(n), CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT),
                   "cublasGemmEx");
      BENCH_CUDA(cudaEventRecord(stop.get(), s));
      BENCH_CUDA(cudaEventSynchronize(stop.get()));
      const double sec = elapsed_ms(start, stop) / kMsPerS;
      if (i >= kGemmWarmup) tflops.push_back(2.0 * double(n) * double(n) * double(n) / sec / kTera);
    }
    c.gemm_TFLOPS = median(tflops);
    c.gemm_method = "cublasGemmEx " + std::to_string(n) + "^3 bf16, fp32 accumulate, random data, median of " +
                    std::to_string(kGemmReps);
  }
  {
    const GraphExec floor = capture_floor(info, s);
    c.floor_us = median(time_back_to_back(
        [&](int) { BENCH_CUDA(cudaGraphLaunch(floor.get(), s)); }, cfg.warmup, cfg.iters, s));
    c.floor_method = "CUDA graph of two empty kernels of " + std::to_string(info.sms) + " x " +
                     std::to_string(kFloorThreads) +
                     " threads (the second launched as run() launches the combine), median of " +
                     std::to_string(cfg.iters) + " replays timed as the rows are";
  }
  return c;
}

}  // namespace flashmfa::bench
