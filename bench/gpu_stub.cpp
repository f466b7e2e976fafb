// flashmfa-bench: the CUDA back end of a build without CUDA. probe_gpu says why; the rest is
// unreachable because main refuses --backend cuda when no GPU is present.
#include <stdexcept>

#include "runner.hpp"

namespace flashmfa::bench {

GpuInfo probe_gpu(int device) {
  GpuInfo g;
  g.device = device;
  g.why_not = "flashmfa-bench was built without CUDA";
  return g;
}

Ceilings measure_gpu_ceilings(const GpuInfo&, const RunConfig&) {
  throw std::runtime_error("flashmfa-bench was built without CUDA");
}

Row run_gpu(const Shape&, const Ceilings&, const RunConfig&, const GpuInfo&) {
  throw std::runtime_error("flashmfa-bench was built without CUDA");
}

}  // namespace flashmfa::bench
