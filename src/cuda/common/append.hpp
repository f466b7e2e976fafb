// flashmfa CUDA: the append kernel, which writes new tokens' K / V rows into a paged cache in
// every cache format (flashmfa.hpp: AppendArgs, CacheFormat).
#pragma once

#include <cuda_runtime.h>

#include "core/params.hpp"

namespace flashmfa::cuda {

// Writes every row of p.k_new (and p.v_new) to its page and slot on `stream`, in p.kv_format,
// byte for byte what the CPU backend writes. Lengths and page indices are read and checked on
// the device: rows they would send outside the cache are skipped and flagged (ErrorFlag bits
// or-ed into p.error_flags when it is not null). The grid depends on shapes only, so a captured
// launch replays with new lengths and block tables. No allocation, no synchronization.
void launch_append(const detail::AppendParams& p, cudaStream_t stream);

}  // namespace flashmfa::cuda
