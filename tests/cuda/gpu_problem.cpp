// flashmfa GPU tests: shared comparison helpers (see gpu_problem.hpp).
#include "gpu_problem.hpp"

#include <cmath>
#include <sstream>

#include "flashmfa/half.hpp"

namespace flashmfa::gputest {

std::string compare_sequences(testing::HostProblem& h, const DecodeArgs& ref_args,
                              const std::vector<uint16_t>& out, const std::vector<float>& lse,
                              int seq_begin, int seq_end) {
  h.poison_outputs();
  // The kernels round P to the input dtype before PV: compare with the rounding model of
  // Tolerances (error scales from the reference itself, dense like out and lse).
  const testing::ErrorScales sc = testing::reference_with_scales(ref_args);
  const size_t out_seq = h.out.size() / h.spec.b, lse_seq = h.lse.size() / h.spec.b;
  const size_t o0 = out_seq * seq_begin, no = out_seq * (seq_end - seq_begin);
  const size_t l0 = lse_seq * seq_begin, nl = lse_seq * (seq_end - seq_begin);
  const auto [co, cl] = testing::compare_rounded(
      h.spec.dtype, out.data() + o0, h.out.data() + o0, sc.out.data() + o0, no,
      lse.data() + l0, h.lse.data() + l0, sc.lse.data() + l0, nl);
  std::string why;
  // A row with nothing to attend (reference lse -inf) must be exactly 0, not merely small.
  const int d_v = h.spec.variant.d_v;
  int64_t nonzero_empty = 0;
  for (int i = seq_begin; i < seq_end; ++i)
    for (int t = 0; t < h.spec.s_q; ++t)
      for (int hq = 0; hq < h.spec.h_q; ++hq) {
        if (h.lse[(size_t(i) * h.spec.h_q + hq) * h.spec.s_q + t] != -INFINITY) continue;
        const size_t row = ((size_t(i) * h.spec.s_q + t) * h.spec.h_q + hq) * d_v;
        for (int d = 0; d < d_v; ++d) nonzero_empty += half::to_float(h.spec.dtype, out[row + d]) != 0.0f;
      }
  if (nonzero_empty) why += std::to_string(nonzero_empty) + " elements of empty rows are not 0; ";
  if (!co.ok) why += "out: " + co.summary() + "; ";
  if (!cl.ok) why += "lse: " + cl.summary();
  return why;
}

std::string compare_with_reference(testing::HostProblem& h, const std::vector<uint16_t>& out,
                                   const std::vector<float>& lse) {
  return compare_sequences(h, h.args(), out, lse, 0, h.spec.b);
}

std::string describe(const testing::ProblemSpec& s) {
  std::ostringstream os;
  os << s.variant.name() << " " << dtype_name(s.dtype) << " b=" << s.b << " s_q=" << s.s_q
     << " h_q=" << s.h_q << " h_kv=" << s.h_kv << " page=" << s.page_size
     << " causal=" << s.causal;
  if (s.b <= 8) {
    os << " lens=";
    for (int l : s.seqlens) os << l << ",";
  }
  return os.str();
}

Plan run_and_check(const testing::ProblemSpec& spec, const std::string& label,
                   DecodeArgs::Path path) {
  testing::HostProblem h = testing::make_problem(spec);
  DeviceProblem d(h);
  d.set_path(path);
  d.poison();
  const Plan p = d.plan();
  run(p, d.args);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << label;
  EXPECT_EQ(read_error_flags(p), 0u) << label << ": a valid problem raised device flags";
  std::vector<uint16_t> out;
  std::vector<float> lse;
  d.out.download(out);
  d.lse.download(lse);
  const std::string why = compare_with_reference(h, out, lse);
  EXPECT_TRUE(why.empty()) << label << " (parts " << p.num_parts << "): " << why;
  return p;
}

}  // namespace flashmfa::gputest
