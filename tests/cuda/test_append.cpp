// flashmfa GPU tests: append_kv on CUDA tensors against the CPU backend, byte for byte, in every
// cache format (16-bit rows, e4m3 rows with per-row scales, FlashMLA's 656-byte rows). Caches
// and scale arrays start as a sentinel pattern between guard bytes and are compared whole, so a
// row written wrongly, twice, elsewhere or not at all shows as a byte difference. Also: every
// bf16 / f16 input value through the e4m3 rounding, strided and misaligned views (both of the
// kernel's layouts), lying lengths and block tables (skipped and flagged, nothing written out of
// place), and CUDA-graph replay with new lengths, inputs and block tables.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "flashmfa/half.hpp"
#include "gpu_problem.hpp"

namespace flashmfa::gputest {
namespace {

constexpr uint8_t kSentinel = 0xa5;
constexpr size_t kGuardBytes = 256;  // before and after every view (keeps cudaMalloc's alignment)
constexpr Device kCpu{DeviceType::cpu, 0};
constexpr Device kGpu{DeviceType::cuda, 0};

struct CudaFree {
  void operator()(uint8_t* p) const { cudaFree(p); }
};

// One tensor's bytes on the host and a device copy of them. The view starts `misalign` bytes
// past a guard of kGuardBytes; the guards and every byte between the view's elements hold
// `fill`, which nothing may change.
class Buffer {
 public:
  Buffer() = default;  // an absent tensor
  // strides in elements; empty: row-major.
  Buffer(DType dtype, std::vector<int64_t> shape, std::vector<int64_t> strides = {},
         size_t misalign = 0, uint8_t fill = kSentinel)
      : dtype_(dtype), shape_(std::move(shape)), strides_(std::move(strides)),
        offset_(kGuardBytes + misalign), fill_(fill) {
    if (strides_.empty()) {
      strides_.assign(shape_.size(), 1);
      for (int k = int(shape_.size()) - 2; k >= 0; --k)
        strides_[k] = strides_[k + 1] * shape_[k + 1];
    }
    int64_t extent = 1;  // elements from the first to the last, both included
    for (size_t k = 0; k < shape_.size(); ++k)
      extent += std::max<int64_t>(shape_[k] - 1, 0) * strides_[k];
    view_bytes_ = size_t(extent) * dtype_size(dtype_);
    host.assign(offset_ + view_bytes_ + kGuardBytes, fill_);
    void* p = nullptr;
    if (cudaMalloc(&p, host.size()) == cudaSuccess) dev_.reset(static_cast<uint8_t*>(p));
  }

  bool present() const { return !host.empty(); }
  TensorView on(Device d) {
    TensorView v;
    if (!present()) return v;
    v.data = (d.type == DeviceType::cpu ? host.data() : dev_.get()) + offset_;
    v.dtype = dtype_;
    v.device = d;
    v.ndim = int(shape_.size());
    for (int k = 0; k < v.ndim; ++k) v.shape[k] = shape_[k], v.strides[k] = strides_[k];
    return v;
  }
  // The host bytes of element idx.
  uint8_t* at(std::initializer_list<int64_t> idx) {
    int64_t e = 0, k = 0;
    for (int64_t i : idx) e += i * strides_[k++];
    return host.data() + offset_ + e * dtype_size(dtype_);
  }
  void upload() {
    if (present())
      CUDA_OK(cudaMemcpy(dev_.get(), host.data(), host.size(), cudaMemcpyHostToDevice));
  }
  std::vector<uint8_t> download() const {
    std::vector<uint8_t> out(host.size());
    if (present())
      EXPECT_EQ(cudaMemcpy(out.data(), dev_.get(), out.size(), cudaMemcpyDeviceToHost),
                cudaSuccess);
    return out;
  }
  uint8_t* device_data() { return dev_.get() + offset_; }
  // Whether the guards of `bytes` (a download) still hold the fill.
  bool guards_intact(const std::vector<uint8_t>& bytes) const {
    auto fill = [&](size_t b) { return bytes[b] == fill_; };
    for (size_t b = 0; b < offset_; ++b)
      if (!fill(b)) return false;
    for (size_t b = offset_ + view_bytes_; b < bytes.size(); ++b)
      if (!fill(b)) return false;
    return true;
  }
  // Bytes of the host copy that differ from the fill (something was written).
  size_t written_bytes() const {
    return size_t(std::count_if(host.begin(), host.end(), [&](uint8_t b) { return b != fill_; }));
  }

  std::vector<uint8_t> host;

 private:
  DType dtype_ = DType::u8;
  std::vector<int64_t> shape_, strides_;
  size_t offset_ = 0, view_bytes_ = 0;
  uint8_t fill_ = kSentinel;
  std::unique_ptr<uint8_t, CudaFree> dev_;
};

// The shapes and layout of one append problem.
struct Spec {
  Variant variant = Variant::mfa();
  bool fp8 = true;         // FP8 cache: fp8_mla for MLA, fp8_row otherwise
  DType dtype = DType::bf16;
  int page = 16, s_new = 1, h_kv = 1;
  std::vector<int> lens;   // per sequence, after the append; the block table holds this many
  uint64_t seed = 0;
  // Layout: k_new / v_new rows padded by new_pad elements and stored token-major
  // ([s_new, b, h_kv, d] memory viewed as [b, s_new, h_kv, d]); caches starting misalign bytes
  // past an aligned address, rows padded by cache_pad elements, scale arrays every other float.
  int64_t new_pad = 0;
  bool token_major = false;
  size_t cache_misalign = 0;
  int64_t cache_pad = 0;
};

std::string describe(const Spec& s) {
  std::string r = s.variant.name() + (s.fp8 ? " fp8 " : " native ") + dtype_name(s.dtype) +
                  " page " + std::to_string(s.page) + " s_new " + std::to_string(s.s_new) +
                  " h_kv " + std::to_string(s.h_kv) + " lens";
  for (int l : s.lens) r += " " + std::to_string(l);
  if (s.new_pad || s.token_major)
    r += " new_pad " + std::to_string(s.new_pad) + (s.token_major ? " token-major" : "");
  if (s.cache_misalign || s.cache_pad)
    r += " cache misalign " + std::to_string(s.cache_misalign) + " pad " +
         std::to_string(s.cache_pad);
  return r;
}

// Host buffers of one append and their device copies. The caches hold the sentinel until
// something appends; the block table gives each sequence its own shuffled pages (unused
// columns: testing::kSentinelPage) and leaves spare pages no sequence owns.
struct AppendProblem {
  static constexpr int kSparePages = 2;
  Spec s;
  CacheFormat format = CacheFormat::native;
  int b = 0, max_pages = 0, num_pages = 0;
  std::vector<int> lens;
  Buffer k_new, v_new, k_cache, v_cache, k_scale, v_scale, block_table, seqlens, flags;

  explicit AppendProblem(const Spec& spec) : s(spec), b(int(spec.lens.size())), lens(spec.lens) {
    const Variant& var = s.variant;
    const bool has_v = !var.v_aliases_k;
    format = !s.fp8 ? CacheFormat::native
             : var == Variant::mla() ? CacheFormat::fp8_mla : CacheFormat::fp8_row;
    auto pages_of = [&](int len) { return (len + s.page - 1) / s.page; };
    for (int len : lens) {
      max_pages = std::max(max_pages, pages_of(len) + 1);
      num_pages += pages_of(len);
    }
    num_pages += kSparePages;

    auto new_tensor = [&](int d) {
      const int64_t dp = d + s.new_pad, h = s.h_kv;
      std::vector<int64_t> strides = s.token_major
          ? std::vector<int64_t>{h * dp, b * h * dp, dp, 1}
          : std::vector<int64_t>{s.s_new * h * dp, h * dp, dp, 1};
      return Buffer(s.dtype, {b, s.s_new, s.h_kv, d}, strides);
    };
    k_new = new_tensor(var.d_k);
    if (has_v) v_new = new_tensor(var.d_v);

    const DType cache_dtype = !s.fp8 ? s.dtype
                              : format == CacheFormat::fp8_mla ? DType::u8 : DType::f8_e4m3;
    auto cache_tensor = [&](int width) {
      const int64_t w = width + s.cache_pad, h = s.h_kv;
      return Buffer(cache_dtype, {num_pages, s.page, s.h_kv, width},
                    {s.page * h * w, h * w, w, 1}, s.cache_misalign);
    };
    k_cache = cache_tensor(format == CacheFormat::fp8_mla ? MlaFp8Row::kBytes : var.d_k);
    if (has_v) v_cache = cache_tensor(var.d_v);
    if (format == CacheFormat::fp8_row) {
      const int64_t step = s.cache_pad ? 2 : 1;
      const std::vector<int64_t> strides = {step * s.page * s.h_kv, step * s.h_kv, step};
      k_scale = Buffer(DType::f32, {num_pages, s.page, s.h_kv}, strides);
      if (has_v) v_scale = Buffer(DType::f32, {num_pages, s.page, s.h_kv}, strides);
    }

    std::vector<int32_t> pool(num_pages);
    std::iota(pool.begin(), pool.end(), 0);
    std::mt19937_64 rng(s.seed);
    std::shuffle(pool.begin(), pool.end(), rng);
    block_table = Buffer(DType::i32, {b, max_pages});
    seqlens = Buffer(DType::i32, {b});
    flags = Buffer(DType::i32, {1}, {}, 0, 0);
    size_t next = kSparePages;  // pool[0, kSparePages) stay unused
    for (int i = 0; i < b; ++i)
      for (int j = 0; j < max_pages; ++j)
        set_page(i, j, j < pages_of(lens[i]) ? pool[next++] : testing::kSentinelPage);
    set_lens(lens);
    fill_inputs(s.seed);
  }

  void set_page(int i, int j, int32_t page) {
    std::memcpy(block_table.at({i, j}), &page, sizeof(page));
  }
  int32_t page_of(int i, int j) {
    int32_t page;
    std::memcpy(&page, block_table.at({i, j}), sizeof(page));
    return page;
  }
  void set_lens(const std::vector<int>& l) {
    lens = l;
    for (int i = 0; i < b; ++i) std::memcpy(seqlens.at({i}), &lens[i], sizeof(int32_t));
  }
  int capacity() const { return max_pages * s.page; }

  // Normal values with 1% outliers (60x), an all-zero row (with a -0), a row of values near the
  // dtype's smallest (subnormal scales and e4m3 subnormals), and for MLA one all-zero group.
  void fill_inputs(uint64_t seed) {
    std::mt19937_64 rng(seed * 7919 + 17);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    const float tiny = s.dtype == DType::bf16 ? 1e-38f : 1e-6f;
    for (Buffer* t : {&k_new, &v_new}) {
      if (!t->present()) continue;
      const int d = t == &k_new ? s.variant.d_k : s.variant.d_v;
      for (int i = 0; i < b; ++i)
        for (int tok = 0; tok < s.s_new; ++tok)
          for (int h = 0; h < s.h_kv; ++h) {
            const bool zero_row = i == 0 && tok == 0 && h == 0;
            const bool tiny_row = i == b - 1 && tok == s.s_new - 1 && h == s.h_kv - 1;
            for (int c = 0; c < d; ++c) {
              float x = nd(rng);
              if (u(rng) < 0.01f) x *= 60.0f;
              if (tiny_row) x *= tiny;
              if (zero_row) x = c == 1 ? -0.0f : 0.0f;
              if (format == CacheFormat::fp8_mla && i == b - 1 && tok == 0 && h == 0 &&
                  c / MlaFp8Row::kGroup == 2)
                x = 0.0f;
              const uint16_t bits = half::from_float(s.dtype, x);
              std::memcpy(t->at({i, tok, h, c}), &bits, sizeof(bits));
            }
          }
    }
  }

  void upload() {
    for (Buffer* t : {&k_new, &v_new, &k_cache, &v_cache, &k_scale, &v_scale, &block_table,
                      &seqlens, &flags})
      t->upload();
  }

  AppendArgs args(Device d, bool with_flags = true) {
    AppendArgs a;
    a.k_new = k_new.on(d), a.v_new = v_new.on(d);
    a.k_cache = k_cache.on(d), a.v_cache = v_cache.on(d);
    a.k_scale = k_scale.on(d), a.v_scale = v_scale.on(d);
    a.block_table = block_table.on(d), a.seqlens_k = seqlens.on(d);
    if (with_flags) a.error_flags = flags.on(d);
    return a;
  }

  // The CPU append of tokens [t0, t1) of sequence i alone (into the host caches): what the
  // device must have written for them when other rows were skipped.
  void cpu_append_tokens(int i, int t0, int t1) {
    AppendArgs a = args(kCpu, false);
    for (TensorView* t : {&a.k_new, &a.v_new}) {
      if (!t->present()) continue;
      t->data = static_cast<uint8_t*>(t->data) +
                (i * t->strides[0] + t0 * t->strides[1]) * int64_t(dtype_size(t->dtype));
      t->shape[0] = 1, t->shape[1] = t1 - t0;
    }
    a.block_table.data = block_table.at({i, 0});
    a.block_table.shape[0] = 1;
    int32_t len = lens[i] - s.s_new + t1;
    a.seqlens_k = make_view(&len, DType::i32, {1});
    append_kv(a);
  }

  uint32_t device_flags() {
    uint32_t f = 0;
    EXPECT_EQ(cudaMemcpy(&f, flags.device_data(), sizeof(f), cudaMemcpyDeviceToHost), cudaSuccess);
    return f;
  }
  void clear_device_flags() { EXPECT_EQ(cudaMemset(flags.device_data(), 0, 4), cudaSuccess); }

  // Every written tensor's device bytes (guards included) against the host's.
  void expect_device_matches_host(const std::string& label) {
    const std::pair<Buffer*, const char*> written[] = {
        {&k_cache, "k_cache"}, {&v_cache, "v_cache"}, {&k_scale, "k_scale"},
        {&v_scale, "v_scale"}};
    for (auto [t, name] : written) {
      if (!t->present()) continue;
      const std::vector<uint8_t> got = t->download();
      EXPECT_TRUE(t->guards_intact(got)) << label << ": " << name << "'s guard bytes changed";
      size_t bad = 0, first = 0;
      for (size_t k = 0; k < got.size(); ++k)
        if (got[k] != t->host[k] && bad++ == 0) first = k;
      EXPECT_EQ(bad, 0u) << label << ": " << name << " differs from the CPU's in " << bad
                         << " bytes; first at buffer byte " << first << " (device "
                         << int(got[first]) << ", CPU " << int(t->host[first]) << ")";
    }
  }
};

// The device append against the CPU's on identical inputs.
void append_and_compare(const Spec& spec) {
  const std::string label = describe(spec);
  AppendProblem p(spec);
  p.upload();
  append_kv(p.args(kCpu, false));
  append_kv(p.args(kGpu));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << label;
  EXPECT_EQ(p.device_flags(), 0u) << label << ": a valid append raised device flags";
  EXPECT_GT(p.k_cache.written_bytes(), 0u) << label << ": the CPU append wrote nothing";
  p.expect_device_matches_host(label);
}

struct Kind {
  const char* name;
  Variant variant;
  bool fp8;
};
const Kind kKinds[] = {
    {"native_mla", Variant::mla(), false},    // 576-wide rows, V aliases K
    {"native_gqa64", Variant::mqa(64), false},
    {"row_mfa", Variant::mfa(), true},        // e4m3 K and V rows, k_scale and v_scale
    {"row_gqa64", Variant::mqa(64), true},
    {"row_kr128", Variant::mfa_kr(128), true},  // no V cache: k_scale only
    {"mla", Variant::mla(), true},            // FlashMLA's 656-byte rows
};

Spec kind_spec(int kind, DType dtype, int page, int s_new, int h_kv) {
  Spec s;
  s.variant = kKinds[kind].variant;
  s.fp8 = kKinds[kind].fp8;
  s.dtype = dtype;
  s.page = page;
  s.s_new = s_new;
  s.h_kv = h_kv;
  // A sequence that is only the new tokens, one whose new tokens cross a page boundary (for
  // pages of 4 tokens or fewer: several), one ending inside a later page.
  s.lens = {s_new, std::max(s_new, page + 2), 77};
  s.seed = 100 + kind * 31 + page * 7 + s_new * 3 + h_kv;
  return s;
}

using GridParam = std::tuple<int /*kind*/, DType, int /*page*/, int /*s_new*/, int /*h_kv*/>;

class CudaAppendGrid : public ::testing::TestWithParam<GridParam> {};

// e.g. Grid/CudaAppendGrid.MatchesTheCpuByteForByte/row_mfa_bf16_page16_snew4_hkv2
std::string grid_name(const ::testing::TestParamInfo<GridParam>& info) {
  const auto [kind, dtype, page, s_new, h_kv] = info.param;
  return std::string(kKinds[kind].name) + "_" + dtype_name(dtype) + "_page" +
         std::to_string(page) + "_snew" + std::to_string(s_new) + "_hkv" + std::to_string(h_kv);
}

TEST_P(CudaAppendGrid, MatchesTheCpuByteForByte) {
  SKIP_WITHOUT_GPU();
  const auto [kind, dtype, page, s_new, h_kv] = GetParam();
  append_and_compare(kind_spec(kind, dtype, page, s_new, h_kv));
}

INSTANTIATE_TEST_SUITE_P(Grid, CudaAppendGrid,
                         ::testing::Combine(::testing::Range(0, int(std::size(kKinds))),
                                            ::testing::Values(DType::bf16, DType::f16),
                                            ::testing::Values(1, 16, 64),
                                            ::testing::Values(1, 4), ::testing::Values(1, 2)),
                         grid_name);

// Rows that hold 448 (scale exactly 1, so x / scale = x) and every other bf16 / f16 value up to
// 448 in magnitude, NaNs of both signs included: the e4m3 rounding of each one (ties, the
// subnormal range, saturation below 448), and one row with infinities (scale inf: 0, -0, NaN).
// Both kernel layouts: 16-byte lanes, and one value per lane (rows padded by one element).
TEST(CudaAppend, EveryInputValueRoundsAsOnTheCpu) {
  SKIP_WITHOUT_GPU();
  constexpr int kD = 256;
  for (DType dtype : {DType::bf16, DType::f16}) {
    std::vector<uint16_t> values;
    for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
      const float x = half::to_float(dtype, uint16_t(bits));
      if (std::isnan(x) || std::fabs(x) <= 448.0f) values.push_back(uint16_t(bits));
    }
    const uint16_t inf = half::from_float(dtype, INFINITY), one = half::from_float(dtype, 1.0f);
    const uint16_t minus_inf = half::from_float(dtype, -INFINITY);
    const int per_row = kD - 1, rows = int(values.size() + per_row - 1) / per_row + 1;
    for (int64_t pad : {0, 1}) {
      Spec s;
      s.variant = Variant::mfa_kr(kD);
      s.dtype = dtype;
      s.page = 64;
      s.s_new = rows;
      s.lens = {rows};
      s.new_pad = pad;
      AppendProblem p(s);
      const uint16_t top = half::from_float(dtype, 448.0f);
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < kD; ++c) {
          uint16_t bits = top;
          if (r == rows - 1) {
            bits = c % 4 == 0 ? inf : c % 4 == 1 ? minus_inf : values[c * 97 % values.size()];
          } else if (c > 0) {
            const size_t v = size_t(r) * per_row + c - 1;
            bits = v < values.size() ? values[v] : one;
          }
          std::memcpy(p.k_new.at({0, r, 0, c}), &bits, sizeof(bits));
        }
      p.upload();
      append_kv(p.args(kCpu, false));
      append_kv(p.args(kGpu));
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      p.expect_device_matches_host(std::string(dtype_name(dtype)) + " new_pad " +
                                   std::to_string(pad));
    }
  }
}

// Views the API accepts beyond dense ones: padded and token-major k_new / v_new, caches at an
// address that is not 16-byte aligned (FP8: an odd one) with padded rows, scale arrays with
// gaps. Misalignment or odd strides take the kernel's one-value-per-lane layout.
TEST(CudaAppend, StridedAndMisalignedViews) {
  SKIP_WITHOUT_GPU();
  for (int kind : {0, 2, 4, 5}) {
    for (auto [new_pad, token_major, misalign, cache_pad] :
         {std::tuple{int64_t(8), true, size_t(0), int64_t(16)},  // 16-byte lanes still
          std::tuple{int64_t(1), false, size_t(0), int64_t(0)},  // odd k_new rows
          std::tuple{int64_t(0), true, size_t(2), int64_t(3)},   // caches 2 bytes off
          std::tuple{int64_t(3), true, size_t(1), int64_t(1)}}) {
      Spec s = kind_spec(kind, DType::bf16, 16, 4, 2);
      s.new_pad = new_pad;
      s.token_major = token_major;
      // 16-bit caches sit at even addresses.
      s.cache_misalign = s.fp8 ? misalign : (misalign + 1) & ~size_t(1);
      s.cache_pad = cache_pad;
      append_and_compare(s);
    }
  }
}

TEST(CudaAppend, NoTokensWriteNothing) {
  SKIP_WITHOUT_GPU();
  Spec s = kind_spec(5, DType::bf16, 16, 0, 1);
  s.lens = {0, 5, 77};
  AppendProblem p(s);
  p.upload();
  append_kv(p.args(kGpu));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(p.device_flags(), 0u);
  p.expect_device_matches_host("s_new 0");
}

// ---- lying lengths and block tables ----

// Sequence 0 appends positions 16..19 (block-table column 1 only), sequence 1 positions 14..17
// (columns 0 and 1), sequence 2 positions 73..76.
Spec lying_spec(int kind) {
  Spec s = kind_spec(kind, DType::bf16, 16, 4, 2);
  s.lens = {20, 18, 77};
  return s;
}

TEST(CudaAppendSafety, BadPageIndexSkipsTheRowAndFlags) {
  SKIP_WITHOUT_GPU();
  for (int kind : {1, 2, 5}) {
    for (int which = 0; which < 3; ++which) {
      AppendProblem p(lying_spec(kind));
      const int32_t bad = which == 0 ? -1 : which == 1 ? p.num_pages : testing::kSentinelPage;
      const std::string label = describe(p.s) + " page index " + std::to_string(bad);
      p.set_page(0, 1, bad);  // all of sequence 0's rows
      p.set_page(1, 1, bad);  // sequence 1's tokens 2 and 3 (positions 16, 17)
      p.upload();
      append_kv(p.args(kGpu));
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << label;
      EXPECT_EQ(p.device_flags(), uint32_t(kFlagPageOutOfRange)) << label;
      p.cpu_append_tokens(1, 0, 2);
      p.cpu_append_tokens(2, 0, 4);
      p.expect_device_matches_host(label);
    }
  }
}

TEST(CudaAppendSafety, BadLengthSkipsTheSequenceAndFlags) {
  SKIP_WITHOUT_GPU();
  for (int kind : {1, 2, 5}) {
    const int capacity = AppendProblem(lying_spec(kind)).capacity();
    for (auto [len, flag] : {std::pair{3, kFlagSeqlenNegative},  // below s_new = 4
                             std::pair{-5, kFlagSeqlenNegative},
                             std::pair{std::numeric_limits<int>::min(), kFlagSeqlenNegative},
                             std::pair{capacity + 1, kFlagSeqlenTooLong},
                             std::pair{std::numeric_limits<int>::max(), kFlagSeqlenTooLong}}) {
      AppendProblem p(lying_spec(kind));
      const std::string label = describe(p.s) + " seqlens_k[1] " + std::to_string(len);
      std::vector<int> lens = p.lens;
      lens[1] = len;
      p.set_lens(lens);
      p.upload();
      append_kv(p.args(kGpu));
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << label;
      EXPECT_EQ(p.device_flags(), uint32_t(flag)) << label;
      p.cpu_append_tokens(0, 0, 4);
      p.cpu_append_tokens(2, 0, 4);
      p.expect_device_matches_host(label);
    }
  }
}

// Several lies in one call or the flags together; without error_flags the rows are skipped
// all the same.
TEST(CudaAppendSafety, FlagsAccumulateAndAreOptional) {
  SKIP_WITHOUT_GPU();
  for (bool with_flags : {true, false}) {
    AppendProblem p(lying_spec(5));
    p.set_page(0, 1, p.num_pages);
    std::vector<int> lens = p.lens;
    lens[1] = -1;
    lens[2] = p.capacity() + 16;
    p.set_lens(lens);
    p.upload();
    append_kv(p.args(kGpu, with_flags));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(p.device_flags(), with_flags ? uint32_t(kFlagPageOutOfRange | kFlagSeqlenNegative |
                                                      kFlagSeqlenTooLong)
                                           : 0u);
    p.expect_device_matches_host(with_flags ? "with error_flags" : "without error_flags");
  }
}

// ---- CUDA graphs ----

// One captured append replayed with new lengths, new inputs and a changed block table; each
// replay against the CPU applying the same appends to its copy of the caches (the caches
// accumulate), and a replay with a bad length flags and skips that sequence.
TEST(CudaAppendGraph, ReplaysWithNewLengthsAndInputs) {
  SKIP_WITHOUT_GPU();
  for (int kind : {1, 2, 5}) {
    Spec s = kind_spec(kind, DType::bf16, 16, 4, 2);
    s.lens = {80, 80, 80};  // the block table's reach (capacity 96: page columns 0..5)
    AppendProblem p(s);
    p.upload();
    cudaStream_t stream;
    CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cudaGraph_t graph;
    CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    append_kv(p.args(kGpu), stream);
    CUDA_OK(cudaStreamEndCapture(stream, &graph));
    cudaGraphExec_t exec;
    CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));

    const std::vector<std::vector<int>> rounds = {
        {4, 20, 80}, {8, 24, 77}, {12, 17, 5}, {16, 97, 9}, {64, 30, 40}};
    for (size_t r = 0; r < rounds.size(); ++r) {
      const std::string label = describe(s) + " replay " + std::to_string(r);
      p.set_lens(rounds[r]);
      p.fill_inputs(1000 + r);
      if (r == 2) {  // sequence 2 takes over sequence 0's pages
        for (int j = 0; j < p.max_pages; ++j) p.set_page(2, j, p.page_of(0, j));
        p.block_table.upload();
      }
      p.seqlens.upload();
      p.k_new.upload();
      p.v_new.upload();
      CUDA_OK(cudaGraphLaunch(exec, stream));
      CUDA_OK(cudaStreamSynchronize(stream));
      const bool too_long = rounds[r][1] > p.capacity();
      EXPECT_EQ(p.device_flags(), too_long ? uint32_t(kFlagSeqlenTooLong) : 0u) << label;
      p.clear_device_flags();
      for (int i = 0; i < p.b; ++i)
        if (!(i == 1 && too_long)) p.cpu_append_tokens(i, 0, s.s_new);
      p.expect_device_matches_host(label);
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
  }
}

// The reduced suite for compute-sanitizer (scripts/device.sh runs CudaSanitizer.* under
// memcheck): every format, both kernel layouts, and lies.
TEST(CudaSanitizer, Append) {
  SKIP_WITHOUT_GPU();
  for (int kind = 0; kind < int(std::size(kKinds)); ++kind) {
    Spec s = kind_spec(kind, DType::f16, 16, 4, 2);
    append_and_compare(s);
    s.new_pad = 1;
    s.cache_misalign = kKinds[kind].fp8 ? 1 : 2;
    append_and_compare(s);
  }
  AppendProblem p(lying_spec(5));
  p.set_page(0, 1, testing::kSentinelPage);
  std::vector<int> lens = p.lens;
  lens[1] = p.capacity() + 1;
  p.set_lens(lens);
  p.upload();
  append_kv(p.args(kGpu));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(p.device_flags(), uint32_t(kFlagPageOutOfRange | kFlagSeqlenTooLong));
}

}  // namespace
}  // namespace flashmfa::gputest
