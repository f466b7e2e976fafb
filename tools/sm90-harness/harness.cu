// Standalone test + timing harness for the sm90 decode kernel (not part of the library build).
// Mirrors backend.cu's configure/plan/run with sm90::choose/launch, the project's scheduler
// and combine kernels. Correctness vs a float64 CPU reference with NaN in every unused cache
// row, sentinel page ids in unused table slots, poisoned outputs. Timing: CUDA-graph replays.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cuda/common/combine.hpp"
#include "cuda/common/device.hpp"
#include "cuda/common/scheduler.hpp"
#include "cuda/sm90/decode/decode.hpp"
#include "flashmfa/flashmfa.hpp"
#include <mutex>

using namespace flashmfa;
using namespace flashmfa::cuda;

#define CK(x)                                                                          \
  do {                                                                                 \
    cudaError_t e = (x);                                                               \
    if (e != cudaSuccess) {                                                            \
      printf("CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e), __FILE__, __LINE__, #x); \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

static uint16_t f2bf(float f) {
  uint32_t u; memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  u += 0x7fff + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}
static float bf2f(uint16_t h) { uint32_t u = uint32_t(h) << 16; float f; memcpy(&f, &u, 4); return f; }
static uint16_t f2h(float f) { __half h = __float2half_rn(f); uint16_t u; memcpy(&u, &h, 2); return u; }
static float h2f(uint16_t u) { __half h; memcpy(&h, &u, 2); return __half2float(h); }
static float tof(DType t, uint16_t v) { return t == DType::bf16 ? bf2f(v) : h2f(v); }
static uint16_t fromf(DType t, float f) { return t == DType::bf16 ? f2bf(f) : f2h(f); }

struct Spec {
  int d = 256; bool alias = false; DType dtype = DType::bf16;
  int b = 1, s_q = 1, h_q = 16, h_kv = 1, page = 64;
  bool causal = false; std::vector<int> lens; int extra_pages = 1; uint64_t seed = 1;
  int bad_page_seq = -1;  // put an out-of-range page id inside this sequence
  std::string str() const {
    char buf[256];
    snprintf(buf, sizeof buf, "d=%d %s %s b=%d s_q=%d h_q=%d h_kv=%d page=%d causal=%d", d,
             alias ? "KR" : "KV", dtype == DType::bf16 ? "bf16" : "f16", b, s_q, h_q, h_kv, page, causal);
    return buf;
  }
};

__global__ void fill_random(uint16_t* p, size_t n, uint64_t seed, int is_bf16) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    x ^= x >> 31; x *= 0xBF58476D1CE4E5B9ull; x ^= x >> 29;
    float f = (float((x >> 40) & 0xFFFFFF) / 16777216.0f) * 2.f - 1.f;
    if (is_bf16) { __nv_bfloat16 h = __float2bfloat16_rn(f); p[i] = *reinterpret_cast<uint16_t*>(&h); }
    else { __half h = __float2half_rn(f); p[i] = *reinterpret_cast<uint16_t*>(&h); }
  }
}

struct Problem {
  Spec s;
  int max_pages = 0, num_pages = 0;
  std::vector<int32_t> table, lens;
  uint16_t *dq = nullptr, *dk = nullptr, *dv = nullptr, *dout = nullptr;
  int32_t *dtable = nullptr, *dlens = nullptr;
  float* dlse = nullptr;
  size_t q_elems, k_elems, out_elems, lse_elems;
  detail::DecodeParams p{};
};

static const uint16_t kNaN = 0xFFFF;

// Builds the problem on the device. K/V: random on device, then NaN written into every unused
// row (rows past the length in the last page; spare pages entirely).
Problem make(const Spec& s) {
  Problem P; P.s = s;
  std::mt19937_64 rng(s.seed);
  for (int l : s.lens) P.max_pages = std::max(P.max_pages, (l + s.page - 1) / s.page);
  P.max_pages += s.extra_pages;
  P.max_pages = std::max(P.max_pages, 1);
  int used = 0;
  for (int l : s.lens) used += (l + s.page - 1) / s.page;
  P.num_pages = used + 3 + s.b;  // spare pages hold NaN
  std::vector<int32_t> pool(P.num_pages);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  P.table.assign(size_t(s.b) * P.max_pages, std::numeric_limits<int32_t>::max());
  int next = 0;
  for (int i = 0; i < s.b; ++i)
    for (int j = 0; j < (s.lens[i] + s.page - 1) / s.page; ++j) P.table[size_t(i) * P.max_pages + j] = pool[next++];
  if (s.bad_page_seq >= 0 && s.lens[s.bad_page_seq] > 0) P.table[size_t(s.bad_page_seq) * P.max_pages] = P.num_pages + 5;
  P.lens = s.lens;
  const int dk = s.d, dv = s.d;
  P.q_elems = size_t(s.b) * s.s_q * s.h_q * dk;
  P.k_elems = size_t(P.num_pages) * s.page * s.h_kv * dk;
  P.out_elems = size_t(s.b) * s.s_q * s.h_q * dv;
  P.lse_elems = size_t(s.b) * s.h_q * s.s_q;
  CK(cudaMalloc(&P.dq, P.q_elems * 2));
  CK(cudaMalloc(&P.dk, P.k_elems * 2));
  if (!s.alias) CK(cudaMalloc(&P.dv, P.k_elems * 2));
  CK(cudaMalloc(&P.dout, P.out_elems * 2));
  CK(cudaMalloc(&P.dlse, P.lse_elems * 4));
  CK(cudaMalloc(&P.dtable, P.table.size() * 4));
  CK(cudaMalloc(&P.dlens, std::max<size_t>(1, s.b) * 4));
  const int isbf = s.dtype == DType::bf16;
  fill_random<<<1024, 256>>>(P.dq, P.q_elems, s.seed * 3 + 1, isbf);
  fill_random<<<4096, 256>>>(P.dk, P.k_elems, s.seed * 3 + 2, isbf);
  if (!s.alias) fill_random<<<4096, 256>>>(P.dv, P.k_elems, s.seed * 3 + 3, isbf);
  CK(cudaGetLastError());
  // NaN into unused rows: mark used rows, NaN the rest (row = (page, slot) x all heads).
  {
    std::vector<char> row_used(size_t(P.num_pages) * s.page, 0);
    for (int i = 0; i < s.b; ++i)
      for (int j = 0; j < s.lens[i]; ++j) {
        int32_t pg = P.table[size_t(i) * P.max_pages + j / s.page];
        if (pg >= 0 && pg < P.num_pages) row_used[size_t(pg) * s.page + j % s.page] = 1;
      }
    const size_t row_elems = size_t(s.h_kv) * dk;
    std::vector<uint16_t> nanrow(row_elems, kNaN);
    for (size_t r = 0; r < row_used.size(); ++r)
      if (!row_used[r]) {
        CK(cudaMemcpy(P.dk + r * row_elems, nanrow.data(), row_elems * 2, cudaMemcpyHostToDevice));
        if (!s.alias) CK(cudaMemcpy(P.dv + r * row_elems, nanrow.data(), row_elems * 2, cudaMemcpyHostToDevice));
      }
  }
  CK(cudaMemcpy(P.dtable, P.table.data(), P.table.size() * 4, cudaMemcpyHostToDevice));
  if (s.b) CK(cudaMemcpy(P.dlens, P.lens.data(), s.b * 4, cudaMemcpyHostToDevice));
  detail::DecodeParams& p = P.p;
  p.dtype = s.dtype; p.b = s.b; p.s_q = s.s_q; p.h_q = s.h_q; p.h_kv = s.h_kv; p.q_per_kv = s.h_q / s.h_kv;
  p.d_k = dk; p.d_v = dv; p.page_size = s.page; p.log2_page_size = 0;
  while ((1 << p.log2_page_size) < s.page) ++p.log2_page_size;
  p.max_pages = P.max_pages; p.num_pages = P.num_pages; p.causal = s.causal; p.v_aliases_k = s.alias;
  p.scale = 1.f / std::sqrt(float(dk));
  p.q = P.dq; p.q_sh = dk; p.q_ss = int64_t(s.h_q) * dk; p.q_sb = int64_t(s.s_q) * s.h_q * dk;
  p.k = P.dk; p.k_sh = dk; p.k_st = int64_t(s.h_kv) * dk; p.k_sp = int64_t(s.page) * s.h_kv * dk;
  p.v = s.alias ? P.dk : P.dv; p.v_sh = p.k_sh; p.v_st = p.k_st; p.v_sp = p.k_sp;
  p.block_table = P.dtable; p.bt_sb = P.max_pages; p.seqlens = P.dlens;
  p.out = P.dout; p.o_sh = dv; p.o_ss = int64_t(s.h_q) * dv; p.o_sb = int64_t(s.s_q) * s.h_q * dv;
  p.lse = P.dlse; p.lse_ss = 1; p.lse_sh = s.s_q; p.lse_sb = int64_t(s.h_q) * s.s_q;
  CK(cudaDeviceSynchronize());
  return P;
}

void destroy(Problem& P) {
  cudaFree(P.dq); cudaFree(P.dk); cudaFree(P.dv); cudaFree(P.dout); cudaFree(P.dlse);
  cudaFree(P.dtable); cudaFree(P.dlens);
}


// ---- prototype combine (proposal for common/combine.cu) ----------------------------------
// One CTA per (sequence, partial row). Threads = (d_v / 4 columns) x KG split groups: each
// thread sums splits k = kg, kg + KG, ... for one float4 of columns, with several loads in
// flight; the KG groups are reduced through shared memory. Starts with griddepcontrol.wait so
// it can be launched with programmatic dependent launch behind the decode kernel.
constexpr int kC2Threads = 256;
template <class T>
__global__ void __launch_bounds__(kC2Threads) combine2_kernel(const __grid_constant__ detail::DecodeParams p,
                                                               const __grid_constant__ Schedule s) {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  const int seq = blockIdx.y, row = blockIdx.x;
  const int n = s.num_splits[seq];
  if (n <= 1) return;
  const int rows_all = p.h_q * p.s_q;
  const int slot0 = s.slot_begin[seq];
  const float* lse_k = s.lse_partial + int64_t(slot0) * rows_all + row;
  __shared__ float s_lse;
  __shared__ float4 part[kC2Threads];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  if (warp == 0) {
    float m = -INFINITY;
    for (int k = lane; k < n; k += 32) m = fmaxf(m, lse_k[int64_t(k) * rows_all]);
    for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(~0u, m, off));
    float sum = 0.f;
    if (m != -INFINITY)
      for (int k = lane; k < n; k += 32) sum += __expf(lse_k[int64_t(k) * rows_all] - m);
    for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(~0u, sum, off);
    if (lane == 0) s_lse = m == -INFINITY ? -INFINITY : m + __logf(sum);
  }
  __syncthreads();
  const float lse = s_lse;
  const int cols4 = p.d_v / 4;
  const int kg_count = kC2Threads / cols4, kg = tid / cols4, c4 = tid % cols4;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  if (lse != -INFINITY && kg < kg_count) {
    const float4* o = reinterpret_cast<const float4*>(s.o_partial + (int64_t(slot0) * rows_all + row) * p.d_v) + c4;
    const int64_t stride4 = int64_t(rows_all) * p.d_v / 4;
#pragma unroll 8
    for (int k = kg; k < n; k += kg_count) {
      const float w = __expf(lse_k[int64_t(k) * rows_all] - lse);
      const float4 v = o[k * stride4];
      acc.x += w * v.x, acc.y += w * v.y, acc.z += w * v.z, acc.w += w * v.w;
    }
  }
  part[tid] = acc;
  __syncthreads();
  if (kg == 0) {
    for (int g = 1; g < kg_count; ++g) {
      const float4 v = part[g * cols4 + c4];
      acc.x += v.x, acc.y += v.y, acc.z += v.z, acc.w += v.w;
    }
    const int rows = p.s_q * p.q_per_kv;
    const int kv = row / rows, r = row % rows;
    const int t = r / p.q_per_kv, head = kv * p.q_per_kv + r % p.q_per_kv;
    T* out = static_cast<T*>(p.out) + seq * p.o_sb + t * p.o_ss + head * p.o_sh + c4 * 4;
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      reinterpret_cast<__nv_bfloat162*>(out)[0] = __floats2bfloat162_rn(acc.x, acc.y);
      reinterpret_cast<__nv_bfloat162*>(out)[1] = __floats2bfloat162_rn(acc.z, acc.w);
    } else {
      reinterpret_cast<__half2*>(out)[0] = __floats2half2_rn(acc.x, acc.y);
      reinterpret_cast<__half2*>(out)[1] = __floats2half2_rn(acc.z, acc.w);
    }
    if (c4 == 0) p.lse[seq * p.lse_sb + head * p.lse_sh + t * p.lse_ss] = lse;
  }
}

void launch_combine2(const detail::DecodeParams& p, const Schedule& s, cudaStream_t st) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(p.h_q * p.s_q, p.b);
  cfg.blockDim = dim3(kC2Threads);
  cfg.stream = st;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  if (p.dtype == DType::bf16) CK(cudaLaunchKernelEx(&cfg, combine2_kernel<__nv_bfloat16>, p, s));
  else CK(cudaLaunchKernelEx(&cfg, combine2_kernel<__half>, p, s));
}
static bool g_combine2 = false;

struct Runner {
  sm90::KernelConfig cfg;
  Schedule sched{};
  void* ws = nullptr;
  int num_parts = 0;
  // mode: 0 choose(), 1 one consumer warpgroup, 2 two (row split), 3 two (KV split)
  Runner(const detail::DecodeParams& p, const DeviceInfo& dev, int force_parts = 0, int mode = 0) {
    cfg = mode == 0 ? sm90::choose(p, dev) : sm90::make_config(p, dev, mode == 1 ? 1 : 2, mode == 3);
    const int row_tiles = (p.s_q * p.q_per_kv + cfg.block_m - 1) / cfg.block_m;
    num_parts = force_parts ? force_parts : std::max(1, dev.sm_count * cfg.ctas_per_sm / (row_tiles * p.h_kv));
    const int num_slots = 2 * num_parts;
    WorkspaceLayout w(p.b, num_parts, num_slots, int64_t(p.h_q) * p.s_q, p.d_v);
    CK(cudaMalloc(&ws, w.total));
    auto at = [&](size_t off) { return static_cast<char*>(ws) + off; };
    sched.header = reinterpret_cast<ScheduleHeader*>(at(w.header));
    sched.prefix_cost = reinterpret_cast<int32_t*>(at(w.prefix_cost));
    sched.seqlen = reinterpret_cast<int32_t*>(at(w.seqlen));
    sched.slot_begin = reinterpret_cast<int32_t*>(at(w.slot_begin));
    sched.num_splits = reinterpret_cast<int32_t*>(at(w.num_splits));
    sched.part_first_seq = reinterpret_cast<int32_t*>(at(w.part_first_seq));
    sched.o_partial = reinterpret_cast<float*>(at(w.o_partial));
    sched.lse_partial = reinterpret_cast<float*>(at(w.lse_partial));
    sched.b = p.b; sched.num_parts = num_parts; sched.num_slots = num_slots; sched.block_n = cfg.block_n;
    sched.fixed_cost = std::max(1, 320 / cfg.block_n);
    SchedulerArgs a{};
    a.header = sched.header; a.prefix_cost = const_cast<int32_t*>(sched.prefix_cost);
    a.seqlen = const_cast<int32_t*>(sched.seqlen); a.slot_begin = const_cast<int32_t*>(sched.slot_begin);
    a.num_splits = const_cast<int32_t*>(sched.num_splits); a.part_first_seq = const_cast<int32_t*>(sched.part_first_seq);
    a.b = p.b; a.num_parts = num_parts; a.block_n = cfg.block_n; a.fixed_cost = sched.fixed_cost;
    a.page_size = p.page_size; a.max_pages = p.max_pages;
    if (p.b) launch_scheduler(p.seqlens, a, nullptr);
    CK(cudaDeviceSynchronize());
  }
  ~Runner() { cudaFree(ws); }
  void run(const detail::DecodeParams& p, cudaStream_t st, int what = 3) {
    if (what & 1) sm90::launch(p, sched, cfg, st);
    if (what & 2) { if (g_combine2) launch_combine2(p, sched, st); else launch_combine(p, sched, st); }
  }
  uint32_t flags() {
    uint32_t f = 0;
    CK(cudaMemcpy(&f, &sched.header->error_flags, 4, cudaMemcpyDeviceToHost));
    return f;
  }
};

// Float64 reference for sequences `seqs`; compares out/lse of those sequences.
struct Check { double max_abs = 0; long bad = 0, nonfinite = 0, n = 0; std::string first; };
Check reference_check(const Problem& P, const std::vector<int>& seqs) {
  const Spec& s = P.s;
  const int d = s.d;
  std::vector<uint16_t> q(P.q_elems), out(P.out_elems);
  std::vector<float> lse(P.lse_elems);
  CK(cudaMemcpy(q.data(), P.dq, P.q_elems * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(out.data(), P.dout, P.out_elems * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(lse.data(), P.dlse, P.lse_elems * 4, cudaMemcpyDeviceToHost));
  const double oa = s.dtype == DType::bf16 ? 8e-4 : 1e-4, orl = s.dtype == DType::bf16 ? 2.0 / 128 : 2.0 / 1024;
  const double la = 1e-6, lr = 8.0 / 65536;
  Check c;
  std::mutex mu;
  for (int i : seqs) {
    const int len = P.lens[i];
    // gather this sequence's K/V rows for all heads
    const size_t row = size_t(s.h_kv) * d;
    std::vector<uint16_t> K(size_t(len) * row), V;
    for (int j = 0; j < len; ++j) {
      int32_t pg = P.table[size_t(i) * P.max_pages + j / s.page];
      CK(cudaMemcpy(&K[size_t(j) * row], P.dk + (size_t(pg) * s.page + j % s.page) * row, row * 2, cudaMemcpyDeviceToHost));
    }
    if (!s.alias) {
      V.resize(K.size());
      for (int j = 0; j < len; ++j) {
        int32_t pg = P.table[size_t(i) * P.max_pages + j / s.page];
        CK(cudaMemcpy(&V[size_t(j) * row], P.dv + (size_t(pg) * s.page + j % s.page) * row, row * 2, cudaMemcpyDeviceToHost));
      }
    }
    const std::vector<uint16_t>& Vr = s.alias ? K : V;
    std::vector<float> Kf(K.size()), Vf(Vr.size());
    for (size_t x = 0; x < K.size(); ++x) Kf[x] = tof(s.dtype, K[x]);
    for (size_t x = 0; x < Vr.size(); ++x) Vf[x] = tof(s.dtype, Vr[x]);
    const int nthreads = 16;
    std::vector<std::thread> th;
    for (int w = 0; w < nthreads; ++w)
      th.emplace_back([&, w] {
        std::vector<double> sc(len), acc(d);
        for (int th_i = w; th_i < s.s_q * s.h_q; th_i += nthreads) {
          const int t = th_i / s.h_q, h = th_i % s.h_q, kv = h / (s.h_q / s.h_kv);
          const int vis = s.causal ? std::max(0, len - s.s_q + t + 1) : len;
          const uint16_t* qq = &q[((size_t(i) * s.s_q + t) * s.h_q + h) * d];
          std::vector<double> qf(d);
          for (int x = 0; x < d; ++x) qf[x] = tof(s.dtype, qq[x]);
          double mx = -INFINITY;
          for (int j = 0; j < vis; ++j) {
            const float* kr = &Kf[size_t(j) * row + size_t(kv) * d];
            double dot = 0;
            for (int x = 0; x < d; ++x) dot += qf[x] * kr[x];
            sc[j] = dot * double(1.f / std::sqrt(float(d)));
            mx = std::max(mx, sc[j]);
          }
          std::fill(acc.begin(), acc.end(), 0.0);
          double sum = 0;
          for (int j = 0; j < vis; ++j) {
            const double w8 = std::exp(sc[j] - mx);
            sum += w8;
            const float* vr = &Vf[size_t(j) * row + size_t(kv) * d];
            for (int x = 0; x < d; ++x) acc[x] += w8 * vr[x];
          }
          const double rl = vis ? mx + std::log(sum) : -INFINITY;
          const float gl = lse[(size_t(i) * s.h_q + h) * s.s_q + t];
          long bad = 0, nonf = 0; double mabs = 0; std::string first;
          for (int x = 0; x < d; ++x) {
            const double ref = vis ? double(tof(s.dtype, fromf(s.dtype, float(acc[x] / sum)))) : 0.0;
            const double got = tof(s.dtype, out[((size_t(i) * s.s_q + t) * s.h_q + h) * d + x]);
            if (!std::isfinite(got)) { ++nonf; if (first.empty()) first = "nonfinite out"; continue; }
            const double e = std::fabs(got - ref);
            mabs = std::max(mabs, e);
            if (e > oa + orl * std::fabs(ref)) { ++bad; if (first.empty()) { char b2[200]; snprintf(b2, 200, "out seq %d t %d h %d col %d got %g ref %g", i, t, h, x, got, ref); first = b2; } }
          }
          bool lok = (std::isinf(rl) && std::isinf(gl) && (rl < 0) == (gl < 0)) || std::fabs(gl - rl) <= la + lr * std::fabs(rl);
          if (!lok) { ++bad; if (first.empty()) { char b2[200]; snprintf(b2, 200, "lse seq %d t %d h %d got %.8g ref %.8g", i, t, h, gl, rl); first = b2; } }
          std::lock_guard<std::mutex> g(mu);
          c.bad += bad; c.nonfinite += nonf; c.n += d + 1; c.max_abs = std::max(c.max_abs, mabs);
          if (c.first.empty() && !first.empty()) c.first = first;
        }
      });
    for (auto& t : th) t.join();
  }
  return c;
}

static DeviceInfo g_dev;
static int g_fail = 0, g_pass = 0;

void correctness(const Spec& s, int force_parts = 0, int mode = 0) {
  Problem P = make(s);
  if (!sm90::supports(P.p, g_dev)) { printf("UNSUPPORTED %s\n", s.str().c_str()); ++g_fail; destroy(P); return; }
  Runner R(P.p, g_dev, force_parts, mode);
  for (int rep = 0; rep < 2; ++rep) {
    CK(cudaMemset(P.dout, 0xff, P.out_elems * 2));
    CK(cudaMemset(P.dlse, 0xff, P.lse_elems * 4));
    R.run(P.p, nullptr);
    CK(cudaDeviceSynchronize());
  }
  std::vector<int> seqs;
  for (int i = 0; i < s.b; ++i) if (i != s.bad_page_seq) seqs.push_back(i);
  if (seqs.size() > 24) { std::vector<int> pick; for (size_t k = 0; k < seqs.size(); k += seqs.size() / 12) pick.push_back(seqs[k]); pick.push_back(seqs.back()); seqs = pick; }
  Check c = reference_check(P, seqs);
  const uint32_t fl = R.flags();
  const bool flag_ok = s.bad_page_seq >= 0 ? (fl & kFlagPageOutOfRange) : fl == 0;
  const bool ok = c.bad == 0 && c.nonfinite == 0 && flag_ok;
  (ok ? g_pass : g_fail)++;
  printf("%s %s lens=%zu parts=%d wg=%d split=%d st=%d maxabs=%.2e bad=%ld nonfinite=%ld flags=%u %s\n", ok ? "PASS" : "FAIL",
         s.str().c_str(), s.lens.size(), R.num_parts, R.cfg.warpgroups, int(R.cfg.kv_split), R.cfg.stages, c.max_abs, c.bad, c.nonfinite, fl, c.first.c_str());
  destroy(P);
}

double measure_copy_bw() {
  const size_t bytes = size_t(2) << 30;
  void *a, *b;
  CK(cudaMalloc(&a, bytes)); CK(cudaMalloc(&b, bytes));
  CK(cudaMemset(a, 1, bytes));
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  std::vector<float> ts;
  for (int i = 0; i < 12; ++i) {
    cudaEventRecord(e0); cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice); cudaEventRecord(e1);
    cudaEventSynchronize(e1); float ms; cudaEventElapsedTime(&ms, e0, e1); if (i >= 2) ts.push_back(ms);
  }
  std::sort(ts.begin(), ts.end());
  cudaFree(a); cudaFree(b);
  return 2.0 * bytes / (ts[ts.size() / 2] * 1e-3);
}

std::vector<int> varlen(int b, int mean, int floor_len, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(mean, mean / 2.0);
  std::vector<int> v(b);
  for (auto& x : v) x = std::max(floor_len, int(nd(rng)));
  return v;
}

float time_graph(Runner& R, const detail::DecodeParams& p, cudaStream_t st, int what, int reps) {
  cudaGraph_t g; cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  R.run(p, st, what);
  CK(cudaStreamEndCapture(st, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  for (int i = 0; i < 5; ++i) CK(cudaGraphLaunch(ge, st));
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  std::vector<float> ts;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(e0, st); CK(cudaGraphLaunch(ge, st)); cudaEventRecord(e1, st);
    CK(cudaEventSynchronize(e1)); float ms; cudaEventElapsedTime(&ms, e0, e1); ts.push_back(ms);
  }
  std::sort(ts.begin(), ts.end());
  cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
  cudaEventDestroy(e0); cudaEventDestroy(e1);
  return ts[ts.size() / 2] * 1e-3f;
}

void bench(const char* name, Spec s, double bw, double peak, int mode = 0, int parts = 0, bool breakdown = false) {
  s.extra_pages = 0;
  Problem P = make(s);
  Runner R(P.p, g_dev, parts, mode);
  cudaStream_t st; CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  R.run(P.p, st);
  CK(cudaStreamSynchronize(st));
  Check c = reference_check(P, {0, s.b / 2});
  const double t = time_graph(R, P.p, st, 3, 30);
  double L = 0; for (int l : s.lens) L += l;
  const double kv_bytes = L * s.h_kv * (s.d + (s.alias ? 0 : s.d)) * 2.0;
  const double bytes = kv_bytes + double(s.b) * s.s_q * s.h_q * 2.0 * s.d * 2.0;
  const double flops = 2.0 * s.h_q * s.s_q * L * 2.0 * s.d;
  const double roof = std::max(bytes / bw, flops / peak);
  printf("BENCH %-30s m%d p=%-3d wg=%d sp=%d st=%d %8.1f us %7.1f GB/s %6.1f TF/s %5.1f%% roof (ideal %.1f us) bad=%ld nonf=%ld",
         name, mode, R.num_parts, R.cfg.warpgroups, int(R.cfg.kv_split), R.cfg.stages, t * 1e6, bytes / t * 1e-9, flops / t * 1e-12, 100.0 * roof / t, roof * 1e6, c.bad, c.nonfinite);
  if (breakdown) printf("  [decode %.1f us, combine %.1f us]", time_graph(R, P.p, st, 1, 20) * 1e6, time_graph(R, P.p, st, 2, 20) * 1e6);
  printf("\n");
  fflush(stdout);
  cudaStreamDestroy(st);
  destroy(P);
}

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "all";
  g_combine2 = getenv("COMBINE2") != nullptr;
  g_dev = device_info(0);
  printf("device %s sm=%d cc=%d.%d optin=%zu\n", g_dev.name.c_str(), g_dev.sm_count, g_dev.cc_major, g_dev.cc_minor, g_dev.smem_per_block_optin);
  if (mode == "all" || mode == "test" || mode == "quick") {
    const bool quick = mode == "quick";
    struct V { int d; bool alias; };
    for (V v : {V{256, false}, V{256, true}, V{128, true}, V{128, false}})
      for (DType dt : {DType::bf16, DType::f16})
        for (int page : {64, 256})
          for (int s_q : {1, 2, 4})
            for (bool causal : {false, true}) {
              if (quick && (page == 256 || s_q == 2 || dt == DType::f16)) continue;
              Spec s; s.d = v.d; s.alias = v.alias; s.dtype = dt; s.page = page; s.s_q = s_q; s.causal = causal;
              s.h_q = 16; s.b = 3; s.lens = {1, 77, 300}; s.seed = v.d + page + s_q * 7 + causal;
              correctness(s);
              if (!quick && page == 64 && dt == DType::bf16) { correctness(s, 0, 1); correctness(s, 0, 2); }
            }
    if (!quick) {
      // head counts / row tiles, including an idle second warpgroup (rows 192) and h_kv > 1
      for (int h_q : {4, 8, 64, 96, 128})
        for (int s_q : {1, 3}) {
          Spec s; s.h_q = h_q; s.s_q = s_q; s.causal = true; s.b = 5; s.lens = {0, 1, 63, 65, 640}; s.seed = h_q + s_q;
          correctness(s);
          s.alias = true; correctness(s);
        }
      { Spec s; s.d = 128; s.h_kv = 2; s.h_q = 16; s.s_q = 2; s.causal = true; s.b = 3; s.lens = {5, 129, 700}; correctness(s); }
      { Spec s; s.d = 128; s.h_kv = 8; s.h_q = 64; s.s_q = 1; s.b = 2; s.lens = {64, 1000}; s.page = 128; correctness(s); }
      { Spec s; s.d = 256; s.h_q = 64; s.s_q = 8; s.causal = true; s.b = 2; s.lens = {8, 500}; correctness(s); }
      { Spec s; s.d = 256; s.h_q = 128; s.s_q = 8; s.causal = true; s.b = 2; s.lens = {3, 200}; s.alias = true; correctness(s); }
      // one long sequence split over every part, and a forced small part count (many items per part)
      { Spec s; s.h_q = 64; s.b = 1; s.lens = {20000}; correctness(s); s.alias = true; correctness(s); correctness(s, 0, 1); }
      // long items per part under a KV split (the warpgroups drift apart over many tiles)
      { Spec s; s.h_q = 64; s.b = 8; s.lens = std::vector<int>(8, 8192); s.extra_pages = 0; correctness(s); s.alias = true; correctness(s); }
      { Spec s; s.h_q = 32; s.b = 3; s.lens = {30000, 12000, 5}; correctness(s); s.alias = true; s.d = 128; correctness(s); }
      // few visible tokens (the precise P pass) and sequences of 1..3 tiles under a KV split
      { Spec s; s.h_q = 64; s.s_q = 8; s.causal = true; s.b = 6; s.lens = {8, 9, 12, 64, 129, 200}; correctness(s); s.alias = true; correctness(s); }
      { Spec s; s.h_q = 8; s.b = 300; for (int i = 0; i < 300; ++i) s.lens.push_back(1 + (i * 37) % 200); correctness(s); correctness(s, 7); }
      { Spec s; s.h_q = 64; s.b = 6; s.lens = {0, 0, 0, 0, 0, 0}; correctness(s); }
      // bad page ids: flagged, never loaded, other sequences unaffected
      { Spec s; s.h_q = 32; s.b = 4; s.lens = {100, 300, 64, 1000}; s.bad_page_seq = 1; correctness(s); s.alias = true; correctness(s); }
    }
    printf("correctness: %d passed, %d failed\n", g_pass, g_fail);
  }
  if (mode == "all" || mode == "bench") {
    const double bw = measure_copy_bw(), peak = 774e12;
    printf("copy bandwidth %.1f GB/s (read+write), matmul peak assumed %.0f TFLOP/s\n", bw * 1e-9, peak * 1e-12);
    auto fixed = [](int b, int l) { return std::vector<int>(b, l); };
    Spec m; m.d = 256; m.b = 128; m.h_q = 64; m.page = 64;
    { Spec s = m; s.lens = fixed(128, 8192); bench("mfa h64 8k", s, bw, peak, 0, 0, true);
      bench("mfa h64 8k", s, bw, peak, 1); bench("mfa h64 8k", s, bw, peak, 0, 128, true); }
    { Spec s = m; s.lens = fixed(128, 32768); bench("mfa h64 32k", s, bw, peak); }
    { Spec s = m; s.lens = varlen(128, 8192, 1, 42); bench("mfa h64 8k varlen", s, bw, peak, 0, 0, true); }
    for (int h : {8, 16, 32}) { Spec s = m; s.h_q = h; s.lens = fixed(128, 8192); bench(("mfa h" + std::to_string(h) + " 8k").c_str(), s, bw, peak); }
    { Spec s = m; s.alias = true; s.lens = fixed(128, 8192); bench("mfa-kr h64 8k", s, bw, peak, 0, 0, true); bench("mfa-kr h64 8k", s, bw, peak, 1); }
    { Spec s = m; s.alias = true; s.lens = fixed(128, 32768); bench("mfa-kr h64 32k", s, bw, peak); }
    { Spec s = m; s.s_q = 4; s.causal = true; s.lens = varlen(128, 8192, 4, 43); bench("mfa sq4 h64 8k varlen causal", s, bw, peak, 0, 0, true); }
    { Spec s = m; s.alias = true; s.s_q = 4; s.causal = true; s.lens = varlen(128, 8192, 4, 43); bench("mfa-kr sq4 h64 varlen causal", s, bw, peak); }
    { Spec s = m; s.b = 1; s.lens = {131072}; bench("mfa h64 b1 128k", s, bw, peak, 0, 0, true); }
    { Spec s = m; s.h_q = 128; s.lens = fixed(128, 8192); bench("mfa h128 8k", s, bw, peak); }
  }
  if (mode == "diag") {  // diag b len mode extra_pages [stream]
    Spec s; s.d = 256; s.h_q = 64; s.b = atoi(argv[2]); s.lens = std::vector<int>(s.b, atoi(argv[3]));
    s.extra_pages = atoi(argv[5]);
    const int cmode = atoi(argv[4]);
    if (argc > 7) s.alias = atoi(argv[7]);
    Problem P = make(s);
    Runner R(P.p, g_dev, 0, cmode);
    cudaStream_t st = nullptr;
    if (argc > 6 && atoi(argv[6])) CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    sm90::launch(P.p, R.sched, R.cfg, st);
    cudaError_t e = cudaStreamSynchronize(st);
    printf("DIAG b=%d len=%d mode=%d extra=%d stream=%d alias=%d parts=%d: decode %s\n", s.b, s.lens[0], cmode, s.extra_pages,
           st != nullptr, int(s.alias), R.num_parts, cudaGetErrorString(e));
    if (e != cudaSuccess) return 2;
    launch_combine(P.p, R.sched, st);
    e = cudaStreamSynchronize(st);
    printf("  combine %s\n", cudaGetErrorString(e));
    Check c = reference_check(P, {0, s.b - 1});
    printf("  check bad=%ld nonfinite=%ld %s\n", c.bad, c.nonfinite, c.first.c_str());
    return 0;
  }
  if (mode == "bench-combine") {  // the prototype combine (PDL) on the overhead-bound shapes
    g_combine2 = true;
    const double bw = measure_copy_bw(), peak = 774e12;
    Spec m; m.d = 256; m.b = 128; m.h_q = 64; m.page = 64;
    { Spec s = m; s.b = 1; s.lens = {131072}; bench("c2 mfa h64 b1 128k", s, bw, peak, 0, 0, true); }
    { Spec s = m; s.lens = std::vector<int>(128, 8192); bench("c2 mfa h64 8k", s, bw, peak, 0, 0, true); }
    { Spec s = m; s.alias = true; s.lens = std::vector<int>(128, 8192); bench("c2 mfa-kr h64 8k", s, bw, peak, 0, 0, true); }
    { Spec s = m; s.h_q = 64; s.b = 1; s.lens = {20000}; correctness(s); s.alias = true; correctness(s); }
    { Spec s = m; s.b = 5; s.s_q = 3; s.causal = true; s.lens = {0, 1, 63, 3000, 640}; correctness(s); }
  }
  return g_fail ? 1 : 0;
}
