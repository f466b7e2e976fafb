// flashmfa: non-owning tensor views. The fields mirror DLPack's DLTensor (data, device,
// ndim, dtype, shape, strides in elements), so a DLTensor converts without copying
// (see flashmfa/dlpack.hpp) and a binding can pass a framework tensor straight through.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace flashmfa {

enum class DType : uint8_t { f16, bf16, f32, i32, u8, f8_e4m3 };
enum class DeviceType : uint8_t { cpu, cuda };

constexpr size_t dtype_size(DType t) noexcept {
  switch (t) {
    case DType::f16: case DType::bf16: return 2;
    case DType::f32: case DType::i32: return 4;
    case DType::u8: case DType::f8_e4m3: return 1;
  }
  return 0;
}
const char* dtype_name(DType t) noexcept;

struct Device {
  DeviceType type = DeviceType::cpu;
  int id = 0;
  friend bool operator==(const Device&, const Device&) = default;
};

// A strided view of memory the caller owns. ndim == 0 with data == nullptr is "absent".
struct TensorView {
  static constexpr int kMaxDims = 4;

  void* data = nullptr;
  DType dtype = DType::f32;
  Device device{};
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};  // in elements, not bytes

  bool present() const noexcept { return data != nullptr || ndim != 0; }
  int64_t numel() const noexcept {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  // The byte range [lo, hi) the view can touch (empty views give lo == hi).
  void byte_extent(uintptr_t& lo, uintptr_t& hi) const noexcept;
  std::string shape_str() const;
};

// A view of a contiguous (row-major) buffer.
TensorView make_view(void* data, DType dtype, std::initializer_list<int64_t> shape,
                     Device device = {});
// The same, with explicit strides in elements.
TensorView make_view(void* data, DType dtype, std::initializer_list<int64_t> shape,
                     std::initializer_list<int64_t> strides, Device device = {});

}  // namespace flashmfa
