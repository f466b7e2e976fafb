// flashmfa CUDA: cached device properties and error reporting.
#include <array>
#include <mutex>
#include <string>

#include "cuda/common/device.hpp"

namespace flashmfa::cuda {

DeviceGuard::DeviceGuard(int device) {
  FLASHMFA_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) FLASHMFA_CUDA_CHECK(cudaSetDevice(device));
}

void throw_cuda(cudaError_t err, const char* what, const char* file, int line) {
  (void)cudaGetLastError();  // clear a sticky launch error so the next call starts clean
  throw Error(Status::cuda_error, std::string("flashmfa: CUDA error ") + cudaGetErrorName(err) +
                                      " (" + cudaGetErrorString(err) + ") in " + what + " at " +
                                      file + ":" + std::to_string(line));
}

const DeviceInfo& device_info(int id) {
  constexpr int kMaxDevices = 64;
  static std::array<DeviceInfo, kMaxDevices> cache;
  static std::array<bool, kMaxDevices> filled{};
  static std::mutex mu;
  if (id < 0 || id >= kMaxDevices)
    detail::fail_arg(Status::invalid_argument, "q.device.id",
                     "a CUDA device index in [0, " + std::to_string(kMaxDevices) + ")", id);
  std::lock_guard<std::mutex> lock(mu);
  if (!filled[id]) {
    cudaDeviceProp prop{};
    FLASHMFA_CUDA_CHECK(cudaGetDeviceProperties(&prop, id));
    DeviceInfo& d = cache[id];
    d.id = id;
    d.sm_count = prop.multiProcessorCount;
    d.cc_major = prop.major;
    d.cc_minor = prop.minor;
    d.smem_per_block_optin = prop.sharedMemPerBlockOptin;
    d.smem_per_sm = prop.sharedMemPerMultiprocessor;
    d.l2_bytes = prop.l2CacheSize;
    d.name = prop.name;
    filled[id] = true;
  }
  return cache[id];
}

}  // namespace flashmfa::cuda
