// flashmfa: the fast CPU decode path (see cpu_backend.hpp).
//
// Work cut. A task is (sequence i, KV head kv, row tile, chunk of KV tokens). The rows of a
// task are the s_q * q_per_kv query rows that read KV head kv (row r = t * q_per_kv + hh, the
// order of rows_per_kv_head), so each cached K/V row is converted to float once per task and
// reused by all of them. Long sequences are cut into chunks so that every thread gets work
// even at batch 1; the chunks' partial results are merged by their log-sum-exp by whichever
// task of the sequence finishes last (no second pass, no barrier).
//
// Inside a task, KV tokens go in blocks of kBlockN:
//
//     kt[kBlockN, d_k]  <- K rows of the block, as float           (V: vt, or kt's first d_v
//     s [rows, kBlockN] <- (q * scale * log2 e) . kt^T              columns when V aliases K)
//     online softmax over s (base 2), rescaling acc by 2^(m_old - m_new)
//     acc[rows, d_v]   += p . vt
//
// Every inner loop runs over contiguous floats with a fixed trip count and no branch, so the
// compiler vectorizes it; on x86-64 with GCC the task body is also built for x86-64-v3
// (AVX2 + FMA) and picked at load time, so a portable build still uses the wide units.
//
// Causal rule: query token t sees cached rows j < vis(t) = len - s_q + t + 1. vis grows with
// the row index, so the rows that see token j form a suffix of the task's rows: a block is
// scored only for that suffix, and only rows whose limit falls inside the block get masked.
// No cache row at or past a sequence's length is ever loaded (they may hold NaN).
//
// Measured (flashmfa-bench cpu-demo: MLA b 4, s_q 1, h_q 16, s_k 4096, bf16, page 64) on a
// 2-core AMD EPYC (Zen 3): 7.9 ms against decode_reference's 250 ms, 31x; the portable
// (SSE2) version alone, 20 ms.
#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <numbers>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "cpu/cache_rows.hpp"
#include "cpu/cpu_backend.hpp"
#include "flashmfa/error.hpp"
#include "flashmfa/half.hpp"

#if defined(__GNUC__)
#define FLASHMFA_INLINE inline __attribute__((always_inline))
#else
#define FLASHMFA_INLINE inline
#endif
// Function multi-versioning (ifunc): GCC on x86-64 Linux builds the task body twice and picks
// the AVX2 + FMA version on CPUs that have it. Defining FLASHMFA_CPU_CLONES empty on the
// command line builds the portable version alone (how its correctness is tested on AVX2
// machines). ThreadSanitizer builds skip the clones: TSan instruments the ifunc resolver, which
// runs before the TSan runtime is up, and the program crashes at load.
#if !defined(FLASHMFA_CPU_CLONES)
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(__SANITIZE_THREAD__)
#define FLASHMFA_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FLASHMFA_CPU_CLONES
#endif
#endif

namespace flashmfa::cpu {

using detail::DecodeParams;

namespace {

// ---- Tuning (chosen on a 2-core Zen 3 with MLA, h_q 16: see the measurement above) ----
// KV tokens per block: kt is kBlockN * d_k floats (72 KiB for MLA), which stays in L2 while
// every row of the task reads it.
constexpr int kBlockN = 32;
// Rows per task: all rows of a KV head unless there are more (h_q 128 with s_q > 1); beyond
// that, q and acc of one task (rows * (d_k + d_v) floats) would no longer fit in L2.
constexpr int kMaxRowsPerTask = 128;
// Tasks per thread the chunking aims at, so that uneven lengths still balance.
constexpr int kTasksPerThread = 4;
// A chunk is never shorter than this: each extra chunk costs one partial write and merge.
constexpr int kMinChunk = 2 * kBlockN;
// Floats per accumulator in the QK^T micro-kernel (one AVX2 register).
constexpr int kLanes = 8;
// QK^T micro-kernel tile: rows x tokens, kScoreRows * kScoreTokens accumulators of kLanes.
constexpr int kScoreRows = 2, kScoreTokens = 4;
// PV micro-kernel tile: rows x columns of acc kept in registers across the block's tokens.
constexpr int kPvRows = 2, kPvCols = 32;

constexpr float kLog2e = std::numbers::log2e_v<float>;
constexpr float kLn2 = std::numbers::ln2_v<float>;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// ---- Conversions ----

// f16 -> float without branches (the half.hpp version normalizes subnormals in a loop):
// moving the 15 exponent+mantissa bits to a float's position and multiplying by 2^(127-15)
// re-biases the exponent and scales subnormals exactly; exponent 31 (inf/NaN) is then forced
// to 255.
constexpr int kF16MantissaShift = 23 - 10;              // float mantissa bits - f16 mantissa bits
constexpr float kF16Rebias = 0x1p112f;                  // 2^(127 - 15)
constexpr uint32_t kF16Magnitude = 0x7fffu, kF16InfBits = 0x7c00u, kF16Sign = 0x8000u;
constexpr uint32_t kFloatExpBits = 0x7f800000u;

FLASHMFA_INLINE float f16_bits_to_float(uint16_t h) {
  const uint32_t mag = h & kF16Magnitude;
  uint32_t u = std::bit_cast<uint32_t>(std::bit_cast<float>(mag << kF16MantissaShift) * kF16Rebias);
  u |= mag >= kF16InfBits ? kFloatExpBits : 0u;
  u |= uint32_t(h & kF16Sign) << 16;
  return std::bit_cast<float>(u);
}

FLASHMFA_INLINE float bf16_bits_to_float(uint16_t h) {
  return std::bit_cast<float>(uint32_t(h) << 16);
}

// dst[0, n) = src[0, n) as float.
FLASHMFA_INLINE void load_row(DType t, const uint16_t* __restrict src, float* __restrict dst,
                              int n) {
  if (t == DType::bf16) {
    for (int d = 0; d < n; ++d) dst[d] = bf16_bits_to_float(src[d]);
  } else {
    for (int d = 0; d < n; ++d) dst[d] = f16_bits_to_float(src[d]);
  }
}

// 2^x for x <= 0 (what softmax needs), branch-free so that loops over it vectorize: split x
// into an integer n (rounded to nearest with the 1.5 * 2^23 trick) and f in [-1/2, 1/2], take
// 2^f from its Taylor series to degree 7 (truncation error < 1e-8), and add n to the exponent.
// Relative error < 1e-7 over every float in (-125, 0] (checked exhaustively). Below 2^-125
// the result is 0 (x = -inf gives 0); above it the biased exponent stays >= 1, so the bit trick
// never produces a subnormal.
// The clamp and the final select work on the bits (for negative floats, a larger magnitude has
// larger bits): GCC does not if-convert a float select that feeds arithmetic (the arithmetic
// may trap), and the loop would stay scalar.
constexpr float kExp2Min = -125.0f;
constexpr uint32_t kExp2MinBits = std::bit_cast<uint32_t>(kExp2Min);
constexpr float kRoundMagic = 0x1.8p23f;
constexpr int kExp2Degree = 7;
constexpr int kFloatMantissaBits = 23;
constexpr std::array<float, kExp2Degree + 1> exp2_taylor() {
  std::array<float, kExp2Degree + 1> c{};
  double term = 1.0;
  for (int k = 0; k <= kExp2Degree; ++k) {
    c[k] = static_cast<float>(term);  // ln2^k / k!
    term *= std::numbers::ln2 / (k + 1);
  }
  return c;
}
constexpr std::array<float, kExp2Degree + 1> kExp2Coef = exp2_taylor();

FLASHMFA_INLINE float fast_exp2(float x) {
  const uint32_t x_bits = std::bit_cast<uint32_t>(x);
  const bool below = x_bits > kExp2MinBits;  // x < -125, -inf, or a NaN with the sign bit
  const float xc = std::bit_cast<float>(below ? kExp2MinBits : x_bits);
  const float n = (xc + kRoundMagic) - kRoundMagic;
  const float f = xc - n;
  float poly = kExp2Coef[kExp2Degree];
  for (int k = kExp2Degree - 1; k >= 0; --k) poly = poly * f + kExp2Coef[k];
  const uint32_t bits =
      std::bit_cast<uint32_t>(poly) + (uint32_t(int32_t(n)) << kFloatMantissaBits);
  return std::bit_cast<float>(below ? 0u : bits);
}

// ---- Micro-kernels ----

// s[r, t] = q[r, :] . k[t, :] for an R x T tile; d is a multiple of kLanes.
#if defined(__GNUC__)
// GCC keeps a float[R][T][kLanes] accumulator on the stack (the horizontal sums read it
// element by element); whole-vector values (GCC/Clang vector extension, lowered to what the
// target has) stay in registers.
using VecF = float __attribute__((vector_size(kLanes * sizeof(float))));
// The same vector read from any float address (unaligned, may alias the float array).
using VecFUnaligned =
    float __attribute__((vector_size(kLanes * sizeof(float)), aligned(alignof(float)), may_alias));

template <int R, int T>
FLASHMFA_INLINE void score_tile(const float* __restrict q, int ldq,  // [R, d]
                                const float* __restrict k, int ldk,  // [T, d]
                                int d, float* __restrict s, int lds) {  // [R, T]
  VecF acc[R][T] = {};
  for (int c = 0; c < d; c += kLanes) {
    VecF kv[T];
    for (int t = 0; t < T; ++t) kv[t] = *reinterpret_cast<const VecFUnaligned*>(k + t * ldk + c);
    for (int r = 0; r < R; ++r) {
      const VecF qv = *reinterpret_cast<const VecFUnaligned*>(q + r * ldq + c);
      for (int t = 0; t < T; ++t) acc[r][t] += qv * kv[t];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      float sum = 0.0f;
      for (int l = 0; l < kLanes; ++l) sum += acc[r][t][l];
      s[r * lds + t] = sum;
    }
}
#else
template <int R, int T>
FLASHMFA_INLINE void score_tile(const float* __restrict q, int ldq,  // [R, d]
                                const float* __restrict k, int ldk,  // [T, d]
                                int d, float* __restrict s, int lds) {  // [R, T]
  float acc[R][T][kLanes] = {};
  for (int c = 0; c < d; c += kLanes)
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t)
        for (int l = 0; l < kLanes; ++l) acc[r][t][l] += q[r * ldq + c + l] * k[t * ldk + c + l];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      float sum = 0.0f;
      for (int l = 0; l < kLanes; ++l) sum += acc[r][t][l];
      s[r * lds + t] = sum;
    }
}
#endif

// s[rows, n] = q[rows, d] . k[n, d]^T, tiled kScoreRows x kScoreTokens with 1-wide tails.
FLASHMFA_INLINE void scores(const float* q, int rows, const float* k, int n, int d, float* s) {
  int r = 0;
  for (; r + kScoreRows <= rows; r += kScoreRows) {
    int t = 0;
    for (; t + kScoreTokens <= n; t += kScoreTokens)
      score_tile<kScoreRows, kScoreTokens>(q + r * d, d, k + t * d, d, d, s + r * kBlockN + t,
                                           kBlockN);
    for (; t < n; ++t)
      score_tile<kScoreRows, 1>(q + r * d, d, k + t * d, d, d, s + r * kBlockN + t, kBlockN);
  }
  for (; r < rows; ++r) {
    int t = 0;
    for (; t + kScoreTokens <= n; t += kScoreTokens)
      score_tile<1, kScoreTokens>(q + r * d, d, k + t * d, d, d, s + r * kBlockN + t, kBlockN);
    for (; t < n; ++t) score_tile<1, 1>(q + r * d, d, k + t * d, d, d, s + r * kBlockN + t, kBlockN);
  }
}

// acc[R, d_v] += p[R, n] . v[n, d_v], kPvCols columns of R rows held in registers over the
// block's tokens (each V element loaded once per R rows); d_v is a multiple of kPvCols.
template <int R>
FLASHMFA_INLINE void pv_tile(const float* __restrict p, int n,             // [R, kBlockN]
                             const float* __restrict v, int ldv, int d_v,  // [n, ldv]
                             float* __restrict acc) {                      // [R, d_v]
  for (int c0 = 0; c0 < d_v; c0 += kPvCols) {
    float a[R][kPvCols];
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < kPvCols; ++c) a[r][c] = acc[r * d_v + c0 + c];
    for (int j = 0; j < n; ++j)
      for (int r = 0; r < R; ++r) {
        const float pj = p[r * kBlockN + j];
        for (int c = 0; c < kPvCols; ++c) a[r][c] += pj * v[j * ldv + c0 + c];
      }
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < kPvCols; ++c) acc[r * d_v + c0 + c] = a[r][c];
  }
}

// ---- Schedule ----

// All tasks of one (sequence, KV head, row tile): its chunks and where their partials go.
struct Group {
  int seq, kv;
  int row0, rows;       // rows [row0, row0 + rows) of the KV head's s_q * q_per_kv
  int len;              // tokens the tile's last row sees (the tile reads no further)
  int num_chunks;       // > 1: partials in slots [first_slot, first_slot + num_chunks)
  int first_slot;
};

struct Task {
  int group, begin, end;  // KV tokens [begin, end)
};

struct Schedule {
  int row_tile = 0;     // rows per task (the widest tile)
  int chunk = 0;        // KV tokens per chunk
  int num_slots = 0;
  std::vector<Group> groups;
  std::vector<Task> tasks;
};

int ceil_div(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

// Tokens of sequence `len` that query token t may read.
int visible(const DecodeParams& p, int len, int t) {
  return p.causal ? std::clamp(len - p.s_q + t + 1, 0, len) : len;
}

Schedule make_schedule(const DecodeParams& p, int threads) {
  Schedule s;
  const int rows = p.s_q * p.q_per_kv;
  const int tiles = ceil_div(rows, kMaxRowsPerTask);
  s.row_tile = ceil_div(rows, tiles);  // balanced tiles

  int64_t work = 0;  // token-tiles over the batch
  int longest = 0;
  for (int i = 0; i < p.b; ++i) {
    work += int64_t(p.seqlens[i]) * p.h_kv * tiles;
    longest = std::max(longest, p.seqlens[i]);
  }
  const int64_t per_task = (work + int64_t(threads) * kTasksPerThread - 1) /
                           (int64_t(threads) * kTasksPerThread);
  // Whole blocks, at least kMinChunk, at most the longest sequence (which also keeps it an int).
  const int64_t chunk = (per_task + kBlockN - 1) / kBlockN * kBlockN;
  s.chunk = static_cast<int>(std::clamp<int64_t>(chunk, kMinChunk, std::max(kMinChunk, longest)));

  for (int i = 0; i < p.b; ++i)
    for (int kv = 0; kv < p.h_kv; ++kv)
      for (int row0 = 0; row0 < rows; row0 += s.row_tile) {
        Group g{};
        g.seq = i, g.kv = kv, g.row0 = row0, g.rows = std::min(s.row_tile, rows - row0);
        g.len = visible(p, p.seqlens[i], (row0 + g.rows - 1) / p.q_per_kv);
        // An empty tile is still one task: it writes out = 0, lse = -inf.
        g.num_chunks = std::max(1, ceil_div(g.len, s.chunk));
        g.first_slot = g.num_chunks > 1 ? s.num_slots : -1;
        if (g.num_chunks > 1) s.num_slots += g.num_chunks;
        const int gi = static_cast<int>(s.groups.size());
        for (int c = 0; c < g.num_chunks; ++c)
          s.tasks.push_back({gi, c * s.chunk, std::min(g.len, (c + 1) * s.chunk)});
        s.groups.push_back(g);
      }
  return s;
}

// ---- Per-thread state and the task body ----

struct Scratch {
  std::vector<float> q;      // [row_tile, d_k], scaled by softmax_scale * log2(e)
  std::vector<float> kt;     // [kBlockN, d_k]
  std::vector<float> vt;     // [kBlockN, d_v] (unused when V aliases K)
  std::vector<float> s;      // [row_tile, kBlockN] scores, then probabilities
  std::vector<float> acc;    // [row_tile, d_v] unnormalized output
  std::vector<float> m, l;   // [row_tile] running max (base 2) and sum of 2^(s - m)
  std::vector<int> vis;      // [row_tile] tokens each row sees
  std::vector<float> merged; // [d_v] one merged row

  Scratch(const DecodeParams& p, int row_tile)
      : q(size_t(row_tile) * p.d_k), kt(size_t(kBlockN) * p.d_k),
        vt(p.v_aliases_k ? 0 : size_t(kBlockN) * p.d_v), s(size_t(row_tile) * kBlockN),
        acc(size_t(row_tile) * p.d_v), m(row_tile), l(row_tile), vis(row_tile),
        merged(p.d_v) {}
};

// Element offset of cached token j of sequence i, KV head kv (page/token/head strides).
FLASHMFA_INLINE int64_t cache_offset(const DecodeParams& p, const int32_t* bt_row, int j, int kv,
                                     int64_t sp, int64_t st, int64_t sh) {
  const int64_t page = bt_row[j >> p.log2_page_size];
  return page * sp + int64_t(j & (p.page_size - 1)) * st + int64_t(kv) * sh;
}

// Cached row (K, or V with v) of token j, KV head kv, as float: native rows through the
// vectorized converters, FP8 rows dequantized (cache_rows.hpp).
FLASHMFA_INLINE void load_cached_row(const DecodeParams& p, const int32_t* bt_row, int j, int kv,
                                     bool v, float* dst, int n) {
  const int64_t off = v ? cache_offset(p, bt_row, j, kv, p.v_sp, p.v_st, p.v_sh)
                        : cache_offset(p, bt_row, j, kv, p.k_sp, p.k_st, p.k_sh);
  const void* base = v ? p.v : p.k;
  if (p.kv_format == CacheFormat::native) {
    load_row(p.dtype, static_cast<const uint16_t*>(base) + off, dst, n);
  } else {
    const float scale = p.kv_format == CacheFormat::fp8_row ? row_scale(p, bt_row, j, kv, v) : 0.f;
    read_cache_row(p, base, off, scale, dst, n);
  }
}

// Computes acc, m, l of one task's rows over KV tokens [begin, end).
FLASHMFA_CPU_CLONES
void run_task(const DecodeParams& p, const Group& g, int begin, int end, Scratch& w) {
  const int rows = g.rows, d_k = p.d_k, d_v = p.d_v;
  const int len = p.seqlens[g.seq];
  const auto* q_base = static_cast<const uint16_t*>(p.q);
  const int32_t* bt_row = p.block_table + int64_t(g.seq) * p.bt_sb;
  const float q_scale = p.scale * kLog2e;  // scores in base 2: 2^(s log2 e) = e^s

  for (int r = 0; r < rows; ++r) {
    const int row = g.row0 + r, t = row / p.q_per_kv;
    const int head = g.kv * p.q_per_kv + row % p.q_per_kv;
    float* qr = w.q.data() + size_t(r) * d_k;
    load_row(p.dtype, q_base + g.seq * p.q_sb + t * p.q_ss + head * p.q_sh, qr, d_k);
    for (int d = 0; d < d_k; ++d) qr[d] *= q_scale;
    w.vis[r] = visible(p, len, t);
    w.m[r] = kNegInf;
    w.l[r] = 0.0f;
  }
  std::fill(w.acc.begin(), w.acc.begin() + size_t(rows) * d_v, 0.0f);

  // V rows: their own converted tile, or the first d_v columns of K's.
  const float* vt = p.v_aliases_k ? w.kt.data() : w.vt.data();
  const int ldv = p.v_aliases_k ? d_k : d_v;
  int r0 = 0;  // first row that sees the current block (vis grows with the row)
  for (int j0 = begin; j0 < end; j0 += kBlockN) {
    const int n = std::min(kBlockN, end - j0);
    while (w.vis[r0] <= j0) ++r0;  // terminates: end <= g.len = vis[rows - 1]

    for (int jj = 0; jj < n; ++jj) {
      load_cached_row(p, bt_row, j0 + jj, g.kv, false, w.kt.data() + size_t(jj) * d_k, d_k);
      if (!p.v_aliases_k)
        load_cached_row(p, bt_row, j0 + jj, g.kv, true, w.vt.data() + size_t(jj) * d_v, d_v);
    }

    float* s = w.s.data() + size_t(r0) * kBlockN;  // [rows - r0, kBlockN]
    scores(w.q.data() + size_t(r0) * d_k, rows - r0, w.kt.data(), n, d_k, s);

    for (int r = r0; r < rows; ++r) {
      float* sr = w.s.data() + size_t(r) * kBlockN;
      const int seen = std::min(n, w.vis[r] - j0);  // >= 1 for r >= r0
      std::fill(sr + seen, sr + n, kNegInf);        // causal limit inside this block
      float mx = w.m[r];
      for (int j = 0; j < n; ++j) mx = std::max(mx, sr[j]);
      const float alpha = fast_exp2(w.m[r] - mx);   // 0 on the row's first block
      float sum = 0.0f;
      for (int j = 0; j < n; ++j) sr[j] = fast_exp2(sr[j] - mx);
      for (int j = 0; j < n; ++j) sum += sr[j];
      w.l[r] = w.l[r] * alpha + sum;
      w.m[r] = mx;
      if (alpha != 1.0f) {
        float* ar = w.acc.data() + size_t(r) * d_v;
        for (int c = 0; c < d_v; ++c) ar[c] *= alpha;
      }
    }

    int r = r0;
    for (; r + kPvRows <= rows; r += kPvRows)
      pv_tile<kPvRows>(w.s.data() + size_t(r) * kBlockN, n, vt, ldv, d_v,
                       w.acc.data() + size_t(r) * d_v);
    for (; r < rows; ++r)
      pv_tile<1>(w.s.data() + size_t(r) * kBlockN, n, vt, ldv, d_v,
                 w.acc.data() + size_t(r) * d_v);
  }
}

// Writes row `row` of group g: out from a float row (already normalized), lse from base-2 lse2.
void write_row(const DecodeParams& p, const Group& g, int r, const float* o, float lse2) {
  const int row = g.row0 + r, t = row / p.q_per_kv;
  const int head = g.kv * p.q_per_kv + row % p.q_per_kv;
  auto* out = static_cast<uint16_t*>(p.out) + g.seq * p.o_sb + t * p.o_ss + head * p.o_sh;
  for (int c = 0; c < p.d_v; ++c) out[c] = half::from_float(p.dtype, o ? o[c] : 0.0f);
  p.lse[g.seq * p.lse_sb + head * p.lse_sh + t * p.lse_ss] = o ? lse2 * kLn2 : kNegInf;
}

// Normalizes acc in place and returns each row's base-2 lse (-inf where a row saw nothing).
void normalize(const DecodeParams& p, int rows, Scratch& w) {
  for (int r = 0; r < rows; ++r) {
    float* ar = w.acc.data() + size_t(r) * p.d_v;
    const float inv = w.l[r] > 0.0f ? 1.0f / w.l[r] : 0.0f;
    for (int c = 0; c < p.d_v; ++c) ar[c] *= inv;
    w.m[r] = w.l[r] > 0.0f ? w.m[r] + std::log2(w.l[r]) : kNegInf;
  }
}

// Merges the num_chunks partials of group g (out [slot, row_tile, d_v], lse2 [slot, row_tile])
// by their lse and writes the final rows.
void merge(const DecodeParams& p, const Schedule& s, const Group& g, const float* part_o,
           const float* part_lse, Scratch& w) {
  for (int r = 0; r < g.rows; ++r) {
    float top = kNegInf;
    for (int c = 0; c < g.num_chunks; ++c)
      top = std::max(top, part_lse[size_t(g.first_slot + c) * s.row_tile + r]);
    if (top == kNegInf) {
      write_row(p, g, r, nullptr, kNegInf);
      continue;
    }
    std::fill(w.merged.begin(), w.merged.end(), 0.0f);
    float total = 0.0f;
    for (int c = 0; c < g.num_chunks; ++c) {
      const size_t slot = size_t(g.first_slot + c);
      const float wc = fast_exp2(part_lse[slot * s.row_tile + r] - top);
      const float* o = part_o + (slot * s.row_tile + r) * p.d_v;
      for (int d = 0; d < p.d_v; ++d) w.merged[d] += wc * o[d];
      total += wc;
    }
    for (float& x : w.merged) x /= total;
    write_row(p, g, r, w.merged.data(), top + std::log2(total));
  }
}

}  // namespace

void decode_fast(const DecodeParams& p, int num_threads) {
  if (p.b == 0) return;
  if (p.d_k % kLanes != 0 || p.d_v % kPvCols != 0)
    detail::fail_arg(Status::unsupported, "(d_k, d_v)",
                     "multiples of (" + std::to_string(kLanes) + ", " + std::to_string(kPvCols) +
                         ") on the fast CPU path",
                     "(" + std::to_string(p.d_k) + ", " + std::to_string(p.d_v) + ")");
  int threads = num_threads > 0 ? num_threads
                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const Schedule s = make_schedule(p, threads);
  threads = std::min<int>(threads, static_cast<int>(s.tasks.size()));

  std::vector<float> part_o(size_t(s.num_slots) * s.row_tile * p.d_v);
  std::vector<float> part_lse(size_t(s.num_slots) * s.row_tile);
  std::unique_ptr<std::atomic<int>[]> pending(new std::atomic<int>[s.groups.size()]);
  for (size_t gi = 0; gi < s.groups.size(); ++gi) pending[gi] = s.groups[gi].num_chunks;
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;

  auto worker = [&] {
    try {
      Scratch w(p, s.row_tile);
      for (size_t ti; !failed.load(std::memory_order_relaxed) &&
                      (ti = next.fetch_add(1, std::memory_order_relaxed)) < s.tasks.size();) {
        const Task& task = s.tasks[ti];
        const Group& g = s.groups[task.group];
        run_task(p, g, task.begin, task.end, w);
        normalize(p, g.rows, w);
        if (g.num_chunks == 1) {
          for (int r = 0; r < g.rows; ++r)
            write_row(p, g, r, w.l[r] > 0.0f ? w.acc.data() + size_t(r) * p.d_v : nullptr,
                      w.m[r]);
          continue;
        }
        const size_t slot = size_t(g.first_slot) + (task.begin / s.chunk);
        std::copy_n(w.acc.data(), size_t(g.rows) * p.d_v,
                    part_o.data() + slot * s.row_tile * p.d_v);
        std::copy_n(w.m.data(), g.rows, part_lse.data() + slot * s.row_tile);
        // The last chunk to finish merges; acq_rel makes the other chunks' partials visible.
        if (pending[task.group].fetch_sub(1, std::memory_order_acq_rel) == 1)
          merge(p, s, g, part_o.data(), part_lse.data(), w);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };

  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) {
    try {
      pool.emplace_back(worker);
    } catch (const std::system_error&) {
      break;  // fewer threads than asked for: the ones running take the remaining tasks
    }
  }
  worker();
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace flashmfa::cpu
