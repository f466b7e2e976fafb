// flashmfa CUDA: device properties read once per device and cached, and CUDA error checks.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "flashmfa/error.hpp"

namespace flashmfa::cuda {

struct DeviceInfo {
  int id = 0;
  int sm_count = 0;             // multiprocessors
  int cc_major = 0, cc_minor = 0;
  size_t smem_per_block_optin = 0;  // the most dynamic shared memory one CTA may ask for
  size_t smem_per_sm = 0;
  size_t l2_bytes = 0;
  std::string name;
};

// Whether a pointer sits on a multiple of `bytes` (the vector, cp.async and TMA paths' test).
inline bool aligned(const void* ptr, size_t bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

// Cached properties of device `id` (thread-safe; the first call per device queries CUDA).
const DeviceInfo& device_info(int id);

[[noreturn]] void throw_cuda(cudaError_t err, const char* what, const char* file, int line);

// Makes `device` current for the lifetime of the guard, then restores the caller's device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace flashmfa::cuda

#define FLASHMFA_CUDA_CHECK(expr)                                                    \
  do {                                                                               \
    cudaError_t flashmfa_err_ = (expr);                                              \
    if (flashmfa_err_ != cudaSuccess)                                                \
      ::flashmfa::cuda::throw_cuda(flashmfa_err_, #expr, __FILE__, __LINE__);        \
  } while (0)
