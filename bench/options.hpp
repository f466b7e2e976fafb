// flashmfa-bench: presets, sweep grids and the command line.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "roofline.hpp"

namespace flashmfa::bench {

// A bad command line; main prints the message as one line and exits with kExitUsage.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Exit codes of flashmfa-bench (documented in --help).
enum ExitCode : int {
  kExitOk = 0,
  kExitFailed = 1,   // a run failed its correctness check, or a runtime error occurred
  kExitUsage = 2,    // bad command line, unknown preset or impossible shape
  kExitNoDevice = 3, // --backend cuda without a usable GPU (or a build without CUDA)
};

enum class Backend { automatic, cpu, cuda };
const char* backend_name(Backend b);

// The standard grid a preset's --sweep runs.
enum class Grid { flashmla, mfa, gqa, cpu };

struct Preset {
  std::string name;
  std::string description;
  Shape shape;
  Grid grid;
};

// Every preset, in --list order.
const std::vector<Preset>& presets();
// nullptr when unknown.
const Preset* find_preset(const std::string& name);
// The preset runs default to: deepseek-v3 on a GPU, cpu-demo on the CPU.
const char* default_preset(bool on_gpu);
// The points of a grid, in order. FlashMLA's grid is the 21 rows of flashmla-h100.json.
std::vector<Shape> grid_points(Grid g);
const char* grid_description(Grid g);

// Shape flags given on the command line; each replaces the preset's value.
struct ShapeOverrides {
  std::optional<int> b, s_q, s_k, h_q, h_kv, d_k, d_v, page_size;
  std::optional<bool> varlen, causal, v_aliases_k;
  std::optional<uint64_t> seed;
  std::optional<DType> dtype;
  std::optional<bool> fp8;     // --cache fp8 / --cache native
  std::optional<bool> scales_head_major;  // --scale-layout head / token
  bool any_geometry() const;  // anything beyond dtype, cache, seed and page size
};

struct Options {
  bool help = false;
  bool list = false;
  std::string preset;          // empty: default_preset() of the chosen backend
  ShapeOverrides over;
  Backend backend = Backend::automatic;
  int device = 0;              // CUDA device ordinal
  bool sweep = false;
  int warmup = -1;             // -1: the backend's default
  int iters = -1;
  int ref_iters = -1;
  std::optional<bool> vs_reference;  // unset: on for the cpu-demo preset only
  int check_seqs = 4;          // sequences checked against the reference
  int check_heads = 16;        // query heads checked per sequence (all when h_q is smaller)
  bool flush = true;           // CPU: evict the LLC before every timed repeat
  std::vector<std::string> paths = {"auto"};  // CUDA kernel families to run each point with
  std::string json_path;
  std::string compare_path;
  std::string check_json_path; // validate a results file and exit
  std::string command_line;    // as given, for the JSON
};

// Parses argv; throws UsageError with a one-line message.
Options parse_args(int argc, const char* const* argv);

// The configuration(s) to run: the preset (or default) with the overrides applied, or its
// grid with --dtype / --seed / --page-size applied to every point.
std::vector<Shape> resolve_shapes(const Options& o, bool on_gpu);

// --help text and --list text.
std::string help_text();
std::string list_text();

}  // namespace flashmfa::bench
