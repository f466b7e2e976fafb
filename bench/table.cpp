// flashmfa-bench: the human-readable outputs (the results table and the --compare report).
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>

#include "results.hpp"

namespace flashmfa::bench {

namespace {

constexpr double kBytesPerMiB = 1024.0 * 1024.0;

// printf into a std::string (the table is column-aligned text).
template <class... A>
std::string fmt(const char* f, A... a) {
  char buf[512];
  std::snprintf(buf, sizeof buf, f, a...);
  return buf;
}

std::string shape_cell(const Shape& s) {
  return fmt("%-6s %3d/%-3d%s", family_name(s.variant, s.h_kv).c_str(), s.variant.d_k,
             s.variant.d_v, s.variant.v_aliases_k ? "=K" : "  ");
}

std::string config_cell(const Shape& s) {
  return fmt("%-6s b=%d s_q=%d s_k=%d%s%s h_q=%d%s", family_name(s.variant, s.h_kv).c_str(), s.b,
             s.s_q, s.s_k, s.varlen ? " varlen" : "", s.causal ? " causal" : "", s.h_q,
             s.h_kv > 1 ? fmt(" h_kv=%d", s.h_kv).c_str() : "");
}

}  // namespace

std::string format_table(const RunInfo& info, const std::vector<Row>& rows) {
  std::ostringstream os;
  const Ceilings& c = info.ceilings;
  os << "flashmfa-bench " << info.version << "  commit " << info.commit << "  " << info.date << "\n";
  os << "backend " << info.backend << ": " << info.device;
  if (info.backend == "cuda") {
    os << fmt(" (%d SMs, %.0f MHz, memory %.0f MHz x %d bit, L2 %.0f MiB)", info.sms,
              info.clock_MHz, info.memory_clock_MHz, info.memory_bus_bits,
              double(info.cache_bytes) / kBytesPerMiB);
  } else {
    os << fmt(" (%d hardware threads at %.0f MHz, last-level cache %.0f MiB)", info.sms,
              info.clock_MHz, double(info.cache_bytes) / kBytesPerMiB);
  }
  os << "\nceilings: copy " << fmt("%.1f", c.copy_GBps) << " GB/s (" << c.copy_method << ")";
  if (c.gemm_TFLOPS > 0)
    os << "; matmul " << fmt("%.3g", c.gemm_TFLOPS) << " TFLOP/s (" << c.gemm_method << ")";
  else
    os << "; matmul not measured (roofline = bytes / copy bandwidth)";
  if (c.floor_us > 0) os << "\ncall floor: " << fmt("%.2f", c.floor_us) << " us (" << c.floor_method << ")";
  os << "\ntiming: " << info.timing << "\n\n";

  os << fmt("%-16s %-4s %4s %3s %7s %-6s %7s %4s %4s %4s | %10s %10s %10s | %8s %8s | %10s %6s | %8s %s\n",
            "variant", "type", "b", "s_q", "s_k", "lens", "L/b", "h_q", "h_kv", "page", "us",
            "min", "max", "TFLOP/s", "GB/s", "roof us", "%roof", "max err", "check");
  for (const Row& r : rows) {
    const Shape& s = r.shape;
    os << fmt("%-16s %-4s %4d %3d %7d %-6s %7.0f %4d %4d %4d | ", shape_cell(s).c_str(),
              s.fp8 ? "fp8" : dtype_name(s.dtype), s.b, s.s_q, s.s_k,
              (std::string(s.varlen ? "var" : "fix") + (s.causal ? ",c" : "")).c_str(),
              r.mean_len, s.h_q, s.h_kv, s.page_size);
    if (r.check_ok && r.timing.samples > 0)
      os << fmt("%10.1f %10.1f %10.1f | %8.4g %8.1f | %10.1f %6.1f | %8.2e %s\n",
                r.timing.median_us, r.timing.min_us, r.timing.max_us, r.m.tflops, r.m.gbps,
                r.m.roofline_us, r.m.pct_roofline, r.max_abs_err,
                r.path == "auto" ? "ok" : ("ok " + r.path).c_str());
    else
      os << fmt("%10s %10s %10s | %8s %8s | %10.1f %6s | %8s %s\n", "-", "-", "-", "-", "-",
                r.m.roofline_us, "-",
                r.checked == "not run" ? "-" : fmt("%8.2e", r.max_abs_err).c_str(),
                "FAILED: not timed");
  }

  bool any_ref = false;
  for (const Row& r : rows) any_ref = any_ref || r.ref_us > 0;
  if (any_ref) {
    os << "\nfast path vs flashmfa::decode_reference (float64, one thread), same problem:\n";
    for (const Row& r : rows) {
      if (r.ref_us <= 0) continue;
      os << fmt("  %-50s fast %10.1f us   reference %12.1f us   speed-up %6.1fx\n",
                config_cell(r.shape).c_str(), r.timing.median_us, r.ref_us, r.speedup_vs_ref);
    }
  }
  for (const Row& r : rows) {
    if (!r.check_message.empty())
      os << "\ncheck FAILED for " << describe(r.shape) << ": " << r.check_message << "\n";
    if (!r.note.empty()) os << "note (" << config_cell(r.shape) << "): " << r.note << "\n";
  }
  os << "checked against decode_reference: " << (rows.empty() ? "-" : rows.front().checked)
     << (rows.size() > 1 ? " (per row; see the JSON)" : "") << "\n";
  return os.str();
}

std::string format_compare(const std::vector<Row>& rows, const RefFile& ref,
                           const std::string& path) {
  std::ostringstream os;
  os << "\ncompare with " << path << " (" << ref.label;
  if (!ref.device.empty()) os << ", " << ref.device;
  if (ref.copy_GBps > 0) os << fmt("; copy %.1f GB/s", ref.copy_GBps);
  if (ref.gemm_TFLOPS > 0) os << fmt(", matmul %.3g TFLOP/s", ref.gemm_TFLOPS);
  os << "); speed-up = their us / our us\n";
  os << fmt("%-50s %10s %10s %9s %8s %8s\n", "configuration", "ours us", "their us",
            "speed-up", "our %rf", "their %rf");
  int matched = 0;
  double log_sum = 0;
  for (const Row& r : rows) {
    const RefRow* hit = nullptr;
    for (const RefRow& x : ref.rows)
      if (same_config(r.shape, x)) { hit = &x; break; }
    const std::string cfg = config_cell(r.shape);
    if (!hit) { os << fmt("%-50s %10s\n", cfg.c_str(), "(no matching row)"); continue; }
    if (!(r.check_ok && r.timing.samples > 0)) {
      os << fmt("%-50s %10s %10.1f\n", cfg.c_str(), "failed", hit->us);
      continue;
    }
    const double speedup = hit->us / r.timing.median_us;
    ++matched;
    log_sum += std::log(speedup);
    os << fmt("%-50s %10.1f %10.1f %8.2fx %8.1f %8s\n", cfg.c_str(), r.timing.median_us, hit->us,
              speedup, r.m.pct_roofline,
              hit->pct_roofline >= 0 ? fmt("%.1f", hit->pct_roofline).c_str() : "-");
  }
  os << fmt("matched %d of %zu rows", matched, rows.size());
  if (matched > 0) os << fmt("; geometric-mean speed-up %.2fx", std::exp(log_sum / matched));
  os << "\n";
  return os.str();
}

}  // namespace flashmfa::bench
