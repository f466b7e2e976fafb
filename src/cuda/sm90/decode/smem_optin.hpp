// flashmfa CUDA, Hopper path: raising a kernel's dynamic shared-memory limit, once per device.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <mutex>

#include "cuda/common/device.hpp"
#include "flashmfa/error.hpp"

namespace flashmfa::cuda::sm90 {

// cudaFuncSetAttribute(KERNEL, MaxDynamicSharedMemorySize, bytes) on the current device, the
// first time this kernel is launched there (the attribute belongs to the function per device).
// Only success is remembered: a failed call throws and is tried again on the next launch.
template <auto KERNEL>
void opt_in_smem(size_t bytes) {
  constexpr int kMaxDevices = 64;
  static std::array<std::atomic<bool>, kMaxDevices> done{};
  static std::mutex mu;
  int device = 0;
  FLASHMFA_CUDA_CHECK(cudaGetDevice(&device));
  if (device < 0 || device >= kMaxDevices)
    throw Error(Status::invalid_argument, "flashmfa: CUDA device index out of range for sm90");
  if (done[device].load(std::memory_order_acquire)) return;
  std::lock_guard<std::mutex> lock(mu);
  if (done[device].load(std::memory_order_relaxed)) return;
  FLASHMFA_CUDA_CHECK(
      cudaFuncSetAttribute(KERNEL, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  done[device].store(true, std::memory_order_release);
}

}  // namespace flashmfa::cuda::sm90
