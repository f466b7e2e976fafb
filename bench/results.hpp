// flashmfa-bench: results as a JSON document (writing, schema validation), as a table, and
// compared with an earlier document (ours, FlashMLA's flashmla-h100.json, or the Triton
// peer's triton-peer-h100.json).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "json.hpp"
#include "roofline.hpp"

namespace flashmfa::bench {

// The schema tag of the documents this version writes (bump it when a field changes meaning).
inline constexpr const char* kSchema = "flashmfa-bench/1";

// Where and how a run was measured.
struct RunInfo {
  std::string version;        // flashmfa's version
  std::string commit;         // FLASHMFA_COMMIT, else git at build time, else "unknown"
  std::string date;           // ISO 8601, UTC
  std::string backend;        // "cuda" or "cpu"
  std::string device;         // GPU name, or the CPU model
  int sms = 0;                // GPU multiprocessors, or CPU hardware threads
  double clock_MHz = 0;       // GPU peak SM clock (0 where unknown)
  double memory_clock_MHz = 0;
  int memory_bus_bits = 0;
  int64_t cache_bytes = 0;    // GPU L2, or the CPU's last-level cache
  std::string build;          // flashmfa::build_info()
  std::string command;        // the command line
  std::string timing;         // the timing method, in words
  Ceilings ceilings;
};

// The current date and time, ISO 8601 UTC (e.g. "2025-11-23T06:50:00Z").
std::string utc_now();
// FLASHMFA_COMMIT from the environment when set, else `built_in` when not empty, else "unknown".
std::string commit_id(const std::string& built_in);

Json row_to_json(const Row& r);
Json results_to_json(const RunInfo& info, const std::vector<Row>& rows);

// Every way `doc` departs from the schema (missing or mistyped keys, inconsistent numbers:
// us_min <= us <= us_max, pct_roofline = 100 roofline_us / us, gbps and tflops recomputed
// from the shape and total_len). Empty when valid.
std::vector<std::string> validate_results(const Json& doc);

// A row of an earlier run, reduced to what --compare matches and reports.
struct RefRow {
  Shape shape;             // page_size / dtype only meaningful where has_page / has_dtype
  bool has_page = false;
  bool has_dtype = false;
  double us = 0;
  double pct_roofline = -1;  // -1: not in the file
};

struct RefFile {
  std::string label;      // "flashmla", "sglang-triton", or "flashmfa <commit>"
  std::string device;
  double copy_GBps = 0;
  double gemm_TFLOPS = 0;
  std::vector<RefRow> rows;
};

// Reads any of the three formats: ours ("schema" + "rows"), FlashMLA's ("flashmla" list: MLA,
// h_kv 1, page 64, bf16) or the Triton peer's ("rows" with "peer" and a variant name, s_q 1).
// Throws JsonError naming what is missing.
RefFile load_reference(const Json& doc);

// True when a reference row describes the same configuration as `s` (the variant, b, s_q,
// s_k, h_q, h_kv, varlen and causal; page size and dtype where the file gives them).
bool same_config(const Shape& s, const RefRow& r);

// The stdout report: a header (device, ceilings, timing) and one line per row, then the
// CPU reference block where rows have reference timings.
std::string format_table(const RunInfo& info, const std::vector<Row>& rows);

// Row-by-row speed-ups (reference us / our us) and % roofline side by side.
std::string format_compare(const std::vector<Row>& rows, const RefFile& ref,
                           const std::string& path);

}  // namespace flashmfa::bench
