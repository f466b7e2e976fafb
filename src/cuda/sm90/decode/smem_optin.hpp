// flashmfa CUDA, Hopper path: raising a kernel's dynamic shared-memory limit, once per device.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <mutex>

#include "cuda/common/device.hpp"
#include "flashmfa/error.hpp"

namespace flashmfa::cuda::sm90 {

// cudaFuncSetAttribute(KERNEL, MaxDynamicSharedMemorySize, bytes) on the current device, the
// first time this kernel is launched there (the attribute belongs to the function per device).
template <auto KERNEL>
void opt_in_smem(size_t bytes) {
  constexpr int kMaxDevices = 64;
  static std::array<std::once_flag, kMaxDevices> once;
  static std::array<cudaError_t, kMaxDevices> attr_err{};
  int device = 0;
  FLASHMFA_CUDA_CHECK(cudaGetDevice(&device));
  if (device < 0 || device >= kMaxDevices)
    throw Error(Status::invalid_argument, "flashmfa: CUDA device index out of range for sm90");
  std::call_once(once[device], [&] {
    attr_err[device] =
        cudaFuncSetAttribute(KERNEL, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  });
  FLASHMFA_CUDA_CHECK(attr_err[device]);
}

}  // namespace flashmfa::cuda::sm90
