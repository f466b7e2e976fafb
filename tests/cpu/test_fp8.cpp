// FP8 caches on the CPU backend: the e4m3 codec, append_kv's byte layouts (FlashMLA's 656-byte
// MLA row, e4m3 rows with per-row scales, plain copies for 16-bit caches), decode on FP8
// caches (fast path against the float64 reference on the same dequantized cache, both against
// the unquantized cache) and the errors both entry points raise.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/fp8.hpp"
#include "cpu_check.hpp"
#include "flashmfa/flashmfa.hpp"
#include "flashmfa/half.hpp"
#include "problem/fp8.hpp"
#include "problem/problem.hpp"

namespace flashmfa {
namespace {

using detail::e4m3_to_float;
using detail::float_to_e4m3;
using testing::Fp8Problem;
using testing::HostProblem;
using testing::ProblemSpec;

// ---- codec ----

TEST(E4m3, DecodesKnownValues) {
  EXPECT_EQ(e4m3_to_float(0x00), 0.0f);
  EXPECT_EQ(e4m3_to_float(0x38), 1.0f);       // exponent 7 = bias, mantissa 0
  EXPECT_EQ(e4m3_to_float(0x3c), 1.5f);
  EXPECT_EQ(e4m3_to_float(0x40), 2.0f);
  EXPECT_EQ(e4m3_to_float(0x7e), 448.0f);     // the largest finite value
  EXPECT_EQ(e4m3_to_float(0x08), 0x1p-6f);    // the smallest normal
  EXPECT_EQ(e4m3_to_float(0x01), 0x1p-9f);    // the smallest subnormal
  EXPECT_EQ(e4m3_to_float(0xb8), -1.0f);
  EXPECT_TRUE(std::isnan(e4m3_to_float(0x7f)));
  EXPECT_TRUE(std::isnan(e4m3_to_float(0xff)));
  for (int b = 1; b <= 0x7e; ++b)  // magnitudes strictly increase with the bits
    EXPECT_LT(e4m3_to_float(uint8_t(b - 1)), e4m3_to_float(uint8_t(b))) << b;
}

// Nearest finite e4m3 by search (ties to the even code, whose mantissa is even), saturated.
uint8_t nearest_e4m3(float x) {
  const float a = std::fabs(x);
  int best = 0;
  for (int b = 1; b <= 0x7e; ++b) {
    const float d = std::fabs(e4m3_to_float(uint8_t(b)) - a);
    const float bd = std::fabs(e4m3_to_float(uint8_t(best)) - a);
    if (d < bd || (d == bd && b % 2 == 0)) best = b;
  }
  return uint8_t(best | (std::signbit(x) ? 0x80 : 0));
}

TEST(E4m3, EncodesToNearestTiesToEvenAndSaturates) {
  for (int b = 0; b <= 0x7e; ++b) {  // every finite value and every midpoint between two
    const float v = e4m3_to_float(uint8_t(b));
    EXPECT_EQ(float_to_e4m3(v), b);
    EXPECT_EQ(float_to_e4m3(-v), b | 0x80);
    if (b < 0x7e) {
      const float mid = 0.5f * (v + e4m3_to_float(uint8_t(b + 1)));
      for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)})
        EXPECT_EQ(float_to_e4m3(x), nearest_e4m3(x)) << x;
    }
  }
  std::mt19937 rng(8);
  std::uniform_real_distribution<float> log_mag(-12.0f, 9.0f);
  for (int i = 0; i < 20000; ++i) {
    const float x = std::exp2(log_mag(rng)) * (i % 2 ? -1.0f : 1.0f);
    EXPECT_EQ(float_to_e4m3(x), nearest_e4m3(x)) << x;
  }
  EXPECT_EQ(float_to_e4m3(448.0f), 0x7e);
  EXPECT_EQ(float_to_e4m3(470.0f), 0x7e);  // past the largest finite: saturated, not NaN
  EXPECT_EQ(float_to_e4m3(-1e30f), 0xfe);
  EXPECT_EQ(float_to_e4m3(std::numeric_limits<float>::infinity()), 0x7e);
  EXPECT_TRUE(std::isnan(e4m3_to_float(float_to_e4m3(std::nanf("")))));
}

// ---- append_kv layouts ----

std::vector<uint16_t> random_rows(DType dtype, size_t n, uint64_t seed, float spread = 2.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, spread);
  std::vector<uint16_t> v(n);
  for (uint16_t& x : v) x = half::from_float(dtype, nd(rng));
  return v;
}

float amax_of(DType dtype, const uint16_t* x, int n) {
  float m = 0.0f;
  for (int d = 0; d < n; ++d) m = std::max(m, std::fabs(half::to_float(dtype, x[d])));
  return m;
}

// A dequantized value is within half an e4m3 step of the input: 2^-4 relative for normals,
// 2^-10 * scale absolute in the subnormal range.
void expect_close_e4m3(float deq, float x, float scale, const std::string& where) {
  EXPECT_LE(std::fabs(deq - x), std::fabs(x) * 0x1p-4f + scale * 0x1p-10f * 1.0001f)
      << where << ": " << x << " read back as " << deq;
}

TEST(AppendKv, MlaRowIsFlashMlaLayout) {
  for (DType dtype : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(dtype));
    constexpr int kPages = 3, kPage = 4, kLen = 6, kNew = 3;  // tokens 3..5: pages 0 and 1
    std::vector<uint8_t> cache(size_t(kPages) * kPage * MlaFp8Row::kBytes, 0xab);
    const std::vector<uint16_t> k_new = random_rows(dtype, size_t(kNew) * 576, 11);
    std::vector<int32_t> bt = {2, 0};  // position p -> page bt[p / 4]
    std::vector<int32_t> lens = {kLen};
    AppendArgs a;
    a.k_new = make_view(const_cast<uint16_t*>(k_new.data()), dtype, {1, kNew, 1, 576});
    a.k_cache = make_view(cache.data(), DType::f8_e4m3, {kPages, kPage, 1, MlaFp8Row::kBytes});
    a.block_table = make_view(bt.data(), DType::i32, {1, 2});
    a.seqlens_k = make_view(lens.data(), DType::i32, {1});
    append_kv(a);
    std::vector<bool> written(size_t(kPages) * kPage, false);
    for (int t = 0; t < kNew; ++t) {
      const int pos = kLen - kNew + t, page = bt[pos / kPage], slot = pos % kPage;
      written[size_t(page) * kPage + slot] = true;
      const uint8_t* row = cache.data() + (size_t(page) * kPage + slot) * MlaFp8Row::kBytes;
      const uint16_t* src = k_new.data() + size_t(t) * 576;
      for (int g = 0; g < 4; ++g) {
        float scale;
        std::memcpy(&scale, row + 512 + 4 * g, 4);
        EXPECT_FLOAT_EQ(scale, amax_of(dtype, src + 128 * g, 128) / 448.0f) << "group " << g;
        for (int d = 128 * g; d < 128 * g + 128; ++d)
          expect_close_e4m3(e4m3_to_float(row[d]) * scale, half::to_float(dtype, src[d]), scale,
                            "token " + std::to_string(t) + " column " + std::to_string(d));
      }
      EXPECT_EQ(0, std::memcmp(row + 528, src + 512, 128)) << "RoPE part: the input's bits";
    }
    for (size_t r = 0; r < written.size(); ++r)  // nothing else touched
      if (!written[r])
        for (int byte = 0; byte < MlaFp8Row::kBytes; ++byte)
          ASSERT_EQ(cache[r * MlaFp8Row::kBytes + byte], 0xab) << "row " << r;
  }
}

TEST(AppendKv, RowFormatWritesPerRowScales) {
  const DType dtype = DType::bf16;
  constexpr int kPages = 4, kPage = 2, kHkv = 2, kD = 128, kNew = 3;
  std::vector<uint8_t> k8(size_t(kPages) * kPage * kHkv * kD, 0xab), v8 = k8;
  std::vector<float> ks(size_t(kPages) * kPage * kHkv, -1.0f), vs = ks;
  const std::vector<uint16_t> k_new = random_rows(dtype, size_t(2) * kNew * kHkv * kD, 3);
  const std::vector<uint16_t> v_new = random_rows(dtype, size_t(2) * kNew * kHkv * kD, 4, 0.01f);
  std::vector<int32_t> bt = {3, 1, 0, 2};  // [2, 2]
  std::vector<int32_t> lens = {4, 3};       // sequence 0: positions 1..3, sequence 1: 0..2
  AppendArgs a;
  a.k_new = make_view(const_cast<uint16_t*>(k_new.data()), dtype, {2, kNew, kHkv, kD});
  a.v_new = make_view(const_cast<uint16_t*>(v_new.data()), dtype, {2, kNew, kHkv, kD});
  a.k_cache = make_view(k8.data(), DType::f8_e4m3, {kPages, kPage, kHkv, kD});
  a.v_cache = make_view(v8.data(), DType::f8_e4m3, {kPages, kPage, kHkv, kD});
  a.k_scale = make_view(ks.data(), DType::f32, {kPages, kPage, kHkv});
  a.v_scale = make_view(vs.data(), DType::f32, {kPages, kPage, kHkv});
  a.block_table = make_view(bt.data(), DType::i32, {2, 2});
  a.seqlens_k = make_view(lens.data(), DType::i32, {2});
  append_kv(a);
  int written = 0;
  for (int i = 0; i < 2; ++i)
    for (int t = 0; t < kNew; ++t)
      for (int h = 0; h < kHkv; ++h) {
        const int pos = lens[i] - kNew + t;
        const size_t row = (size_t(bt[i * 2 + pos / kPage]) * kPage + pos % kPage) * kHkv + h;
        for (auto [c8, sc, src] : {std::tuple{&k8, &ks, &k_new}, std::tuple{&v8, &vs, &v_new}}) {
          const uint16_t* x = src->data() + ((size_t(i) * kNew + t) * kHkv + h) * kD;
          const float scale = (*sc)[row];
          EXPECT_FLOAT_EQ(scale, amax_of(dtype, x, kD) / 448.0f);
          for (int d = 0; d < kD; ++d)
            expect_close_e4m3(e4m3_to_float((*c8)[row * kD + d]) * scale,
                              half::to_float(dtype, x[d]), scale, "row " + std::to_string(row));
        }
        ++written;
      }
  EXPECT_EQ(written, 12);
  EXPECT_EQ(std::count(ks.begin(), ks.end(), -1.0f), 16 - 12) << "untouched scales";
}

TEST(AppendKv, NativeCacheGetsTheBits) {
  const DType dtype = DType::f16;
  std::vector<uint16_t> cache(size_t(2) * 4 * 576, 0x7e00);
  const std::vector<uint16_t> k_new = random_rows(dtype, 2 * 576, 5);
  std::vector<int32_t> bt = {1, 0}, lens = {5};
  AppendArgs a;
  a.k_new = make_view(const_cast<uint16_t*>(k_new.data()), dtype, {1, 2, 1, 576});
  a.k_cache = make_view(cache.data(), dtype, {2, 4, 1, 576});
  a.block_table = make_view(bt.data(), DType::i32, {1, 2});
  a.seqlens_k = make_view(lens.data(), DType::i32, {1});
  append_kv(a);
  // Positions 3 (page 1, slot 3) and 4 (page 0, slot 0).
  EXPECT_EQ(0, std::memcmp(&cache[(4 + 3) * 576], &k_new[0], 576 * 2));
  EXPECT_EQ(0, std::memcmp(&cache[0], &k_new[576], 576 * 2));
  EXPECT_EQ(cache[(4 + 2) * 576], 0x7e00);
}

// The CPU checks lengths and page indices on the host and raises instead of flagging: a given
// error_flags word is accepted and left as it is, both on success and on a refused call.
TEST(AppendKv, CpuLeavesErrorFlagsAlone) {
  const DType dtype = DType::bf16;
  std::vector<uint16_t> cache(size_t(2) * 4 * 64, 0x7fc0), expected = cache;
  const std::vector<uint16_t> k_new = random_rows(dtype, 64, 6);
  std::vector<int32_t> bt = {1, 0}, lens = {2};
  int32_t flags = 12345;
  AppendArgs a;
  a.k_new = make_view(const_cast<uint16_t*>(k_new.data()), dtype, {1, 1, 1, 64});
  a.k_cache = make_view(cache.data(), dtype, {2, 4, 1, 64});
  a.block_table = make_view(bt.data(), DType::i32, {1, 2});
  a.seqlens_k = make_view(lens.data(), DType::i32, {1});
  a.error_flags = make_view(&flags, DType::i32, {1});
  append_kv(a);  // position 1: page 1, slot 1
  std::memcpy(&expected[(4 + 1) * 64], k_new.data(), 64 * 2);
  EXPECT_EQ(cache, expected);
  EXPECT_EQ(flags, 12345);
  lens = {0};
  EXPECT_THROW(append_kv(a), Error);
  EXPECT_EQ(flags, 12345);
  EXPECT_EQ(cache, expected);
}

// ---- decode on FP8 caches ----

// Cosine similarity of two output arrays (finite entries).
double cosine(DType dtype, const std::vector<uint16_t>& a, const std::vector<uint16_t>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = half::to_float(dtype, a[i]), y = half::to_float(dtype, b[i]);
    ab += x * y, aa += x * x, bb += y * y;
  }
  return aa == 0 && bb == 0 ? 1.0 : ab / std::sqrt(aa * bb);
}

using Fp8Param = std::tuple<int /*variant*/, DType, int /*page*/, int /*s_q*/>;
const Variant kVariants[] = {Variant::mla(),     Variant::mfa(),        Variant::mfa_kr(256),
                             Variant::mqa(128),  Variant::mfa_kr(128),  Variant::mqa(64),
                             Variant::mfa_kr(64)};
constexpr int kNumVariants = int(std::size(kVariants));

class Fp8Decode : public ::testing::TestWithParam<Fp8Param> {};

TEST_P(Fp8Decode, FastPathMatchesReferenceOnTheDequantizedCache) {
  const auto [vi, dtype, page, s_q] = GetParam();
  ProblemSpec s;
  s.variant = kVariants[vi];
  s.dtype = dtype;
  s.page_size = page;
  s.s_q = s_q;
  s.causal = s_q > 1;
  s.h_kv = s.variant == Variant::mla() ? 1 : 2;
  s.h_q = s.h_kv * 8;
  s.b = 4;
  s.seqlens = {0, 1, 77, 300};
  s.seed = 40 + vi * 7 + page + s_q;
  Fp8Problem fp8(s);
  HostProblem unquantized = fp8.h;
  decode_reference(fp8.fp8_args());  // the reference on the FP8 cache, into fp8.h's outputs
  const HostProblem ref = fp8.h;     // keep it; the fast path writes into poisoned outputs
  fp8.h.poison_outputs();
  DecodeArgs a = fp8.fp8_args();
  const Plan pl = plan(a, nullptr, workspace_size(a));
  EXPECT_EQ(pl.key.cache, s.variant == Variant::mla() ? CacheFormat::fp8_mla : CacheFormat::fp8_row);
  run(pl, a);
  EXPECT_TRUE(testing::outputs_match(fp8.h, ref));
  // Against the unquantized cache: e4m3 keeps ~4 significant bits per value; the outputs'
  // direction stays (docs/fp8.md has the error distribution).
  decode_reference(unquantized.args());
  EXPECT_GT(cosine(dtype, ref.out, unquantized.out), 0.99) << s.str();
}

INSTANTIATE_TEST_SUITE_P(Grid, Fp8Decode,
                         ::testing::Combine(::testing::Range(0, kNumVariants),
                                            ::testing::Values(DType::bf16, DType::f16),
                                            ::testing::Values(1, 16, 64),
                                            ::testing::Values(1, 2)));

// ---- errors ----

void expect_error(const std::function<void()>& call, Status status,
                  const std::vector<std::string>& parts) {
  try {
    call();
    ADD_FAILURE() << "no error raised";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), status) << e.what();
    for (const std::string& part : parts)
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "message lacks \"" << part << "\": " << e.what();
  }
}

ProblemSpec small_spec(Variant v) {
  ProblemSpec s;
  s.variant = v;
  s.h_kv = 1, s.h_q = 4, s.b = 2, s.page_size = 16;
  s.seqlens = {20, 5};
  return s;
}

TEST(Fp8Errors, DecodeNamesTheBadArgument) {
  Fp8Problem mfa(small_spec(Variant::mfa())), mla(small_spec(Variant::mla()));
  auto decode_with = [](DecodeArgs a) { return [a] { decode(a, nullptr, 0); }; };
  DecodeArgs a = mfa.fp8_args();
  a.k_scale = {};
  expect_error(decode_with(a), Status::invalid_argument, {"k_scale", "nullptr"});
  a = mfa.fp8_args();
  a.v_scale.dtype = DType::bf16;
  expect_error(decode_with(a), Status::invalid_dtype, {"v_scale.dtype", "f32"});
  a = mfa.fp8_args();
  a.k_scale.shape[1] = 8;
  expect_error(decode_with(a), Status::invalid_argument, {"k_scale.shape[1]", "16"});
  a = mfa.h.args();  // a 16-bit cache with scales
  a.k_scale = mfa.fp8_args().k_scale;
  expect_error(decode_with(a), Status::invalid_argument, {"k_scale", "absent"});
  a = mfa.fp8_args();  // FP8 K with a 16-bit V
  a.v_cache = mfa.h.args().v_cache;
  expect_error(decode_with(a), Status::invalid_dtype, {"v_cache.dtype", "must match k_cache"});
  a = mla.fp8_args();  // MLA rows must be FlashMLA's 656 bytes
  a.k_cache.shape[3] = 576;
  expect_error(decode_with(a), Status::invalid_argument, {"k_cache.shape[3]", "656"});
  a = mla.fp8_args();
  a.k_scale = mfa.fp8_args().k_scale;
  expect_error(decode_with(a), Status::invalid_argument, {"k_scale", "inline"});
  a = mla.fp8_args();
  a.k_cache.dtype = DType::f32;
  expect_error(decode_with(a), Status::invalid_dtype, {"k_cache.dtype", "f8_e4m3"});
}

TEST(Fp8Errors, AppendRefusesBeforeWriting) {
  Fp8Problem p(small_spec(Variant::mfa()));
  const std::vector<uint8_t> k_before = p.k8;
  const std::vector<float> ks_before = p.ks;
  std::vector<uint16_t> k_new = random_rows(DType::bf16, size_t(2) * 3 * 256, 9);
  std::vector<uint16_t> v_new = k_new;
  std::vector<int32_t> lens = {21, 2}, bt = p.h.block_table;  // 2 < s_new = 3
  auto args = [&] {
    DecodeArgs d = p.fp8_args();
    AppendArgs a;
    a.k_new = make_view(k_new.data(), DType::bf16, {2, 3, 1, 256});
    a.v_new = make_view(v_new.data(), DType::bf16, {2, 3, 1, 256});
    a.k_cache = d.k_cache, a.v_cache = d.v_cache, a.k_scale = d.k_scale, a.v_scale = d.v_scale;
    a.block_table = make_view(bt.data(), DType::i32, {2, p.h.max_pages});
    a.seqlens_k = make_view(lens.data(), DType::i32, {2});
    return a;
  };
  expect_error([&] { append_kv(args()); }, Status::bad_seqlen, {"seqlens_k[1]", ">= s_new = 3"});
  lens = {21, 5};
  bt[1 * p.h.max_pages + 0] = p.h.num_pages;  // sequence 1 writes positions 2..4: page 0
  expect_error([&] { append_kv(args()); }, Status::bad_page_index,
               {"block_table[1, 0]", "[0, " + std::to_string(p.h.num_pages) + ")"});
  bt = p.h.block_table;
  AppendArgs a = args();
  a.v_new = {};
  expect_error([&] { append_kv(a); }, Status::invalid_argument, {"v_new", "nullptr"});
  a = args();
  a.v_cache = {};
  expect_error([&] { append_kv(a); }, Status::invalid_argument, {"v_cache", "nullptr"});
  // error_flags: one aligned i32 word on the tensors' device, apart from what is written.
  int32_t flags[2] = {0, 0};
  const std::vector<std::pair<TensorView, std::vector<std::string>>> bad_flags = {
      {make_view(flags, DType::f32, {1}), {"error_flags.dtype", "i32"}},
      {make_view(flags, DType::i32, {2}), {"error_flags.shape[0]", "1"}},
      {make_view(flags, DType::i32, {1, 1}), {"error_flags", "1 dimensions"}},
      {make_view(flags, DType::i32, {1}, {DeviceType::cuda, 0}), {"error_flags.device", "cpu"}},
      {make_view(reinterpret_cast<char*>(flags) + 1, DType::i32, {1}), {"4-byte aligned"}},
      {make_view(p.ks.data(), DType::i32, {1}), {"error_flags", "disjoint from k_scale"}}};
  for (const auto& [view, parts] : bad_flags) {
    a = args();
    a.error_flags = view;
    expect_error([&] { append_kv(a); },
                 parts[0] == "error_flags.dtype" ? Status::invalid_dtype : Status::invalid_argument,
                 parts);
  }
  if (!cuda_available()) {  // CUDA tensors need a device (tests/cuda/test_append.cpp has them)
    a = args();
    a.k_new.device = {DeviceType::cuda, 0};
    a.v_new.device = a.k_cache.device = a.v_cache.device = a.k_scale.device = a.v_scale.device =
        a.block_table.device = a.seqlens_k.device = a.k_new.device;
    expect_error([&] { append_kv(a); }, Status::no_device, {"k_new.device", "cuda:0"});
  }
  EXPECT_EQ(p.k8, k_before) << "a refused append wrote to the cache";
  EXPECT_EQ(0, std::memcmp(p.ks.data(), ks_before.data(), ks_before.size() * 4))
      << "a refused append wrote to the scales";
}

}  // namespace
}  // namespace flashmfa
