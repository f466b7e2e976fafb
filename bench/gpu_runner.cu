// flashmfa-bench, CUDA side: one configuration on the GPU. The problem is generated on the
// device in the layout make_problem uses (shuffled pages, NaN in every row past a length and
// in spare pages, a sentinel page id in every unused block-table slot), checked on a sample
// against the host reference, then timed as CUDA-graph replays of flashmfa::run with the plan
// made once.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "gpu_util.hpp"
#include "problem/fp8.hpp"
#include "problem/problem.hpp"
#include "runner.hpp"

namespace flashmfa::bench {

namespace {

using namespace gpu;

// Spare pages no sequence owns (NaN), and unused block-table columns per sequence, as in
// make_problem: a kernel that strays into either shows it.
constexpr int kSparePages = 2;
constexpr int kExtraPagesPerSeq = 1;
// q's entries are normal(0, 2) and the cache's normal(0, 1), as in make_problem: under the
// default scale the scores have standard deviation 2, a peaked but finite softmax.
constexpr float kQueryStd = 2.0f;
constexpr float kCacheStd = 1.0f;
// A cache smaller than this many L2s is rotated among copies, so that replays read DRAM.
constexpr int64_t kRotateL2Multiple = 4;
constexpr int kMaxCopies = 64;
// Leave this share of free device memory unallocated (the library's workspace, cuBLAS, ...).
constexpr double kFreeMemoryShare = 0.9;
// Blocks of the clock probe per SM (so that every SM likely runs one).
constexpr int kClockProbesPerSm = 4;
constexpr double kGiga = 1e9;
// Seeds of the generated tensors, distinct per copy.
constexpr uint64_t kSeedK = 0x4b00, kSeedV = 0x5600, kSeedQ = 0x5100, kCopyStride = 0x10000;

// Where every page of the batch lives (host side).
struct Layout {
  int num_pages = 0;
  int max_pages = 0;
  std::vector<int32_t> block_table;  // [b, max_pages], kSentinelPage where unused
  std::vector<int32_t> valid_rows;   // [num_pages]: rows holding tokens (0 for spare pages)
};

Layout make_layout(const Shape& s, const std::vector<int>& lens) {
  Layout l;
  std::vector<int> pages_of(lens.size());
  int used = 0, widest = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    pages_of[i] = (lens[i] + s.page_size - 1) / s.page_size;
    used += pages_of[i];
    widest = std::max(widest, pages_of[i]);
  }
  l.num_pages = used + kSparePages;
  l.max_pages = std::max(1, widest + kExtraPagesPerSeq);
  std::vector<int32_t> pool(l.num_pages);
  std::iota(pool.begin(), pool.end(), 0);
  std::mt19937_64 rng(s.seed);
  std::shuffle(pool.begin(), pool.end(), rng);
  l.block_table.assign(size_t(s.b) * l.max_pages, testing::kSentinelPage);
  l.valid_rows.assign(l.num_pages, 0);
  int next = 0;
  for (int i = 0; i < s.b; ++i)
    for (int j = 0; j < pages_of[i]; ++j) {
      const int32_t page = pool[next++];
      l.block_table[size_t(i) * l.max_pages + j] = page;
      l.valid_rows[page] = std::min(s.page_size, lens[i] - j * s.page_size);
    }
  return l;
}

// One copy of the inputs that replays rotate among. 16-bit caches live in k / v; FP8 caches
// in k8 / v8 (rows as stored) and ks / vs (fp8_row's scales).
struct Copy {
  Buffer q, k, v;
  Buffer k8, v8, ks, vs;
  DecodeArgs args;
};

// Bytes of one FP8 K row as stored: MLA's 656-byte row, or d_k e4m3 bytes.
int64_t fp8_row_bytes(const Shape& s) {
  return s.variant == Variant::mla() ? MlaFp8Row::kBytes : s.variant.d_k;
}

// fp8_row scales of `pages` pages laid out as the shape says (Shape::scales_head_major).
TensorView scale_view(void* data, const Shape& s, int64_t pages, Device dev) {
  return testing::fp8_scale_view(data, pages, s.page_size, s.h_kv, s.scales_head_major, dev);
}

// The FP8 form of x's filled 16-bit cache, written by flashmfa::append_kv on the device: every
// page is one "sequence" of page_size new tokens (k_new = the 16-bit cache itself, block table
// row i = page i), so the rows land where they were. Rows no sequence uses held NaN and are
// never read.
void quantize_cache(const Shape& s, const Layout& l, Copy& x, const Buffer& identity,
                    const Buffer& page_lens, Device dev, cudaStream_t st) {
  const int d_k = s.variant.d_k, d_v = s.variant.d_v;
  const bool mla = s.variant == Variant::mla(), separate_v = !s.variant.v_aliases_k;
  const int64_t rows = int64_t(l.num_pages) * s.page_size * s.h_kv;
  x.k8 = Buffer(size_t(rows * fp8_row_bytes(s)));
  if (separate_v) x.v8 = Buffer(size_t(rows * d_v));
  if (!mla) x.ks = Buffer(size_t(rows) * sizeof(float));
  if (!mla && separate_v) x.vs = Buffer(size_t(rows) * sizeof(float));
  AppendArgs a;
  a.k_new = make_view(x.k.get(), s.dtype, {l.num_pages, s.page_size, s.h_kv, d_k}, dev);
  if (separate_v) a.v_new = make_view(x.v.get(), s.dtype, {l.num_pages, s.page_size, s.h_kv, d_v}, dev);
  a.k_cache = make_view(x.k8.get(), DType::f8_e4m3, {l.num_pages, s.page_size, s.h_kv, fp8_row_bytes(s)}, dev);
  if (separate_v) a.v_cache = make_view(x.v8.get(), DType::f8_e4m3, {l.num_pages, s.page_size, s.h_kv, d_v}, dev);
  if (!mla) a.k_scale = scale_view(x.ks.get(), s, l.num_pages, dev);
  if (!mla && separate_v) a.v_scale = scale_view(x.vs.get(), s, l.num_pages, dev);
  a.block_table = make_view(identity.get(), DType::i32, {l.num_pages, 1}, dev);
  a.seqlens_k = make_view(page_lens.get(), DType::i32, {l.num_pages}, dev);
  append_kv(a, st);
  BENCH_CUDA(cudaStreamSynchronize(st));
  x.k = Buffer();  // the 16-bit form is not timed; give its memory back
  x.v = Buffer();
}

// Copies sequence i's inputs and outputs back to the host, pages renumbered in order.
SeqSample device_sample(const Shape& s, const Layout& l, const Copy& c, const Buffer& out,
                        const Buffer& lse, int i, int len) {
  SeqSample x;
  x.seq = i;
  x.len = len;
  const int d_k = s.variant.d_k, d_v = s.variant.d_v;
  const size_t page_k = size_t(s.page_size) * s.h_kv * d_k, page_v = size_t(s.page_size) * s.h_kv * d_v;
  const int n_pages = pages_for(len, s.page_size);
  const int used = (len + s.page_size - 1) / s.page_size;
  if (s.fp8) {
    // Rows as stored; NaN bytes (e4m3) and NaN scales where the sample's pages hold no token.
    constexpr uint8_t kNanByte = 0xff;
    const size_t slots = size_t(s.page_size) * s.h_kv;
    const size_t page_k8 = slots * size_t(fp8_row_bytes(s)), page_v8 = slots * size_t(d_v);
    x.k8.assign(page_k8 * n_pages, kNanByte);
    if (!s.variant.v_aliases_k) x.v8.assign(page_v8 * n_pages, kNanByte);
    if (c.ks.get()) x.ks.assign(slots * n_pages, std::nanf(""));
    if (c.vs.get()) x.vs.assign(slots * n_pages, std::nanf(""));
    for (int j = 0; j < used; ++j) {
      const size_t page = size_t(l.block_table[size_t(i) * l.max_pages + j]);
      BENCH_CUDA(cudaMemcpy(x.k8.data() + j * page_k8, c.k8.as<uint8_t>() + page * page_k8,
                            page_k8, cudaMemcpyDeviceToHost));
      if (!x.v8.empty())
        BENCH_CUDA(cudaMemcpy(x.v8.data() + j * page_v8, c.v8.as<uint8_t>() + page * page_v8,
                              page_v8, cudaMemcpyDeviceToHost));
      if (!x.ks.empty())
        BENCH_CUDA(cudaMemcpy(x.ks.data() + j * slots, c.ks.as<float>() + page * slots,
                              slots * sizeof(float), cudaMemcpyDeviceToHost));
      if (!x.vs.empty())
        BENCH_CUDA(cudaMemcpy(x.vs.data() + j * slots, c.vs.as<float>() + page * slots,
                              slots * sizeof(float), cudaMemcpyDeviceToHost));
    }
    // The check reads scales token-major ([page_size, h_kv] per page, SeqSample).
    if (s.scales_head_major)
      for (std::vector<float>* v : {&x.ks, &x.vs})
        *v = testing::transpose_page_scales(*v, s.h_kv, s.page_size);
  }
  const uint16_t nan = testing::nan_bits(s.dtype);
  if (!s.fp8) x.k.assign(page_k * n_pages, nan);
  if (!s.fp8 && !s.variant.v_aliases_k) x.v.assign(page_v * n_pages, nan);
  for (int j = 0; j < used && !s.fp8; ++j) {
    const size_t page = size_t(l.block_table[size_t(i) * l.max_pages + j]);
    BENCH_CUDA(cudaMemcpy(x.k.data() + j * page_k, c.k.as<uint16_t>() + page * page_k,
                          page_k * sizeof(uint16_t), cudaMemcpyDeviceToHost));
    if (!x.v.empty())
      BENCH_CUDA(cudaMemcpy(x.v.data() + j * page_v, c.v.as<uint16_t>() + page * page_v,
                            page_v * sizeof(uint16_t), cudaMemcpyDeviceToHost));
  }
  const size_t q_seq = size_t(s.s_q) * s.h_q * d_k, o_seq = size_t(s.s_q) * s.h_q * d_v;
  const size_t l_seq = size_t(s.h_q) * s.s_q;
  x.q.resize(q_seq);
  x.out.resize(o_seq);
  x.lse.resize(l_seq);
  BENCH_CUDA(cudaMemcpy(x.q.data(), c.q.as<uint16_t>() + i * q_seq, q_seq * 2, cudaMemcpyDeviceToHost));
  BENCH_CUDA(cudaMemcpy(x.out.data(), out.as<uint16_t>() + i * o_seq, o_seq * 2, cudaMemcpyDeviceToHost));
  BENCH_CUDA(cudaMemcpy(x.lse.data(), lse.as<float>() + i * l_seq, l_seq * sizeof(float),
                        cudaMemcpyDeviceToHost));
  return x;
}

// Captures one flashmfa::run into an instantiated graph; returns an empty exec and the reason
// when the stream cannot be captured.
GraphExec capture_run(const Plan& plan, const DecodeArgs& args, cudaStream_t s, std::string& why) {
  return capture_graph([&] { run(plan, args, s); }, s, why);
}

}  // namespace

Row run_gpu(const Shape& s, const Ceilings& c, const RunConfig& cfg, const GpuInfo& gpu) {
  BENCH_CUDA(cudaSetDevice(gpu.device));
  Row row;
  row.shape = s;
  row.backend = "cuda";
  const std::vector<int> lens = shape_lengths(s);
  for (int len : lens) row.total_len += len;
  row.mean_len = double(row.total_len) / s.b;
  row.work = decode_work(s, row.total_len);
  row.m = metrics(row.work, c, 0);

  const Layout lay = make_layout(s, lens);
  const int d_k = s.variant.d_k, d_v = s.variant.d_v;
  const size_t elem = dtype_size(s.dtype);
  const int64_t row_k = int64_t(s.h_kv) * d_k, row_v = int64_t(s.h_kv) * d_v;
  const size_t k_elems = size_t(lay.num_pages) * s.page_size * row_k;
  const size_t v_elems = s.variant.v_aliases_k ? 0 : size_t(lay.num_pages) * s.page_size * row_v;
  const size_t q_elems = size_t(s.b) * s.s_q * s.h_q * d_k;
  const size_t out_elems = size_t(s.b) * s.s_q * s.h_q * d_v, lse_elems = size_t(s.b) * s.h_q * s.s_q;
  // FP8: only the quantized cache stays (the 16-bit one it is made from is freed).
  const size_t cache_bytes =
      s.fp8 ? size_t(lay.num_pages) * s.page_size * size_t(cache_bytes_per_token(s))
            : (k_elems + v_elems) * elem;
  const size_t copy_bytes = cache_bytes + q_elems * elem;

  // Rotate among copies when one copy would stay in L2, as far as memory allows.
  size_t free_b = 0, total_b = 0;
  BENCH_CUDA(cudaMemGetInfo(&free_b, &total_b));
  const size_t shared = out_elems * elem + lse_elems * sizeof(float) + lay.block_table.size() * 4 +
                        lay.valid_rows.size() * 4 + size_t(s.b) * 4;
  const double budget = kFreeMemoryShare * double(free_b) - double(shared);
  if (double(copy_bytes) > budget)
    throw std::runtime_error("the problem needs " + std::to_string(double(copy_bytes + shared) / kGiga) +
                             " GB of device memory; " + std::to_string(double(free_b) / kGiga) +
                             " GB are free");
  int copies = 1;
  const double want = double(kRotateL2Multiple * gpu.l2_bytes);
  if (double(copy_bytes) < want)
    copies = int(std::min<double>({double(kMaxCopies), std::ceil(want / double(copy_bytes)),
                                   std::floor(budget / double(copy_bytes))}));
  copies = std::max(1, copies);
  row.cache_copies = copies;
  if (copies > 1)
    row.note = "the inputs (" + std::to_string(copy_bytes >> 20) + " MiB) rotate among " +
               std::to_string(copies) + " copies so that replays read DRAM, not the " +
               std::to_string(gpu.l2_bytes >> 20) + " MiB L2";

  Stream stream;
  const cudaStream_t st = stream.get();
  const Device dev{DeviceType::cuda, gpu.device};
  Buffer block_table(lay.block_table.size() * sizeof(int32_t)), seqlens(lens.size() * sizeof(int32_t));
  Buffer valid_rows(lay.valid_rows.size() * sizeof(int32_t));
  Buffer out(out_elems * elem), lse(lse_elems * sizeof(float));
  BENCH_CUDA(cudaMemcpy(block_table.get(), lay.block_table.data(), block_table.bytes(), cudaMemcpyHostToDevice));
  std::vector<int32_t> lens32(lens.begin(), lens.end());
  BENCH_CUDA(cudaMemcpy(seqlens.get(), lens32.data(), seqlens.bytes(), cudaMemcpyHostToDevice));
  BENCH_CUDA(cudaMemcpy(valid_rows.get(), lay.valid_rows.data(), valid_rows.bytes(), cudaMemcpyHostToDevice));
  // FP8: append_kv's block table (page i -> page i) and lengths (a full page each).
  Buffer identity, page_lens;
  if (s.fp8) {
    std::vector<int32_t> ids(lay.num_pages), full(lay.num_pages, s.page_size);
    std::iota(ids.begin(), ids.end(), 0);
    identity = Buffer(ids.size() * sizeof(int32_t));
    page_lens = Buffer(full.size() * sizeof(int32_t));
    BENCH_CUDA(cudaMemcpy(identity.get(), ids.data(), identity.bytes(), cudaMemcpyHostToDevice));
    BENCH_CUDA(cudaMemcpy(page_lens.get(), full.data(), page_lens.bytes(), cudaMemcpyHostToDevice));
  }
  // A cudaMemcpy from pageable memory may return before its DMA lands, and `st` does not wait
  // for the legacy stream: without this, the fill kernels below can read stale page tables.
  BENCH_CUDA(cudaDeviceSynchronize());

  const uint16_t nan = testing::nan_bits(s.dtype);
  std::vector<Copy> cp(copies);
  for (int i = 0; i < copies; ++i) {
    Copy& x = cp[i];
    const uint64_t seed = s.seed + uint64_t(i) * kCopyStride;
    x.q = Buffer(q_elems * elem);
    x.k = Buffer(k_elems * elem);
    fill_normal(x.q.as<uint16_t>(), q_elems, s.dtype, kQueryStd, seed + kSeedQ, st);
    fill_cache(x.k.as<uint16_t>(), lay.num_pages, s.page_size, row_k, valid_rows.as<int32_t>(),
               s.dtype, kCacheStd, nan, seed + kSeedK, st);
    if (v_elems) {
      x.v = Buffer(v_elems * elem);
      fill_cache(x.v.as<uint16_t>(), lay.num_pages, s.page_size, row_v, valid_rows.as<int32_t>(),
                 s.dtype, kCacheStd, nan, seed + kSeedV, st);
    }
    DecodeArgs& a = x.args;
    a.q = make_view(x.q.get(), s.dtype, {s.b, s.s_q, s.h_q, d_k}, dev);             // [b, s_q, h_q, d_k]
    if (s.fp8) {
      quantize_cache(s, lay, x, identity, page_lens, dev, st);
      const int64_t np = lay.num_pages;
      a.k_cache = make_view(x.k8.get(), DType::f8_e4m3, {np, s.page_size, s.h_kv, fp8_row_bytes(s)}, dev);
      if (x.v8.get()) a.v_cache = make_view(x.v8.get(), DType::f8_e4m3, {np, s.page_size, s.h_kv, d_v}, dev);
      if (x.ks.get()) a.k_scale = scale_view(x.ks.get(), s, np, dev);
      if (x.vs.get()) a.v_scale = scale_view(x.vs.get(), s, np, dev);
    } else {
      a.k_cache = make_view(x.k.get(), s.dtype, {lay.num_pages, s.page_size, s.h_kv, d_k}, dev);
      if (v_elems) a.v_cache = make_view(x.v.get(), s.dtype, {lay.num_pages, s.page_size, s.h_kv, d_v}, dev);
    }
    a.block_table = make_view(block_table.get(), DType::i32, {s.b, lay.max_pages}, dev);
    a.seqlens_k = make_view(seqlens.get(), DType::i32, {s.b}, dev);
    a.out = make_view(out.get(), s.dtype, {s.b, s.s_q, s.h_q, d_v}, dev);           // [b, s_q, h_q, d_v]
    a.lse = make_view(lse.get(), DType::f32, {s.b, s.h_q, s.s_q}, dev);             // [b, h_q, s_q]
    a.causal = s.causal;
    a.path = cfg.path == "portable" ? DecodeArgs::Path::portable
             : cfg.path == "hopper" ? DecodeArgs::Path::hopper : DecodeArgs::Path::automatic;
  }

  // Plan once; the same plan serves every copy (same shapes and lengths).
  Buffer ws(std::max<size_t>(1, workspace_size(cp[0].args)));
  const Plan plan = flashmfa::plan(cp[0].args, ws.get(), ws.bytes(), st);
  row.path = cfg.path;
  row.kernel = plan.kernel;
  row.num_parts = plan.num_parts;

  // One checked run on poisoned outputs (NaN), then the sampled comparison.
  BENCH_CUDA(cudaMemsetAsync(out.get(), 0xff, out.bytes(), st));
  BENCH_CUDA(cudaMemsetAsync(lse.get(), 0xff, lse.bytes(), st));
  run(plan, cp[0].args, st);
  BENCH_CUDA(cudaStreamSynchronize(st));
  const uint32_t flags = read_error_flags(plan, st);
  std::vector<SeqSample> samples;
  for (int i : pick_sequences(lens, cfg.check_seqs, s.seed))
    samples.push_back(device_sample(s, lay, cp[0], out, lse, i, lens[i]));
  const CheckResult chk = check_samples(s, samples, head_stride(s.h_q, s.h_kv, cfg.check_heads), s.b);
  row.checked = chk.what;
  row.max_abs_err = chk.max_abs_out;
  row.max_abs_err_lse = chk.max_abs_lse;
  row.check_ok = chk.ok && flags == 0;
  row.check_message = flags ? "the kernels raised error flags " + std::to_string(flags) +
                                  " on a valid problem" : chk.message;
#ifdef FLASHMFA_MEASURE_TIME_FAILED  // measuring builds that compute wrong results on purpose
  row.checked = "none: a FLASHMFA_MEASURE_TIME_FAILED build, timed whatever the check said";
  row.check_ok = true;
#endif
  if (!row.check_ok) return row;

  // One graph per copy; replays rotate among them.
  std::vector<GraphExec> graphs;
  std::string why;
  for (int i = 0; i < copies && why.empty(); ++i) graphs.push_back(capture_run(plan, cp[i].args, st, why));
  const bool use_graphs = why.empty();
  row.method = use_graphs ? "cuda-graph" : "cuda-direct";
  if (!use_graphs)
    row.note += std::string(row.note.empty() ? "" : "; ") + "graph capture failed (" + why +
                "); timed direct launches";
  auto launch = [&](int i) {
    if (use_graphs) BENCH_CUDA(cudaGraphLaunch(graphs[i % copies].get(), st));
    else run(plan, cp[i % copies].args, st);
  };

  // The SM clock over the replays (a power-capped GPU runs long compute-bound rows slower).
  const int probes = kClockProbesPerSm * gpu.sms;
  Buffer stamps(2 * probes * sizeof(ClockStamp));
  row.timing = summarize(time_back_to_back(
      launch, cfg.warmup, cfg.iters, st, [&] { clock_probe(stamps.as<ClockStamp>(), probes, st); },
      [&] { clock_probe(stamps.as<ClockStamp>() + probes, probes, st); }));
  row.m = metrics(row.work, c, row.timing.median_us);
  std::vector<ClockStamp> both(2 * probes);  // before the replays, then after them
  BENCH_CUDA(cudaMemcpy(both.data(), stamps.get(), stamps.bytes(), cudaMemcpyDeviceToHost));
  row.sm_clock_ghz = sm_clock_ghz({both.begin(), both.begin() + probes},
                                  {both.begin() + probes, both.end()});

  // The replays must not have met anything the checked run did not.
  if (const uint32_t after = read_error_flags(plan, st); after != 0) {
    row.check_ok = false;
    row.check_message = "the kernels raised error flags " + std::to_string(after) + " during the timed replays";
  }
  return row;
}

}  // namespace flashmfa::bench
