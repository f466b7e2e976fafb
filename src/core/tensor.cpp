// flashmfa: TensorView helpers, dtype and status names.
#include <sstream>

#include "flashmfa/error.hpp"
#include "flashmfa/tensor.hpp"

namespace flashmfa {

const char* dtype_name(DType t) noexcept {
  switch (t) {
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::f32: return "f32";
    case DType::i32: return "i32";
    case DType::u8: return "u8";
    case DType::f8_e4m3: return "f8_e4m3";
  }
  return "?";
}

const char* status_name(Status s) noexcept {
  switch (s) {
    case Status::ok: return "ok";
    case Status::invalid_argument: return "invalid_argument";
    case Status::invalid_dtype: return "invalid_dtype";
    case Status::unsupported: return "unsupported";
    case Status::bad_page_index: return "bad_page_index";
    case Status::bad_seqlen: return "bad_seqlen";
    case Status::cuda_error: return "cuda_error";
    case Status::no_device: return "no_device";
  }
  return "?";
}

void TensorView::byte_extent(uintptr_t& lo, uintptr_t& hi) const noexcept {
  lo = hi = reinterpret_cast<uintptr_t>(data);
  if (numel() == 0) return;
  int64_t last = 0;  // offset in elements of the last element the view can reach
  for (int i = 0; i < ndim; ++i) last += (shape[i] - 1) * strides[i];
  hi = lo + static_cast<uintptr_t>((last + 1) * static_cast<int64_t>(dtype_size(dtype)));
}

std::string TensorView::shape_str() const {
  std::ostringstream os;
  os << "[";
  for (int i = 0; i < ndim; ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

namespace {
TensorView view_with(void* data, DType dtype, std::initializer_list<int64_t> shape,
                     const int64_t* strides, Device device) {
  if (shape.size() > TensorView::kMaxDims)
    detail::fail_arg(Status::invalid_argument, "shape", "at most 4 dimensions", shape.size());
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.device = device;
  v.ndim = static_cast<int>(shape.size());
  int i = 0;
  for (int64_t s : shape) v.shape[i++] = s;
  int64_t stride = 1;
  for (i = v.ndim - 1; i >= 0; --i) {
    v.strides[i] = strides ? strides[i] : stride;
    stride *= v.shape[i];
  }
  return v;
}
}  // namespace

TensorView make_view(void* data, DType dtype, std::initializer_list<int64_t> shape,
                     Device device) {
  return view_with(data, dtype, shape, nullptr, device);
}

TensorView make_view(void* data, DType dtype, std::initializer_list<int64_t> shape,
                     std::initializer_list<int64_t> strides, Device device) {
  if (strides.size() != shape.size())
    detail::fail_arg(Status::invalid_argument, "strides", shape.size(), strides.size(),
                     "one stride per dimension");
  return view_with(data, dtype, shape, strides.begin(), device);
}

}  // namespace flashmfa
