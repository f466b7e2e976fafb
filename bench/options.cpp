// flashmfa-bench: presets, sweep grids and the command line.
#include "options.hpp"

#include <charconv>
#include <limits>
#include <sstream>

namespace flashmfa::bench {

namespace {

// Defaults shared by the presets: a serving batch with an 8K context, the page size FlashMLA
// requires, bf16 as DeepSeek and Step-3 serve.
constexpr int kServingBatch = 128;
constexpr int kServingContext = 8192;
constexpr int kFlashMlaPage = 64;
constexpr int kMlaHeads = 128;          // DeepSeek-V3 query heads on one GPU
constexpr int kMlaHeadsTp8 = 16;        // under 8-way tensor parallelism
constexpr int kMfaHeads = 64;           // Step-3 query heads with data-parallel attention
constexpr int kMfaHeadsTp8 = 8;
constexpr int kLlamaHeads = 32;         // Llama-3 8B: 32 query heads over 8 KV heads of 128
constexpr int kLlamaKvHeads = 8;
constexpr int kLlamaHeadDim = 128;
constexpr int kVllmPage = 16;           // vLLM's default block size
// The issue-2 CPU benchmark: MLA b=4, s_q=1, h_q=16, s_k=4096.
constexpr int kCpuBatch = 4;
constexpr int kCpuContext = 4096;

Shape mla(int b, int s_q, int s_k, int h_q, bool varlen, bool causal) {
  Shape s;
  s.variant = Variant::mla();
  s.b = b; s.s_q = s_q; s.s_k = s_k; s.h_q = h_q; s.h_kv = 1;
  s.page_size = kFlashMlaPage; s.varlen = varlen; s.causal = causal;
  return s;
}

Shape mfa(Variant v, int b, int s_q, int s_k, int h_q, bool varlen, bool causal) {
  Shape s = mla(b, s_q, s_k, h_q, varlen, causal);
  s.variant = v;
  return s;
}

Shape gqa(int b, int s_q, int s_k, bool varlen, bool causal) {
  Shape s = mfa(Variant::mqa(kLlamaHeadDim), b, s_q, s_k, kLlamaHeads, varlen, causal);
  s.h_kv = kLlamaKvHeads;
  s.page_size = kVllmPage;
  return s;
}

[[noreturn]] void usage(const std::string& msg) { throw UsageError(msg); }

int64_t parse_int(const std::string& flag, const std::string& text, int64_t lo, int64_t hi) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size())
    usage(flag + ": expected an integer, got '" + text + "'");
  if (v < lo || v > hi)
    usage(flag + ": expected a value in [" + std::to_string(lo) + ", " + std::to_string(hi) +
          "], got " + text);
  return v;
}

}  // namespace

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::automatic: return "auto";
    case Backend::cpu: return "cpu";
    case Backend::cuda: return "cuda";
  }
  return "?";
}

const std::vector<Preset>& presets() {
  static const std::vector<Preset> table = {
      {"deepseek-v3", "DeepSeek-V3 MLA decode on one GPU: h_q 128, d 576/512, varlen lengths",
       mla(kServingBatch, 1, kServingContext, kMlaHeads, true, false), Grid::flashmla},
      // Fixed lengths, as FlashMLA's h_q 16/32/64 rows are measured.
      {"deepseek-v3-tp8", "DeepSeek-V3 MLA under 8-way tensor parallelism: h_q 16, fixed lengths",
       mla(kServingBatch, 1, kServingContext, kMlaHeadsTp8, false, false), Grid::flashmla},
      {"deepseek-v3-mtp", "DeepSeek-V3 MLA with multi-token prediction: s_q 2, causal",
       mla(kServingBatch, 2, kServingContext, kMlaHeads, true, true), Grid::flashmla},
      {"step3-mfa", "Step-3 MFA: one K and one V head of 256, h_q 64 (data-parallel attention)",
       mfa(Variant::mfa(), kServingBatch, 1, kServingContext, kMfaHeads, false, false), Grid::mfa},
      {"step3-mfa-tp8", "Step-3 MFA under 8-way tensor parallelism: h_q 8",
       mfa(Variant::mfa(), kServingBatch, 1, kServingContext, kMfaHeadsTp8, false, false),
       Grid::mfa},
      {"mfa-kr-256", "MFA with key reuse: V aliases the 256-wide K row, h_q 64",
       mfa(Variant::mfa_kr(256), kServingBatch, 1, kServingContext, kMfaHeads, false, false),
       Grid::mfa},
      {"llama3-gqa", "Llama-3 8B GQA: h_q 32 over h_kv 8, d 128, page 16, varlen lengths",
       gqa(kServingBatch, 1, kServingContext, true, false), Grid::gqa},
      {"cpu-demo", "The CPU benchmark of issue 2: MLA b 4, h_q 16, s_k 4096 (fast path vs reference)",
       mla(kCpuBatch, 1, kCpuContext, kMlaHeadsTp8, false, false), Grid::cpu},
  };
  return table;
}

const Preset* find_preset(const std::string& name) {
  for (const Preset& p : presets())
    if (p.name == name) return &p;
  return nullptr;
}

const char* default_preset(bool on_gpu) { return on_gpu ? "deepseek-v3" : "cpu-demo"; }

const char* grid_description(Grid g) {
  switch (g) {
    case Grid::flashmla: return "FlashMLA's H100 grid (the 21 rows of flashmla-h100.json)";
    case Grid::mfa: return "issue 5's MFA / MFA-KR targets (11 rows)";
    case Grid::gqa: return "Llama-3 GQA serving shapes (5 rows)";
    case Grid::cpu: return "small shapes of every family for the CPU (5 rows)";
  }
  return "?";
}

std::vector<Shape> grid_points(Grid g) {
  std::vector<Shape> pts;
  const int contexts[] = {4096, 8192, 16384, 32768};
  switch (g) {
    case Grid::flashmla: {
      // Same order as flashmla-h100.json.
      for (int s_k : contexts) pts.push_back(mla(kServingBatch, 1, s_k, kMlaHeads, true, false));
      for (bool causal : {false, true})
        for (int s_k : contexts) pts.push_back(mla(kServingBatch, 2, s_k, kMlaHeads, true, causal));
      for (int h_q : {16, 32, 64})
        for (int s_k : {8192, 32768}) pts.push_back(mla(kServingBatch, 1, s_k, h_q, false, false));
      pts.push_back(mla(8, 1, 65536, kMlaHeads, false, false));
      pts.push_back(mla(1, 1, 131072, kMlaHeads, false, false));
      pts.push_back(mla(32, 4, 8192, kMlaHeads, true, true));
      break;
    }
    case Grid::mfa: {
      const Variant m = Variant::mfa(), kr = Variant::mfa_kr(256);
      pts.push_back(mfa(m, kServingBatch, 1, 8192, kMfaHeads, false, false));
      pts.push_back(mfa(m, kServingBatch, 1, 32768, kMfaHeads, false, false));
      pts.push_back(mfa(m, kServingBatch, 1, 8192, kMfaHeads, true, false));
      for (int h_q : {8, 16, 32}) pts.push_back(mfa(m, kServingBatch, 1, 8192, h_q, false, false));
      pts.push_back(mfa(kr, kServingBatch, 1, 8192, kMfaHeads, false, false));
      pts.push_back(mfa(kr, kServingBatch, 1, 32768, kMfaHeads, false, false));
      pts.push_back(mfa(m, kServingBatch, 4, 8192, kMfaHeads, true, true));
      pts.push_back(mfa(kr, kServingBatch, 4, 8192, kMfaHeads, true, true));
      pts.push_back(mfa(m, 1, 1, 131072, kMfaHeads, false, false));
      break;
    }
    case Grid::gqa: {
      pts.push_back(gqa(kServingBatch, 1, 8192, true, false));
      pts.push_back(gqa(kServingBatch, 1, 32768, true, false));
      pts.push_back(gqa(kServingBatch, 4, 8192, true, true));
      pts.push_back(gqa(8, 1, 65536, false, false));
      pts.push_back(gqa(1, 1, 131072, false, false));
      break;
    }
    case Grid::cpu: {
      pts.push_back(mla(kCpuBatch, 1, kCpuContext, kMlaHeadsTp8, false, false));
      pts.push_back(mla(kCpuBatch, 2, kCpuContext, kMlaHeadsTp8, true, true));
      pts.push_back(mfa(Variant::mfa(), kCpuBatch, 1, kCpuContext, kMfaHeadsTp8, false, false));
      pts.push_back(mfa(Variant::mfa_kr(256), kCpuBatch, 1, kCpuContext, kMfaHeadsTp8, false, false));
      Shape g = gqa(kCpuBatch, 1, kCpuContext, false, false);
      pts.push_back(g);
      break;
    }
  }
  return pts;
}

bool ShapeOverrides::any_geometry() const {
  return b || s_q || s_k || h_q || h_kv || d_k || d_v || varlen || causal || v_aliases_k;
}

Options parse_args(int argc, const char* const* argv) {
  Options o;
  std::ostringstream cmd;
  cmd << "flashmfa-bench";
  for (int i = 1; i < argc; ++i) cmd << ' ' << argv[i];
  o.command_line = cmd.str();

  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_inline = false;
    if (arg.rfind("--", 0) == 0) {
      const size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        has_inline = true;
      }
    }
    // The value of a flag that takes one: inline (--b=4) or the next argument (--b 4).
    auto next = [&]() -> std::string {
      if (has_inline) return value;
      if (i + 1 >= argc) usage(arg + ": missing value");
      return argv[++i];
    };
    auto positive = [&](std::optional<int>& dst) { dst = int(parse_int(arg, next(), 1, kIntMax)); };
    auto count = [&](int& dst, int64_t lo) { dst = int(parse_int(arg, next(), lo, kIntMax)); };
    auto flag_only = [&]() {
      if (has_inline) usage(arg + ": takes no value");
    };

    if (arg == "-h" || arg == "--help") { flag_only(); o.help = true; }
    else if (arg == "--list") { flag_only(); o.list = true; }
    else if (arg == "--sweep") { flag_only(); o.sweep = true; }
    else if (arg == "--preset") o.preset = next();
    else if (arg == "--b") positive(o.over.b);
    else if (arg == "--s-q") positive(o.over.s_q);
    else if (arg == "--s-k") positive(o.over.s_k);
    else if (arg == "--h-q") positive(o.over.h_q);
    else if (arg == "--h-kv") positive(o.over.h_kv);
    else if (arg == "--d-k") positive(o.over.d_k);
    else if (arg == "--d-v") positive(o.over.d_v);
    else if (arg == "--page-size") positive(o.over.page_size);
    else if (arg == "--varlen") { flag_only(); o.over.varlen = true; }
    else if (arg == "--fixed") { flag_only(); o.over.varlen = false; }
    else if (arg == "--causal") { flag_only(); o.over.causal = true; }
    else if (arg == "--no-causal") { flag_only(); o.over.causal = false; }
    else if (arg == "--v-aliases-k") { flag_only(); o.over.v_aliases_k = true; }
    else if (arg == "--separate-v") { flag_only(); o.over.v_aliases_k = false; }
    else if (arg == "--seed") o.over.seed = uint64_t(parse_int(arg, next(), 0, INT64_MAX));
    else if (arg == "--dtype") {
      const std::string v = next();
      if (v == "bf16") o.over.dtype = DType::bf16;
      else if (v == "fp16" || v == "f16") o.over.dtype = DType::f16;
      else usage("--dtype: expected bf16 or fp16, got '" + v + "'");
    } else if (arg == "--cache") {
      const std::string v = next();
      if (v == "fp8") o.over.fp8 = true;
      else if (v == "native" || v == "bf16" || v == "fp16") o.over.fp8 = false;
      else usage("--cache: expected native or fp8, got '" + v + "'");
    } else if (arg == "--scale-layout") {
      const std::string v = next();
      if (v == "head") o.over.scales_head_major = true;
      else if (v == "token") o.over.scales_head_major = false;
      else usage("--scale-layout: expected token or head, got '" + v + "'");
    } else if (arg == "--path") {
      o.paths.clear();
      std::string v = next(), item;
      std::istringstream ss(v);
      while (std::getline(ss, item, ','))
        if (item == "auto" || item == "portable" || item == "hopper") o.paths.push_back(item);
        else usage("--path: expected auto, portable or hopper (comma-separated), got '" + item + "'");
      if (o.paths.empty()) usage("--path: expected at least one of auto, portable, hopper");
    } else if (arg == "--backend") {
      const std::string v = next();
      if (v == "auto") o.backend = Backend::automatic;
      else if (v == "cpu") o.backend = Backend::cpu;
      else if (v == "cuda") o.backend = Backend::cuda;
      else usage("--backend: expected auto, cpu or cuda, got '" + v + "'");
    }
    else if (arg == "--device") count(o.device, 0);
    else if (arg == "--warmup") count(o.warmup, 0);
    else if (arg == "--iters") count(o.iters, 1);
    else if (arg == "--ref-iters") count(o.ref_iters, 1);
    else if (arg == "--check-seqs") count(o.check_seqs, 1);
    else if (arg == "--check-heads") count(o.check_heads, 1);
    else if (arg == "--vs-reference") { flag_only(); o.vs_reference = true; }
    else if (arg == "--no-vs-reference") { flag_only(); o.vs_reference = false; }
    else if (arg == "--no-flush") { flag_only(); o.flush = false; }
    else if (arg == "--json") o.json_path = next();
    else if (arg == "--compare") o.compare_path = next();
    else if (arg == "--check-json") o.check_json_path = next();
    else if (arg.rfind("-", 0) == 0) usage("unknown flag '" + arg + "' (see --help)");
    else if (o.preset.empty()) o.preset = arg;
    else usage("unexpected argument '" + arg + "' (one preset at most)");
  }
  std::istringstream names(o.preset);
  for (std::string name; std::getline(names, name, ',');)
    if (!find_preset(name))
      usage("unknown preset '" + name + "' (flashmfa-bench --list shows the presets)");
  if (o.sweep && o.over.any_geometry())
    usage("--sweep runs the preset's grid; only --dtype, --cache, --seed and --page-size apply "
          "to it");
  return o;
}

std::vector<Shape> resolve_shapes(const Options& o, bool on_gpu) {
  // A comma-separated list of presets runs each in turn (one ceiling measurement for all).
  std::vector<Shape> shapes;
  std::istringstream names(o.preset.empty() ? std::string(default_preset(on_gpu)) : o.preset);
  for (std::string name; std::getline(names, name, ',');) {
    const Preset* p = find_preset(name);
    if (!p) usage("unknown preset '" + name + "'");  // parse_args has checked each name
    const std::vector<Shape> add = o.sweep ? grid_points(p->grid) : std::vector<Shape>{p->shape};
    shapes.insert(shapes.end(), add.begin(), add.end());
  }
  if (shapes.empty()) usage("no preset named in '" + o.preset + "'");
  const ShapeOverrides& v = o.over;
  for (Shape& s : shapes) {
    if (v.b) s.b = *v.b;
    if (v.s_q) s.s_q = *v.s_q;
    if (v.s_k) s.s_k = *v.s_k;
    if (v.h_q) s.h_q = *v.h_q;
    if (v.h_kv) s.h_kv = *v.h_kv;
    if (v.page_size) s.page_size = *v.page_size;
    if (v.varlen) s.varlen = *v.varlen;
    if (v.causal) s.causal = *v.causal;
    if (v.seed) s.seed = *v.seed;
    if (v.dtype) s.dtype = *v.dtype;
    if (v.fp8) s.fp8 = *v.fp8;
    if (v.scales_head_major) s.scales_head_major = *v.scales_head_major;
    // A new d_k alone keeps the preset's d_v relation: equal widths stay equal (d 128 GQA),
    // MLA's 576/512 takes both flags.
    if (v.d_k) {
      if (s.variant.d_v == s.variant.d_k && !v.d_v) s.variant.d_v = *v.d_k;
      s.variant.d_k = *v.d_k;
    }
    if (v.d_v) s.variant.d_v = *v.d_v;
    if (v.v_aliases_k) s.variant.v_aliases_k = *v.v_aliases_k;
  }
  return shapes;
}

std::string list_text() {
  std::ostringstream os;
  os << "presets (run one with: flashmfa-bench NAME [--sweep]):\n";
  for (const Preset& p : presets()) {
    os << "  " << p.name << std::string(p.name.size() < 18 ? 18 - p.name.size() : 1, ' ')
       << p.description << "\n" << std::string(20, ' ') << describe(p.shape) << "\n"
       << std::string(20, ' ') << "--sweep: " << grid_description(p.grid) << "\n";
  }
  return os.str();
}

}  // namespace flashmfa::bench

namespace flashmfa::bench {

std::string help_text() {
  return R"(usage: flashmfa-bench [PRESET] [options]

Benchmarks flashmfa's decode (plan once, then run = split + combine) on one configuration or
on a preset's grid, checks the result against flashmfa::decode_reference, and reports time,
TFLOP/s, GB/s and % of the roofline drawn from ceilings measured in the same process.
With no arguments: the deepseek-v3 preset on the GPU when one is present; otherwise it says so
and runs the cpu-demo preset on the CPU, with the reference's time and the fast path's speed-up.

workload:
  PRESET, --preset NAMES  a named workload, or several comma-separated (see --list); shape
                          flags below override their fields
  --list                  list the presets, their shapes and their sweep grids, and exit
  --sweep                 run the preset's standard grid (progress on stderr, one line a point);
                          only --dtype, --cache, --seed and --page-size apply to every point
  --b N                   batch size (sequences)
  --s-q N                 query tokens per sequence (s_q > 1: multi-token prediction)
  --s-k N                 cached tokens per sequence, or their mean with --varlen
  --varlen                lengths drawn from normal(s_k, s_k/2), floored at s_q
  --fixed                 every sequence has s_k tokens
  --seed N                seed of the lengths, the page shuffle and the data (default 0)
  --h-q N                 query heads
  --h-kv N                KV heads (h_q must be a multiple)
  --d-k N                 K row width (d_v follows when the preset's widths are equal)
  --d-v N                 V width
  --v-aliases-k           V is the first d_v columns of the K row (MLA, MFA-KR)
  --separate-v            V has its own cache
  --page-size N           tokens per cache page
  --dtype bf16|fp16       q, cache and out dtype
  --cache native|fp8      the cache as stored: native (dtype), or FP8 (MLA: FlashMLA's
                          656-byte rows; others: e4m3 rows + one f32 scale per row), made from
                          the same random cache by flashmfa::append_kv on the device
  --scale-layout token|head
                          FP8 rows' scales in memory: token (default; [num_pages, page_size,
                          h_kv], as documented) or head ([num_pages, h_kv, page_size], passed
                          with its strides: each KV head's scales of a page contiguous)
  --causal, --no-causal   causal masking of the s_q new tokens

execution:
  --path LIST            CUDA kernel families, comma-separated: auto (default), portable
                         (the mma.sync path), hopper (sm_90a); each point runs once per entry
  --backend auto|cpu|cuda where to run (auto: cuda when a GPU is visible, else cpu)
  --device N              CUDA device ordinal (default 0)
  --warmup N              untimed runs first (default: 10 on the GPU, 1 on the CPU)
  --iters N               timed runs; the median, min and max are reported
                          (default: 100 CUDA-graph replays on the GPU, 5 on the CPU)
  --vs-reference          CPU: also time flashmfa::decode_reference on the whole problem and
                          report the fast path's speed-up over it (default on for cpu-demo)
  --no-vs-reference       do not time the reference (it still checks the result)
  --ref-iters N           timed reference runs (default 3)
  --check-seqs N          sequences checked against the reference (default 4: the shortest,
                          the longest and random ones; all when the batch is smaller)
  --check-heads N         query heads checked per sequence (default 16, evenly spaced)
  --no-flush              CPU: do not evict the last-level cache before each timed run

output:
  --json FILE             write the run (commit, date, device, clocks, ceilings, every row)
  --compare FILE          print speed-ups against an earlier JSON matched row by row on the
                          shape: ours, FlashMLA's (flashmla-h100.json) or the Triton peer's
  --check-json FILE       validate a results JSON against flashmfa-bench's schema and exit
  -h, --help              this text

The roofline (DESIGN.md section 3): FLOPs = 2 h_q s_q L (d_k + d_v); bytes = L h_kv
(d_k + d_v if V is separate) elem + b s_q h_q (d_k + d_v) elem; time = max(bytes / copy
bandwidth, FLOPs / matmul rate). GPU ceilings: a device-to-device copy of 1 GiB (bytes read +
written; a quarter of the free memory if that is less, at least 256 MiB) and an 8192^3 cuBLAS
bf16 matmul with fp32 accumulation; beside them the call floor, a CUDA graph of two empty
kernels (the second launched as run() launches the combine) timed exactly as the rows are:
what a two-kernel call costs when it does nothing. CPU ceilings: a multithreaded memcpy of a
buffer 4x the last-level cache (bytes read + written) and a blocked fp32 matmul loop built with
the library's flags (not a vendor BLAS).

environment:
  FLASHMFA_COMMIT         the commit recorded in the JSON (default: git at build time)

exit status: 0 ok; 1 a check failed or a runtime error; 2 bad command line, unknown preset or
impossible shape; 3 --backend cuda without a usable GPU.
)";
}

}  // namespace flashmfa::bench
