// flashmfa-bench: roofline arithmetic (DESIGN.md section 3).
#include "roofline.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace flashmfa::bench {

namespace {
constexpr double kGiga = 1e9;
constexpr double kTera = 1e12;
constexpr double kMicro = 1e-6;
constexpr double kPercent = 100.0;
// MFA's one shared K head and V head are 256 wide (DESIGN.md section 1).
constexpr int kMfaHeadDim = 256;
}  // namespace

std::string family_name(const Variant& v, int h_kv) {
  if (v == Variant::mla()) return "MLA";
  if (v.v_aliases_k) return "MFA-KR";
  if (v.d_k == kMfaHeadDim && v.d_v == kMfaHeadDim && h_kv == 1) return "MFA";
  return h_kv == 1 ? "MQA" : "GQA";
}

std::string describe(const Shape& s) {
  std::ostringstream os;
  os << family_name(s.variant, s.h_kv) << ' ' << s.variant.d_k << '/' << s.variant.d_v
     << (s.variant.v_aliases_k ? " V=K" : "") << " b=" << s.b << " s_q=" << s.s_q
     << " s_k=" << s.s_k << (s.varlen ? " varlen" : " fixed") << (s.causal ? " causal" : "")
     << " h_q=" << s.h_q << " h_kv=" << s.h_kv << " page=" << s.page_size << ' '
     << dtype_name(s.dtype) << (s.fp8 ? " fp8-cache" : "")
     << (s.fp8 && s.scales_head_major ? " head-major-scales" : "");
  return os.str();
}

int64_t cache_bytes_per_token(const Shape& s) {
  const bool separate_v = !s.variant.v_aliases_k;
  if (s.fp8) {
    if (s.variant == Variant::mla()) return int64_t(s.h_kv) * MlaFp8Row::kBytes;
    constexpr int64_t kScaleBytes = sizeof(float);
    return int64_t(s.h_kv) * (s.variant.d_k + kScaleBytes +
                              (separate_v ? s.variant.d_v + kScaleBytes : 0));
  }
  const int64_t width = s.variant.d_k + (separate_v ? s.variant.d_v : 0);
  return int64_t(s.h_kv) * width * int64_t(dtype_size(s.dtype));
}

Work decode_work(const Shape& s, int64_t total_len) {
  const double L = double(total_len);
  const double dk = s.variant.d_k, dv = s.variant.d_v;
  const double elem = double(dtype_size(s.dtype));
  Work w;
  w.flops = 2.0 * s.h_q * s.s_q * L * (dk + dv);
  // The cache is read once (V aliasing K reads no second copy); q is read and out written once.
  w.bytes = L * double(cache_bytes_per_token(s)) + double(s.b) * s.s_q * s.h_q * (dk + dv) * elem;
  return w;
}

double roofline_us(const Work& w, const Ceilings& c) {
  double t = 0;
  if (c.copy_GBps > 0) t = w.bytes / (c.copy_GBps * kGiga);
  if (c.gemm_TFLOPS > 0) t = std::max(t, w.flops / (c.gemm_TFLOPS * kTera));
  return t / kMicro;
}

Timing summarize(std::vector<double> samples_us) {
  if (samples_us.empty()) throw std::invalid_argument("summarize: no samples");
  std::sort(samples_us.begin(), samples_us.end());
  Timing t;
  t.samples = int(samples_us.size());
  t.min_us = samples_us.front();
  t.max_us = samples_us.back();
  const size_t n = samples_us.size();
  t.median_us = n % 2 ? samples_us[n / 2] : 0.5 * (samples_us[n / 2 - 1] + samples_us[n / 2]);
  return t;
}

Metrics metrics(const Work& w, const Ceilings& c, double us) {
  Metrics m;
  m.roofline_us = roofline_us(w, c);
  if (us > 0) {
    const double seconds = us * kMicro;
    m.tflops = w.flops / seconds / kTera;
    m.gbps = w.bytes / seconds / kGiga;
    m.pct_roofline = kPercent * m.roofline_us / us;
  }
  return m;
}

}  // namespace flashmfa::bench
