// flashmfa-bench: results documents, their schema, and reading earlier runs for --compare.
#include "results.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>

namespace flashmfa::bench {

namespace {

// Consistency of recomputed numbers: the file holds shortest round-trip doubles, so anything
// beyond rounding in the last few digits is an arithmetic mismatch.
constexpr double kRelTol = 1e-9;
constexpr double kPercent = 100.0;

bool close(double a, double b) {
  return std::fabs(a - b) <= kRelTol * std::max({1.0, std::fabs(a), std::fabs(b)});
}

DType dtype_from(const std::string& name) {
  if (name == "bf16") return DType::bf16;
  if (name == "f16" || name == "fp16") return DType::f16;
  throw JsonError("json: dtype \"" + name + "\" is not bf16 or fp16");
}

// The variant a peer's family name stands for (its files carry no widths).
Variant variant_from_family(const std::string& name) {
  if (name == "MLA") return Variant::mla();
  if (name == "MFA") return Variant::mfa();
  if (name == "MFA-KR") return Variant::mfa_kr(256);
  throw JsonError("json: variant \"" + name + "\" is not MLA, MFA or MFA-KR");
}

int as_int(const Json& row, const char* key) {
  const double v = row.at(key).as_number();
  if (v != std::floor(v)) throw JsonError(std::string("json: ") + key + " is not an integer");
  return int(v);
}

}  // namespace

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string commit_id(const std::string& built_in) {
  if (const char* env = std::getenv("FLASHMFA_COMMIT"); env && *env) return env;
  return built_in.empty() ? "unknown" : built_in;
}

Json row_to_json(const Row& r) {
  const Shape& s = r.shape;
  Json j = Json::object();
  // FlashMLA's row fields first, in its order, so the files read alike.
  j.set("b", s.b);
  j.set("s_q", s.s_q);
  j.set("s_k", s.s_k);
  j.set("h_q", s.h_q);
  j.set("varlen", s.varlen);
  j.set("causal", s.causal);
  const bool timed = r.check_ok && r.timing.samples > 0;
  j.set("us", timed ? Json(r.timing.median_us) : Json());
  j.set("tflops", timed ? Json(r.m.tflops) : Json());
  j.set("gbps", timed ? Json(r.m.gbps) : Json());
  j.set("roofline_us", r.m.roofline_us);
  j.set("pct_roofline", timed ? Json(r.m.pct_roofline) : Json());
  j.set("variant", family_name(s.variant, s.h_kv));
  j.set("h_kv", s.h_kv);
  j.set("d_k", s.variant.d_k);
  j.set("d_v", s.variant.d_v);
  j.set("v_aliases_k", s.variant.v_aliases_k);
  j.set("page_size", s.page_size);
  j.set("dtype", dtype_name(s.dtype));
  j.set("cache", s.fp8 ? "fp8" : "native");
  if (s.fp8 && s.variant != Variant::mla())
    j.set("scale_layout", s.scales_head_major ? "head-major" : "token-major");
  j.set("seed", int64_t(s.seed));
  j.set("backend", r.backend);
  j.set("us_min", timed ? Json(r.timing.min_us) : Json());
  j.set("us_max", timed ? Json(r.timing.max_us) : Json());
  j.set("samples", r.timing.samples);
  j.set("method", r.method);
  j.set("cache_copies", r.cache_copies);
  j.set("total_len", r.total_len);
  j.set("mean_len", r.mean_len);
  j.set("flops", r.work.flops);
  j.set("bytes", r.work.bytes);
  j.set("check_ok", r.check_ok);
  j.set("checked", r.checked);
  j.set("max_abs_err", r.max_abs_err);
  j.set("max_abs_err_lse", r.max_abs_err_lse);
  if (!r.check_message.empty()) j.set("check_message", r.check_message);
  j.set("path", r.path);
  j.set("kernel", r.kernel);
  j.set("num_parts", r.num_parts);
  if (r.sm_clock_ghz > 0) j.set("sm_clock_ghz", r.sm_clock_ghz);
  if (r.ref_us > 0) {
    j.set("ref_us", r.ref_us);
    j.set("speedup_vs_ref", r.speedup_vs_ref);
  }
  if (!r.note.empty()) j.set("note", r.note);
  return j;
}

Json results_to_json(const RunInfo& info, const std::vector<Row>& rows) {
  Json j = Json::object();
  j.set("schema", kSchema);
  j.set("tool", "flashmfa-bench");
  j.set("version", info.version);
  j.set("commit", info.commit);
  j.set("date", info.date);
  j.set("backend", info.backend);
  j.set("device", info.device);
  j.set("sms", info.sms);
  j.set("clock_MHz", info.clock_MHz);
  j.set("memory_clock_MHz", info.memory_clock_MHz);
  j.set("memory_bus_bits", info.memory_bus_bits);
  j.set("cache_bytes", info.cache_bytes);
  j.set("copy_GBps", info.ceilings.copy_GBps);
  j.set("gemm_TFLOPS", info.ceilings.gemm_TFLOPS);
  j.set("copy_method", info.ceilings.copy_method);
  j.set("gemm_method", info.ceilings.gemm_method);
  if (info.ceilings.floor_us > 0) {
    j.set("floor_us", info.ceilings.floor_us);
    j.set("floor_method", info.ceilings.floor_method);
  }
  j.set("timing", info.timing);
  j.set("build", info.build);
  j.set("command", info.command);
  Json arr = Json::array();
  for (const Row& r : rows) arr.push(row_to_json(r));
  j.set("rows", std::move(arr));
  return j;
}

std::vector<std::string> validate_results(const Json& doc) {
  std::vector<std::string> errs;
  if (!doc.is_object()) return {"the document is not an object"};
  auto need = [&](const Json& obj, const std::string& where, const char* key,
                  Json::Kind kind) -> const Json* {
    const Json* v = obj.find(key);
    if (!v) { errs.push_back(where + ": missing \"" + key + "\""); return nullptr; }
    if (v->kind() != kind) { errs.push_back(where + ": \"" + key + "\" has the wrong type"); return nullptr; }
    return v;
  };
  using K = Json::Kind;
  if (const Json* s = need(doc, "top", "schema", K::string); s && s->as_string() != kSchema)
    errs.push_back("top: schema is \"" + s->as_string() + "\", expected \"" + kSchema + "\"");
  for (const char* key : {"tool", "version", "commit", "date", "backend", "device", "copy_method",
                          "gemm_method", "timing", "build", "command"})
    need(doc, "top", key, K::string);
  for (const char* key : {"sms", "clock_MHz", "memory_clock_MHz", "memory_bus_bits",
                          "cache_bytes", "gemm_TFLOPS"})
    need(doc, "top", key, K::number);
  Ceilings c;
  if (const Json* v = need(doc, "top", "copy_GBps", K::number)) {
    c.copy_GBps = v->as_number();
    if (!(c.copy_GBps > 0)) errs.push_back("top: copy_GBps is not positive");
  }
  if (const Json* v = doc.find("gemm_TFLOPS"); v && v->is_number()) c.gemm_TFLOPS = v->as_number();
  if (doc.has("floor_us")) {  // CUDA runs since the call floor was added
    if (const Json* v = need(doc, "top", "floor_us", K::number); v && !(v->as_number() > 0))
      errs.push_back("top: floor_us is not positive");
    need(doc, "top", "floor_method", K::string);
  }
  const Json* rows = need(doc, "top", "rows", K::array);
  if (!rows) return errs;

  for (size_t i = 0; i < rows->as_array().size(); ++i) {
    const Json& r = rows->as_array()[i];
    const std::string where = "rows[" + std::to_string(i) + "]";
    if (!r.is_object()) { errs.push_back(where + ": not an object"); continue; }
    const size_t before = errs.size();
    for (const char* key : {"b", "s_q", "s_k", "h_q", "h_kv", "d_k", "d_v", "page_size"}) {
      const Json* v = need(r, where, key, K::number);
      if (v && (v->as_number() < 1 || v->as_number() != std::floor(v->as_number())))
        errs.push_back(where + ": \"" + key + "\" is not a positive integer");
    }
    for (const char* key : {"seed", "samples", "cache_copies", "total_len", "mean_len", "flops",
                            "bytes", "roofline_us", "max_abs_err", "max_abs_err_lse", "kernel",
                            "num_parts"})
      need(r, where, key, K::number);
    for (const char* key : {"varlen", "causal", "v_aliases_k", "check_ok"}) need(r, where, key, K::boolean);
    if (const Json* g = r.find("sm_clock_ghz"); g && !(g->is_number() && g->as_number() > 0))
      errs.push_back(where + ": \"sm_clock_ghz\" is not a positive number");
    for (const char* key : {"variant", "dtype", "backend", "method", "checked"}) need(r, where, key, K::string);
    const Json* ok = r.find("check_ok");
    const bool timed = ok && ok->is_bool() && ok->as_bool();
    for (const char* key : {"us", "us_min", "us_max", "tflops", "gbps", "pct_roofline"}) {
      const Json* v = r.find(key);
      if (!v) errs.push_back(where + ": missing \"" + key + "\"");
      else if (timed && !v->is_number()) errs.push_back(where + ": \"" + key + "\" is not a number");
      else if (!timed && !v->is_null()) errs.push_back(where + ": \"" + key + "\" reported for a row that failed its check");
    }
    if (errs.size() != before) continue;

    // The arithmetic: recompute the work from the shape and the lengths, then the metrics.
    Shape s;
    try {
      s.variant = {as_int(r, "d_k"), as_int(r, "d_v"), r.at("v_aliases_k").as_bool()};
      s.dtype = dtype_from(r.at("dtype").as_string());
      if (const Json* cache = r.find("cache")) s.fp8 = cache->as_string() == "fp8";
      if (const Json* sl = r.find("scale_layout")) s.scales_head_major = sl->as_string() == "head-major";
    } catch (const JsonError& e) {
      errs.push_back(where + ": " + e.what());
      continue;
    }
    s.b = as_int(r, "b"); s.s_q = as_int(r, "s_q"); s.h_q = as_int(r, "h_q"); s.h_kv = as_int(r, "h_kv");
    const Work w = decode_work(s, int64_t(r.at("total_len").as_number()));
    if (!close(w.flops, r.at("flops").as_number())) errs.push_back(where + ": flops does not match the shape");
    if (!close(w.bytes, r.at("bytes").as_number())) errs.push_back(where + ": bytes does not match the shape");
    if (!close(roofline_us(w, c), r.at("roofline_us").as_number()))
      errs.push_back(where + ": roofline_us does not match the ceilings");
    if (!timed) continue;
    const double us = r.at("us").as_number();
    if (!(r.at("us_min").as_number() <= us && us <= r.at("us_max").as_number()))
      errs.push_back(where + ": not us_min <= us <= us_max");
    const Metrics m = metrics(w, c, us);
    if (!close(m.tflops, r.at("tflops").as_number())) errs.push_back(where + ": tflops != flops / us");
    if (!close(m.gbps, r.at("gbps").as_number())) errs.push_back(where + ": gbps != bytes / us");
    if (!close(m.pct_roofline, r.at("pct_roofline").as_number()))
      errs.push_back(where + ": pct_roofline != 100 roofline_us / us");
  }
  return errs;
}

RefFile load_reference(const Json& doc) {
  RefFile f;
  if (!doc.is_object()) throw JsonError("json: the document is not an object");
  if (const Json* d = doc.find("device"); d && d->is_string()) f.device = d->as_string();
  if (const Json* v = doc.find("copy_GBps"); v && v->is_number()) f.copy_GBps = v->as_number();
  if (const Json* v = doc.find("gemm_TFLOPS"); v && v->is_number()) f.gemm_TFLOPS = v->as_number();

  const bool ours = doc.has("schema");
  const Json* rows = doc.find("flashmla");
  if (rows) f.label = "flashmla";
  else if ((rows = doc.find("rows"))) f.label = ours ? "flashmfa" : "peer";
  else throw JsonError("json: no \"rows\" or \"flashmla\" list (not a benchmark results file)");
  if (ours)
    if (const Json* c = doc.find("commit"); c && c->is_string()) f.label += " " + c->as_string();

  for (const Json& r : rows->as_array()) {
    RefRow x;
    Shape& s = x.shape;
    s.b = as_int(r, "b");
    s.s_k = as_int(r, "s_k");
    s.h_q = as_int(r, "h_q");
    s.varlen = r.at("varlen").as_bool();
    // Fields a peer's file leaves out take the value its note states: s_q 1, no causal mask,
    // one KV head (FlashMLA and the Triton peer only ran those).
    s.s_q = r.has("s_q") ? as_int(r, "s_q") : 1;
    s.causal = r.has("causal") && r.at("causal").as_bool();
    s.h_kv = r.has("h_kv") ? as_int(r, "h_kv") : 1;
    if (r.has("d_k")) {
      s.variant = {as_int(r, "d_k"), as_int(r, "d_v"), r.at("v_aliases_k").as_bool()};
    } else if (const Json* v = r.find("variant")) {
      s.variant = variant_from_family(v->as_string());
    } else {
      s.variant = Variant::mla();  // FlashMLA's rows: MLA only
    }
    if (const Json* p = r.find("page_size")) { s.page_size = int(p->as_number()); x.has_page = true; }
    if (const Json* d = r.find("dtype")) { s.dtype = dtype_from(d->as_string()); x.has_dtype = true; }
    if (const Json* p = r.find("peer"); p && p->is_string()) f.label = p->as_string();
    const Json& us = r.at("us");
    if (us.is_null()) continue;  // a row of ours that failed its check: nothing to compare
    x.us = us.as_number();
    if (const Json* p = r.find("pct_roofline"); p && p->is_number()) x.pct_roofline = p->as_number();
    f.rows.push_back(x);
  }
  return f;
}

bool same_config(const Shape& s, const RefRow& r) {
  const Shape& t = r.shape;
  if (!(s.variant == t.variant && s.b == t.b && s.s_q == t.s_q && s.s_k == t.s_k &&
        s.h_q == t.h_q && s.h_kv == t.h_kv && s.varlen == t.varlen && s.causal == t.causal))
    return false;
  if (r.has_page && s.page_size != t.page_size) return false;
  if (r.has_dtype && s.dtype != t.dtype) return false;
  return true;
}

}  // namespace flashmfa::bench
