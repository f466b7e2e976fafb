// flashmfa: view a DLPack DLTensor as a flashmfa::TensorView without copying.
//
// Include your framework's <dlpack/dlpack.h> first; this header only reads the documented
// DLTensor fields (data, byte_offset, device, ndim, dtype, shape, strides), so it works with
// any DLPack version and vendors nothing.
#pragma once

#include <string>

#include "flashmfa/error.hpp"
#include "flashmfa/tensor.hpp"

namespace flashmfa {

// DLPack's type codes and device types (fixed by the DLPack ABI).
namespace dlpack_abi {
constexpr int kInt = 0, kUInt = 1, kFloat = 2, kBfloat = 4, kFloat8_e4m3fn = 10;
constexpr int kCPU = 1, kCUDA = 2, kCUDAHost = 3, kCUDAManaged = 13;
}  // namespace dlpack_abi

// Maps a DLPack (code, bits, lanes) triple to a DType; throws for anything flashmfa never takes.
inline DType dtype_from_dlpack(const char* arg, int code, int bits, int lanes) {
  using namespace dlpack_abi;
  if (lanes == 1) {
    if (code == kFloat && bits == 16) return DType::f16;
    if (code == kBfloat && bits == 16) return DType::bf16;
    if (code == kFloat && bits == 32) return DType::f32;
    if (code == kInt && bits == 32) return DType::i32;
    if (code == kUInt && bits == 8) return DType::u8;
    if (code == kFloat8_e4m3fn && bits == 8) return DType::f8_e4m3;
  }
  detail::fail_arg(Status::invalid_dtype, arg, "one of f16, bf16, f32, i32, u8, f8_e4m3",
                   "DLPack dtype (code " + std::to_string(code) + ", bits " +
                       std::to_string(bits) + ", lanes " + std::to_string(lanes) + ")");
}

// DLT is DLTensor (any DLPack version). `arg` names the tensor in error messages.
template <class DLT>
TensorView from_dlpack(const DLT& t, const char* arg) {
  using namespace dlpack_abi;
  TensorView v;
  if (t.ndim > TensorView::kMaxDims)
    detail::fail_arg(Status::invalid_argument, arg, "at most 4 dimensions", t.ndim);
  v.dtype = dtype_from_dlpack(arg, t.dtype.code, t.dtype.bits, t.dtype.lanes);
  const int dev = static_cast<int>(t.device.device_type);
  if (dev == kCPU || dev == kCUDAHost)
    v.device = {DeviceType::cpu, 0};
  else if (dev == kCUDA || dev == kCUDAManaged)
    v.device = {DeviceType::cuda, static_cast<int>(t.device.device_id)};
  else
    detail::fail_arg(Status::no_device, arg, "a CPU or CUDA tensor",
                     "DLPack device type " + std::to_string(dev));
  v.data = t.data == nullptr ? nullptr : static_cast<char*>(t.data) + t.byte_offset;
  v.ndim = t.ndim;
  int64_t stride = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {  // a null strides pointer means row-major
    v.shape[i] = t.shape[i];
    v.strides[i] = t.strides ? t.strides[i] : stride;
    stride *= t.shape[i];
  }
  return v;
}

}  // namespace flashmfa
