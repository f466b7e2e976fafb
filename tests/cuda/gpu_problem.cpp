// flashmfa GPU tests: shared comparison helpers (see gpu_problem.hpp).
#include "gpu_problem.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <sstream>

#include "flashmfa/half.hpp"

namespace flashmfa::gputest {

std::string compare_sequences(testing::HostProblem& h, const DecodeArgs& ref_args,
                              const std::vector<uint16_t>& out, const std::vector<float>& lse,
                              int seq_begin, int seq_end) {
  h.poison_outputs();
  // The kernels round P to the input dtype before PV: compare with the rounding model of
  // Tolerances (error scales from the reference itself, dense like out and lse).
  const testing::ErrorScales sc = testing::reference_with_scales(ref_args);
  const size_t out_seq = h.out.size() / h.spec.b, lse_seq = h.lse.size() / h.spec.b;
  const size_t o0 = out_seq * seq_begin, no = out_seq * (seq_end - seq_begin);
  const size_t l0 = lse_seq * seq_begin, nl = lse_seq * (seq_end - seq_begin);
  const auto [co, cl] = testing::compare_rounded(
      h.spec.dtype, out.data() + o0, h.out.data() + o0, sc.out.data() + o0, no,
      lse.data() + l0, h.lse.data() + l0, sc.lse.data() + l0, nl);
  std::string why;
  // A row with nothing to attend (reference lse -inf) must be exactly 0, not merely small.
  const int d_v = h.spec.variant.d_v;
  int64_t nonzero_empty = 0;
  for (int i = seq_begin; i < seq_end; ++i)
    for (int t = 0; t < h.spec.s_q; ++t)
      for (int hq = 0; hq < h.spec.h_q; ++hq) {
        if (h.lse[(size_t(i) * h.spec.h_q + hq) * h.spec.s_q + t] != -INFINITY) continue;
        const size_t row = ((size_t(i) * h.spec.s_q + t) * h.spec.h_q + hq) * d_v;
        for (int d = 0; d < d_v; ++d) nonzero_empty += half::to_float(h.spec.dtype, out[row + d]) != 0.0f;
      }
  if (nonzero_empty) why += std::to_string(nonzero_empty) + " elements of empty rows are not 0; ";
  if (!co.ok) why += "out: " + co.summary() + "; ";
  if (!cl.ok) why += "lse: " + cl.summary();
  return why;
}

std::string compare_with_reference(testing::HostProblem& h, const std::vector<uint16_t>& out,
                                   const std::vector<float>& lse) {
  return compare_sequences(h, h.args(), out, lse, 0, h.spec.b);
}

std::string describe(const testing::ProblemSpec& s) {
  std::ostringstream os;
  os << s.variant.name() << " " << dtype_name(s.dtype) << " b=" << s.b << " s_q=" << s.s_q
     << " h_q=" << s.h_q << " h_kv=" << s.h_kv << " page=" << s.page_size
     << " causal=" << s.causal;
  if (s.b <= 8) {
    os << " lens=";
    for (int l : s.seqlens) os << l << ",";
  }
  return os.str();
}

Plan run_and_check(const testing::ProblemSpec& spec, const std::string& label,
                   DecodeArgs::Path path) {
  testing::HostProblem h = testing::make_problem(spec);
  DeviceProblem d(h);
  d.set_path(path);
  d.poison();
  const Plan p = d.plan();
  run(p, d.args);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << label;
  EXPECT_EQ(read_error_flags(p), 0u) << label << ": a valid problem raised device flags";
  std::vector<uint16_t> out;
  std::vector<float> lse;
  d.out.download(out);
  d.lse.download(lse);
  const std::string why = compare_with_reference(h, out, lse);
  EXPECT_TRUE(why.empty()) << label << " (parts " << p.num_parts << "): " << why;
  return p;
}

namespace {

// Rows of row_elems elements copied into rows pad_elems longer (the gap zero).
template <class E>
std::vector<E> padded(const std::vector<E>& rows, size_t row_elems, size_t pad_elems) {
  const size_t n = rows.size() / row_elems;
  std::vector<E> out(n * (row_elems + pad_elems), E(0));
  for (size_t r = 0; r < n; ++r)
    std::copy(rows.begin() + r * row_elems, rows.begin() + (r + 1) * row_elems,
              out.begin() + r * (row_elems + pad_elems));
  return out;
}

// Plans and runs `a` on its own workspace with out and lse (a's outputs) poisoned first, checks
// that the launch completed without device flags, and downloads the results into got / got_lse.
Plan plan_and_run(const DecodeArgs& a, DeviceBuffer& out, DeviceBuffer& lse,
                  const std::string& label, std::vector<uint16_t>& got,
                  std::vector<float>& got_lse, uint32_t expect_flags = 0) {
  DeviceBuffer workspace;
  workspace.resize(std::max<size_t>(1, workspace_size(a)));
  cudaMemset(out.get(), 0xff, out.bytes());  // NaN in bf16 and f16
  cudaMemset(lse.get(), 0xff, lse.bytes());
  const Plan p = plan(a, workspace.get(), workspace.bytes());
  run(p, a);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << label;
  if (expect_flags == 0)
    EXPECT_EQ(read_error_flags(p), 0u) << label << ": a valid problem raised device flags";
  else
    EXPECT_EQ(read_error_flags(p), expect_flags) << label;
  out.download(got);
  lse.download(got_lse);
  return p;
}

// A view of [num_pages, page_size, h_kv, row] over rows `pitch` elements apart.
TensorView pitched(const TensorView& v, int64_t pitch) {
  return make_view(v.data, v.dtype, {v.shape[0], v.shape[1], v.shape[2], v.shape[3]},
                   {v.shape[1] * v.shape[2] * pitch, v.shape[2] * pitch, pitch, 1}, v.device);
}

}  // namespace

Plan run_and_check_pitched(const testing::ProblemSpec& spec, const std::string& label,
                           DecodeArgs::Path path, int pad_elems) {
  testing::HostProblem h = testing::make_problem(spec);
  const int d_k = spec.variant.d_k, d_v = spec.variant.d_v;
  DeviceBuffer q, k, v, block_table, seqlens, out, lse;
  q.upload(padded(h.q, size_t(d_k), size_t(pad_elems)));
  k.upload(padded(h.k_cache, size_t(d_k), size_t(pad_elems)));
  if (!h.v_cache.empty()) v.upload(padded(h.v_cache, size_t(d_v), size_t(pad_elems)));
  block_table.upload(h.block_table);
  seqlens.upload(h.seqlens);
  out.upload(h.out);
  lse.upload(h.lse);
  DecodeArgs a = h.args_on({DeviceType::cuda, 0}, q.get(), k.get(),
                           h.v_cache.empty() ? nullptr : v.get(), block_table.get(),
                           seqlens.get(), out.get(), lse.get());
  a.q = pitched(a.q, d_k + int64_t(pad_elems));
  a.k_cache = pitched(a.k_cache, d_k + int64_t(pad_elems));
  if (a.v_cache.present()) a.v_cache = pitched(a.v_cache, d_v + int64_t(pad_elems));
  a.path = path;
  std::vector<uint16_t> got;
  std::vector<float> got_lse;
  const Plan p = plan_and_run(a, out, lse, label, got, got_lse);
  const std::string why = compare_with_reference(h, got, got_lse);
  EXPECT_TRUE(why.empty()) << label << " pitch +" << pad_elems << " (parts " << p.num_parts
                           << "): " << why;
  return p;
}

Plan run_and_check_fp8(const testing::ProblemSpec& spec, const std::string& label,
                       DecodeArgs::Path path, int pad_bytes, std::optional<int32_t> lie,
                       int scale_log2, bool head_major_scales,
                       const std::function<void(testing::Fp8Problem&)>& edit) {
  testing::Fp8Problem f(spec);
  if (scale_log2 != 0) {  // NaN scales (unused rows) stay NaN
    for (float& x : f.ks) x = std::ldexp(x, scale_log2);
    for (float& x : f.vs) x = std::ldexp(x, scale_log2);
    if (f.mla)
      for (size_t at = 0; at < f.k8.size(); at += MlaFp8Row::kBytes)
        for (int g = 0; g < MlaFp8Row::kScales; ++g) {
          float x;
          uint8_t* p = &f.k8[at + MlaFp8Row::kScaleOffset + g * sizeof(float)];
          std::memcpy(&x, p, sizeof x);
          x = std::ldexp(x, scale_log2);
          std::memcpy(p, &x, sizeof x);
        }
  }
  if (edit) edit(f);
  testing::HostProblem& h = f.h;
  const size_t pad = size_t(pad_bytes);
  const bool pad_rows = pad > 0;
  DeviceBuffer q, k8, v8, ks, vs, block_table, seqlens, out, lse;
  // Gaps of 16-byte multiples: q's rows pad_bytes apart beyond theirs too (the fast paths'
  // q maps still take them).
  const size_t q_pad = pad % 16 == 0 ? pad / sizeof(uint16_t) : 0;
  q.upload(padded(h.q, size_t(spec.variant.d_k), q_pad));
  k8.upload(padded(f.k8, size_t(f.row_bytes), pad));
  if (!f.v8.empty()) v8.upload(padded(f.v8, size_t(spec.variant.d_v), pad));
  // Head-major: per page [page_size, h_kv] -> [h_kv, page_size] (NaN scales of unused rows too).
  auto stored = [&](const std::vector<float>& s) {
    return head_major_scales ? testing::transpose_page_scales(s, spec.page_size, spec.h_kv) : s;
  };
  if (!f.ks.empty()) ks.upload(stored(f.ks));
  if (!f.vs.empty()) vs.upload(stored(f.vs));
  std::vector<int32_t> table = h.block_table;
  if (lie) table.at(1) = *lie;  // sequence 0's second page
  block_table.upload(table);
  seqlens.upload(h.seqlens);
  out.upload(h.out);
  lse.upload(h.lse);
  DecodeArgs a = f.args_on({DeviceType::cuda, 0}, q.get(), k8.get(), v8.get(), ks.get(),
                           vs.get(), block_table.get(), seqlens.get(), out.get(), lse.get());
  if (head_major_scales && !f.mla) {
    const Device dev{DeviceType::cuda, 0};
    a.k_scale = testing::fp8_scale_view(ks.get(), h.num_pages, spec.page_size, spec.h_kv, true, dev);
    if (a.v_scale.present())
      a.v_scale = testing::fp8_scale_view(vs.get(), h.num_pages, spec.page_size, spec.h_kv, true, dev);
  }
  if (pad_rows) {
    a.q = pitched(a.q, spec.variant.d_k + int64_t(q_pad));
    a.k_cache = pitched(a.k_cache, f.row_bytes + int64_t(pad));
    if (a.v_cache.present()) a.v_cache = pitched(a.v_cache, spec.variant.d_v + int64_t(pad));
  }
  a.path = path;
  std::vector<uint16_t> got;
  std::vector<float> got_lse;
  const Plan p = plan_and_run(a, out, lse, label, got, got_lse,
                              lie ? uint32_t(kFlagPageOutOfRange) : 0u);
  EXPECT_EQ(p.key.cache, f.mla ? CacheFormat::fp8_mla : CacheFormat::fp8_row) << label;
  // With a lie, sequence 0 is not compared (the reference cannot follow it).
  const std::string why = compare_sequences(h, f.fp8_args(), got, got_lse, lie ? 1 : 0, spec.b);
  EXPECT_TRUE(why.empty()) << label << " fp8 (parts " << p.num_parts << "): " << why;
  return p;
}

}  // namespace flashmfa::gputest
