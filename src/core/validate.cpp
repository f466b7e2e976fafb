// flashmfa: argument validation for the decode API (see validate.hpp).
#include "core/validate.hpp"

#include <cmath>
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

}  // namespace

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
  check_dtype(a.k_cache, "k_cache", a.q.dtype, "must match q");
  if (has_v) check_dtype(a.v_cache, "v_cache", a.q.dtype, "must match q");
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
  for (auto [t, name] : all) check_extent(*t, name);
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
  check_dim(a.k_cache, "k_cache", 3, "d_k", d_k);
  if (has_v) {
    check_dim(a.v_cache, "v_cache", 0, "num_pages", num_pages);
    check_dim(a.v_cache, "v_cache", 1, "page_size", page_size);
    check_dim(a.v_cache, "v_cache", 2, "h_kv", h_kv);
    check_dim(a.v_cache, "v_cache", 3, "d_v", d_v);
  } else if (d_v > d_k) {
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

  float scale = a.softmax_scale.value_or(1.0f / std::sqrt(static_cast<float>(d_k)));
  if (!std::isfinite(scale) || scale <= 0.0f)
    fail_arg(Status::invalid_argument, "softmax_scale", "a finite value > 0", scale);

  // Outputs must not overlap inputs or each other (a kernel would read what it writes).
  const std::pair<const TensorView*, const char*> inputs[] = {
      {&a.q, "q"}, {&a.k_cache, "k_cache"}, {&a.v_cache, "v_cache"},
      {&a.block_table, "block_table"}, {&a.seqlens_k, "seqlens_k"}};
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
      const int32_t page = p.block_table[i * p.bt_sb + j];
      if (page < 0 || page >= p.num_pages) {
        const std::string bt = "block_table[" + std::to_string(i) + ", " + std::to_string(j) + "]";
        fail_arg(Status::bad_page_index, bt.c_str(),
                 "a page index in [0, " + std::to_string(p.num_pages) + ")", page);
      }
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
  return k;
}

}  // namespace flashmfa::detail
