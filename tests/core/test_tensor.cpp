// TensorView helpers (make_view, numel, present, byte_extent, shape_str), dtype / status names,
// the Variant table and DecodeArgs::variant.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "flashmfa/flashmfa.hpp"

namespace flashmfa {
namespace {

TEST(TensorView, MakeViewIsRowMajor) {
  float buf[24];
  const TensorView v = make_view(buf, DType::f32, {2, 3, 4});
  EXPECT_EQ(v.data, buf);
  EXPECT_EQ(v.ndim, 3);
  EXPECT_EQ(v.shape[0], 2);
  EXPECT_EQ(v.shape[2], 4);
  EXPECT_EQ(v.strides[0], 12);
  EXPECT_EQ(v.strides[1], 4);
  EXPECT_EQ(v.strides[2], 1);
  EXPECT_EQ(v.numel(), 24);
  EXPECT_EQ(v.device, Device{});
  EXPECT_EQ(v.device.type, DeviceType::cpu);
  EXPECT_TRUE(v.present());
}

TEST(TensorView, MakeViewWithStridesAndDevice) {
  uint16_t buf[64];
  const TensorView v = make_view(buf, DType::bf16, {2, 3}, {16, 1}, {DeviceType::cuda, 1});
  EXPECT_EQ(v.strides[0], 16);
  EXPECT_EQ(v.strides[1], 1);
  EXPECT_EQ(v.device.type, DeviceType::cuda);
  EXPECT_EQ(v.device.id, 1);
  EXPECT_EQ(v.numel(), 6);
}

TEST(TensorView, DefaultViewIsAbsent) {
  const TensorView v;
  EXPECT_FALSE(v.present());
  EXPECT_EQ(v.numel(), 1);  // rank 0: a scalar's element count, though absent
  TensorView with_rank;
  with_rank.ndim = 1;       // a shape without data is "present" (and refused as a null pointer)
  EXPECT_TRUE(with_rank.present());
}

TEST(TensorView, ByteExtent) {
  alignas(8) char buf[256];
  uintptr_t lo = 0, hi = 0;
  make_view(buf, DType::f16, {2, 3}).byte_extent(lo, hi);  // 6 elements of 2 bytes
  EXPECT_EQ(lo, reinterpret_cast<uintptr_t>(buf));
  EXPECT_EQ(hi - lo, 12u);
  // Strided: the last element sits at 1*8 + 2*1 = 10 elements -> 11 elements of 4 bytes.
  make_view(buf, DType::f32, {2, 3}, {8, 1}).byte_extent(lo, hi);
  EXPECT_EQ(hi - lo, 44u);
  // Broadcast (stride 0) rows all alias the first one.
  make_view(buf, DType::i32, {5, 4}, {0, 1}).byte_extent(lo, hi);
  EXPECT_EQ(hi - lo, 16u);
  // Empty views cover no bytes.
  make_view(buf, DType::f32, {0, 3}).byte_extent(lo, hi);
  EXPECT_EQ(lo, hi);
}

TEST(TensorView, ShapeString) {
  int x;
  EXPECT_EQ(make_view(&x, DType::i32, {4, 1, 7}).shape_str(), "[4, 1, 7]");
  EXPECT_EQ(make_view(&x, DType::i32, {}).shape_str(), "[]");
}

TEST(TensorView, TooManyDimensions) {
  int x;
  try {
    (void)make_view(&x, DType::i32, {1, 1, 1, 1, 1});
    FAIL() << "5 dimensions accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("shape: expected at most 4 dimensions, got 5"),
              std::string::npos)
        << e.what();
  }
}

TEST(TensorView, StrideCountMustMatchShape) {
  int x;
  try {
    (void)make_view(&x, DType::i32, {2, 2}, {2});
    FAIL() << "one stride for two dimensions accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("strides: expected 2, got 1"), std::string::npos)
        << e.what();
  }
}

TEST(DType, SizesAndNames) {
  EXPECT_EQ(dtype_size(DType::f16), 2u);
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
  EXPECT_EQ(dtype_size(DType::f32), 4u);
  EXPECT_EQ(dtype_size(DType::i32), 4u);
  EXPECT_EQ(dtype_size(DType::u8), 1u);
  EXPECT_EQ(dtype_size(DType::f8_e4m3), 1u);
  EXPECT_STREQ(dtype_name(DType::f16), "f16");
  EXPECT_STREQ(dtype_name(DType::bf16), "bf16");
  EXPECT_STREQ(dtype_name(DType::f32), "f32");
  EXPECT_STREQ(dtype_name(DType::i32), "i32");
  EXPECT_STREQ(dtype_name(DType::u8), "u8");
  EXPECT_STREQ(dtype_name(DType::f8_e4m3), "f8_e4m3");
}

TEST(Status, NamesAndCodes) {
  EXPECT_STREQ(status_name(Status::ok), "ok");
  EXPECT_STREQ(status_name(Status::invalid_argument), "invalid_argument");
  EXPECT_STREQ(status_name(Status::invalid_dtype), "invalid_dtype");
  EXPECT_STREQ(status_name(Status::unsupported), "unsupported");
  EXPECT_STREQ(status_name(Status::bad_page_index), "bad_page_index");
  EXPECT_STREQ(status_name(Status::bad_seqlen), "bad_seqlen");
  EXPECT_STREQ(status_name(Status::cuda_error), "cuda_error");
  EXPECT_STREQ(status_name(Status::no_device), "no_device");
  // The codes are part of the C-style contract.
  EXPECT_EQ(static_cast<int>(Status::ok), 0);
  EXPECT_EQ(static_cast<int>(Status::no_device), 7);
  const Error e(Status::unsupported, "why");
  EXPECT_EQ(e.status(), Status::unsupported);
  EXPECT_STREQ(e.what(), "why");
}

TEST(Variant, PresetsAndTable) {
  EXPECT_EQ(Variant::mla(), (Variant{576, 512, true}));
  EXPECT_EQ(Variant::mfa(), (Variant{256, 256, false}));
  EXPECT_EQ(Variant::mfa_kr(), (Variant{256, 256, true}));
  EXPECT_EQ(Variant::mfa_kr(128), (Variant{128, 128, true}));
  EXPECT_EQ(Variant::mqa(64), (Variant{64, 64, false}));
  for (const Variant& v : {Variant::mla(), Variant::mfa(), Variant::mfa_kr(256),
                           Variant::mfa_kr(128), Variant::mfa_kr(64), Variant::mqa(64),
                           Variant::mqa(128), Variant::mqa(256)})
    EXPECT_TRUE(is_supported(v)) << v.name();
  EXPECT_FALSE(is_supported(Variant{576, 512, false}));  // MLA needs V = K
  EXPECT_FALSE(is_supported(Variant{96, 96, false}));
  EXPECT_FALSE(is_supported(Variant{}));
  EXPECT_EQ(Variant::mla().name(), "(576, 512, V aliases K)");
  EXPECT_EQ(Variant::mfa().name(), "(256, 256, separate V)");
}

TEST(Variant, FromDecodeArgs) {
  uint16_t buf[8];
  DecodeArgs a;
  a.q = make_view(buf, DType::bf16, {1, 1, 1, 576});
  a.out = make_view(buf, DType::bf16, {1, 1, 1, 512});
  EXPECT_EQ(a.variant(), Variant::mla());
  a.v_cache = make_view(buf, DType::bf16, {1, 1, 1, 512});
  EXPECT_EQ(a.variant(), (Variant{576, 512, false}));
  EXPECT_EQ(DecodeArgs{}.variant(), (Variant{0, 0, true}));
}

TEST(BuildInfo, NamesVersionAndCpuBackend) {
  const std::string info = build_info();
  EXPECT_NE(info.find("flashmfa " + std::to_string(kVersionMajor) + "." +
                      std::to_string(kVersionMinor) + "." + std::to_string(kVersionPatch)),
            std::string::npos)
      << info;
  EXPECT_NE(info.find("cpu"), std::string::npos) << info;
}

}  // namespace
}  // namespace flashmfa
