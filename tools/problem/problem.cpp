// flashmfa test/bench tool: random decode problems (see problem.hpp).
#include "problem/problem.hpp"

#include "core/validate.hpp"
#include "cpu/cpu_backend.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "flashmfa/half.hpp"

namespace flashmfa::testing {
namespace {

// Spare pages no sequence owns: they stay NaN, so a kernel that strays into them shows it.
constexpr int kSparePages = 2;
// Standard deviation of q's entries. K and V are normal(0, 1); under the default scale
// 1/sqrt(d_k) the scores then have standard deviation kQueryStd, so softmax weights span
// several orders of magnitude (a peaked, realistic distribution) without overflowing anything.
constexpr double kQueryStd = 2.0;
// Random cache entries are picked from a table of this many normal(0, 1) samples (pre-rounded
// to the dtype): one 16-bit index per value makes filling gigabyte caches for the benchmark a
// matter of seconds instead of minutes, and the values keep a normal histogram.
constexpr int kTableBits = 16;
constexpr size_t kTableSize = size_t(1) << kTableBits;
// Buffers below this many elements are filled on one thread (spawning costs more).
constexpr size_t kParallelFillElems = size_t(1) << 22;

// splitmix64: a tiny, well-mixed 64-bit generator; one independent stream per page.
uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Stream seed for (problem seed, tensor, item): distinct tensors and pages never share values.
uint64_t stream_seed(uint64_t seed, uint64_t tensor, uint64_t item) {
  uint64_t s = seed ^ (tensor * 0xd1b54a32d192ed03ull);
  splitmix(s);
  s ^= item * 0x8cb92ba72f3d8dd7ull;
  return splitmix(s);
}

enum Tensor : uint64_t { kTensorQ = 1, kTensorK = 2, kTensorV = 3, kTensorTable = 4 };

// kTableSize normal(0, std) samples as dtype bits.
std::vector<uint16_t> normal_table(DType dtype, double std, uint64_t seed) {
  std::mt19937_64 rng(stream_seed(seed, kTensorTable, 0));
  std::normal_distribution<double> dist(0.0, std);
  std::vector<uint16_t> table(kTableSize);
  for (uint16_t& v : table) v = half::from_float(dtype, float(dist(rng)));
  return table;
}

// Fills dst[0, n) with table picks from the stream `state`.
void fill_random(uint16_t* dst, size_t n, const std::vector<uint16_t>& table, uint64_t state) {
  constexpr int kPicksPerDraw = 64 / kTableBits;
  size_t i = 0;
  while (i < n) {
    uint64_t r = splitmix(state);
    for (int k = 0; k < kPicksPerDraw && i < n; ++k, ++i, r >>= kTableBits)
      dst[i] = table[r & (kTableSize - 1)];
  }
}

// Runs body(item) for item in [0, n), over all cores when the work is large.
template <class F>
void for_items(int64_t n, size_t total_elems, F body) {
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const int64_t workers = total_elems < kParallelFillElems ? 1 : std::min<int64_t>(hw, n);
  if (workers <= 1) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
  std::vector<std::thread> pool;
  for (int64_t w = 0; w < workers; ++w)
    pool.emplace_back([=] {
      for (int64_t i = w; i < n; i += workers) body(i);
    });
  for (std::thread& t : pool) t.join();
}

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("make_problem: " + what);
}

// A non-null stand-in for the data pointer of an empty buffer (b = 0).
void* nonnull(void* p) {
  alignas(16) static char dummy[16];
  return p ? p : dummy;
}

}  // namespace

uint16_t nan_bits(DType dtype) {
  return half::from_float(dtype, std::numeric_limits<float>::quiet_NaN());
}

std::string ProblemSpec::str() const {
  std::ostringstream os;
  os << "d" << variant.d_k << "/" << variant.d_v << (variant.v_aliases_k ? "(V=K)" : "")
     << " " << dtype_name(dtype) << " b" << b << " s_q" << s_q << " h_q" << h_q << " h_kv"
     << h_kv << " page" << page_size << (causal ? " causal" : "") << " lens[";
  for (size_t i = 0; i < seqlens.size(); ++i) os << (i ? "," : "") << seqlens[i];
  os << "]";
  if (softmax_scale) os << " scale" << *softmax_scale;
  os << " seed" << seed;
  return os.str();
}

size_t HostProblem::q_elems() const {
  return size_t(spec.b) * spec.s_q * spec.h_q * spec.variant.d_k;
}
size_t HostProblem::k_elems() const {
  return size_t(num_pages) * spec.page_size * spec.h_kv * spec.variant.d_k;
}
size_t HostProblem::v_elems() const {
  return spec.variant.v_aliases_k
             ? 0
             : size_t(num_pages) * spec.page_size * spec.h_kv * spec.variant.d_v;
}
size_t HostProblem::out_elems() const {
  return size_t(spec.b) * spec.s_q * spec.h_q * spec.variant.d_v;
}
size_t HostProblem::lse_elems() const { return size_t(spec.b) * spec.h_q * spec.s_q; }
int64_t HostProblem::total_tokens() const {
  return std::accumulate(seqlens.begin(), seqlens.end(), int64_t(0));
}

DecodeArgs HostProblem::args() {
  return args_on(Device{}, nonnull(q.data()), nonnull(k_cache.data()),
                 spec.variant.v_aliases_k ? nullptr : nonnull(v_cache.data()),
                 nonnull(block_table.data()), nonnull(seqlens.data()), nonnull(out.data()),
                 nonnull(lse.data()));
}

DecodeArgs HostProblem::args_on(Device dev, void* q_, void* k, void* v, void* bt, void* lens,
                                void* out_, void* lse_) const {
  const ProblemSpec& s = spec;
  const int64_t d_k = s.variant.d_k, d_v = s.variant.d_v;
  DecodeArgs a;
  a.q = make_view(q_, s.dtype, {s.b, s.s_q, s.h_q, d_k}, dev);
  a.k_cache = make_view(k, s.dtype, {num_pages, s.page_size, s.h_kv, d_k}, dev);
  if (!s.variant.v_aliases_k && v != nullptr)
    a.v_cache = make_view(v, s.dtype, {num_pages, s.page_size, s.h_kv, d_v}, dev);
  a.block_table = make_view(bt, DType::i32, {s.b, max_pages}, dev);
  a.seqlens_k = make_view(lens, DType::i32, {s.b}, dev);
  a.out = make_view(out_, s.dtype, {s.b, s.s_q, s.h_q, d_v}, dev);
  a.lse = make_view(lse_, DType::f32, {s.b, s.h_q, s.s_q}, dev);
  a.softmax_scale = s.softmax_scale;
  a.causal = s.causal;
  return a;
}

void HostProblem::poison_outputs() {
  std::fill(out.begin(), out.end(), nan_bits(spec.dtype));
  std::fill(lse.begin(), lse.end(), std::numeric_limits<float>::quiet_NaN());
}

HostProblem make_problem(const ProblemSpec& spec) {
  const ProblemSpec& s = spec;
  require(s.b >= 0 && s.s_q >= 0 && s.h_q >= 0 && s.h_kv >= 1,
          "b, s_q, h_q must be >= 0 and h_kv >= 1");
  require(s.page_size >= 1, "page_size must be >= 1");
  require(s.extra_pages_per_seq >= 0, "extra_pages_per_seq must be >= 0");
  require(s.seqlens.size() == size_t(s.b),
          "seqlens has " + std::to_string(s.seqlens.size()) + " entries, b = " +
              std::to_string(s.b));
  for (int len : s.seqlens) require(len >= 0, "a length is negative");

  HostProblem p;
  p.spec = s;
  const int d_k = s.variant.d_k, d_v = s.variant.d_v;

  // Pages: each sequence needs ceil(len / page_size); a few spare pages belong to nobody.
  std::vector<int> pages_of(s.b);
  int used = 0, widest = 0;
  for (int i = 0; i < s.b; ++i) {
    pages_of[i] = (s.seqlens[i] + s.page_size - 1) / s.page_size;
    used += pages_of[i];
    widest = std::max(widest, pages_of[i]);
  }
  p.num_pages = used + kSparePages;
  p.max_pages = std::max(1, widest + s.extra_pages_per_seq);

  // Shuffled pool: page ids of a sequence are scattered over the cache.
  std::vector<int32_t> pool(p.num_pages);
  std::iota(pool.begin(), pool.end(), 0);
  std::mt19937_64 rng(s.seed);
  std::shuffle(pool.begin(), pool.end(), rng);

  // Block table [b, max_pages]; for every page, the number of its rows that hold tokens.
  p.block_table.assign(size_t(s.b) * p.max_pages, kSentinelPage);
  std::vector<int> valid_rows(p.num_pages, 0);
  int next = 0;
  for (int i = 0; i < s.b; ++i) {
    for (int j = 0; j < pages_of[i]; ++j) {
      const int32_t page = pool[next++];
      p.block_table[size_t(i) * p.max_pages + j] = page;
      valid_rows[page] = std::min(s.page_size, s.seqlens[i] - j * s.page_size);
    }
  }
  p.seqlens.assign(s.seqlens.begin(), s.seqlens.end());

  const uint16_t nan = nan_bits(s.dtype);
  const std::vector<uint16_t> table = normal_table(s.dtype, 1.0, s.seed);

  // A cache [num_pages, page_size, h_kv, d]: valid rows random, every other row NaN.
  auto fill_cache = [&](std::vector<uint16_t>& cache, int d, Tensor which) {
    const size_t row = size_t(s.h_kv) * d, page = row * s.page_size;
    cache.resize(page * p.num_pages);
    for_items(p.num_pages, cache.size(), [&](int64_t pg) {
      uint16_t* base = cache.data() + pg * page;
      const size_t valid = row * valid_rows[pg];
      fill_random(base, valid, table, stream_seed(s.seed, which, pg));
      std::fill(base + valid, base + page, nan);
    });
  };
  fill_cache(p.k_cache, d_k, kTensorK);
  if (!s.variant.v_aliases_k) fill_cache(p.v_cache, d_v, kTensorV);

  // q, one stream per sequence.
  const std::vector<uint16_t> q_table = normal_table(s.dtype, kQueryStd, s.seed + 1);
  const size_t q_seq = size_t(s.s_q) * s.h_q * d_k;
  p.q.resize(q_seq * s.b);
  for_items(s.b, p.q.size(), [&](int64_t i) {
    fill_random(p.q.data() + i * q_seq, q_seq, q_table, stream_seed(s.seed, kTensorQ, i));
  });

  p.out.resize(p.out_elems());
  p.lse.resize(p.lse_elems());
  p.poison_outputs();
  return p;
}

std::vector<int> varlen_lengths(int b, int mean, int floor_len, uint64_t seed) {
  std::vector<int> lens(std::max(b, 0), std::max(mean, floor_len));
  if (mean <= 0) return lens;  // normal(0, 0) is a point; nothing to draw
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(mean, mean / 2.0);
  for (int& len : lens) len = std::max(floor_len, static_cast<int>(dist(rng)));
  return lens;
}

std::string CompareResult::summary() const {
  std::ostringstream os;
  os << (ok ? "ok" : "MISMATCH") << ": " << bad << " of " << count << " outside tolerance, "
     << nonfinite << " non-finite; max abs " << max_abs << ", max rel " << max_rel
     << ", max error / tolerance " << max_tol_ratio;
  if (worst >= 0) os << "; worst at [" << worst << "]: got " << worst_got << ", ref " << worst_ref;
  return os.str();
}

namespace {

// The shared rule of compare_out and compare_lse over values already in float.
template <class Get>
CompareResult compare(size_t n, double atol, double rtol, const float* scale, double scale_tol,
                      Get get) {
  CompareResult r;
  r.count = static_cast<int64_t>(n);
  double worst_excess = -1;
  for (size_t i = 0; i < n; ++i) {
    const auto [g, ref] = get(i);
    bool good;
    double excess = 0;
    if (std::isfinite(ref)) {
      if (!std::isfinite(g)) {
        ++r.nonfinite;
        good = false;
        excess = std::numeric_limits<double>::infinity();
      } else {
        const double diff = std::fabs(g - ref);
        const double lim = atol + rtol * std::fabs(ref) + (scale ? scale_tol * scale[i] : 0.0);
        r.max_abs = std::max(r.max_abs, diff);
        if (ref != 0) r.max_rel = std::max(r.max_rel, diff / std::fabs(ref));
        if (lim > 0) r.max_tol_ratio = std::max(r.max_tol_ratio, diff / lim);
        good = diff <= lim;
        excess = diff - lim;
      }
    } else {
      // The reference itself is inf (an empty row's lse is -inf): only the same value matches.
      // A NaN reference is a broken test problem and never passes.
      if (!std::isfinite(g)) ++r.nonfinite;
      good = !std::isnan(ref) && g == ref;
      excess = std::numeric_limits<double>::infinity();
    }
    if (!good) {
      ++r.bad;
      if (excess > worst_excess || r.worst < 0) {
        worst_excess = excess;
        r.worst = static_cast<int64_t>(i);
        r.worst_got = g;
        r.worst_ref = ref;
      }
    }
  }
  r.ok = r.bad == 0;
  return r;
}

}  // namespace

CompareResult compare_out(DType dtype, const uint16_t* got, const uint16_t* ref, size_t n,
                          double atol, double rtol, const float* scale, double scale_tol) {
  return compare(n, atol, rtol, scale, scale_tol, [&](size_t i) {
    return std::pair<double, double>(half::to_float(dtype, got[i]),
                                     half::to_float(dtype, ref[i]));
  });
}

CompareResult compare_lse(const float* got, const float* ref, size_t n, double atol,
                          double rtol, const float* scale, double scale_tol) {
  return compare(n, atol, rtol, scale, scale_tol,
                 [&](size_t i) { return std::pair<double, double>(got[i], ref[i]); });
}

Tolerances tolerances(DType dtype) {
  // See problem.hpp for the reasoning. f16's out tolerances are bf16's over 2^3 (three more
  // significand bits).
  constexpr double kBf16OutAtol = 8e-4, kBf16OutRtol = 2.0 / 128;
  constexpr double kF16OverBf16 = 1.0 / 8;
  constexpr double kLseAtol = 1e-6, kLseRtol = 8.0 / 65536;
  // Rounding P to the input dtype before PV (as FlashAttention-style kernels do) moves each
  // weight by half an ulp, and the row sum that normalizes out may use the unrounded P: two
  // half-ulps of sum_j P_j |V_jd| in the worst case, one ulp = 2^-8 (bf16), 2^-11 (f16).
  constexpr double kBf16POut = 1.0 / 256, kF16POut = 1.0 / 2048;
  // float32 S: a d_k-term dot product with rounding error up to ~2^-16 of sum |q_d K_jd| at
  // d_k = 576 (worst case d_k * 2^-24 = 2^-14.8; typical sqrt(d_k) * 2^-24), averaged by P.
  constexpr double kLseS = 1.0 / 65536;
  if (dtype == DType::f16)
    return {kBf16OutAtol * kF16OverBf16, kBf16OutRtol * kF16OverBf16, kLseAtol, kLseRtol,
            kF16POut, kLseS};
  return {kBf16OutAtol, kBf16OutRtol, kLseAtol, kLseRtol, kBf16POut, kLseS};
}

RoundedCompare compare_rounded(DType dtype, const uint16_t* got_out, const uint16_t* ref_out,
                               const float* out_scale, size_t n_out, const float* got_lse,
                               const float* ref_lse, const float* lse_scale, size_t n_lse) {
  const Tolerances tol = tolerances(dtype);
  return {compare_out(dtype, got_out, ref_out, n_out, tol.out_atol, tol.out_rtol, out_scale,
                      tol.out_scale_tol),
          compare_lse(got_lse, ref_lse, n_lse, tol.lse_atol, tol.lse_rtol, lse_scale,
                      tol.lse_scale_tol)};
}

ErrorScales reference_with_scales(const DecodeArgs& args) {
  const detail::DecodeParams p = detail::validate(args);
  if (args.q.device.type != DeviceType::cpu)
    throw std::invalid_argument("reference_with_scales: CPU tensors only");
  detail::validate_host_indices(p);
  ErrorScales s;
  s.out.assign(size_t(p.b) * p.s_q * p.h_q * p.d_v, 0.0f);
  s.lse.assign(size_t(p.b) * p.h_q * p.s_q, 0.0f);
  const cpu::ReferenceScales dst{s.out.data(), s.lse.data()};
  cpu::decode_reference(p, &dst);
  return s;
}

}  // namespace flashmfa::testing
