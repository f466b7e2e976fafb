// flashmfa internal: the one validation layer. Every public entry point goes through
// validate(); it throws flashmfa::Error naming the argument, the expected and the actual value,
// and it runs before anything is written.
#pragma once

#include <cstddef>

#include "core/params.hpp"
#include "flashmfa/flashmfa.hpp"

namespace flashmfa::detail {

// Checks every host-checkable precondition of DecodeArgs and returns the flattened params.
// Reads no device memory (seqlens and block-table values are checked where they are readable:
// by the CPU backend before it writes, by CUDA kernels that skip and flag).
DecodeParams validate(const DecodeArgs& args);

// Host-side check of the block table and lengths (CPU tensors only): raises on a negative
// length, a length the block table cannot hold, or a page index outside [0, num_pages) that
// some visible token would read.
void validate_host_indices(const DecodeParams& p);

// The cache tensors of a decode or append call.
struct CacheViews {
  const TensorView& k;
  const TensorView& v;
  const TensorView& k_scale;
  const TensorView& v_scale;
};

// Checks the caches' dtypes, row widths and scale arrays against q's dtype and the variant's
// widths (d_v == 0: no V) and returns their format. k's rank, presence and strides are the
// caller's to check.
CacheFormat check_caches(const CacheViews& c, DType dtype, Device dev, int64_t d_k, int64_t d_v);

// Checks every host-checkable precondition of AppendArgs and returns the flattened params.
AppendParams validate_append(const AppendArgs& args);

// Host-side check of the positions an append writes (CPU tensors only): raises on a length
// below s_new or beyond the block table, or a page index outside [0, num_pages) that a new
// token would be written to.
void validate_append_indices(const AppendParams& p);

PlanKey plan_key(const DecodeParams& p, Device device, DecodeArgs::Path path);

}  // namespace flashmfa::detail
