// flashmfa test problems on FP8 caches: a HostProblem's cache quantized through append_kv
// (FlashMLA's 656-byte rows for MLA, e4m3 rows with per-row f32 scales for the others), for
// the tests of every backend and flashmfa-bench's --cache fp8.
#pragma once

#include <cstdint>
#include <vector>

#include "flashmfa/flashmfa.hpp"
#include "problem/problem.hpp"

namespace flashmfa::testing {

struct Fp8Problem {
  HostProblem h;                 // the unquantized problem; out / lse serve both forms
  std::vector<uint8_t> k8, v8;   // the FP8 caches (v8 empty when V aliases K)
  std::vector<float> ks, vs;     // fp8_row: the rows' scales (empty for MLA, vs when aliased)
  int row_bytes = 0;             // bytes of one K row: 656 (MLA) or d_k
  bool mla = false;

  // Quantizes every visible row of make_problem(spec)'s cache. Rows no sequence uses keep
  // e4m3 NaN bytes and NaN scales, so a kernel that reads them shows it.
  explicit Fp8Problem(const ProblemSpec& spec);

  // Views of the FP8 form over other buffers (device copies), as HostProblem::args_on.
  DecodeArgs args_on(Device dev, void* q, void* k8, void* v8, void* ks, void* vs,
                     void* block_table, void* seqlens, void* out, void* lse) const;
  // CPU views of the FP8 form.
  DecodeArgs fp8_args();
};

// Scales of whole pages, each page a rows x cols block, with every block transposed: token-major
// fp8_row scales ([page_size, h_kv] per page, the documented layout) become head-major
// ([h_kv, page_size] per page) with rows = page_size, cols = h_kv, and back with the two swapped.
std::vector<float> transpose_page_scales(const std::vector<float>& s, int rows, int cols);

// fp8_row scales of `pages` pages as the [num_pages, page_size, h_kv] view the API takes: over
// token-major memory (the documented layout, dense strides) or head-major memory
// ([num_pages, h_kv, page_size], strides (h_kv * page_size, 1, page_size)).
TensorView fp8_scale_view(void* data, int64_t pages, int page_size, int h_kv, bool head_major,
                          Device dev);

}  // namespace flashmfa::testing
