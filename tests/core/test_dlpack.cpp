// dlpack.hpp: from_dlpack over a local struct with DLTensor's fields (no dlpack.h needed; the
// header only reads the documented fields, which is what this proves).
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>

#include "flashmfa/dlpack.hpp"

namespace flashmfa {
namespace {

// DLPack's layout, re-declared: DLDevice, DLDataType, DLTensor.
struct FakeDevice {
  int32_t device_type;
  int32_t device_id;
};
struct FakeDataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};
struct FakeDLTensor {
  void* data;
  FakeDevice device;
  int32_t ndim;
  FakeDataType dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
};

namespace abi = dlpack_abi;

FakeDLTensor tensor(void* data, int32_t ndim, int64_t* shape, int64_t* strides,
                    FakeDataType dt = {abi::kBfloat, 16, 1},
                    FakeDevice dev = {abi::kCPU, 0}, uint64_t offset = 0) {
  return {data, dev, ndim, dt, shape, strides, offset};
}

void expect_error(const std::function<void()>& call, Status status, const std::string& part) {
  try {
    call();
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), status) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(DLPack, NullStridesMeanRowMajor) {
  uint16_t buf[24];
  int64_t shape[] = {2, 3, 4};
  const TensorView v = from_dlpack(tensor(buf, 3, shape, nullptr), "q");
  EXPECT_EQ(v.data, buf);
  EXPECT_EQ(v.dtype, DType::bf16);
  EXPECT_EQ(v.device.type, DeviceType::cpu);
  EXPECT_EQ(v.ndim, 3);
  EXPECT_EQ(v.shape[1], 3);
  EXPECT_EQ(v.strides[0], 12);
  EXPECT_EQ(v.strides[1], 4);
  EXPECT_EQ(v.strides[2], 1);
}

TEST(DLPack, ExplicitStridesAndByteOffset) {
  uint16_t buf[64];
  int64_t shape[] = {2, 3}, strides[] = {16, 1};
  const TensorView v = from_dlpack(
      tensor(buf, 2, shape, strides, {abi::kFloat, 16, 1}, {abi::kCPU, 0}, 6), "k_cache");
  EXPECT_EQ(v.data, reinterpret_cast<char*>(buf) + 6);  // byte_offset is in bytes
  EXPECT_EQ(v.dtype, DType::f16);
  EXPECT_EQ(v.strides[0], 16);  // DLPack strides are in elements, like TensorView's
  EXPECT_EQ(v.strides[1], 1);
}

TEST(DLPack, NullDataStaysNull) {
  // A null data pointer is passed through (validation refuses it by name later); the offset is
  // not added to null.
  int64_t shape[] = {0};
  const TensorView v =
      from_dlpack(tensor(nullptr, 1, shape, nullptr, {abi::kInt, 32, 1}, {abi::kCPU, 0}, 8), "x");
  EXPECT_EQ(v.data, nullptr);
  EXPECT_EQ(v.dtype, DType::i32);
}

TEST(DLPack, DtypeMapping) {
  EXPECT_EQ(dtype_from_dlpack("x", abi::kFloat, 16, 1), DType::f16);
  EXPECT_EQ(dtype_from_dlpack("x", abi::kBfloat, 16, 1), DType::bf16);
  EXPECT_EQ(dtype_from_dlpack("x", abi::kFloat, 32, 1), DType::f32);
  EXPECT_EQ(dtype_from_dlpack("x", abi::kInt, 32, 1), DType::i32);
  EXPECT_EQ(dtype_from_dlpack("x", abi::kUInt, 8, 1), DType::u8);
  EXPECT_EQ(dtype_from_dlpack("x", abi::kFloat8_e4m3fn, 8, 1), DType::f8_e4m3);
}

TEST(DLPack, UnsupportedDtypesNameTheTensor) {
  expect_error([] { dtype_from_dlpack("seqlens_k", abi::kInt, 64, 1); }, Status::invalid_dtype,
               "seqlens_k: expected one of f16, bf16, f32, i32, u8, f8_e4m3, got DLPack dtype "
               "(code 0, bits 64, lanes 1)");
  expect_error([] { dtype_from_dlpack("q", abi::kFloat, 16, 2); }, Status::invalid_dtype,
               "lanes 2");
  expect_error([] { dtype_from_dlpack("q", abi::kFloat, 64, 1); }, Status::invalid_dtype,
               "bits 64");
}

TEST(DLPack, Devices) {
  uint16_t buf[4];
  int64_t shape[] = {4};
  const TensorView cuda =
      from_dlpack(tensor(buf, 1, shape, nullptr, {abi::kBfloat, 16, 1}, {abi::kCUDA, 3}), "q");
  EXPECT_EQ(cuda.device.type, DeviceType::cuda);
  EXPECT_EQ(cuda.device.id, 3);
  const TensorView managed = from_dlpack(
      tensor(buf, 1, shape, nullptr, {abi::kBfloat, 16, 1}, {abi::kCUDAManaged, 1}), "q");
  EXPECT_EQ(managed.device.type, DeviceType::cuda);
  const TensorView pinned = from_dlpack(
      tensor(buf, 1, shape, nullptr, {abi::kBfloat, 16, 1}, {abi::kCUDAHost, 0}), "q");
  EXPECT_EQ(pinned.device.type, DeviceType::cpu);  // pinned host memory is host memory
  constexpr int32_t kOpenCL = 4;
  expect_error(
      [&] { from_dlpack(tensor(buf, 1, shape, nullptr, {abi::kBfloat, 16, 1}, {kOpenCL, 0}), "out"); },
      Status::no_device, "out: expected a CPU or CUDA tensor, got DLPack device type 4");
}

TEST(DLPack, TooManyDimensions) {
  uint16_t buf[1];
  int64_t shape[] = {1, 1, 1, 1, 1};
  expect_error([&] { from_dlpack(tensor(buf, 5, shape, nullptr), "q"); },
               Status::invalid_argument, "q: expected at most 4 dimensions, got 5");
}

}  // namespace
}  // namespace flashmfa
