// flashmfa-bench's own tests, part 2: the JSON reader/writer, the results schema, reading the
// three comparison formats, the sampled correctness check, and one small CPU run end to end.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "check.hpp"
#include "flashmfa/half.hpp"
#include "json.hpp"
#include "options.hpp"
#include "problem/problem.hpp"
#include "results.hpp"
#include "runner.hpp"

namespace flashmfa::bench {
namespace {

TEST(Json, RoundTripAndPythonLiterals) {
  const Json doc = Json::parse(R"({"a": [1, 2.5, -3e-2, true, false, null],
                                   "s": "q\"\\\n\u00e9", "nan": NaN, "inf": -Infinity, "o": {}})");
  EXPECT_EQ(doc.at("a").as_array().size(), 6u);
  EXPECT_EQ(doc.at("a").as_array()[1].as_number(), 2.5);
  EXPECT_EQ(doc.at("s").as_string(), "q\"\\\n\xc3\xa9");
  EXPECT_TRUE(std::isnan(doc.at("nan").as_number()));
  EXPECT_EQ(doc.at("inf").as_number(), -INFINITY);
  // Non-finite numbers are written as null (strict JSON), everything else reads back equal.
  const Json back = Json::parse(doc.dump());
  EXPECT_TRUE(back.at("nan").is_null());
  EXPECT_EQ(back.at("s").as_string(), doc.at("s").as_string());
  EXPECT_EQ(back.at("a").as_array()[2].as_number(), -3e-2);
  // Shortest round trip of a double.
  EXPECT_EQ(Json(0.1).dump(), "0.1\n");
  EXPECT_EQ(Json(128).dump(), "128\n");
}

TEST(Json, ErrorsSayWhere) {
  for (const char* bad : {"", "{", "[1,]", "{\"a\" 1}", "[1] 2", "tru", "\"open", "{1: 2}"})
    EXPECT_THROW(Json::parse(bad), JsonError) << bad;
  try {
    Json::parse("[1, x]");
    FAIL();
  } catch (const JsonError& e) {
    EXPECT_NE(std::string(e.what()).find("byte 4"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Json::parse(std::string(100, '[') + std::string(100, ']')), JsonError);
  EXPECT_THROW(Json(1.0).as_string(), JsonError);
  EXPECT_THROW(Json::object().at("missing"), JsonError);
  EXPECT_THROW(read_json_file("/nonexistent/file.json"), JsonError);
}

TEST(Json, CopiesDoNotShareMutations) {
  Json a = Json::object();
  a.set("x", 1);
  Json b = a;
  b.set("x", 2);
  EXPECT_EQ(a.at("x").as_number(), 1);
  EXPECT_EQ(b.at("x").as_number(), 2);
}

// A checked and timed row with consistent numbers.
Row sample_row(const Ceilings& c) {
  Row r;
  r.shape.variant = Variant::mla();
  r.shape.b = 2; r.shape.s_k = 100; r.shape.h_q = 16; r.shape.varlen = true; r.shape.seed = 3;
  r.backend = "cpu";
  r.total_len = 190;
  r.mean_len = 95;
  r.work = decode_work(r.shape, r.total_len);
  r.timing = summarize({10, 12, 11});
  r.m = metrics(r.work, c, r.timing.median_us);
  r.check_ok = true;
  r.checked = "2/2 sequences x 16/16 heads";
  r.method = "wall-clock";
  return r;
}

RunInfo sample_info(const Ceilings& c) {
  RunInfo i;
  i.version = "0.1.0"; i.commit = "abc"; i.date = utc_now(); i.backend = "cpu"; i.device = "test";
  i.sms = 2; i.build = "b"; i.command = "flashmfa-bench"; i.timing = "t";
  i.ceilings = c;
  return i;
}

TEST(Results, CommitComesFromTheEnvironmentThenTheBuild) {
  unsetenv("FLASHMFA_COMMIT");
  EXPECT_EQ(commit_id("abc123"), "abc123");
  EXPECT_EQ(commit_id(""), "unknown");
  setenv("FLASHMFA_COMMIT", "feedbeef", 1);
  EXPECT_EQ(commit_id("abc123"), "feedbeef");
  unsetenv("FLASHMFA_COMMIT");
  const std::string date = utc_now();  // 2025-11-23T06:50:00Z
  ASSERT_EQ(date.size(), 20u);
  EXPECT_EQ(date[10], 'T');
  EXPECT_EQ(date.back(), 'Z');
}

TEST(Results, WrittenDocumentsFollowTheSchema) {
  const Ceilings c{20.0, 0.1, "copy", "gemm"};
  Row failed = sample_row(c);
  failed.check_ok = false;
  failed.check_message = "out MISMATCH";
  const Json doc = results_to_json(sample_info(c), {sample_row(c), failed});
  const std::vector<std::string> errs = validate_results(doc);
  EXPECT_TRUE(errs.empty()) << errs.front();
  // Reads back, and keeps FlashMLA's row fields.
  const Json back = Json::parse(doc.dump());
  EXPECT_TRUE(validate_results(back).empty());
  const Json& row = back.at("rows").as_array()[0];
  for (const char* key : {"b", "s_q", "s_k", "h_q", "varlen", "causal", "us", "tflops", "gbps",
                          "roofline_us", "pct_roofline", "variant", "h_kv", "d_k", "d_v",
                          "page_size", "dtype", "backend", "us_min", "us_max", "max_abs_err"})
    EXPECT_TRUE(row.has(key)) << key;
  EXPECT_EQ(row.at("variant").as_string(), "MLA");
  EXPECT_TRUE(back.at("rows").as_array()[1].at("us").is_null());  // no number for a failed check
  EXPECT_FALSE(row.has("sm_clock_ghz"));  // CPU rows and unmeasured clocks leave it out
  Row clocked = sample_row(c);
  clocked.sm_clock_ghz = 1.59;
  const Json with_clock = results_to_json(sample_info(c), {clocked});
  EXPECT_TRUE(validate_results(with_clock).empty());
  EXPECT_EQ(with_clock.at("rows").as_array()[0].at("sm_clock_ghz").as_number(), 1.59);
  EXPECT_EQ(back.at("schema").as_string(), kSchema);
  EXPECT_FALSE(back.has("floor_us"));  // CPU runs measure no call floor
}

TEST(Results, CallFloorIsWrittenWhenMeasuredAndChecked) {
  Ceilings c{20.0, 0.1, "copy", "gemm"};
  c.floor_us = 4.25;
  c.floor_method = "graph of two empty kernels";
  const Json doc = results_to_json(sample_info(c), {sample_row(c)});
  const std::vector<std::string> errs = validate_results(doc);
  EXPECT_TRUE(errs.empty()) << errs.front();
  EXPECT_EQ(doc.at("floor_us").as_number(), 4.25);
  EXPECT_EQ(doc.at("floor_method").as_string(), "graph of two empty kernels");
  Json bad = doc;
  bad.set("floor_us", 0.0);
  EXPECT_FALSE(validate_results(bad).empty());
  bad.set("floor_us", "fast");
  EXPECT_FALSE(validate_results(bad).empty());
  Json no_method = Json::object();
  for (const auto& [key, value] : doc.as_object())
    if (key != "floor_method") no_method.set(key, value);
  EXPECT_FALSE(validate_results(no_method).empty());
}

TEST(Results, SchemaCatchesMissingKeysAndWrongArithmetic) {
  const Ceilings c{20.0, 0.1, "copy", "gemm"};
  const Json good = results_to_json(sample_info(c), {sample_row(c)});
  auto tamper = [&](const char* key, Json value) {
    Json doc = good;
    Json rows = doc.at("rows");
    Json row = rows.as_array()[0];
    row.set(key, std::move(value));
    rows.as_array()[0] = row;
    doc.set("rows", rows);
    return validate_results(doc);
  };
  EXPECT_FALSE(tamper("tflops", 1.0).empty());
  EXPECT_FALSE(tamper("gbps", 1.0).empty());
  EXPECT_FALSE(tamper("pct_roofline", 1.0).empty());
  EXPECT_FALSE(tamper("roofline_us", 1.0).empty());
  EXPECT_FALSE(tamper("bytes", 1.0).empty());
  EXPECT_FALSE(tamper("us_min", 100.0).empty());
  EXPECT_FALSE(tamper("b", "two").empty());
  EXPECT_FALSE(tamper("h_q", 0).empty());
  EXPECT_FALSE(tamper("dtype", "fp8").empty());
  EXPECT_TRUE(tamper("sm_clock_ghz", 1.6).empty());  // optional: the SM clock over the replays
  EXPECT_FALSE(tamper("sm_clock_ghz", 0.0).empty());
  EXPECT_FALSE(tamper("sm_clock_ghz", "fast").empty());
  Json no_commit = good;
  no_commit.set("schema", "other/9");
  EXPECT_FALSE(validate_results(no_commit).empty());
  EXPECT_FALSE(validate_results(Json::parse("[]")).empty());
}

TEST(Results, ReadsFlashMlaTritonAndOurFormats) {
  // The shapes of shared/flashmla-h100.json and shared/triton-peer-h100.json (one row each).
  const Json flashmla = Json::parse(R"({"device": "H100", "sms": 132, "copy_GBps": 2999.5,
      "gemm_TFLOPS": 773.9, "flashmla": [{"b": 128, "s_q": 1, "s_k": 8192, "h_q": 128,
      "varlen": true, "causal": false, "us": 579.2, "tflops": 506.9, "gbps": 2158.0,
      "roofline_us": 416.7, "pct_roofline": 71.9}], "note": "x"})");
  const RefFile f = load_reference(flashmla);
  EXPECT_EQ(f.label, "flashmla");
  ASSERT_EQ(f.rows.size(), 1u);
  EXPECT_EQ(f.rows[0].shape.variant, Variant::mla());
  EXPECT_FALSE(f.rows[0].has_page);

  const Json triton = Json::parse(R"({"device": "H100", "copy_GBps": 3004.8, "gemm_TFLOPS": 780.8,
      "rows": [{"peer": "sglang-triton", "variant": "MFA-KR", "b": 128, "s_k": 8192, "h_q": 64,
      "varlen": false, "splits": 4, "us": 734.0, "tflops": 93.6, "gbps": 742.9,
      "pct_roofline": 24.7, "rel_err": NaN}]})");
  const RefFile t = load_reference(triton);
  EXPECT_EQ(t.label, "sglang-triton");
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0].shape.variant, Variant::mfa_kr(256));
  EXPECT_EQ(t.rows[0].shape.s_q, 1);

  Shape ours;
  ours.variant = Variant::mfa_kr(256);
  ours.b = 128; ours.s_k = 8192; ours.h_q = 64; ours.page_size = 64;
  EXPECT_TRUE(same_config(ours, t.rows[0]));
  ours.h_q = 32;
  EXPECT_FALSE(same_config(ours, t.rows[0]));

  // Our own format: page size and dtype take part in the match.
  const Ceilings c{20.0, 0.1, "copy", "gemm"};
  const Row row = sample_row(c);
  const RefFile o = load_reference(results_to_json(sample_info(c), {row}));
  EXPECT_EQ(o.label, "flashmfa abc");
  ASSERT_EQ(o.rows.size(), 1u);
  EXPECT_TRUE(same_config(row.shape, o.rows[0]));
  Shape other_page = row.shape;
  other_page.page_size = 16;
  EXPECT_FALSE(same_config(other_page, o.rows[0]));

  // Speed-up = their us / our us: our row at 11 us against a copy of itself at 22 us.
  RefFile slower = o;
  slower.rows[0].us = 22;
  const std::string text = format_compare({row}, slower, "x.json");
  EXPECT_NE(text.find("2.00x"), std::string::npos) << text;
  EXPECT_NE(text.find("matched 1 of 1"), std::string::npos) << text;

  EXPECT_THROW(load_reference(Json::parse(R"({"something": []})")), JsonError);
  EXPECT_THROW(load_reference(Json::parse(R"({"rows": [{"b": 1}]})")), JsonError);
}

TEST(Check, PickSequencesAndHeadStride) {
  const std::vector<int> lens = {50, 10, 90, 30, 70, 20};
  EXPECT_EQ(pick_sequences(lens, 8, 0), (std::vector<int>{0, 1, 2, 3, 4, 5}));
  const std::vector<int> two = pick_sequences(lens, 2, 0);
  EXPECT_EQ(two, (std::vector<int>{1, 2}));  // the shortest and the longest
  const std::vector<int> four = pick_sequences(lens, 4, 5);
  ASSERT_EQ(four.size(), 4u);
  EXPECT_TRUE(std::is_sorted(four.begin(), four.end()));
  EXPECT_EQ(std::adjacent_find(four.begin(), four.end()), four.end());

  EXPECT_EQ(head_stride(128, 1, 16), 8);  // MLA: heads 0, 8, ..., 120
  EXPECT_EQ(head_stride(64, 1, 16), 4);
  EXPECT_EQ(head_stride(16, 1, 16), 1);
  EXPECT_EQ(head_stride(8, 1, 16), 1);
  EXPECT_EQ(head_stride(32, 8, 16), 2);   // GQA: the stride divides h_q / h_kv = 4
  EXPECT_EQ(head_stride(24, 1, 16), 1);   // no divisor of 24 leaves >= 16 heads but 1
  EXPECT_EQ(pages_for(0, 64), 1);
  EXPECT_EQ(pages_for(65, 64), 2);
}

// The check on a host problem whose outputs come from the reference itself: it must pass, and
// fail once a single output value is wrong.
TEST(Check, PassesOnTheReferenceAndCatchesOneWrongValue) {
  testing::ProblemSpec spec;
  spec.variant = Variant::mfa();
  spec.b = 3; spec.s_q = 2; spec.h_q = 8; spec.h_kv = 1; spec.page_size = 16;
  spec.seqlens = {0, 37, 70};
  spec.causal = true;
  spec.seed = 11;
  testing::HostProblem p = testing::make_problem(spec);
  decode_reference(p.args());

  Shape s;
  s.variant = spec.variant; s.b = 3; s.s_q = 2; s.h_q = 8; s.page_size = 16; s.causal = true;
  auto sample = [&](int i) {
    SeqSample x;
    x.seq = i;
    x.len = spec.seqlens[i];
    const size_t page = 16 * 256;
    const int n = pages_for(x.len, 16), used = (x.len + 15) / 16;
    x.k.assign(page * n, testing::nan_bits(s.dtype));
    x.v.assign(page * n, testing::nan_bits(s.dtype));
    for (int j = 0; j < used; ++j) {
      const size_t pg = size_t(p.block_table[size_t(i) * p.max_pages + j]);
      std::copy_n(p.k_cache.begin() + pg * page, page, x.k.begin() + j * page);
      std::copy_n(p.v_cache.begin() + pg * page, page, x.v.begin() + j * page);
    }
    const size_t qs = 2 * 8 * 256, ls = 8 * 2;
    x.q.assign(p.q.begin() + i * qs, p.q.begin() + (i + 1) * qs);
    x.out.assign(p.out.begin() + i * qs, p.out.begin() + (i + 1) * qs);
    x.lse.assign(p.lse.begin() + i * ls, p.lse.begin() + (i + 1) * ls);
    return x;
  };
  std::vector<SeqSample> all = {sample(0), sample(1), sample(2)};
  const CheckResult ok = check_samples(s, all, head_stride(8, 1, 4), 3);
  EXPECT_TRUE(ok.ok) << ok.message;
  EXPECT_EQ(ok.what, "3/3 sequences x 4/8 heads");
  EXPECT_EQ(ok.max_abs_out, 0.0);

  all[2].out[5] = half::float_to_bf16(half::bf16_to_float(all[2].out[5]) + 0.5f);  // head 0
  const CheckResult bad = check_samples(s, all, 2, 3);
  EXPECT_FALSE(bad.ok);
  EXPECT_NE(bad.message.find("sequence 2"), std::string::npos) << bad.message;
  EXPECT_GT(bad.max_abs_out, 0.25);
}

// One small configuration of every family through the whole CPU runner: checked, timed, and
// its JSON valid.
TEST(CpuRunner, SmallShapesEndToEnd) {
  const Ceilings c{20.0, 0.1, "copy", "gemm"};
  RunConfig cfg;
  cfg.warmup = 0;
  cfg.iters = 2;
  cfg.flush = false;
  cfg.vs_reference = true;
  const CpuInfo cpu = cpu_info();
  std::vector<Row> rows;
  for (Shape s : {find_preset("cpu-demo")->shape, find_preset("step3-mfa")->shape,
                  find_preset("mfa-kr-256")->shape, find_preset("llama3-gqa")->shape}) {
    s.b = 3;
    s.s_k = 70;
    s.s_q = 2;
    s.causal = true;
    s.varlen = true;
    s.h_q = s.h_kv * 4;
    preflight(s);
    const Row r = run_cpu(s, c, cfg, cpu);
    SCOPED_TRACE(describe(s));
    EXPECT_TRUE(r.check_ok) << r.check_message;
    EXPECT_EQ(r.timing.samples, 2);
    EXPECT_GT(r.ref_us, 0);
    EXPECT_LT(r.max_abs_err, 0.05);
    EXPECT_EQ(r.total_len, [&] { int64_t t = 0; for (int l : shape_lengths(s)) t += l; return t; }());
    rows.push_back(r);
  }
  const Json doc = results_to_json(sample_info(c), rows);
  const std::vector<std::string> errs = validate_results(doc);
  EXPECT_TRUE(errs.empty()) << errs.front();
  EXPECT_NE(format_table(sample_info(c), rows).find("speed-up"), std::string::npos);
}

TEST(CpuRunner, PreflightLetsTheLibraryErrorThrough) {
  Shape s = find_preset("llama3-gqa")->shape;
  s.h_q = 12;  // not a multiple of h_kv = 8
  EXPECT_THROW(preflight(s), Error);
  Shape d = find_preset("step3-mfa")->shape;
  d.variant = {96, 96, false};  // no kernel covers d = 96
  try {
    preflight(d);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::unsupported) << e.what();
  }
  EXPECT_NO_THROW(preflight(find_preset("deepseek-v3")->shape));
}

}  // namespace
}  // namespace flashmfa::bench
