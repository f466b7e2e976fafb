// flashmfa-bench: the CPU back end (ceilings, one configuration) and the shape helpers both
// back ends share.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <thread>

#include "check.hpp"
#include "problem/fp8.hpp"
#include "problem/problem.hpp"
#include "runner.hpp"

namespace flashmfa::bench {

namespace {

using Clock = std::chrono::steady_clock;

constexpr double kMicrosPerSecond = 1e6;
constexpr double kGiga = 1e9;
constexpr double kTera = 1e12;
// When the OS does not say, assume a last-level cache this large (a common server L3 slice).
constexpr int64_t kFallbackLlcBytes = int64_t(32) << 20;
// The copy ceiling streams a buffer this many times the LLC, so that it measures DRAM.
constexpr int64_t kCopyLlcMultiple = 4;
constexpr int64_t kMinCopyBytes = int64_t(64) << 20;
constexpr int kCopyReps = 10;
// Matmul ceiling: n x n fp32 matrices (3.8 MiB in all: cache-resident, as a kernel's tiles
// are), computed in register tiles of kGemmRows x kGemmCols over a packed B. n is a multiple
// of both tile sides.
constexpr int kGemmN = 576;
constexpr int kGemmRows = 6;
constexpr int kGemmCols = 16;
constexpr int kGemmReps = 10;
// The cache flush walks a buffer twice the LLC, one touch per line.
constexpr int64_t kFlushLlcMultiple = 2;
constexpr size_t kCacheLine = 64;
// Refuse a CPU problem that would need more than this share of physical memory.
constexpr double kMaxMemoryShare = 0.8;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median_of(std::vector<double> v) { return summarize(std::move(v)).median_us; }

// Runs fn(t, threads) on `threads` threads and waits for all.
template <class Fn>
void parallel(int threads, Fn fn) {
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(fn, t, threads);
  fn(0, threads);
  for (std::thread& th : pool) th.join();
}

// The last-level cache one core sees. sysfs first: glibc's sysconf reports a whole socket's
// L3 on some virtual machines (256 MiB on a 2-core EPYC slice whose L3 is 32 MiB).
int64_t read_llc_bytes() {
  int best_level = 0;
  int64_t best = 0;
  for (int idx = 0;; ++idx) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(idx);
    std::ifstream level_f(dir + "/level"), size_f(dir + "/size");
    int level = 0;
    std::string text;
    if (!(level_f >> level) || !(size_f >> text) || text.empty()) break;
    int64_t v = std::atoll(text.c_str());
    if (text.back() == 'K') v <<= 10;
    if (text.back() == 'M') v <<= 20;
    if (level >= best_level && v > 0) { best_level = level; best = v; }
  }
  if (best > 0) return best;
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  return l3 > 0 ? l3 : kFallbackLlcBytes;
}

// Evicts the last-level cache: read-modify-write one byte of every line of a large buffer.
class Flusher {
 public:
  explicit Flusher(int64_t llc) : n_(size_t(llc * kFlushLlcMultiple)), buf_(new uint8_t[n_]()) {}
  void operator()() {
    for (size_t i = 0; i < n_; i += kCacheLine) buf_[i] = uint8_t(buf_[i] + 1);
    sink_ = buf_[n_ / 2];
  }

 private:
  size_t n_;
  std::unique_ptr<uint8_t[]> buf_;
  volatile uint8_t sink_ = 0;
};

// The fast CPU path is built for x86-64-v3 (AVX2 + FMA) with a generic fallback, chosen at
// load time; the matmul ceiling is built the same way, so that both see the same machine.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FLASHMFA_BENCH_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FLASHMFA_BENCH_CLONES
#endif

#if defined(__GNUC__) || defined(__clang__)
// Eight floats as one value: the compiler maps it to one AVX register (two SSE registers in
// the generic clone) and keeps the tile's accumulators in registers.
constexpr int kVecWidth = 8;
typedef float Vec __attribute__((vector_size(kVecWidth * sizeof(float))));
#else
constexpr int kVecWidth = 1;
using Vec = float;
#endif
constexpr int kVecsPerRow = kGemmCols / kVecWidth;

// C[kGemmRows, kGemmCols] += A[kGemmRows, n] Bp[n, kGemmCols]: a (row stride n), bp the packed
// column panel of B (kGemmCols contiguous floats per k), c (row stride n).
FLASHMFA_BENCH_CLONES
void gemm_tile(const float* a, const float* bp, float* c, int n) {
  Vec acc[kGemmRows][kVecsPerRow] = {};
  for (int k = 0; k < n; ++k) {
    Vec b[kVecsPerRow];
    // One load per register (one 64-byte copy would go through the stack).
    for (int v = 0; v < kVecsPerRow; ++v)
      std::memcpy(&b[v], bp + size_t(k) * kGemmCols + v * kVecWidth, sizeof(Vec));
    for (int r = 0; r < kGemmRows; ++r) {
      const float av = a[size_t(r) * n + k];
      for (int v = 0; v < kVecsPerRow; ++v) acc[r][v] += av * b[v];
    }
  }
  for (int r = 0; r < kGemmRows; ++r) {
    float sum[kGemmCols];
    std::memcpy(sum, acc[r], sizeof sum);
    for (int j = 0; j < kGemmCols; ++j) c[size_t(r) * n + j] += sum[j];
  }
}

// The sample of sequence i of a host problem, in the compact form check_samples takes.
SeqSample host_sample(const testing::HostProblem& p, const Shape& s, int i) {
  SeqSample x;
  x.seq = i;
  x.len = p.seqlens[i];
  const int d_k = s.variant.d_k, d_v = s.variant.d_v;
  const size_t page_k = size_t(s.page_size) * s.h_kv * d_k, page_v = size_t(s.page_size) * s.h_kv * d_v;
  const int n_pages = pages_for(x.len, s.page_size);
  const int used = (x.len + s.page_size - 1) / s.page_size;
  x.k.assign(page_k * n_pages, testing::nan_bits(s.dtype));
  if (!s.variant.v_aliases_k) x.v.assign(page_v * n_pages, testing::nan_bits(s.dtype));
  for (int j = 0; j < used; ++j) {
    const size_t page = size_t(p.block_table[size_t(i) * p.max_pages + j]);
    std::copy_n(p.k_cache.begin() + page * page_k, page_k, x.k.begin() + j * page_k);
    if (!x.v.empty()) std::copy_n(p.v_cache.begin() + page * page_v, page_v, x.v.begin() + j * page_v);
  }
  const size_t q_seq = size_t(s.s_q) * s.h_q * d_k, o_seq = size_t(s.s_q) * s.h_q * d_v;
  const size_t l_seq = size_t(s.h_q) * s.s_q;
  x.q.assign(p.q.begin() + i * q_seq, p.q.begin() + (i + 1) * q_seq);
  x.out.assign(p.out.begin() + i * o_seq, p.out.begin() + (i + 1) * o_seq);
  x.lse.assign(p.lse.begin() + i * l_seq, p.lse.begin() + (i + 1) * l_seq);
  return x;
}

}  // namespace

std::vector<int> shape_lengths(const Shape& s) {
  if (s.varlen) return testing::varlen_lengths(s.b, s.s_k, s.s_q, s.seed);
  return std::vector<int>(size_t(s.b), s.s_k);
}

void preflight(const Shape& s) {
  testing::ProblemSpec spec;
  spec.variant = s.variant;
  spec.dtype = s.dtype;
  spec.b = 1;
  spec.s_q = s.s_q;
  spec.h_q = s.h_q;
  spec.h_kv = s.h_kv;
  spec.page_size = s.page_size;
  spec.seqlens = {s.s_q};
  spec.causal = s.causal;
  spec.seed = s.seed;
  if (s.fp8) {
    testing::Fp8Problem f(spec);
    (void)workspace_size(f.fp8_args());
    return;
  }
  testing::HostProblem p = testing::make_problem(spec);
  (void)workspace_size(p.args());
}

CpuInfo cpu_info() {
  CpuInfo c;
  c.threads = int(std::max(1u, std::thread::hardware_concurrency()));
  c.llc_bytes = read_llc_bytes();
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) c.memory_bytes = int64_t(pages) * page;
  c.model = "unknown CPU";
  std::ifstream f("/proc/cpuinfo");
  bool have_model = false, have_clock = false;
  for (std::string line; std::getline(f, line) && !(have_model && have_clock);) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos || colon + 2 > line.size()) continue;
    if (!have_model && line.rfind("model name", 0) == 0) {
      c.model = line.substr(colon + 2);
      have_model = true;
    } else if (!have_clock && line.rfind("cpu MHz", 0) == 0) {
      c.clock_MHz = std::atof(line.c_str() + colon + 2);
      have_clock = true;
    }
  }
  return c;
}

Ceilings measure_cpu_ceilings(const CpuInfo& cpu) {
  Ceilings c;
  const int threads = cpu.threads;
  const size_t bytes = size_t(std::max(kMinCopyBytes, cpu.llc_bytes * kCopyLlcMultiple));
  {
    std::unique_ptr<uint8_t[]> src(new uint8_t[bytes]), dst(new uint8_t[bytes]);
    // Touch every page first, so that page faults are not timed; non-zero data.
    std::memset(src.get(), 1, bytes);
    std::memset(dst.get(), 2, bytes);
    std::vector<double> gbps;
    for (int rep = 0; rep < kCopyReps; ++rep) {
      const auto t0 = Clock::now();
      parallel(threads, [&](int t, int n) {
        const size_t lo = bytes * t / n, hi = bytes * (t + 1) / n;
        std::memcpy(dst.get() + lo, src.get() + lo, hi - lo);
      });
      gbps.push_back(2.0 * double(bytes) / seconds_since(t0) / kGiga);
    }
    c.copy_GBps = median_of(gbps);
    c.copy_method = "memcpy of " + std::to_string(bytes >> 20) + " MiB on " +
                    std::to_string(threads) + " threads, read + written, median of " +
                    std::to_string(kCopyReps);
  }
  {
    const int n = kGemmN, panels = kGemmN / kGemmCols;
    std::vector<float> a(size_t(n) * n), b(size_t(n) * n), bp(size_t(n) * n), cm(size_t(n) * n);
    for (size_t i = 0; i < a.size(); ++i) {
      // Deterministic non-trivial values (a matmul on zeros measures nothing).
      a[i] = float(int(i * 7 % 13) - 6) * 0.125f;
      b[i] = float(int(i * 5 % 11) - 5) * 0.25f;
    }
    // Packed B: panel p holds columns [p * kGemmCols, (p + 1) * kGemmCols), k-major.
    for (int p = 0; p < panels; ++p)
      for (int k = 0; k < n; ++k)
        for (int j = 0; j < kGemmCols; ++j)
          bp[(size_t(p) * n + k) * kGemmCols + j] = b[size_t(k) * n + p * kGemmCols + j];
    std::vector<double> tflops;
    for (int rep = 0; rep < kGemmReps; ++rep) {
      std::fill(cm.begin(), cm.end(), 0.0f);
      const auto t0 = Clock::now();
      parallel(threads, [&](int t, int nt) {
        for (int row = t * kGemmRows; row < n; row += nt * kGemmRows)
          for (int p = 0; p < panels; ++p)
            gemm_tile(&a[size_t(row) * n], &bp[size_t(p) * n * kGemmCols],
                      &cm[size_t(row) * n + size_t(p) * kGemmCols], n);
      });
      tflops.push_back(2.0 * n * double(n) * n / seconds_since(t0) / kTera);
    }
    c.gemm_TFLOPS = median_of(tflops);
    c.gemm_method = "register-tiled fp32 loop " + std::to_string(n) + "^3 on " +
                    std::to_string(threads) + " threads, built like the fast path (x86-64-v3 " +
                    "clone), not a vendor BLAS; median of " + std::to_string(kGemmReps);
  }
  return c;
}

Row run_cpu(const Shape& s, const Ceilings& c, const RunConfig& cfg, const CpuInfo& cpu) {
  if (s.fp8)
    throw std::runtime_error("--cache fp8 is benchmarked on the GPU only (the CPU backend's FP8 "
                             "decode is covered by its tests)");
  Row row;
  row.shape = s;
  row.backend = "cpu";
  row.method = "wall-clock";
  const std::vector<int> lens = shape_lengths(s);
  for (int len : lens) row.total_len += len;
  row.mean_len = double(row.total_len) / s.b;
  row.work = decode_work(s, row.total_len);
  row.m = metrics(row.work, c, 0);

  const double need = double(row.total_len + int64_t(s.b) * s.page_size) *
                          double(cache_bytes_per_token(s)) + 2 * row.work.bytes;
  if (cpu.memory_bytes > 0 && need > kMaxMemoryShare * double(cpu.memory_bytes))
    throw std::runtime_error("the problem needs about " + std::to_string(int64_t(need / kGiga)) +
                             " GB of host memory; this machine has " +
                             std::to_string(cpu.memory_bytes / int64_t(kGiga)) + " GB");

  testing::ProblemSpec spec;
  spec.variant = s.variant;
  spec.dtype = s.dtype;
  spec.b = s.b;
  spec.s_q = s.s_q;
  spec.h_q = s.h_q;
  spec.h_kv = s.h_kv;
  spec.page_size = s.page_size;
  spec.seqlens = lens;
  spec.causal = s.causal;
  spec.seed = s.seed;
  testing::HostProblem p = testing::make_problem(spec);
  DecodeArgs args = p.args();

  // Plan once and reuse it (the CPU plan has no workspace, but the call sequence is the API's).
  std::vector<uint8_t> ws(std::max<size_t>(1, workspace_size(args)));
  const Plan plan = flashmfa::plan(args, ws.data(), ws.size());
  row.kernel = plan.kernel;
  row.num_parts = plan.num_parts;
  run(plan, args);

  // Check before timing: a wrong result gets no number.
  std::vector<SeqSample> samples;
  for (int i : pick_sequences(lens, cfg.check_seqs, s.seed)) samples.push_back(host_sample(p, s, i));
  const CheckResult chk = check_samples(s, samples, head_stride(s.h_q, s.h_kv, cfg.check_heads), s.b);
  row.checked = chk.what;
  row.max_abs_err = chk.max_abs_out;
  row.max_abs_err_lse = chk.max_abs_lse;
  row.check_ok = chk.ok;
  row.check_message = chk.message;
  if (!chk.ok) return row;

  Flusher flush(cpu.llc_bytes);
  auto time_it = [&](auto&& fn, int iters) {
    std::vector<double> us;
    for (int i = 0; i < iters; ++i) {
      if (cfg.flush) flush();
      const auto t0 = Clock::now();
      fn();
      us.push_back(seconds_since(t0) * kMicrosPerSecond);
    }
    return summarize(std::move(us));
  };
  for (int i = 0; i < cfg.warmup; ++i) run(plan, args);
  row.timing = time_it([&] { run(plan, args); }, cfg.iters);
  row.m = metrics(row.work, c, row.timing.median_us);
  if (!cfg.flush) row.note = "timed with a warm last-level cache (--no-flush)";

  if (cfg.vs_reference) {
    // The fast path's output, kept; the reference then writes its own into the same buffers.
    const std::vector<uint16_t> fast_out = p.out;
    const std::vector<float> fast_lse = p.lse;
    const Timing ref = time_it([&] { decode_reference(args); }, cfg.ref_iters);
    row.ref_us = ref.median_us;
    row.speedup_vs_ref = ref.median_us / row.timing.median_us;
    // With the whole reference at hand, compare every element, not only the sample.
    const testing::Tolerances tol = testing::tolerances(s.dtype);
    const auto o = testing::compare_out(s.dtype, fast_out.data(), p.out.data(), p.out.size(),
                                        tol.out_atol, tol.out_rtol);
    const auto l = testing::compare_lse(fast_lse.data(), p.lse.data(), p.lse.size(), tol.lse_atol,
                                        tol.lse_rtol);
    row.checked = "all " + std::to_string(s.b) + " sequences x " + std::to_string(s.h_q) + " heads";
    row.max_abs_err = o.max_abs;
    row.max_abs_err_lse = l.max_abs;
    if (!o.ok || !l.ok) {
      row.check_ok = false;
      row.check_message = !o.ok ? "out " + o.summary() : "lse " + l.summary();
    }
  }
  return row;
}

}  // namespace flashmfa::bench
