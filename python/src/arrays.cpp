// flashmfa Python binding: array import (see arrays.hpp).
#include "arrays.hpp"

#include <string>

#include "flashmfa/dlpack.hpp"

namespace flashmfa::python {
namespace {

// torch hands out a null data pointer for tensors with no elements; the core reads a null
// pointer as "argument missing". Nothing is ever read through an empty view, so any valid
// address will do.
std::byte g_empty_array_storage[1];

std::string type_name_of(nb::handle obj) {
  return nb::type_name(obj.type()).c_str();
}

// A DLPack dtype as numpy spells it, for messages ("int64", "float64", "bool").
std::string dlpack_dtype_name(const nb::dlpack::dtype& d) {
  using code = nb::dlpack::dtype_code;
  std::string base;
  switch (static_cast<code>(d.code)) {
    case code::Int: base = "int"; break;
    case code::UInt: base = "uint"; break;
    case code::Float: base = "float"; break;
    case code::Bfloat: base = "bfloat"; break;
    case code::Complex: base = "complex"; break;
    case code::Bool: return "bool";
    default: base = "dlpack_code" + std::to_string(d.code) + "_"; break;
  }
  std::string name = base + std::to_string(d.bits);
  if (d.lanes != 1) name += "x" + std::to_string(d.lanes);
  return name;
}

[[noreturn]] void fail_not_array(nb::handle obj, const char* arg) {
  detail::fail_arg(Status::invalid_dtype, arg,
                   "an array that exports DLPack (__dlpack__) or the buffer protocol",
                   type_name_of(obj));
}

// torch.Tensor without DLPack. torch's __dlpack__ is Python code (several µs a tensor, and one
// decode call imports up to eight); reading the same fields through the tensor's attributes
// costs a fraction of that. They fill the same DLTensor the DLPack path builds, so the core's
// converter still decides what is accepted. Anything unusual (another layout, device or
// dtype) takes the DLPack path.
class TorchFields {
 public:
  // nullptr until torch has been imported (by the caller: flashmfa never imports it).
  static const TorchFields* get() {
    static TorchFields* fields = nullptr;
    if (fields == nullptr) {
      PyObject* torch = PyImport_GetModule(nb::str("torch").ptr());  // no import, no error
      if (torch == nullptr) return nullptr;
      nb::module_ m = nb::steal<nb::module_>(torch);
      if (!nb::hasattr(m, "Tensor") || !nb::hasattr(m, "strided")) return nullptr;
      fields = new TorchFields(m);  // lives as long as the process, like torch itself
    }
    return fields;
  }

  // Fills t (shape and strides stored in dims) from a strided CPU or CUDA tensor of a dtype
  // flashmfa knows; false: use the DLPack path.
  bool read(nb::handle obj, nb::dlpack::dltensor& t, int64_t* dims) const {
    if (!PyObject_TypeCheck(obj.ptr(), reinterpret_cast<PyTypeObject*>(tensor_.ptr())))
      return false;
    if (!obj.attr("layout").is(strided_)) return false;
    nb::object dtype = obj.attr("dtype");
    const DType* found = nullptr;
    for (const DType& d : dtypes_)
      if (dtype.is(d.obj)) found = &d;
    if (found == nullptr) return false;
    nb::object device = obj.attr("device");
    nb::object type = device.attr("type");
    if (type.equal(cpu_)) {
      t.device = {dlpack_abi::kCPU, 0};
    } else if (type.equal(cuda_)) {
      t.device = {dlpack_abi::kCUDA, nb::cast<int32_t>(device.attr("index"))};
    } else {
      return false;
    }
    nb::object shape = obj.attr("shape"), strides = obj.attr("stride")();
    const size_t ndim = nb::len(shape);
    if (ndim > TensorView::kMaxDims) return false;
    for (size_t i = 0; i < ndim; ++i) {
      dims[i] = nb::cast<int64_t>(shape[i]);
      dims[TensorView::kMaxDims + i] = nb::cast<int64_t>(strides[i]);
    }
    t.data = reinterpret_cast<void*>(nb::cast<uintptr_t>(obj.attr("data_ptr")()));
    t.byte_offset = 0;  // data_ptr() includes the storage offset
    t.ndim = static_cast<int32_t>(ndim);
    t.dtype = found->dl;
    t.shape = dims;
    t.strides = dims + TensorView::kMaxDims;
    return true;
  }

 private:
  struct DType {
    nb::object obj;
    nb::dlpack::dtype dl;
  };

  explicit TorchFields(nb::module_ torch)
      : tensor_(torch.attr("Tensor")), strided_(torch.attr("strided")), cpu_("cpu"),
        cuda_("cuda") {
    using namespace dlpack_abi;
    const std::pair<const char*, nb::dlpack::dtype> table[] = {
        {"float16", {kFloat, 16, 1}}, {"bfloat16", {kBfloat, 16, 1}},
        {"float32", {kFloat, 32, 1}}, {"int32", {kInt, 32, 1}},
        {"uint8", {kUInt, 8, 1}},     {"float8_e4m3fn", {kFloat8_e4m3fn, 8, 1}}};
    for (const auto& [name, dl] : table)
      if (nb::hasattr(torch, name)) dtypes_.push_back({torch.attr(name), dl});
  }

  nb::object tensor_, strided_;
  nb::str cpu_, cuda_;  // torch.device.type values
  std::vector<DType> dtypes_;
};

}  // namespace

bool ArrayImporter::torch_view(nb::handle obj, const char* arg, TensorView& v) {
  const TorchFields* torch = TorchFields::get();
  nb::dlpack::dltensor t{};
  int64_t dims[2 * TensorView::kMaxDims];
  if (torch == nullptr) return false;
  try {
    if (!torch->read(obj, t, dims)) return false;
  } catch (const std::exception&) {  // a tensor-like object that answers differently:
    return false;                    // DLPack decides
  }
  tensors_.push_back(nb::borrow(obj));
  v = finish(t, arg);
  return true;
}

template <class Array>
TensorView ArrayImporter::view_of(const Array& a, const char* arg) const {
  // nanobind's DLTensor mirror has DLPack's field names, so the core's converter reads it.
  nb::dlpack::dltensor t{};
  t.data = a.data_handle();
  t.byte_offset = a.byte_offset();
  t.device = {a.device_type(), a.device_id()};
  t.ndim = static_cast<int32_t>(a.ndim());
  t.dtype = a.dtype();
  t.shape = const_cast<int64_t*>(a.shape_ptr());
  t.strides = const_cast<int64_t*>(a.stride_ptr());
  return finish(t, arg);
}

TensorView ArrayImporter::finish(nb::dlpack::dltensor t, const char* arg) const {
  constexpr uint8_t kUInt = dlpack_abi::kUInt, kBfloat = dlpack_abi::kBfloat;
  constexpr uint8_t kBits16 = 16;
  if (u16_is_bf16_ && t.dtype.code == kUInt && t.dtype.bits == kBits16) t.dtype.code = kBfloat;
  try {
    dtype_from_dlpack(arg, t.dtype.code, t.dtype.bits, t.dtype.lanes);
  } catch (const Error&) {  // the core's message, with the argument's dtype named plainly
    detail::fail_arg(Status::invalid_dtype, (std::string(arg) + ".dtype").c_str(),
                     "one of f16, bf16, f32, i32, u8, f8_e4m3", dlpack_dtype_name(t.dtype));
  }
  TensorView v = from_dlpack(t, arg);
  if (v.data == nullptr && v.numel() == 0) v.data = g_empty_array_storage;
  return v;
}

TensorView ArrayImporter::input(nb::handle obj, const char* arg) {
  TensorView v;
  if (torch_view(obj, arg, v)) return v;
  nb::ndarray<nb::ro> a;
  if (obj.is_none() || !nb::try_cast(obj, a, /*convert=*/false)) fail_not_array(obj, arg);
  read_only_.push_back(a);
  return view_of(a, arg);
}

TensorView ArrayImporter::optional_input(nb::handle obj, const char* arg) {
  if (obj.is_none()) return {};
  return input(obj, arg);
}

TensorView ArrayImporter::output(nb::handle obj, const char* arg) {
  TensorView v;
  if (torch_view(obj, arg, v)) return v;  // torch tensors are writable
  nb::ndarray<> a;
  // convert=false: a converted copy would silently swallow what flashmfa writes.
  if (!obj.is_none() && nb::try_cast(obj, a, /*convert=*/false)) {
    writable_.push_back(a);
    return view_of(a, arg);
  }
  nb::ndarray<nb::ro> ro;
  if (!obj.is_none() && nb::try_cast(obj, ro, /*convert=*/false))
    detail::fail_arg(Status::invalid_argument, arg, "a writable array", "a read-only array");
  fail_not_array(obj, arg);
}

ArrayImporter::Bytes ArrayImporter::workspace(nb::handle obj, Device device) {
  constexpr const char* arg = "workspace";
  // The workspace holds raw bytes: any dtype, one contiguous range.
  TensorView v;
  size_t item_bytes = 0;
  if (torch_view(obj, arg, v)) {
    item_bytes = dtype_size(v.dtype);
  } else {
    nb::ndarray<> a;
    if (obj.is_none() || !nb::try_cast(obj, a, /*convert=*/false)) fail_not_array(obj, arg);
    writable_.push_back(a);
    const uint8_t bits = a.dtype().bits;
    if (bits % 8 != 0 || a.dtype().lanes != 1)
      detail::fail_arg(Status::invalid_dtype, "workspace.dtype", "a byte-addressable dtype",
                       std::to_string(bits) + "-bit elements");
    nb::dlpack::dltensor t{};  // its device and layout, as bytes
    t.data = a.data();
    t.device = {a.device_type(), a.device_id()};
    t.ndim = static_cast<int32_t>(a.ndim());
    t.dtype = {dlpack_abi::kUInt, 8, 1};
    t.shape = const_cast<int64_t*>(a.shape_ptr());
    t.strides = const_cast<int64_t*>(a.stride_ptr());
    v = from_dlpack(t, arg);
    item_bytes = bits / 8;
  }
  int64_t expect = 1;  // row-major contiguity
  for (int i = v.ndim - 1; i >= 0; --i) {
    if (v.shape[i] > 1 && v.strides[i] != expect)
      detail::fail_arg(Status::invalid_argument, arg, "a contiguous array",
                       "stride " + std::to_string(v.strides[i]) + " in dimension " +
                           std::to_string(i));
    expect *= v.shape[i];
  }
  if (!(v.device == device)) {
    auto name = [](Device d) {
      return d.type == DeviceType::cpu ? std::string("cpu") : "cuda:" + std::to_string(d.id);
    };
    detail::fail_arg(Status::invalid_argument, "workspace.device", name(device) + " (q's device)",
                     name(v.device));
  }
  Bytes b;
  b.data = v.data;
  b.size = static_cast<size_t>(v.numel()) * item_bytes;
  return b;
}

// Placeholders stand for outputs that plan() and workspace_size() validate but never touch:
// dense views at addresses above any user-space or unified (UVA) address (user space ends at
// 2^47, 2^56 with 5-level paging), so they cannot alias an input; validation caps extents at
// 2^48 elements, so the two ranges stay apart. Never dereferenced.
namespace {
constexpr uintptr_t kOutPlaceholder = uintptr_t(1) << 58;
constexpr uintptr_t kLsePlaceholder = uintptr_t(1) << 59;
}  // namespace

TensorView Placeholders::out(DType dtype, Device device, int64_t b, int64_t s_q, int64_t h_q,
                             int64_t d_v) {
  return make_view(reinterpret_cast<void*>(kOutPlaceholder), dtype, {b, s_q, h_q, d_v}, device);
}

TensorView Placeholders::lse(Device device, int64_t b, int64_t h_q, int64_t s_q) {
  return make_view(reinterpret_cast<void*>(kLsePlaceholder), DType::f32, {b, h_q, s_q}, device);
}

}  // namespace flashmfa::python
