// flashmfa internal: the CUDA backend as the host core sees it. Plain C++ (no CUDA headers), so
// the core compiles without nvcc; a build without CUDA links cuda_stub.cpp instead.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/params.hpp"
#include "flashmfa/flashmfa.hpp"

namespace flashmfa::cuda {

bool available();        // built with CUDA and a device is visible
const char* arch_list(); // CUDA architectures compiled in ("" without CUDA)

// Chooses the kernel for p on `device` (honouring plan.key.path) and cuts the work: fills
// plan.kernel, block_m, block_n, num_parts and num_slots. Host only (reads cached device
// properties).
void configure(const detail::DecodeParams& p, int device, Plan& plan);

// Workspace bytes for a configured plan.
size_t workspace_bytes(const detail::DecodeParams& p, const Plan& plan);

// Launches the scheduler kernel: reads seqlens_k on the device, writes the metadata into
// plan.workspace. No host synchronization.
void plan(const detail::DecodeParams& p, const Plan& plan, Stream stream);

// Launches the decode kernel and, where a sequence was split, the combine kernel.
void run(const detail::DecodeParams& p, const Plan& plan, Stream stream);

// Synchronizes the stream, then reads and clears the workspace's error flags.
uint32_t read_error_flags(const Plan& plan, Stream stream);

// Launches the append kernel on `device`: checks every row's position and page index on the
// device (skipping and flagging bad ones into p.error_flags), writes the rest, byte for byte
// what the CPU backend writes. The grid depends on shapes only, so a captured launch replays
// with new lengths and block tables. No allocation, no host synchronization.
void append_kv(const detail::AppendParams& p, int device, Stream stream);

}  // namespace flashmfa::cuda
