// flashmfa: the CUDA backend of a build without nvcc. available() is false; the API layer
// refuses CUDA tensors before any of the rest can be reached.
#include "cuda/cuda_backend.hpp"

namespace flashmfa::cuda {

namespace {
[[noreturn]] void unavailable() {
  throw Error(Status::no_device, "flashmfa: q.device: expected a device this build can drive, "
                                 "got cuda (built without CUDA)");
}
}  // namespace

bool available() { return false; }
const char* arch_list() { return ""; }
void configure(const detail::DecodeParams&, int, Plan&) { unavailable(); }
size_t workspace_bytes(const detail::DecodeParams&, const Plan&) { unavailable(); }
void plan(const detail::DecodeParams&, const Plan&, Stream) { unavailable(); }
void run(const detail::DecodeParams&, const Plan&, Stream) { unavailable(); }
uint32_t read_error_flags(const Plan&, Stream) { unavailable(); }
void append_kv(const detail::AppendParams&, int, Stream) { unavailable(); }

}  // namespace flashmfa::cuda
