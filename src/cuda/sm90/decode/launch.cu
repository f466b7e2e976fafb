// flashmfa CUDA, Hopper path: host side -- what the kernel supports, the tile choice, the TMA
// tensor maps over the paged caches, and dispatch to the compiled instances.
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cudaTypedefs.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>

#include "cuda/sm90/decode/config.hpp"
#include "cuda/sm90/decode/decode.hpp"
#include "cuda/sm90/mla/mla.hpp"

namespace flashmfa::cuda::sm90 {

// Defined in kernel_bf16.cu / kernel_f16.cu for every entry of FLASHMFA_SM90_KERNELS.
template <class T, int D, int WARPGROUPS, bool KV_SPLIT, bool FP8>
void launch_typed(const detail::DecodeParams& p, const Schedule& sched, const CUtensorMap& k_map,
                  const CUtensorMap& v_map, cudaStream_t stream);

namespace {

constexpr int kComputeMajor = 9, kComputeMinor = 0;  // sm_90a code runs on 9.0 only
constexpr int kTmaAlignBytes = 16;   // TMA global address and stride granularity
constexpr uint64_t kTmaMaxStride = uint64_t(1) << 40;
constexpr int kTensorRank = 4;       // (d, h_kv, page_size, num_pages)
constexpr int kWideRank = 5;         // (64 columns, h_kv, page_size, d / 64 atoms, num_pages)

// Bytes per cache element: 2 (bf16 / f16 rows) or 1 (FP8 formats: strides are in bytes).
int cache_elem_bytes(const detail::DecodeParams& p) {
  return p.kv_format == CacheFormat::native ? kElemBytes : 1;
}

bool stride_ok(int64_t elems, int elem_bytes) {
  return elems >= 0 && (elems * elem_bytes) % kTmaAlignBytes == 0 &&
         uint64_t(elems) * elem_bytes < kTmaMaxStride;
}

// Cache strides the tensor map can express. With one KV head its stride is never used, so an
// odd value there does not disqualify the layout.
bool cache_ok(const void* ptr, int elem_bytes, int h_kv, int64_t sp, int64_t st, int64_t sh) {
  return aligned(ptr, kTmaAlignBytes) && stride_ok(sp, elem_bytes) && stride_ok(st, elem_bytes) &&
         (h_kv == 1 || stride_ok(sh, elem_bytes));
}

// Two consumer warpgroups per CTA, in one of two forms (consumer.cuh):
//   KV split (<= 128 rows of a KV head, and every FP8 cache): both on the same 64 query rows,
//     taking alternate tiles; the consumers' rate doubles, which MFA-KR needs and which gives
//     MFA slack for the per-item pauses. 65..128 rows take two 64-row CTAs (grid.x), launched
//     next to each other, so DRAM reads each tile about once (L2 hits for the other);
//   row split (> 128 rows of 16-bit caches): each warpgroup owns 64 of the CTA's 128 rows and
//     reads every tile, so a part's tiles are streamed by half as many CTAs (MFA s_q 4, h_q 64:
//     2 CTAs instead of 4; -8% MFA, -6% MFA-KR on the H100, docs/perf-notes.md G.2). At 128
//     rows the KV split's two CTAs measured 4% faster than one row-split CTA.
// FP8 caches at d 128 split the tiles three ways (three consumer warpgroups, config.hpp).
// FLASHMFA_SM90_ROW_SPLIT=0 builds the KV split for every row count (comparison).
#ifndef FLASHMFA_SM90_ROW_SPLIT
#define FLASHMFA_SM90_ROW_SPLIT 1
#endif
KernelConfig default_shape(const detail::DecodeParams& p) {
  KernelConfig cfg;
  // FP8 caches: the KV split, three ways at d 128 (config.hpp, fp8_warpgroups).
  cfg.warpgroups = p.kv_format == CacheFormat::fp8_row ? fp8_warpgroups(p.d_k) : 2;
  const bool many_rows = detail::rows_per_kv_head(p) > 2 * kRowsPerWarpgroup;
  cfg.kv_split = !(FLASHMFA_SM90_ROW_SPLIT && many_rows && p.kv_format == CacheFormat::native);
  return cfg;
}

bool compiled(int d, int warpgroups, bool kv_split, bool fp8) {
  bool found = false;
#define FLASHMFA_SM90_HAS(D, WG, SPLIT) found |= (d == D && warpgroups == WG && kv_split == SPLIT);
  if (fp8) {
    FLASHMFA_SM90_FP8_KERNELS(FLASHMFA_SM90_HAS)
  } else {
    FLASHMFA_SM90_KERNELS(FLASHMFA_SM90_HAS)
  }
#undef FLASHMFA_SM90_HAS
  return found;
}

// cuTensorMapEncodeTiled through the runtime's driver entry point: nothing links libcuda.
PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                         &q) == cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
      fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  });
  if (!fn)
    throw Error(Status::cuda_error, "flashmfa: cuTensorMapEncodeTiled is not available from the "
                                    "CUDA driver (the sm_90 path needs driver >= 12.0)");
  return fn;
}

// q's 16-bit element type as a tensor map element type.
CUtensorMapDataType elem_type(const detail::DecodeParams& p) {
  return p.dtype == DType::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
}

// cuTensorMapEncodeTiled with the settings every cache map shares (interleave none, 256-byte
// L2 promotion, no OOB fill); errors name the cache's strides.
CUtensorMap encode_map(const detail::DecodeParams& p, const void* ptr, int rank,
                       const cuuint64_t* dims, const cuuint64_t* strides, const cuuint32_t* box,
                       CUtensorMapDataType type, CUtensorMapSwizzle swizzle) {
  const cuuint32_t elem_strides[kWideRank] = {1, 1, 1, 1, 1};
  CUtensorMap map{};
  const CUresult r = encode_fn()(
      &map, type, cuuint32_t(rank), const_cast<void*>(ptr), dims, strides, box, elem_strides,
      CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw Error(Status::cuda_error,
                "flashmfa: cuTensorMapEncodeTiled failed (CUresult " + std::to_string(int(r)) +
                    ") for a cache the sm_90 path accepted; k_cache strides " +
                    std::to_string(p.k_sp) + ", " + std::to_string(p.k_st) + ", " +
                    std::to_string(p.k_sh) + ", v_cache strides " + std::to_string(p.v_sp) + ", " +
                    std::to_string(p.v_st) + ", " + std::to_string(p.v_sh));
  return map;
}

// A cache [num_pages, page_size, h_kv, d] (strides in elements) as a 4-D tensor map whose box
// is one 64-column atom of a 64-token tile of one head, written 128B-swizzled; for an fp8_row
// cache, bytes, the box a whole 64-row tile of d bytes, unswizzled (the raw ring, dequant.cuh).
// Pages smaller than a tile: the box is one page tall (the producer copies a tile page by page).
CUtensorMap make_cache_map(const detail::DecodeParams& p, const void* ptr, int d, int64_t sp,
                           int64_t st, int64_t sh) {
  const bool fp8 = p.kv_format == CacheFormat::fp8_row;
  const int eb = cache_elem_bytes(p);
  const int64_t head_stride = p.h_kv == 1 ? d : sh;  // never stepped over with one head
  // A cache with no pages still needs a valid map; no copy is issued (every index is bad).
  const cuuint64_t dims[kTensorRank] = {cuuint64_t(d), cuuint64_t(p.h_kv),
                                        cuuint64_t(p.page_size),
                                        cuuint64_t(p.num_pages > 0 ? p.num_pages : 1)};
  const cuuint64_t strides[kTensorRank - 1] = {cuuint64_t(head_stride) * eb,
                                               cuuint64_t(st) * eb, cuuint64_t(sp) * eb};
  const cuuint32_t box[kTensorRank] = {fp8 ? cuuint32_t(d) : cuuint32_t(kAtomCols), 1,
                                       cuuint32_t(std::min(p.page_size, kBlockN)), 1};
  return encode_map(p, ptr, kTensorRank, dims, strides, box,
                    fp8 ? CU_TENSOR_MAP_DATA_TYPE_UINT8 : elem_type(p),
                    fp8 ? CU_TENSOR_MAP_SWIZZLE_NONE : CU_TENSOR_MAP_SWIZZLE_128B);
}

// The same 16-bit cache as a 5-D map that splits each row into its 64-column atoms, the atom
// index outermost but the page: (64 columns, h_kv, page_size, d / 64, num_pages). Its box,
// `atoms` atoms of a 64-token tile of one head, lands atom after atom -- the slot's atom-major
// image, the same bytes and swizzle as `atoms` boxes of make_cache_map -- in one copy.
CUtensorMap make_wide_map(const detail::DecodeParams& p, const void* ptr, int d, int atoms,
                          int64_t sp, int64_t st, int64_t sh) {
  const int64_t head_stride = p.h_kv == 1 ? d : sh;
  const cuuint64_t dims[kWideRank] = {cuuint64_t(kAtomCols), cuuint64_t(p.h_kv),
                                      cuuint64_t(p.page_size), cuuint64_t(d / kAtomCols),
                                      cuuint64_t(p.num_pages > 0 ? p.num_pages : 1)};
  const cuuint64_t strides[kWideRank - 1] = {cuuint64_t(head_stride) * kElemBytes,
                                             cuuint64_t(st) * kElemBytes,
                                             cuuint64_t(kAtomCols) * kElemBytes,
                                             cuuint64_t(sp) * kElemBytes};
  const cuuint32_t box[kWideRank] = {kAtomCols, 1, kBlockN, cuuint32_t(atoms), 1};
  return encode_map(p, ptr, kWideRank, dims, strides, box, elem_type(p),
                    CU_TENSOR_MAP_SWIZZLE_128B);
}

// MLA's q [b, s_q, h_q, 576] as a 4-D map (576, h_q, s_q, b) whose box is one 64-column atom of
// a CTA's 64 query rows, 128B-swizzled like the K tiles: 64 heads of one token when q_per_kv is
// a multiple of 64, else all q_per_kv heads of 64 / q_per_kv tokens (tokens past s_q arrive as
// zeros, also where the box is taller than s_q: h_q 16 at s_q 1). The producer then loads each
// item's Q tile (mla/kernel.cuh). Other head counts and strides the encoder refuses keep the
// consumers' own loads (ok false).
struct QueryMap {
  CUtensorMap map{};
  bool ok = false;
};
QueryMap make_query_map(const detail::DecodeParams& p) {
  QueryMap m;
  const int qpk = p.q_per_kv;
  const bool heads_tile = qpk % kRowsPerWarpgroup == 0;
  const bool tokens_tile = kRowsPerWarpgroup % qpk == 0;
  if (!(heads_tile || tokens_tile) || !aligned(p.q, kTmaAlignBytes) ||
      !stride_ok(p.q_sh, kElemBytes) || !stride_ok(p.q_ss, kElemBytes) ||
      !stride_ok(p.q_sb, kElemBytes))
    return m;
  const cuuint64_t dims[kTensorRank] = {cuuint64_t(kMlaDk), cuuint64_t(p.h_q),
                                        cuuint64_t(p.s_q), cuuint64_t(p.b)};
  // A dimension of one element is never stepped over: its stride (which a caller may set to
  // anything, 0 included) is replaced by the dense one.
  const int64_t sh = p.h_q == 1 ? kMlaDk : p.q_sh;
  const int64_t ss = p.s_q == 1 ? int64_t(p.h_q) * sh : p.q_ss;
  const int64_t sb = p.b == 1 ? int64_t(p.s_q) * ss : p.q_sb;
  const cuuint64_t strides[kTensorRank - 1] = {cuuint64_t(sh) * kElemBytes,
                                               cuuint64_t(ss) * kElemBytes,
                                               cuuint64_t(sb) * kElemBytes};
  const cuuint32_t box[kTensorRank] = {
      kAtomCols, cuuint32_t(heads_tile ? kRowsPerWarpgroup : qpk),
      cuuint32_t(heads_tile ? 1 : kRowsPerWarpgroup / qpk), 1};
  const cuuint32_t elem_strides[kTensorRank] = {1, 1, 1, 1};
  // A layout the encoder refuses (unusual strides of a view) keeps the consumers' loads.
  m.ok = encode_fn()(&m.map, elem_type(p), cuuint32_t(kTensorRank), const_cast<void*>(p.q), dims,
                     strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                     CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                     CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
  return m;
}

// An fp8_mla cache [num_pages, page_size, h_kv, 656 bytes] as the three maps of mla/fp8.cuh,
// each box (part of) one 64-token tile of one head: the 512 latent bytes, a box of 128 of them,
// 128B-swizzled (one 8 KB atom per box); the 4 f32 scales at byte 512, unswizzled; the 64 RoPE
// values in q's dtype at byte 528, 128B-swizzled (the slot's last atom as TMA writes a 16-bit
// one).
struct MlaFp8Maps {
  CUtensorMap latent, scale, rope;
};
MlaFp8Maps make_mla_fp8_maps(const detail::DecodeParams& p) {
  const auto* base = static_cast<const uint8_t*>(p.k);
  const cuuint64_t head_stride = p.h_kv == 1 ? MlaFp8Row::kBytes : cuuint64_t(p.k_sh);
  const cuuint64_t pages = cuuint64_t(p.num_pages > 0 ? p.num_pages : 1);
  const cuuint64_t st = cuuint64_t(p.k_st), sp = cuuint64_t(p.k_sp);
  const cuuint64_t h_kv = cuuint64_t(p.h_kv), page = cuuint64_t(p.page_size);
  constexpr cuuint32_t kBoxBytes = kMlaFp8BoxBytes / kBlockN;  // 128
  const cuuint64_t strides[kTensorRank - 1] = {head_stride, st, sp};
  MlaFp8Maps m;
  {
    const cuuint64_t dims[kTensorRank] = {cuuint64_t(MlaFp8Row::kLatent), h_kv, page, pages};
    const cuuint32_t box[kTensorRank] = {kBoxBytes, 1, kBlockN, 1};
    m.latent = encode_map(p, base, kTensorRank, dims, strides, box, CU_TENSOR_MAP_DATA_TYPE_UINT8,
                          CU_TENSOR_MAP_SWIZZLE_128B);
  }
  {
    const cuuint64_t dims[kTensorRank] = {cuuint64_t(MlaFp8Row::kScales), h_kv, page, pages};
    const cuuint32_t box[kTensorRank] = {cuuint32_t(MlaFp8Row::kScales), 1, kBlockN, 1};
    m.scale = encode_map(p, base + MlaFp8Row::kScaleOffset, kTensorRank, dims, strides, box,
                         CU_TENSOR_MAP_DATA_TYPE_FLOAT32, CU_TENSOR_MAP_SWIZZLE_NONE);
  }
  {
    const cuuint64_t dims[kTensorRank] = {cuuint64_t(MlaFp8Row::kRope), h_kv, page, pages};
    const cuuint32_t box[kTensorRank] = {cuuint32_t(MlaFp8Row::kRope), 1, kBlockN, 1};
    m.rope = encode_map(p, base + MlaFp8Row::kRopeOffset, kTensorRank, dims, strides, box,
                        elem_type(p), CU_TENSOR_MAP_SWIZZLE_128B);
  }
  return m;
}

template <class T>
void dispatch(const detail::DecodeParams& p, const Schedule& sched, const CUtensorMap& k_map,
              const CUtensorMap& v_map, const KernelConfig& cfg, cudaStream_t stream) {
#define FLASHMFA_SM90_CASE(D, WG, SPLIT)                                         \
  if (cfg.d == D && cfg.warpgroups == WG && cfg.kv_split == SPLIT && !cfg.fp8)   \
    return launch_typed<T, D, WG, SPLIT, false>(p, sched, k_map, v_map, stream);
#define FLASHMFA_SM90_FP8_CASE(D, WG, SPLIT)                                     \
  if (cfg.d == D && cfg.warpgroups == WG && cfg.kv_split == SPLIT && cfg.fp8)    \
    return launch_typed<T, D, WG, SPLIT, true>(p, sched, k_map, v_map, stream);
  FLASHMFA_SM90_KERNELS(FLASHMFA_SM90_CASE)
  FLASHMFA_SM90_FP8_KERNELS(FLASHMFA_SM90_FP8_CASE)
#undef FLASHMFA_SM90_CASE
#undef FLASHMFA_SM90_FP8_CASE
  throw Error(Status::unsupported, "flashmfa: no sm_90 decode kernel for d = " +
                                       std::to_string(cfg.d) + ", warpgroups = " +
                                       std::to_string(cfg.warpgroups) +
                                       ", kv_split = " + std::to_string(cfg.kv_split) +
                                       ", fp8 = " + std::to_string(cfg.fp8));
}

}  // namespace

// MLA's shape: 576-wide K rows whose first 512 columns are V.
bool is_mla(const detail::DecodeParams& p) {
  return p.d_k == kMlaDk && p.d_v == kMlaDv && p.v_aliases_k;
}

namespace {
SmemPlan mla_plan_for(const detail::DecodeParams& p) {
  if (p.kv_format != CacheFormat::fp8_mla) return mla_plan();
  return mla_fp8_raw_form(p.s_q * p.q_per_kv) ? mla_fp8_raw_plan() : mla_fp8_plan();
}
}  // namespace

bool supports(const detail::DecodeParams& p, const DeviceInfo& dev) {
  if (dev.cc_major != kComputeMajor || dev.cc_minor != kComputeMinor) return false;
  if (p.dtype != DType::bf16 && p.dtype != DType::f16) return false;
  // FP8: fp8_row caches on the decode kernel, MLA's fp8_mla rows on the MLA kernel.
  const bool fp8 = p.kv_format == CacheFormat::fp8_row;
  const bool mla = is_mla(p);
  if (p.kv_format == CacheFormat::fp8_mla ? !mla : p.kv_format != CacheFormat::native && !fp8)
    return false;
  if (mla && fp8) return false;
  if (!mla && p.d_k != p.d_v) return false;
  const KernelConfig shape = default_shape(p);
  if (!mla && !compiled(p.d_k, shape.warpgroups, shape.kv_split, fp8)) return false;
  // The decode kernel copies a tile page by page; the MLA kernels keep a tile inside one page.
  if (p.page_size < (mla ? kMlaMinPageSize : kMinPageSize)) return false;
  const int eb = cache_elem_bytes(p);
  if (!cache_ok(p.k, eb, p.h_kv, p.k_sp, p.k_st, p.k_sh)) return false;
  if (!p.v_aliases_k && !cache_ok(p.v, eb, p.h_kv, p.v_sp, p.v_st, p.v_sh)) return false;
  // Scales are copied 4 bytes at a time (cp.async).
  if (fp8 && (!aligned(p.k_scale, sizeof(float)) || !aligned(p.v_scale, sizeof(float))))
    return false;
  // Q is read in 16-byte vectors (out may have any alignment the API accepts: the epilogue
  // stores pairs only where out rows are 4-byte aligned).
  if (!aligned(p.q, kTmaAlignBytes) || (p.q_sb * kElemBytes) % kTmaAlignBytes ||
      (p.q_ss * kElemBytes) % kTmaAlignBytes || (p.q_sh * kElemBytes) % kTmaAlignBytes)
    return false;
  const size_t smem =
      mla ? mla_plan_for(p).launch_bytes()
          : make_config(p, dev, shape.warpgroups, shape.kv_split).smem_bytes;
  return smem <= dev.smem_per_block_optin;
}

KernelConfig make_config(const detail::DecodeParams& p, const DeviceInfo& dev, int warpgroups,
                         bool kv_split) {
  KernelConfig cfg;
  cfg.d = p.d_k;
  cfg.warpgroups = warpgroups;
  cfg.kv_split = kv_split && warpgroups >= 2;
  cfg.block_m = cfg.kv_split ? kRowsPerWarpgroup : warpgroups * kRowsPerWarpgroup;
  cfg.block_n = kBlockN;
  cfg.threads = (warpgroups + 1) * kWarpgroupThreads;
  cfg.fp8 = p.kv_format == CacheFormat::fp8_row;
  cfg.stages = compiled(cfg.d, warpgroups, cfg.kv_split, cfg.fp8)
                   ? stages_for(cfg.d, warpgroups, cfg.kv_split, cfg.fp8) : 0;
  const int raw_stages = cfg.fp8 ? raw_stages_for(cfg.d, warpgroups, cfg.kv_split) : 0;
  cfg.smem_bytes =
      decode_plan(cfg.d, warpgroups, cfg.stages, cfg.kv_split, raw_stages).launch_bytes();
  if (cfg.smem_bytes > dev.smem_per_block_optin) cfg.stages = 0;
  cfg.ctas_per_sm = 1;  // the ring takes (nearly) all of an SM's shared memory
  return cfg;
}

KernelConfig choose(const detail::DecodeParams& p, const DeviceInfo& dev) {
  if (is_mla(p)) {
    // Two consumer warpgroups on 64 rows, each owning half of d_v (mla/consumer.cuh).
    KernelConfig cfg;
    cfg.mla = true;
    cfg.d = kMlaDk;
    cfg.warpgroups = 2;
    cfg.block_m = kRowsPerWarpgroup;
    cfg.block_n = kBlockN;
    cfg.threads = 3 * kWarpgroupThreads;
    cfg.stages = kMlaStages;
    cfg.fp8 = p.kv_format == CacheFormat::fp8_mla;
    cfg.smem_bytes = mla_plan_for(p).launch_bytes();
    cfg.ctas_per_sm = 1;
    (void)dev;
    return cfg;
  }
  const KernelConfig shape = default_shape(p);
  return make_config(p, dev, shape.warpgroups, shape.kv_split);
}

void launch(const detail::DecodeParams& p, const Schedule& sched, const KernelConfig& cfg,
            cudaStream_t stream) {
  if (p.b == 0 || sched.num_parts == 0) return;
  if (cfg.mla && cfg.fp8) {
    const MlaFp8Maps m = make_mla_fp8_maps(p);
    if (p.dtype == DType::bf16)
      launch_mla_fp8_typed<__nv_bfloat16>(p, sched, m.latent, m.scale, m.rope, stream);
    else
      launch_mla_fp8_typed<__half>(p, sched, m.latent, m.scale, m.rope, stream);
    return;
  }
  if (cfg.mla) {
    // Wide boxes: the two halves of a tile, [0, kMlaOutAtoms) and the rest (config.hpp).
    const CUtensorMap k_map =
        kMlaWideBoxes ? make_wide_map(p, p.k, cfg.d, kMlaOutAtoms, p.k_sp, p.k_st, p.k_sh)
                      : make_cache_map(p, p.k, cfg.d, p.k_sp, p.k_st, p.k_sh);
    const CUtensorMap k_hi_map =
        kMlaWideBoxes
            ? make_wide_map(p, p.k, cfg.d, kMlaAtoms - kMlaOutAtoms, p.k_sp, p.k_st, p.k_sh)
            : k_map;
    const QueryMap q = kMlaQueryTma ? make_query_map(p) : QueryMap{};
    const CUtensorMap* q_map = q.ok ? &q.map : nullptr;
    if (p.dtype == DType::bf16)
      launch_mla_typed<__nv_bfloat16>(p, sched, k_map, k_hi_map, q_map, stream);
    else
      launch_mla_typed<__half>(p, sched, k_map, k_hi_map, q_map, stream);
    return;
  }
  const CUtensorMap k_map = make_cache_map(p, p.k, cfg.d, p.k_sp, p.k_st, p.k_sh);
  const CUtensorMap v_map =
      p.v_aliases_k ? k_map : make_cache_map(p, p.v, cfg.d, p.v_sp, p.v_st, p.v_sh);
  if (p.dtype == DType::bf16)
    dispatch<__nv_bfloat16>(p, sched, k_map, v_map, cfg, stream);
  else
    dispatch<__half>(p, sched, k_map, v_map, cfg, stream);
}

}  // namespace flashmfa::cuda::sm90
