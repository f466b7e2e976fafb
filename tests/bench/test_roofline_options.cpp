// flashmfa-bench's own tests, part 1: the roofline arithmetic on numbers published in
// shared/flashmla-h100.json and shared/triton-peer-h100.json, timing summaries, presets, sweep
// grids and the command line.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "options.hpp"
#include "roofline.hpp"

namespace flashmfa::bench {
namespace {

// Ceilings of the two reference files (measured on the lent H100).
constexpr double kFlashMlaCopy = 2999.4800077494538, kFlashMlaGemm = 773.8505315386768;
constexpr double kTritonCopy = 3004.784799514946, kTritonGemm = 780.8144317651567;
// Their numbers are printed with ~16 significant digits; ours must agree to 1e-9.
constexpr double kRel = 1e-9;

void expect_rel(double got, double want) { EXPECT_NEAR(got, want, kRel * std::abs(want)); }

Shape mla_fixed(int b, int s_k, int h_q) {
  Shape s;
  s.variant = Variant::mla();
  s.b = b; s.s_k = s_k; s.h_q = h_q; s.h_kv = 1; s.page_size = 64;
  return s;
}

TEST(Roofline, FlashMlaFixedRowsReproduce) {
  // flashmla-h100.json, fixed-length rows: b, s_k, h_q, us, tflops, gbps, roofline_us, pct.
  struct Known { int b, s_k, h_q; double us, tflops, gbps, roof, pct; };
  const Known rows[] = {
      {128, 8192, 16, 417.56799817085266, 87.428208521532, 2903.517523639171, 404.20872846880235, 96.80069599189348},
      {128, 32768, 64, 1702.015995979309, 343.19040105137816, 2849.3645250434865, 1616.8349138752094, 94.99528310513392},
      {8, 65536, 128, 252.06398963928223, 579.3326062678591, 2404.9766127542366, 202.10436423440117, 80.17978471404183},
      {1, 131072, 128, 90.7519981265068, 402.2745809421136, 1666.8886098698042, 50.43323229665476, 55.57258610036514},
  };
  const Ceilings c{kFlashMlaCopy, kFlashMlaGemm, "", ""};
  for (const Known& k : rows) {
    const Shape s = mla_fixed(k.b, k.s_k, k.h_q);
    const Work w = decode_work(s, int64_t(k.b) * k.s_k);
    const Metrics m = metrics(w, c, k.us);
    SCOPED_TRACE(describe(s));
    expect_rel(m.roofline_us, k.roof);
    expect_rel(m.tflops, k.tflops);
    expect_rel(m.gbps, k.gbps);
    expect_rel(m.pct_roofline, k.pct);
  }
}

TEST(Roofline, SeparateVReadsBothCachesAliasedVReadsKOnce) {
  // triton-peer-h100.json: MFA (separate V) and MFA-KR (V = K), b 128, s_k 8192, h_q 64.
  const Ceilings c{kTritonCopy, kTritonGemm, "", ""};
  Shape mfa = mla_fixed(128, 8192, 64);
  mfa.variant = Variant::mfa();
  const Metrics m1 = metrics(decode_work(mfa, 128 * 8192), c, 816.7679905891418);
  expect_rel(m1.gbps, 1324.893292181357);
  expect_rel(m1.tflops, 84.13585929883472);
  expect_rel(m1.pct_roofline, 44.092784694439054);

  Shape kr = mfa;
  kr.variant = Variant::mfa_kr(256);
  const Metrics m2 = metrics(decode_work(kr, 128 * 8192), c, 733.951985836029);
  expect_rel(m2.gbps, 742.9089784107697);
  expect_rel(m2.tflops, 93.62939001755421);
  expect_rel(m2.pct_roofline, 24.72419916829636);
}

TEST(Roofline, HandComputedWorkAndTheBindingCeiling) {
  // GQA: h_q 32, h_kv 8, d 128 separate V, fp16, b 2, s_q 3, L = 100.
  Shape s = mla_fixed(2, 50, 32);
  s.variant = Variant::mqa(128);
  s.h_kv = 8;
  s.s_q = 3;
  s.dtype = DType::f16;
  const Work w = decode_work(s, 100);
  EXPECT_DOUBLE_EQ(w.flops, 2.0 * 32 * 3 * 100 * 256);
  EXPECT_DOUBLE_EQ(w.bytes, 100.0 * 8 * 256 * 2 + 2.0 * 3 * 32 * 256 * 2);
  EXPECT_EQ(cache_bytes_per_token(s), 8 * 256 * 2);
  // 1 GB/s and 1 TFLOP/s: bytes take w.bytes ns, flops w.flops ps; the larger wins.
  const Ceilings c{1.0, 1.0, "", ""};
  EXPECT_DOUBLE_EQ(roofline_us(w, c), std::max(w.bytes / 1e9, w.flops / 1e12) * 1e6);
  // A compute-bound case: a slow matmul.
  const Ceilings slow{1000.0, 1e-6, "", ""};
  EXPECT_DOUBLE_EQ(roofline_us(w, slow), w.flops / 1e6 * 1e6);
  // Without a matmul ceiling the roofline is the copy time alone.
  const Ceilings copy_only{1.0, 0.0, "", ""};
  EXPECT_DOUBLE_EQ(roofline_us(w, copy_only), w.bytes / 1e9 * 1e6);
  EXPECT_EQ(metrics(w, c, 0).pct_roofline, 0.0);  // no time, no percentage
}

TEST(Roofline, SummarizeMedianMinMax) {
  const Timing odd = summarize({5, 1, 3});
  EXPECT_EQ(odd.median_us, 3);
  EXPECT_EQ(odd.min_us, 1);
  EXPECT_EQ(odd.max_us, 5);
  EXPECT_EQ(odd.samples, 3);
  EXPECT_EQ(summarize({4, 1, 3, 2}).median_us, 2.5);
  EXPECT_THROW(summarize({}), std::invalid_argument);
}

TEST(Roofline, FamilyNames) {
  EXPECT_EQ(family_name(Variant::mla(), 1), "MLA");
  EXPECT_EQ(family_name(Variant::mfa(), 1), "MFA");
  EXPECT_EQ(family_name(Variant::mfa_kr(256), 1), "MFA-KR");
  EXPECT_EQ(family_name(Variant::mfa_kr(128), 1), "MFA-KR");
  EXPECT_EQ(family_name(Variant::mqa(128), 1), "MQA");
  EXPECT_EQ(family_name(Variant::mqa(128), 8), "GQA");
}

Options parse(std::vector<const char*> args) {
  args.insert(args.begin(), "flashmfa-bench");
  return parse_args(int(args.size()), args.data());
}

TEST(Options, EveryPresetParsesAndResolves) {
  const char* names[] = {"deepseek-v3", "deepseek-v3-tp8", "deepseek-v3-mtp", "step3-mfa",
                         "step3-mfa-tp8", "mfa-kr-256", "llama3-gqa", "cpu-demo"};
  for (const char* n : names) {
    const Options o = parse({n});
    ASSERT_EQ(o.preset, n);
    const std::vector<Shape> s = resolve_shapes(o, true);
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0], find_preset(n)->shape);
  }
  const Shape ds = find_preset("deepseek-v3")->shape;
  EXPECT_EQ(ds.variant, Variant::mla());
  EXPECT_EQ(ds.h_q, 128); EXPECT_EQ(ds.b, 128); EXPECT_EQ(ds.s_k, 8192); EXPECT_TRUE(ds.varlen);
  EXPECT_EQ(find_preset("deepseek-v3-tp8")->shape.h_q, 16);
  EXPECT_EQ(find_preset("deepseek-v3-mtp")->shape.s_q, 2);
  EXPECT_TRUE(find_preset("deepseek-v3-mtp")->shape.causal);
  EXPECT_EQ(find_preset("step3-mfa")->shape.variant, Variant::mfa());
  EXPECT_EQ(find_preset("step3-mfa-tp8")->shape.h_q, 8);
  EXPECT_EQ(find_preset("mfa-kr-256")->shape.variant, Variant::mfa_kr(256));
  const Shape ll = find_preset("llama3-gqa")->shape;
  EXPECT_EQ(ll.h_q, 32); EXPECT_EQ(ll.h_kv, 8); EXPECT_EQ(ll.variant, Variant::mqa(128));
  const Shape cpu = find_preset("cpu-demo")->shape;  // issue 2's CPU benchmark shape
  EXPECT_EQ(cpu.b, 4); EXPECT_EQ(cpu.s_q, 1); EXPECT_EQ(cpu.h_q, 16); EXPECT_EQ(cpu.s_k, 4096);
  EXPECT_EQ(cpu.variant, Variant::mla());
}

TEST(Options, DefaultPresetDependsOnTheBackend) {
  const Options o = parse({});
  EXPECT_EQ(resolve_shapes(o, true)[0], find_preset("deepseek-v3")->shape);
  EXPECT_EQ(resolve_shapes(o, false)[0], find_preset("cpu-demo")->shape);
}

TEST(Options, ShapeFlagsOverrideThePreset) {
  const Options o = parse({"--b", "3", "--s-q=2", "--s-k", "100", "--fixed", "--h-q", "8",
                           "--h-kv", "2", "--d-k", "128", "--page-size", "16", "--dtype", "fp16",
                           "--causal", "--seed", "7", "--separate-v", "step3-mfa"});
  const Shape s = resolve_shapes(o, true)[0];
  EXPECT_EQ(s.b, 3); EXPECT_EQ(s.s_q, 2); EXPECT_EQ(s.s_k, 100); EXPECT_FALSE(s.varlen);
  EXPECT_EQ(s.h_q, 8); EXPECT_EQ(s.h_kv, 2); EXPECT_EQ(s.page_size, 16);
  EXPECT_EQ(s.dtype, DType::f16); EXPECT_TRUE(s.causal); EXPECT_EQ(s.seed, 7u);
  EXPECT_EQ(s.variant, Variant::mqa(128));  // d_v followed d_k: the preset's widths were equal
  // MLA's unequal widths: --d-k alone leaves d_v alone; --v-aliases-k / --varlen flip.
  const Shape m = resolve_shapes(parse({"--d-k", "512", "--varlen", "--v-aliases-k", "deepseek-v3"}), true)[0];
  EXPECT_EQ(m.variant.d_k, 512); EXPECT_EQ(m.variant.d_v, 512); EXPECT_TRUE(m.variant.v_aliases_k);
  EXPECT_TRUE(m.varlen);
}

TEST(Options, FlagsAndDefaults) {
  const Options o = parse({"--backend", "cpu", "--iters", "3", "--warmup", "0", "--json", "x.json",
                           "--compare", "y.json", "--no-vs-reference", "--check-seqs", "2",
                           "--check-heads", "4", "--no-flush", "--device", "1", "--ref-iters", "2"});
  EXPECT_EQ(o.backend, Backend::cpu);
  EXPECT_EQ(o.iters, 3); EXPECT_EQ(o.warmup, 0); EXPECT_EQ(o.ref_iters, 2);
  EXPECT_EQ(o.json_path, "x.json"); EXPECT_EQ(o.compare_path, "y.json");
  EXPECT_EQ(o.vs_reference, false); EXPECT_EQ(o.check_seqs, 2); EXPECT_EQ(o.check_heads, 4);
  EXPECT_FALSE(o.flush); EXPECT_EQ(o.device, 1);
  const Options d = parse({});
  EXPECT_EQ(d.backend, Backend::automatic);
  EXPECT_FALSE(d.vs_reference.has_value());
  EXPECT_TRUE(parse({"--help"}).help);
  EXPECT_TRUE(parse({"-h"}).help);
  EXPECT_TRUE(parse({"--list"}).list);
  EXPECT_EQ(parse({"--check-json", "r.json"}).check_json_path, "r.json");
}

TEST(Options, BadCommandLinesAreUsageErrors) {
  const std::vector<std::vector<const char*>> bad = {
      {"no-such-preset"},          {"--preset", "nope"},      {"--frobnicate"},
      {"--b"},                     {"--b", "0"},              {"--b", "-4"},
      {"--b", "4x"},               {"--s-k", "99999999999"},  {"--dtype", "fp8"},
      {"--backend", "tpu"},        {"--sweep", "--b", "4"},   {"--list=yes"},
      {"deepseek-v3", "step3-mfa"}, {"--iters", "0"},         {"--seed", "-1"},
  };
  for (const auto& args : bad) {
    std::string joined;
    for (const char* a : args) joined += std::string(a) + " ";
    EXPECT_THROW(parse(args), UsageError) << joined;
  }
  try {
    parse({"no-such-preset"});
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-preset"), std::string::npos);
  }
}

TEST(Options, HelpDocumentsEveryFlag) {
  const std::string help = help_text();
  for (const char* flag : {"--preset", "--list", "--sweep", "--b ", "--s-q", "--s-k", "--varlen",
                           "--fixed", "--seed", "--h-q", "--h-kv", "--d-k", "--d-v",
                           "--v-aliases-k", "--separate-v", "--page-size", "--dtype", "--causal",
                           "--no-causal", "--backend", "--device", "--warmup", "--iters",
                           "--vs-reference", "--no-vs-reference", "--ref-iters", "--check-seqs",
                           "--check-heads", "--no-flush", "--json", "--compare", "--check-json",
                           "--help", "FLASHMFA_COMMIT"})
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
  for (const Preset& p : presets()) EXPECT_NE(list_text().find(p.name), std::string::npos);
}

TEST(Options, SweepGrids) {
  // FlashMLA's grid: the 21 rows of flashmla-h100.json, in its order.
  const std::vector<Shape> mla = grid_points(Grid::flashmla);
  ASSERT_EQ(mla.size(), 21u);
  EXPECT_EQ(mla[0].s_k, 4096); EXPECT_TRUE(mla[0].varlen); EXPECT_EQ(mla[0].s_q, 1);
  EXPECT_EQ(mla[4].s_q, 2); EXPECT_FALSE(mla[4].causal);
  EXPECT_TRUE(mla[8].causal);
  EXPECT_EQ(mla[12].h_q, 16); EXPECT_FALSE(mla[12].varlen);
  EXPECT_EQ(mla[18].b, 8); EXPECT_EQ(mla[18].s_k, 65536);
  EXPECT_EQ(mla[19].b, 1); EXPECT_EQ(mla[19].s_k, 131072);
  EXPECT_EQ(mla[20].b, 32); EXPECT_EQ(mla[20].s_q, 4); EXPECT_TRUE(mla[20].causal);
  for (const Shape& s : mla) {
    EXPECT_EQ(s.variant, Variant::mla());
    EXPECT_EQ(s.page_size, 64);
  }
  // Issue 5's MFA table: 11 rows, MFA and MFA-KR only, h_kv 1.
  const std::vector<Shape> mfa = grid_points(Grid::mfa);
  ASSERT_EQ(mfa.size(), 11u);
  for (const Shape& s : mfa) {
    EXPECT_TRUE(s.variant == Variant::mfa() || s.variant == Variant::mfa_kr(256));
    EXPECT_EQ(s.h_kv, 1);
  }
  // --sweep: every preset of a family runs the family's grid; --dtype applies to every point.
  const std::vector<Shape> fp16 = resolve_shapes(parse({"deepseek-v3-tp8", "--sweep", "--dtype", "fp16"}), true);
  ASSERT_EQ(fp16.size(), 21u);
  for (const Shape& s : fp16) EXPECT_EQ(s.dtype, DType::f16);
  EXPECT_EQ(resolve_shapes(parse({"--sweep"}), false).size(), grid_points(Grid::cpu).size());
  EXPECT_FALSE(grid_points(Grid::gqa).empty());
}

}  // namespace
}  // namespace flashmfa::bench
