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

PlanKey plan_key(const DecodeParams& p, Device device, DecodeArgs::Path path);

}  // namespace flashmfa::detail
