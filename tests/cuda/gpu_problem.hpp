// flashmfa GPU tests: a host problem mirrored on the device, run through the public API and
// compared with the float64 CPU reference.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "flashmfa/flashmfa.hpp"
#include "problem/fp8.hpp"
#include "problem/problem.hpp"

namespace flashmfa::gputest {

#define CUDA_OK(expr)                                                            \
  do {                                                                           \
    cudaError_t e_ = (expr);                                                     \
    ASSERT_EQ(e_, cudaSuccess) << #expr << ": " << cudaGetErrorString(e_);       \
  } while (0)

inline bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define SKIP_WITHOUT_GPU() \
  if (!::flashmfa::gputest::have_gpu()) GTEST_SKIP() << "no CUDA device: GPU test skipped"

// A device buffer that frees itself.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) { resize(bytes); }
  ~DeviceBuffer() { if (ptr_) cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void resize(size_t bytes) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = bytes;
    if (bytes && cudaMalloc(&ptr_, bytes) != cudaSuccess) ptr_ = nullptr;
  }
  template <class T> void upload(const std::vector<T>& v) {
    resize(v.size() * sizeof(T));
    if (!v.empty()) cudaMemcpy(ptr_, v.data(), bytes_, cudaMemcpyHostToDevice);
  }
  template <class T> void download(std::vector<T>& v) const {
    v.resize(bytes_ / sizeof(T));
    if (bytes_) cudaMemcpy(v.data(), ptr_, bytes_, cudaMemcpyDeviceToHost);
  }
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// The device copy of a HostProblem, with a workspace sized by workspace_size().
struct DeviceProblem {
  DeviceBuffer q, k, v, block_table, seqlens, out, lse, workspace;
  DecodeArgs args;

  explicit DeviceProblem(testing::HostProblem& h) {
    q.upload(h.q);
    k.upload(h.k_cache);
    if (!h.v_cache.empty()) v.upload(h.v_cache);
    block_table.upload(h.block_table);
    seqlens.upload(h.seqlens);
    out.upload(h.out);  // poisoned by make_problem
    lse.upload(h.lse);
    args = h.args_on({DeviceType::cuda, 0}, q.get(), k.get(), v.get(), block_table.get(),
                     seqlens.get(), out.get(), lse.get());
    workspace.resize(std::max<size_t>(1, workspace_size(args)));
  }
  // Forces a kernel family; the workspace is sized again for it (workspace_size depends on
  // the kernel the path leads to).
  void set_path(DecodeArgs::Path path) {
    args.path = path;
    workspace.resize(std::max<size_t>(1, workspace_size(args)));
  }
  void poison() {
    cudaMemset(out.get(), 0xff, out.bytes());  // NaN in bf16 and f16
    cudaMemset(lse.get(), 0xff, lse.bytes());
  }
  Plan plan(cudaStream_t s = nullptr) {
    return flashmfa::plan(args, workspace.get(), workspace.bytes(), s);
  }
};

// Runs the reference on `ref_args` (CPU views of h's buffers, possibly a batch prefix; h.out
// and h.lse become the reference) and compares sequences [seq_begin, seq_end) of the device
// result with it, using the rounding model of testing::Tolerances. Returns "" or what failed.
std::string compare_sequences(testing::HostProblem& h, const DecodeArgs& ref_args,
                              const std::vector<uint16_t>& out, const std::vector<float>& lse,
                              int seq_begin, int seq_end);

// Every sequence of the device result against the reference.
std::string compare_with_reference(testing::HostProblem& h, const std::vector<uint16_t>& out,
                                   const std::vector<float>& lse);

// Downloads d's out and lse (after the caller has synchronized) and compares them with the
// reference on h: "" or what failed.
inline std::string compare_device_outputs(testing::HostProblem& h, DeviceProblem& d) {
  std::vector<uint16_t> out;
  std::vector<float> lse;
  d.out.download(out);
  d.lse.download(lse);
  return compare_with_reference(h, out, lse);
}

// A test label: variant, dtype, shape, page size, causal, and the lengths (up to 8 sequences).
std::string describe(const testing::ProblemSpec& s);

// make_problem + device copy + plan + run + compare; the common body of most tests. `path`
// forces a kernel family (plan() throws where it does not cover the shape). Returns the plan
// (its part count, for tests of the scheduler).
Plan run_and_check(const testing::ProblemSpec& spec, const std::string& label,
                   DecodeArgs::Path path = DecodeArgs::Path::automatic);

// run_and_check with the 16-bit cache rows and q's rows pad_elems elements apart beyond their
// width (views of wider buffers: K's and q's rows d_k + pad_elems apart, a separate V's d_v +
// pad_elems), the gap zero. With 16-byte multiples the fast paths still take the shape.
Plan run_and_check_pitched(const testing::ProblemSpec& spec, const std::string& label,
                           DecodeArgs::Path path, int pad_elems);

// run_and_check on the FP8 form of spec's cache (testing::Fp8Problem: MLA's 656-byte rows,
// e4m3 rows with per-row scales otherwise), against the reference on the same FP8 cache.
// pad_bytes: a gap after each cache row (8: strides not multiples of 16 bytes, which takes the
// portable kernel's element-wise load path; 16: the fast paths still take them, and q's rows
// get the same gap). lie: sequence
// 0's second block-table entry on the device (the host reference keeps the true one); the run
// must raise kFlagPageOutOfRange and the other sequences must match. scale_log2: every scale of
// the cache times 2^scale_log2 (the same e4m3 bytes), device and reference alike.
// head_major_scales: fp8_row scales stored [num_pages, h_kv, page_size] on the device and passed
// as the [num_pages, page_size, h_kv] view with strides (h_kv * page_size, 1, page_size).
// edit: changes the FP8 cache (device and reference alike) before the run.
Plan run_and_check_fp8(const testing::ProblemSpec& spec, const std::string& label,
                       DecodeArgs::Path path = DecodeArgs::Path::automatic, int pad_bytes = 0,
                       std::optional<int32_t> lie = std::nullopt, int scale_log2 = 0,
                       bool head_major_scales = false,
                       const std::function<void(testing::Fp8Problem&)>& edit = nullptr);

}  // namespace flashmfa::gputest
