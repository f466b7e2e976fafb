// flashmfa: argument validation for the decode API (see validate.hpp).
#include "core/validate.hpp"

#include <cmath>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>

namespace flashmfa::detail {
namespace {

using detail::fail_arg;

std::string dims_str(std::initializer_list<const char*> names) {
  std::string s = "[";
  bool first = true;
  for (const char* n : names) {
    if (!first) s += ", ";
    s += n;
    first = false;
  }
  return s + "]";
}

void check_present(const TensorView& t, const char* arg) {
  if (t.data == nullptr)
    fail_arg(Status::invalid_argument, arg, "a non-null data pointer", "nullptr");
}

void check_rank(const TensorView& t, const char* arg, int rank,
                std::initializer_list<const char*> names) {
  if (t.ndim != rank)
    fail_arg(Status::invalid_argument, arg,
             std::to_string(rank) + " dimensions " + dims_str(names),
             std::to_string(t.ndim) + " dimensions " + t.shape_str());
  for (int i = 0; i < rank; ++i)
    if (t.shape[i] < 0)
      fail_arg(Status::invalid_argument, arg, "non-negative sizes", t.shape_str());
}

void check_dtype(const TensorView& t, const char* arg, DType want, const char* why = "") {
  if (t.dtype != want)
    fail_arg(Status::invalid_dtype, std::string(arg).append(".dtype").c_str(), dtype_name(want),
             dtype_name(t.dtype), why);
}

void check_dim(const TensorView& t, const char* arg, int dim, const char* name, int64_t want) {
  if (t.shape[dim] != want) {
    std::ostringstream a;
    a << arg << ".shape[" << dim << "] (" << name << ")";
    fail_arg(Status::invalid_argument, a.str().c_str(), want,
             std::to_string(t.shape[dim]) + " in " + t.shape_str());
  }
}

void check_last_contiguous(const TensorView& t, const char* arg) {
  if (t.ndim > 0 && t.shape[t.ndim - 1] > 1 && t.strides[t.ndim - 1] != 1) {
    std::ostringstream a;
    a << arg << ".strides[" << t.ndim - 1 << "]";
    fail_arg(Status::invalid_argument, a.str().c_str(), "1 (contiguous last dimension)",
             t.strides[t.ndim - 1]);
  }
  for (int i = 0; i < t.ndim; ++i)
    if (t.strides[i] < 0)
      fail_arg(Status::invalid_argument, arg, "non-negative strides",
               "stride " + std::to_string(t.strides[i]) + " in dimension " + std::to_string(i));
}

void check_device(const TensorView& t, const char* arg, Device want) {
  if (!(t.device == want)) {
    auto name = [](Device d) {
      return std::string(d.type == DeviceType::cpu ? "cpu" : "cuda:") +
             (d.type == DeviceType::cpu ? "" : std::to_string(d.id));
    };
    fail_arg(Status::invalid_argument, std::string(arg).append(".device").c_str(),
             name(want) + " (q's device)", name(t.device));
  }
}

// An output whose elements do not each have their own address (a zero stride, or dimensions
// interleaving) would be written by several threads at once. Sorted by stride, each dimension
// that has more than one element must step over everything the smaller ones span.
void check_no_self_overlap(const TensorView& t, const char* arg) {
  int order[TensorView::kMaxDims];
  int n = 0;
  for (int i = 0; i < t.ndim; ++i) {  // insertion by stride (at most four dimensions)
    if (t.shape[i] <= 1) continue;
    int k = n++;
    for (; k > 0 && t.strides[order[k - 1]] > t.strides[i]; --k) order[k] = order[k - 1];
    order[k] = i;
  }
  int64_t span = 1;  // elements covered by the dimensions taken so far
  for (int k = 0; k < n; ++k) {
    const int d = order[k];
    if (t.strides[d] < span) {
      std::ostringstream a;
      a << arg << ".strides[" << d << "]";
      fail_arg(Status::invalid_argument, a.str().c_str(),
               ">= " + std::to_string(span) + " (every output element at its own address)",
               t.strides[d]);
    }
    if (t.shape[d] - 1 > (std::numeric_limits<int64_t>::max() - span) / t.strides[d])
      fail_arg(Status::invalid_argument, arg, "an extent below 2^63 elements", t.shape_str());
    span = t.strides[d] * (t.shape[d] - 1) + span;
  }
}

// The element extent of any view must be far below 2^63 bytes (byte_extent, the overlap checks
// and the kernels' 64-bit offsets rely on it); 2^48 elements is beyond any real memory.
void check_extent(const TensorView& t, const char* arg) {
  constexpr int64_t kMaxExtent = int64_t(1) << 48;
  int64_t last = 0;
  for (int i = 0; i < t.ndim; ++i) {
    if (t.shape[i] <= 1) continue;
    const int64_t limit = (kMaxExtent - last) / (t.shape[i] - 1);
    if (t.strides[i] > limit)
      fail_arg(Status::invalid_argument, arg, "an extent below 2^48 elements",
               "shape " + t.shape_str() + " with stride " + std::to_string(t.strides[i]) +
                   " in dimension " + std::to_string(i));
    last += t.strides[i] * (t.shape[i] - 1);
  }
}

int narrow(int64_t v, const char* what) {
  if (v > std::numeric_limits<int>::max())
    fail_arg(Status::invalid_argument, what, "a value below 2^31", v);
  return static_cast<int>(v);
}

bool overlaps(const TensorView& a, const TensorView& b) {
  if (!a.present() || !b.present() || a.numel() == 0 || b.numel() == 0) return false;
  uintptr_t alo, ahi, blo, bhi;
  a.byte_extent(alo, ahi);
  b.byte_extent(blo, bhi);
  return alo < bhi && blo < ahi;
}

// The scale array of an fp8_row cache: [num_pages, page_size, h_kv] f32 beside `cache`.
void check_scales(const TensorView& s, const char* arg, const TensorView& cache, Device dev) {
  check_present(s, arg);
  check_rank(s, arg, 3, {"num_pages", "page_size", "h_kv"});
  check_dtype(s, arg, DType::f32);
  check_device(s, arg, dev);
  check_dim(s, arg, 0, "num_pages", cache.shape[0]);
  check_dim(s, arg, 1, "page_size", cache.shape[1]);
  check_dim(s, arg, 2, "h_kv", cache.shape[2]);
  for (int i = 0; i < 3; ++i)
    if (s.strides[i] < 0)
      fail_arg(Status::invalid_argument, arg, "non-negative strides",
               "stride " + std::to_string(s.strides[i]) + " in dimension " + std::to_string(i));
  check_extent(s, arg);
}

void check_absent(const TensorView& t, const char* arg, const char* why) {
  if (t.present()) fail_arg(Status::invalid_argument, arg, why, "a tensor " + t.shape_str());
}

// block_table[i, j] must name a page in [0, num_pages) (host check of CPU tensors).
void check_page_index(const int32_t* block_table, int64_t bt_sb, int num_pages, int i, int j) {
  const int32_t page = block_table[i * bt_sb + j];
  if (page < 0 || page >= num_pages) {
    const std::string bt = "block_table[" + std::to_string(i) + ", " + std::to_string(j) + "]";
    fail_arg(Status::bad_page_index, bt.c_str(),
             "a page index in [0, " + std::to_string(num_pages) + ")", page);
  }
}

}  // namespace

CacheFormat check_caches(const CacheViews& c, DType dtype, Device dev, int64_t d_k,
                         int64_t d_v) {
  const bool has_v = c.v.present();
  const bool fp8 = c.k.dtype == DType::f8_e4m3 || c.k.dtype == DType::u8;
  if (c.k.dtype != dtype && !fp8)
    fail_arg(Status::invalid_dtype, "k_cache.dtype",
             std::string(dtype_name(dtype)) + " (q's dtype) or f8_e4m3 / u8 (an FP8 cache)",
             dtype_name(c.k.dtype));
  if (has_v && c.v.dtype != c.k.dtype)
    check_dtype(c.v, "v_cache", c.k.dtype, "must match k_cache");
  const Variant mla = Variant::mla();
  const CacheFormat format = !fp8 ? CacheFormat::native
                             : (d_k == mla.d_k && d_v == mla.d_v && !has_v) ? CacheFormat::fp8_mla
                                                                            : CacheFormat::fp8_row;
  check_dim(c.k, "k_cache", 3, format == CacheFormat::fp8_mla ? "656-byte FP8 MLA row" : "d_k",
            format == CacheFormat::fp8_mla ? MlaFp8Row::kBytes : d_k);
  if (has_v) {
    check_dim(c.v, "v_cache", 0, "num_pages", c.k.shape[0]);
    check_dim(c.v, "v_cache", 1, "page_size", c.k.shape[1]);
    check_dim(c.v, "v_cache", 2, "h_kv", c.k.shape[2]);
    check_dim(c.v, "v_cache", 3, "d_v", d_v);
  }
  if (format == CacheFormat::fp8_row) {
    check_scales(c.k_scale, "k_scale", c.k, dev);
    if (has_v)
      check_scales(c.v_scale, "v_scale", c.v, dev);
    else
      check_absent(c.v_scale, "v_scale", "absent when V aliases K (k_scale serves both)");
  } else {
    const char* why = format == CacheFormat::native
                          ? "absent for a bf16/f16 cache (scales belong to FP8 row caches)"
                          : "absent for FlashMLA's FP8 MLA row (its scales are inline)";
    check_absent(c.k_scale, "k_scale", why);
    check_absent(c.v_scale, "v_scale", why);
  }
  return format;
}

DecodeParams validate(const DecodeArgs& a) {
  // Presence and ranks first, so that later messages can quote shapes.
  check_present(a.q, "q");
  check_present(a.k_cache, "k_cache");
  check_present(a.block_table, "block_table");
  check_present(a.seqlens_k, "seqlens_k");
  check_present(a.out, "out");
  check_present(a.lse, "lse");
  const bool has_v = a.v_cache.present();
  if (has_v) check_present(a.v_cache, "v_cache");

  check_rank(a.q, "q", 4, {"b", "s_q", "h_q", "d_k"});
  check_rank(a.k_cache, "k_cache", 4, {"num_pages", "page_size", "h_kv", "d_k"});
  if (has_v) check_rank(a.v_cache, "v_cache", 4, {"num_pages", "page_size", "h_kv", "d_v"});
  check_rank(a.block_table, "block_table", 2, {"b", "max_pages_per_seq"});
  check_rank(a.seqlens_k, "seqlens_k", 1, {"b"});
  check_rank(a.out, "out", 4, {"b", "s_q", "h_q", "d_v"});
  check_rank(a.lse, "lse", 3, {"b", "h_q", "s_q"});

  // Dtypes.
  if (a.q.dtype != DType::bf16 && a.q.dtype != DType::f16)
    fail_arg(Status::invalid_dtype, "q.dtype", "bf16 or f16", dtype_name(a.q.dtype));
  check_dtype(a.out, "out", a.q.dtype, "must match q");
  check_dtype(a.lse, "lse", DType::f32);
  check_dtype(a.block_table, "block_table", DType::i32);
  check_dtype(a.seqlens_k, "seqlens_k", DType::i32);

  // One device for all.
  const Device dev = a.q.device;
  check_device(a.k_cache, "k_cache", dev);
  if (has_v) check_device(a.v_cache, "v_cache", dev);
  check_device(a.block_table, "block_table", dev);
  check_device(a.seqlens_k, "seqlens_k", dev);
  check_device(a.out, "out", dev);
  check_device(a.lse, "lse", dev);

  // Layout: last dimension contiguous everywhere.
  check_last_contiguous(a.q, "q");
  check_last_contiguous(a.k_cache, "k_cache");
  if (has_v) check_last_contiguous(a.v_cache, "v_cache");
  check_last_contiguous(a.block_table, "block_table");
  check_last_contiguous(a.seqlens_k, "seqlens_k");
  check_last_contiguous(a.out, "out");
  check_last_contiguous(a.lse, "lse");
  const std::pair<const TensorView*, const char*> all[] = {
      {&a.q, "q"}, {&a.k_cache, "k_cache"}, {&a.v_cache, "v_cache"}, {&a.block_table, "block_table"},
      {&a.seqlens_k, "seqlens_k"}, {&a.out, "out"}, {&a.lse, "lse"}};
  for (auto [t, name] : all) check_extent(*t, name);  // the scales: check_caches
  check_no_self_overlap(a.out, "out");
  check_no_self_overlap(a.lse, "lse");

  // Shapes.
  const int64_t b = a.q.shape[0], s_q = a.q.shape[1], h_q = a.q.shape[2], d_k = a.q.shape[3];
  const int64_t num_pages = a.k_cache.shape[0], page_size = a.k_cache.shape[1];
  const int64_t h_kv = a.k_cache.shape[2];
  const int64_t d_v = a.out.shape[3];
  if (s_q < 1) fail_arg(Status::invalid_argument, "q.shape[1] (s_q)", ">= 1", s_q);
  if (h_q < 1) fail_arg(Status::invalid_argument, "q.shape[2] (h_q)", ">= 1", h_q);
  if (h_kv < 1) fail_arg(Status::invalid_argument, "k_cache.shape[2] (h_kv)", ">= 1", h_kv);
  if (h_q % h_kv != 0)
    fail_arg(Status::invalid_argument, "q.shape[2] (h_q)",
             "a multiple of h_kv = " + std::to_string(h_kv), h_q);
  if (page_size < 1 || page_size > 256 || (page_size & (page_size - 1)) != 0)
    fail_arg(Status::invalid_argument, "k_cache.shape[1] (page_size)",
             "a power of two in [1, 256]", page_size);
  if (!has_v && d_v > d_k) {
    fail_arg(Status::invalid_argument, "out.shape[3] (d_v)",
             "<= d_k = " + std::to_string(d_k) + " when V aliases K (no v_cache)", d_v);
  }
  check_dim(a.out, "out", 0, "b", b);
  check_dim(a.out, "out", 1, "s_q", s_q);
  check_dim(a.out, "out", 2, "h_q", h_q);
  check_dim(a.lse, "lse", 0, "b", b);
  check_dim(a.lse, "lse", 1, "h_q", h_q);
  check_dim(a.lse, "lse", 2, "s_q", s_q);
  check_dim(a.block_table, "block_table", 0, "b", b);
  check_dim(a.seqlens_k, "seqlens_k", 0, "b", b);

  const Variant var{narrow(d_k, "q.shape[3] (d_k)"), narrow(d_v, "out.shape[3] (d_v)"), !has_v};
  if (!is_supported(var)) {
    std::string list;
    for (const Variant& s : supported_variants()) list += (list.empty() ? "" : ", ") + s.name();
    fail_arg(Status::unsupported, "(d_k, d_v, V aliases K)", "one of " + list, var.name());
  }

  const CacheFormat format =
      check_caches({a.k_cache, a.v_cache, a.k_scale, a.v_scale}, a.q.dtype, dev, d_k, d_v);

  float scale = a.softmax_scale.value_or(1.0f / std::sqrt(static_cast<float>(d_k)));
  if (!std::isfinite(scale) || scale <= 0.0f)
    fail_arg(Status::invalid_argument, "softmax_scale", "a finite value > 0", scale);

  // Outputs must not overlap inputs or each other (a kernel would read what it writes).
  const std::pair<const TensorView*, const char*> inputs[] = {
      {&a.q, "q"}, {&a.k_cache, "k_cache"}, {&a.v_cache, "v_cache"},
      {&a.block_table, "block_table"}, {&a.seqlens_k, "seqlens_k"}, {&a.k_scale, "k_scale"},
      {&a.v_scale, "v_scale"}};
  for (auto [in, name] : inputs) {
    if (overlaps(a.out, *in))
      fail_arg(Status::invalid_argument, "out", std::string("memory disjoint from ") + name,
               "overlapping memory");
    if (overlaps(a.lse, *in))
      fail_arg(Status::invalid_argument, "lse", std::string("memory disjoint from ") + name,
               "overlapping memory");
  }
  if (overlaps(a.out, a.lse))
    fail_arg(Status::invalid_argument, "lse", "memory disjoint from out", "overlapping memory");

  DecodeParams p{};
  p.dtype = a.q.dtype;
  p.kv_format = format;
  p.b = narrow(b, "q.shape[0] (b)");
  p.s_q = narrow(s_q, "q.shape[1] (s_q)");
  p.h_q = narrow(h_q, "q.shape[2] (h_q)");
  p.h_kv = narrow(h_kv, "k_cache.shape[2] (h_kv)");
  // Kernels index the query rows of a sequence (s_q x h_q) with 32-bit integers.
  narrow(h_q * s_q, "q.shape[1] * q.shape[2] (s_q * h_q)");
  p.q_per_kv = p.h_q / p.h_kv;
  p.d_k = var.d_k;
  p.d_v = var.d_v;
  p.page_size = static_cast<int>(page_size);
  p.log2_page_size = 0;
  while ((1 << p.log2_page_size) < p.page_size) ++p.log2_page_size;
  p.max_pages = narrow(a.block_table.shape[1], "block_table.shape[1] (max_pages_per_seq)");
  p.num_pages = narrow(num_pages, "k_cache.shape[0] (num_pages)");
  if (int64_t(p.max_pages) * p.page_size > std::numeric_limits<int>::max())
    fail_arg(Status::invalid_argument, "block_table.shape[1] * page_size", "below 2^31 tokens",
             int64_t(p.max_pages) * p.page_size);
  p.causal = a.causal;
  p.v_aliases_k = !has_v;
  p.scale = scale;
  p.q = a.q.data;
  p.q_sb = a.q.strides[0], p.q_ss = a.q.strides[1], p.q_sh = a.q.strides[2];
  p.k = a.k_cache.data;
  p.k_sp = a.k_cache.strides[0], p.k_st = a.k_cache.strides[1], p.k_sh = a.k_cache.strides[2];
  const TensorView& v = has_v ? a.v_cache : a.k_cache;
  p.v = v.data;
  p.v_sp = v.strides[0], p.v_st = v.strides[1], p.v_sh = v.strides[2];
  const TensorView& vs = has_v ? a.v_scale : a.k_scale;
  p.k_scale = static_cast<const float*>(a.k_scale.data);
  p.ks_sp = a.k_scale.strides[0], p.ks_st = a.k_scale.strides[1], p.ks_sh = a.k_scale.strides[2];
  p.v_scale = static_cast<const float*>(vs.data);
  p.vs_sp = vs.strides[0], p.vs_st = vs.strides[1], p.vs_sh = vs.strides[2];
  p.block_table = static_cast<const int32_t*>(a.block_table.data);
  p.bt_sb = a.block_table.strides[0];
  p.seqlens = static_cast<const int32_t*>(a.seqlens_k.data);
  if (p.b > 1 && a.seqlens_k.strides[0] != 1)
    fail_arg(Status::invalid_argument, "seqlens_k.strides[0]", 1, a.seqlens_k.strides[0]);
  p.out = a.out.data;
  p.o_sb = a.out.strides[0], p.o_ss = a.out.strides[1], p.o_sh = a.out.strides[2];
  p.lse = static_cast<float*>(a.lse.data);
  p.lse_sb = a.lse.strides[0], p.lse_sh = a.lse.strides[1], p.lse_ss = a.lse.strides[2];
  return p;
}

void validate_host_indices(const DecodeParams& p) {
  const int64_t capacity = int64_t(p.max_pages) * p.page_size;
  for (int i = 0; i < p.b; ++i) {
    const int32_t len = p.seqlens[i];
    const std::string arg = "seqlens_k[" + std::to_string(i) + "]";
    if (len < 0) fail_arg(Status::bad_seqlen, arg.c_str(), ">= 0", len);
    if (len > capacity)
      fail_arg(Status::bad_seqlen, arg.c_str(),
               "<= max_pages_per_seq * page_size = " + std::to_string(capacity), len);
    const int pages = (len + p.page_size - 1) / p.page_size;
    for (int j = 0; j < pages; ++j) {
      check_page_index(p.block_table, p.bt_sb, p.num_pages, i, j);
    }
  }
}

PlanKey plan_key(const DecodeParams& p, Device device, DecodeArgs::Path path) {
  PlanKey k;
  k.device = device;
  k.dtype = p.dtype;
  k.variant = {p.d_k, p.d_v, p.v_aliases_k};
  k.batch = p.b, k.s_q = p.s_q, k.h_q = p.h_q, k.h_kv = p.h_kv;
  k.page_size = p.page_size, k.max_pages = p.max_pages;
  k.causal = p.causal;
  k.path = path;
  k.cache = p.kv_format;
  return k;
}

}  // namespace flashmfa::detail

namespace flashmfa::detail {

AppendParams validate_append(const AppendArgs& a) {
  const bool has_v = a.v_new.present() || a.v_cache.present();
  check_present(a.k_new, "k_new");
  check_present(a.k_cache, "k_cache");
  check_present(a.block_table, "block_table");
  check_present(a.seqlens_k, "seqlens_k");
  if (has_v) {
    check_present(a.v_new, "v_new");  // one without the other: name the missing one
    check_present(a.v_cache, "v_cache");
  }
  check_rank(a.k_new, "k_new", 4, {"b", "s_new", "h_kv", "d_k"});
  check_rank(a.k_cache, "k_cache", 4, {"num_pages", "page_size", "h_kv", "d_k"});
  if (has_v) {
    check_rank(a.v_new, "v_new", 4, {"b", "s_new", "h_kv", "d_v"});
    check_rank(a.v_cache, "v_cache", 4, {"num_pages", "page_size", "h_kv", "d_v"});
  }
  check_rank(a.block_table, "block_table", 2, {"b", "max_pages_per_seq"});
  check_rank(a.seqlens_k, "seqlens_k", 1, {"b"});
  const bool has_flags = a.error_flags.present();
  if (has_flags) {
    check_present(a.error_flags, "error_flags");
    check_rank(a.error_flags, "error_flags", 1, {"1"});
  }

  if (a.k_new.dtype != DType::bf16 && a.k_new.dtype != DType::f16)
    fail_arg(Status::invalid_dtype, "k_new.dtype", "bf16 or f16", dtype_name(a.k_new.dtype));
  if (has_v) check_dtype(a.v_new, "v_new", a.k_new.dtype, "must match k_new");
  check_dtype(a.block_table, "block_table", DType::i32);
  check_dtype(a.seqlens_k, "seqlens_k", DType::i32);
  if (has_flags) {
    check_dtype(a.error_flags, "error_flags", DType::i32, "ErrorFlag bits are or-ed into it");
    check_dim(a.error_flags, "error_flags", 0, "one word", 1);
    // The kernel ors into it atomically: a misaligned word would fault.
    if (reinterpret_cast<uintptr_t>(a.error_flags.data) % sizeof(int32_t) != 0)
      fail_arg(Status::invalid_argument, "error_flags", "a 4-byte aligned pointer",
               "an address " +
                   std::to_string(reinterpret_cast<uintptr_t>(a.error_flags.data) %
                                  sizeof(int32_t)) +
                   " bytes past a 4-byte boundary");
  }

  const Device dev = a.k_new.device;
  const std::pair<const TensorView*, const char*> all[] = {
      {&a.k_new, "k_new"}, {&a.v_new, "v_new"}, {&a.k_cache, "k_cache"},
      {&a.v_cache, "v_cache"}, {&a.block_table, "block_table"}, {&a.seqlens_k, "seqlens_k"},
      {&a.error_flags, "error_flags"}};
  for (auto [t, name] : all) {
    if (!t->present()) continue;
    check_device(*t, name, dev);
    check_last_contiguous(*t, name);
    check_extent(*t, name);
  }

  const int64_t b = a.k_new.shape[0], s_new = a.k_new.shape[1], h_kv = a.k_new.shape[2];
  const int64_t d_k = a.k_new.shape[3];
  check_dim(a.k_cache, "k_cache", 2, "h_kv", h_kv);
  if (has_v) {
    check_dim(a.v_new, "v_new", 0, "b", b);
    check_dim(a.v_new, "v_new", 1, "s_new", s_new);
    check_dim(a.v_new, "v_new", 2, "h_kv", h_kv);
  }
  check_dim(a.block_table, "block_table", 0, "b", b);
  check_dim(a.seqlens_k, "seqlens_k", 0, "b", b);
  const int64_t page_size = a.k_cache.shape[1];
  if (page_size < 1 || page_size > 256 || (page_size & (page_size - 1)) != 0)
    fail_arg(Status::invalid_argument, "k_cache.shape[1] (page_size)",
             "a power of two in [1, 256]", page_size);

  // The variant: d_v from v_new, or (V aliases K) the supported variant for this d_k.
  int64_t d_v = has_v ? a.v_new.shape[3] : d_k;
  if (!has_v)
    for (const Variant& s : supported_variants())
      if (s.v_aliases_k && s.d_k == d_k) d_v = s.d_v;
  const Variant var{narrow(d_k, "k_new.shape[3] (d_k)"), narrow(d_v, "v_new.shape[3] (d_v)"),
                    !has_v};
  if (!is_supported(var)) {
    std::string list;
    for (const Variant& s : supported_variants()) list += (list.empty() ? "" : ", ") + s.name();
    fail_arg(Status::unsupported, "(d_k, d_v, V aliases K)", "one of " + list, var.name());
  }
  const CacheFormat format =
      check_caches({a.k_cache, a.v_cache, a.k_scale, a.v_scale}, a.k_new.dtype, dev, d_k, d_v);

  // Written tensors: disjoint from what is read and from each other.
  const std::pair<const TensorView*, const char*> written[] = {
      {&a.k_cache, "k_cache"}, {&a.v_cache, "v_cache"}, {&a.k_scale, "k_scale"},
      {&a.v_scale, "v_scale"}, {&a.error_flags, "error_flags"}};
  const std::pair<const TensorView*, const char*> read[] = {
      {&a.k_new, "k_new"}, {&a.v_new, "v_new"}, {&a.block_table, "block_table"},
      {&a.seqlens_k, "seqlens_k"}};
  for (size_t w = 0; w < std::size(written); ++w) {
    for (auto [in, name] : read)
      if (overlaps(*written[w].first, *in))
        fail_arg(Status::invalid_argument, written[w].second,
                 std::string("memory disjoint from ") + name, "overlapping memory");
    for (size_t o = w + 1; o < std::size(written); ++o)
      if (overlaps(*written[w].first, *written[o].first))
        fail_arg(Status::invalid_argument, written[o].second,
                 std::string("memory disjoint from ") + written[w].second, "overlapping memory");
  }

  AppendParams p{};
  p.dtype = a.k_new.dtype;
  p.kv_format = format;
  p.b = narrow(b, "k_new.shape[0] (b)");
  p.s_new = narrow(s_new, "k_new.shape[1] (s_new)");
  p.h_kv = narrow(h_kv, "k_new.shape[2] (h_kv)");
  p.d_k = var.d_k;
  p.d_v = has_v ? var.d_v : 0;
  p.page_size = static_cast<int>(page_size);
  while ((1 << p.log2_page_size) < p.page_size) ++p.log2_page_size;
  p.max_pages = narrow(a.block_table.shape[1], "block_table.shape[1] (max_pages_per_seq)");
  p.num_pages = narrow(a.k_cache.shape[0], "k_cache.shape[0] (num_pages)");
  if (int64_t(p.max_pages) * p.page_size > std::numeric_limits<int>::max())
    fail_arg(Status::invalid_argument, "block_table.shape[1] * page_size", "below 2^31 tokens",
             int64_t(p.max_pages) * p.page_size);
  p.k_new = a.k_new.data;
  p.kn_sb = a.k_new.strides[0], p.kn_ss = a.k_new.strides[1], p.kn_sh = a.k_new.strides[2];
  p.k = a.k_cache.data;
  p.k_sp = a.k_cache.strides[0], p.k_st = a.k_cache.strides[1], p.k_sh = a.k_cache.strides[2];
  if (has_v) {
    p.v_new = a.v_new.data;
    p.vn_sb = a.v_new.strides[0], p.vn_ss = a.v_new.strides[1], p.vn_sh = a.v_new.strides[2];
    p.v = a.v_cache.data;
    p.v_sp = a.v_cache.strides[0], p.v_st = a.v_cache.strides[1], p.v_sh = a.v_cache.strides[2];
  }
  p.k_scale = static_cast<float*>(a.k_scale.data);
  p.ks_sp = a.k_scale.strides[0], p.ks_st = a.k_scale.strides[1], p.ks_sh = a.k_scale.strides[2];
  p.v_scale = static_cast<float*>(a.v_scale.data);
  p.vs_sp = a.v_scale.strides[0], p.vs_st = a.v_scale.strides[1], p.vs_sh = a.v_scale.strides[2];
  p.block_table = static_cast<const int32_t*>(a.block_table.data);
  p.bt_sb = a.block_table.strides[0];
  p.seqlens = static_cast<const int32_t*>(a.seqlens_k.data);
  if (p.b > 1 && a.seqlens_k.strides[0] != 1)
    fail_arg(Status::invalid_argument, "seqlens_k.strides[0]", 1, a.seqlens_k.strides[0]);
  p.error_flags = static_cast<uint32_t*>(a.error_flags.data);
  return p;
}

void validate_append_indices(const AppendParams& p) {
  const int64_t capacity = int64_t(p.max_pages) * p.page_size;
  for (int i = 0; i < p.b; ++i) {
    const int32_t len = p.seqlens[i];
    const std::string arg = "seqlens_k[" + std::to_string(i) + "]";
    if (len < p.s_new)
      fail_arg(Status::bad_seqlen, arg.c_str(),
               ">= s_new = " + std::to_string(p.s_new) + " (the length after the append)", len);
    if (len > capacity)
      fail_arg(Status::bad_seqlen, arg.c_str(),
               "<= max_pages_per_seq * page_size = " + std::to_string(capacity), len);
    if (p.s_new == 0) continue;
    for (int j = (len - p.s_new) >> p.log2_page_size; j <= (len - 1) >> p.log2_page_size; ++j) {
      check_page_index(p.block_table, p.bt_sb, p.num_pages, i, j);
    }
  }
}

}  // namespace flashmfa::detail
