// flashmfa test/bench tool: random decode problems built on the host.
//
// A HostProblem owns every buffer of one decode call (q, paged K/V caches, block table,
// lengths, outputs) in the layout DecodeArgs describes, filled the way an adversarial serving
// engine would leave them:
//   - pages are drawn from a shuffled pool, so a sequence's pages are not contiguous;
//   - every cache row past a sequence's length (tail of its last page, spare pages) holds NaN;
//   - every unused block-table slot holds kSentinelPage, a page id far outside the cache;
//   - out and lse hold NaN until a kernel writes them.
// A kernel that reads past a length, follows an unused block-table entry or skips a row
// therefore shows up as NaN or a crash, not as a plausible number.
//
// Used by the C++ tests, the CUDA tests and flashmfa-bench.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "flashmfa/flashmfa.hpp"

namespace flashmfa {
// GoogleTest prints DType parameters through this (found by argument-dependent lookup), so
// test names read "bf16" instead of a byte dump.
inline void PrintTo(DType t, std::ostream* os) { *os << dtype_name(t); }
}  // namespace flashmfa

namespace flashmfa::testing {

// Block-table entry of every slot a sequence does not use: as far from any real page as an
// int32 allows, so that reading through it faults or is flagged instead of landing in the cache.
constexpr int32_t kSentinelPage = std::numeric_limits<int32_t>::max();

// bf16 / f16 bit pattern written into unused cache rows and into out before a run (a quiet NaN).
uint16_t nan_bits(DType dtype);

struct ProblemSpec {
  Variant variant = Variant::mla();
  DType dtype = DType::bf16;
  int b = 1, s_q = 1, h_q = 16, h_kv = 1, page_size = 64;
  std::vector<int> seqlens;            // size b (lengths of the cached sequences)
  bool causal = false;
  std::optional<float> softmax_scale;
  int extra_pages_per_seq = 1;         // unused block-table columns per sequence
  uint64_t seed = 0;

  std::string str() const;             // one line, for test names and logs
};

struct HostProblem {
  ProblemSpec spec;
  int max_pages = 0, num_pages = 0;
  std::vector<uint16_t> q;             // [b, s_q, h_q, d_k] bf16/f16 bits
  std::vector<uint16_t> k_cache;       // [num_pages, page_size, h_kv, d_k]
  std::vector<uint16_t> v_cache;       // [num_pages, page_size, h_kv, d_v]; empty when V aliases K
  std::vector<int32_t> block_table;    // [b, max_pages]
  std::vector<int32_t> seqlens;        // [b]
  std::vector<uint16_t> out;           // [b, s_q, h_q, d_v]  (poisoned by make_problem)
  std::vector<float> lse;              // [b, h_q, s_q]

  // CPU views of the buffers above. An empty buffer (b = 0) gets a non-null dummy pointer, so
  // that "null data pointer" stays an error the tests provoke on purpose only.
  DecodeArgs args();
  // The same shapes over other buffers (e.g. device copies); v may be null when V aliases K.
  DecodeArgs args_on(Device dev, void* q, void* k, void* v, void* block_table, void* seqlens,
                     void* out, void* lse) const;
  void poison_outputs();               // out := NaN bit pattern, lse := NaN

  // Row-major element counts of the tensors (what a device copy must hold).
  size_t q_elems() const;
  size_t k_elems() const;
  size_t v_elems() const;              // 0 when V aliases K
  size_t out_elems() const;
  size_t lse_elems() const;
  int64_t total_tokens() const;        // sum of seqlens
};

// Builds the problem `spec` describes. Throws std::invalid_argument when seqlens.size() != b or
// a count is negative (a malformed spec is a bug in the caller, not an API error under test).
HostProblem make_problem(const ProblemSpec& spec);

// normal(mean, mean/2), floored at floor_len, as FlashMLA's benchmark draws them.
std::vector<int> varlen_lengths(int b, int mean, int floor_len, uint64_t seed);

struct CompareResult {
  double max_abs = 0, max_rel = 0;     // over pairs where both values are finite
  double max_tol_ratio = 0;            // max |got - ref| / (atol + rtol |ref|): <= 1 passes
  int64_t bad = 0, nonfinite = 0, count = 0;
  int64_t worst = -1;                  // index of the element furthest over its tolerance
  double worst_got = 0, worst_ref = 0;
  bool ok = false;
  std::string summary() const;
};

// out: |got - ref| <= atol + rtol*|ref| + scale_tol*scale[i] elementwise (scale may be null:
// see ErrorScales); got must be finite where ref is.
CompareResult compare_out(DType dtype, const uint16_t* got, const uint16_t* ref, size_t n,
                          double atol, double rtol, const float* scale = nullptr,
                          double scale_tol = 0);
// lse: same rule, with -inf == -inf (and +inf == +inf) accepted as equal. A NaN reference
// never passes.
CompareResult compare_lse(const float* got, const float* ref, size_t n, double atol, double rtol,
                          const float* scale = nullptr, double scale_tol = 0);

// Each reference element's error scale, in dense layouts: out [b, s_q, h_q, d_v] holds
// sum_j P_j |V_jd|, lse [b, h_q, s_q] holds sum_j P_j * scale * sum_d |q_d K_jd|. A path that
// rounds P (or S) legitimately moves an element by a fraction of its scale; a math error moves
// it by the order of the scale itself.
struct ErrorScales {
  std::vector<float> out, lse;
};
// Runs the float64 reference on CPU tensors (writes args.out / args.lse) and returns the scales.
ErrorScales reference_with_scales(const DecodeArgs& args);

// A path that rounds P to the input dtype (the GPU kernels) against the reference, with the
// tolerances(dtype) rounding model: n_out elements of out and n_lse of lse, each array aligned
// with its error scales from reference_with_scales.
struct RoundedCompare {
  CompareResult out, lse;
};
RoundedCompare compare_rounded(DType dtype, const uint16_t* got_out, const uint16_t* ref_out,
                               const float* out_scale, size_t n_out, const float* got_lse,
                               const float* ref_lse, const float* lse_scale, size_t n_lse);

// Tolerances for comparing a path against the float64 reference (decode_reference).
//
// out: FlashMLA's test uses abs 8e-4 + rel 2/128 for bf16. The reference rounds its float64
// result to bf16 once; a float32 path rounds a value that differs in its last float bits, so
// the two may land on neighbouring bf16 values. That is one bf16 ulp, at most 2^-7 |ref|, and
// rel 2/128 = 2^-6 covers it at every magnitude (the abs part covers values near 0), so no
// extra rounding term is added: the tolerance is already "one rounding of the output dtype
// plus one more ulp of slack". A math error (a wrong scale, a masked or extra token among a
// few dozen, a wrong KV head) moves out by far more than 2 ulps on the short sequences the
// tests use, and fails.
// f16 has 3 more significand bits than bf16 (unit roundoff 2^-11 instead of 2^-8), so its
// out tolerances are FlashMLA's divided by 8: abs 1e-4 + rel 2/1024 (again two f16 ulps).
// lse: float32 in every path, so FlashMLA's abs 1e-6 + rel 8/65536 for both dtypes.
//
// Paths that round P to the input dtype before PV (the GPU kernels, like FlashAttention and
// FlashMLA) are compared with an extra term proportional to each element's ErrorScales value:
// out_scale_tol * sum_j P_j |V_jd| (one ulp of the input dtype: the rounding of P can cancel
// badly when out is small but its terms are not), lse_scale_tol * sum_j P_j |S_j| for float32
// S. These are rounding bounds, not fudge: a wrong token, scale or head moves an element by the
// order of its scale and still fails.
struct Tolerances {
  double out_atol, out_rtol, lse_atol, lse_rtol;
  double out_scale_tol, lse_scale_tol;  // multipliers of ErrorScales::out / ::lse
};
Tolerances tolerances(DType dtype);

}  // namespace flashmfa::testing
