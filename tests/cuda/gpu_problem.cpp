// flashmfa GPU tests: shared comparison helpers (see gpu_problem.hpp).
#include "gpu_problem.hpp"

namespace flashmfa::gputest {

std::string compare_with_reference(testing::HostProblem& h, const std::vector<uint16_t>& out,
                                   const std::vector<float>& lse) {
  h.poison_outputs();
  // The kernels round P to the input dtype before PV: compare with the rounding model of
  // Tolerances (error scales from the reference itself).
  const testing::ErrorScales sc = testing::reference_with_scales(h.args());
  const auto tol = testing::tolerances(h.spec.dtype);
  const auto co = testing::compare_out(h.spec.dtype, out.data(), h.out.data(), h.out.size(),
                                       tol.out_atol, tol.out_rtol, sc.out.data(),
                                       tol.out_scale_tol);
  const auto cl = testing::compare_lse(lse.data(), h.lse.data(), h.lse.size(), tol.lse_atol,
                                       tol.lse_rtol, sc.lse.data(), tol.lse_scale_tol);
  std::string why;
  if (!co.ok) why += "out: " + co.summary() + "; ";
  if (!cl.ok) why += "lse: " + cl.summary();
  return why;
}

void run_and_check(const testing::ProblemSpec& spec, const std::string& label) {
  testing::HostProblem h = testing::make_problem(spec);
  DeviceProblem d(h);
  d.poison();
  const Plan p = d.plan();
  run(p, d.args);
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT_EQ(read_error_flags(p), 0u) << label << ": a valid problem raised device flags";
  std::vector<uint16_t> out;
  std::vector<float> lse;
  d.out.download(out);
  d.lse.download(lse);
  const std::string why = compare_with_reference(h, out, lse);
  EXPECT_TRUE(why.empty()) << label << ": " << why;
}

}  // namespace flashmfa::gputest
