// Shared check of the CPU tests: the fast path against the float64 reference on one problem.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "core/validate.hpp"
#include "cpu/cpu_backend.hpp"
#include "flashmfa/flashmfa.hpp"
#include "flashmfa/half.hpp"
#include "problem/problem.hpp"

namespace flashmfa::testing {

// How the fast path is entered: through the public API (plan + run on CPU tensors, the way
// every user reaches it), or through cpu::decode_fast with an explicit thread count (more
// threads than cores cut sequences into more chunks, which exercises the LSE merge).
struct FastEntry {
  int threads = 0;  // 0: flashmfa::plan + flashmfa::run
};

// Compares out and lse of `got` against `ref` with tolerances(dtype); empty rows (reference
// lse -inf) must be exactly out 0 / lse -inf.
inline ::testing::AssertionResult outputs_match(const HostProblem& got, const HostProblem& ref) {
  const ProblemSpec& s = got.spec;
  const Tolerances tol = tolerances(s.dtype);
  const CompareResult co = compare_out(s.dtype, got.out.data(), ref.out.data(), got.out.size(),
                                       tol.out_atol, tol.out_rtol);
  const CompareResult cl = compare_lse(got.lse.data(), ref.lse.data(), got.lse.size(),
                                       tol.lse_atol, tol.lse_rtol);
  int64_t empty_rows_wrong = 0;
  const int d_v = s.variant.d_v;
  for (int i = 0; i < s.b; ++i)
    for (int t = 0; t < s.s_q; ++t)
      for (int h = 0; h < s.h_q; ++h) {
        if (!std::isinf(ref.lse[(size_t(i) * s.h_q + h) * s.s_q + t])) continue;
        const uint16_t* o = got.out.data() + ((size_t(i) * s.s_q + t) * s.h_q + h) * d_v;
        for (int d = 0; d < d_v; ++d) empty_rows_wrong += half::to_float(s.dtype, o[d]) != 0.0f;
      }
  if (co.ok && cl.ok && empty_rows_wrong == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << s.str() << "\n  out: " << co.summary() << "\n  lse: " << cl.summary()
         << "\n  non-zero out in empty rows: " << empty_rows_wrong;
}

// Runs the fast path on `fast` (entered as `entry` says).
inline void run_fast(HostProblem& fast, FastEntry entry = {}) {
  DecodeArgs a = fast.args();
  if (entry.threads <= 0) {
    const Plan pl = plan(a, nullptr, workspace_size(a));
    run(pl, a);
  } else {
    const detail::DecodeParams p = detail::validate(a);
    detail::validate_host_indices(p);
    cpu::decode_fast(p, entry.threads);
  }
}

// Builds spec's problem, runs the reference and the fast path on copies of it, compares.
inline ::testing::AssertionResult fast_matches_reference(const ProblemSpec& spec,
                                                         FastEntry entry = {}) {
  HostProblem fast = make_problem(spec);
  HostProblem ref = fast;
  decode_reference(ref.args());
  run_fast(fast, entry);
  ::testing::AssertionResult r = outputs_match(fast, ref);
  if (!r && entry.threads > 0) r << "\n  (decode_fast with " << entry.threads << " threads)";
  return r;
}

}  // namespace flashmfa::testing
