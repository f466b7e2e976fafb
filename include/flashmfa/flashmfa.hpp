// flashmfa: decode attention over a paged, compressed KV cache (MLA, MFA, MFA-KR, MQA/GQA).
//
// One call computes, for every sequence i of a batch, every query token t < s_q and every
// query head h:
//
//     kv   = h / (h_q / h_kv)                       -- the KV head query head h reads
//     last = causal ? seqlens_k[i] - s_q + t : seqlens_k[i] - 1
//     s_j  = softmax_scale * <q[i,t,h,:], K[i,j,kv,:]>         for 0 <= j <= last
//     out[i,t,h,:] = sum_j softmax(s)_j * V[i,j,kv,:]
//     lse[i,h,t]   = log(sum_j exp(s_j))             (natural log)
//
// where row j of sequence i lives in page block_table[i, j / page_size] at slot
// j % page_size, and V is either its own cache or the first d_v columns of the K row.
// A row with nothing to attend gets out = 0 and lse = -inf.
//
//     size_t bytes = flashmfa::workspace_size(args);          // host only, no device work
//     flashmfa::Plan p = flashmfa::plan(args, ws, bytes, stream);  // device work, no sync
//     flashmfa::run(p, args, stream);                          // no allocation, no sync
//
// plan + run can be captured in a CUDA graph and replayed with new seqlens_k values (same
// batch and block table shape). A plan stays valid while shapes and seqlens_k stay the same.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "flashmfa/error.hpp"
#include "flashmfa/tensor.hpp"
#include "flashmfa/version.hpp"

namespace flashmfa {

// What one cached token holds per KV head, and where V comes from.
struct Variant {
  int d_k = 0;
  int d_v = 0;
  bool v_aliases_k = false;  // V is the first d_v columns of the K row (no V cache)

  // DeepSeek-V2/V3 absorbed MLA: a 576-wide latent row (512 latent + 64 RoPE), V = latent.
  static constexpr Variant mla() { return {576, 512, true}; }
  // Step-3 MFA: one shared K head and one shared V head, both 256 wide.
  static constexpr Variant mfa() { return {256, 256, false}; }
  // MFA with key reuse: V is the cached K row itself.
  static constexpr Variant mfa_kr(int d = 256) { return {d, d, true}; }
  // Plain MQA / GQA with separate K and V caches.
  static constexpr Variant mqa(int d) { return {d, d, false}; }

  friend bool operator==(const Variant&, const Variant&) = default;
  std::string name() const;
};

// Every variant some kernel covers (the one table that validation and dispatch read).
const std::vector<Variant>& supported_variants();
bool is_supported(const Variant& v);

using Stream = void*;  // a cudaStream_t; nullptr is the default stream; ignored on the CPU

// How the cached rows are stored; read from k_cache's dtype (and, for MLA, its row width).
//
//   native   rows of d_k (d_v) values in q's dtype.
//   fp8_mla  FlashMLA's FP8 MLA row, byte-compatible: k_cache [num_pages, page_size, h_kv, 656]
//            of f8_e4m3 (or u8) holding, per token, 512 e4m3 latent values, then 4 f32 scales
//            (scale g applies to values [128 g, 128 g + 128)), then the 64 RoPE values in q's
//            16-bit dtype (bf16 in FlashMLA). Latent value d reads as T(e4m3 * T(scale[d / 128])),
//            T = q's dtype.
//   fp8_row  every other variant: k_cache (and v_cache) rows of d e4m3 values, with one f32
//            scale per row in k_scale (and v_scale) [num_pages, page_size, h_kv]; a value reads
//            as T(e4m3 * T(scale)), T = q's dtype. Scales sit beside the cache so that rows stay
//            d bytes (16-byte aligned, TMA- and cp.async-friendly) and the e4m3 rows can feed
//            fp8 MMAs as they are.
// e4m3 is the OCP "e4m3fn" format (largest finite 448, no infinities). append_kv writes rows in
// any format (scale = amax / 448 per group).
enum class CacheFormat : uint8_t { native, fp8_mla, fp8_row };
const char* cache_format_name(CacheFormat f) noexcept;

// FlashMLA's 656-byte FP8 MLA row (CacheFormat::fp8_mla), in bytes.
struct MlaFp8Row {
  static constexpr int kLatent = 512;       // e4m3 values, bytes [0, 512)
  static constexpr int kGroup = 128;        // values per scale
  static constexpr int kScales = kLatent / kGroup;
  static constexpr int kScaleOffset = 512;  // kScales f32, bytes [512, 528)
  static constexpr int kRope = 64;          // 16-bit values, bytes [528, 656)
  static constexpr int kRopeOffset = kScaleOffset + 4 * kScales;
  static constexpr int kBytes = kRopeOffset + 2 * kRope;  // 656
};

// The arguments of one decode call. Shapes in comments; strides are free except that the last
// dimension of every tensor must be contiguous. All tensors live on the same device.
struct DecodeArgs {
  TensorView q;            // [b, s_q, h_q, d_k]                  bf16 | f16
  TensorView k_cache;      // [num_pages, page_size, h_kv, d_k]   q's dtype, or FP8 (CacheFormat)
  TensorView v_cache;      // [num_pages, page_size, h_kv, d_v]   as k_cache; absent: V aliases K
  TensorView k_scale;      // [num_pages, page_size, h_kv]        f32; fp8_row caches only
  TensorView v_scale;      // [num_pages, page_size, h_kv]        f32; fp8_row with a v_cache only
  TensorView block_table;  // [b, max_pages_per_seq]              i32
  TensorView seqlens_k;    // [b]                                 i32
  TensorView out;          // [b, s_q, h_q, d_v]                  q's dtype (written)
  TensorView lse;          // [b, h_q, s_q]                       f32 (written)
  std::optional<float> softmax_scale;  // default 1/sqrt(d_k)
  bool causal = false;
  // Which CUDA kernel family may run (ignored on the CPU). automatic: the fastest that covers
  // the shape on this GPU; portable: the mma.sync path every GPU from sm_80 runs; hopper: the
  // sm_90a fast path, or flashmfa::Error(unsupported) where it does not cover the shape.
  enum class Path : uint8_t { automatic, portable, hopper };
  Path path = Path::automatic;
  // After run, synchronize and raise if the kernels flagged a bad page index or length.
  bool checked = false;

  // The variant these tensors describe: d_k from q, d_v from out, aliasing from v_cache.
  Variant variant() const;
};

// Writes the rows of s_new new tokens per sequence into their pages, in the cache's format
// (FP8 caches: quantized, with their scales computed). What an engine calls once per layer and
// step, before decode. Token t of sequence i lands at position seqlens_k[i] - s_new + t, in page
// block_table[i, pos / page_size], slot pos % page_size. The caches take the same views as in
// DecodeArgs; k_new's d_k is the variant's row width (MLA: 576, latent then RoPE). The slots
// written must be distinct (on CUDA, two rows aimed at one slot leave either one there).
struct AppendArgs {
  TensorView k_new;        // [b, s_new, h_kv, d_k]                 bf16 | f16
  TensorView v_new;        // [b, s_new, h_kv, d_v]                 k_new's dtype; absent: no V cache
  TensorView k_cache;      // as DecodeArgs::k_cache, in k_new's dtype or FP8 (written)
  TensorView v_cache;      // as DecodeArgs::v_cache (written)
  TensorView k_scale;      // as DecodeArgs::k_scale (written; fp8_row only)
  TensorView v_scale;      // as DecodeArgs::v_scale (written; fp8_row with a v_cache only)
  TensorView block_table;  // [b, max_pages_per_seq]                i32
  TensorView seqlens_k;    // [b]                                   i32, lengths after the append
  TensorView error_flags;  // [1]                                   i32; optional (CUDA sets flags)
};

// Validates args and writes the rows, on either device, in the same bytes (FP8: scale =
// amax / 448 per group, e4m3 rounded to nearest even and saturated, as on the CPU).
//   CPU tensors: every position and page index is checked before anything is written (a bad
//     one raises, naming it); error_flags, if given, is left as it is.
//   CUDA tensors: kernels on `stream`, no allocation, no host synchronization (capturable in a
//     CUDA graph, replayed with new seqlens_k and block_table values). The host cannot read the
//     lengths and page indices, so the kernel checks them and writes nothing outside the
//     caches: a sequence with seqlens_k[i] < s_new (kFlagSeqlenNegative) or beyond
//     max_pages_per_seq * page_size (kFlagSeqlenTooLong) is skipped whole, a row whose page
//     index is outside [0, num_pages) is skipped (kFlagPageOutOfRange); the bits are or-ed into
//     error_flags where given (the caller reads and clears it).
void append_kv(const AppendArgs& args, Stream stream = nullptr);

// Device-side problems a run (see check_errors) or a CUDA append_kv (AppendArgs::error_flags)
// met and skipped (bit flags).
enum ErrorFlag : uint32_t {
  kFlagPageOutOfRange = 1u << 0,   // a block-table entry outside [0, num_pages) was skipped
  kFlagSeqlenTooLong = 1u << 1,    // seqlens_k[i] > max_pages_per_seq * page_size: clamped
                                   // (append_kv: the sequence was skipped)
  kFlagSeqlenNegative = 1u << 2,   // seqlens_k[i] < 0: treated as 0 (append_kv: seqlens_k[i]
                                   // < s_new, a negative position: the sequence was skipped)
};

// The shape a plan was made for (run checks its args against it).
struct PlanKey {
  Device device{};
  DType dtype = DType::bf16;
  Variant variant{};
  int64_t batch = 0, s_q = 0, h_q = 0, h_kv = 0, page_size = 0, max_pages = 0;
  bool causal = false;
  DecodeArgs::Path path = DecodeArgs::Path::automatic;
  CacheFormat cache = CacheFormat::native;
  friend bool operator==(const PlanKey&, const PlanKey&) = default;
};

// A plan: where its scheduling metadata lives and how the work is cut. Cheap to copy; it does
// not own the workspace.
struct Plan {
  PlanKey key{};
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  int kernel = -1;      // CUDA: 0 the portable (sm_80) kernels, 1 the Hopper (sm_90a) ones; -1 CPU
  int num_parts = 0;    // CTAs along the KV axis (CUDA; 0 on the CPU)
  int block_m = 0;      // query rows per tile
  int block_n = 0;      // KV tokens per tile
  int num_slots = 0;    // partial-result slots reserved in the workspace
};

// Bytes of workspace plan() needs for these arguments (0 is possible). Host only.
size_t workspace_size(const DecodeArgs& args);

// Validates args and writes the scheduling metadata into workspace (16-byte aligned, at least
// workspace_size(args) bytes) on `stream` (device work only; no allocation, no host
// synchronization). The workspace also holds the partial results of split sequences: runs of
// one plan must not overlap in time (one stream, or ordered streams).
Plan plan(const DecodeArgs& args, void* workspace, size_t workspace_bytes, Stream stream = nullptr);

// Computes out and lse. Never allocates or synchronizes (unless args.checked).
void run(const Plan& plan, const DecodeArgs& args, Stream stream = nullptr);

// Plan + run with a workspace the caller owns; the one-call form.
void decode(const DecodeArgs& args, void* workspace, size_t workspace_bytes,
            Stream stream = nullptr);

// The float64 reference on CPU tensors (what every test compares against). Slow by design.
void decode_reference(const DecodeArgs& args);

// Synchronizes `stream`, reads and clears the plan's device-side error flags (ErrorFlag bits).
uint32_t read_error_flags(const Plan& plan, Stream stream = nullptr);
// Same, raising flashmfa::Error if any flag was set.
void check_errors(const Plan& plan, Stream stream = nullptr);

// What this build and machine offer.
bool cuda_available();            // built with CUDA and a device is present
std::string build_info();         // version, backends, CUDA architectures

}  // namespace flashmfa
