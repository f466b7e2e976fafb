// flashmfa: the public decode API. Validates once, then dispatches on where the tensors live.
#include <string>

#include "core/params.hpp"
#include "core/validate.hpp"
#include "cpu/cpu_backend.hpp"
#include "cuda/cuda_backend.hpp"
#include "flashmfa/flashmfa.hpp"

namespace flashmfa {

using detail::fail_arg;

const std::vector<Variant>& supported_variants() {
  // The one table of (d_k, d_v, V aliases K) that some kernel covers, on every backend.
  static const std::vector<Variant> table = {
      Variant::mla(),
      Variant::mfa(),      Variant::mfa_kr(256),
      Variant::mqa(128),   Variant::mfa_kr(128),
      Variant::mqa(64),    Variant::mfa_kr(64),
  };
  return table;
}

bool is_supported(const Variant& v) {
  for (const Variant& s : supported_variants())
    if (s == v) return true;
  return false;
}

std::string Variant::name() const {
  std::string s = "(";
  s.append(std::to_string(d_k)).append(", ").append(std::to_string(d_v));
  return s.append(v_aliases_k ? ", V aliases K)" : ", separate V)");
}

const char* cache_format_name(CacheFormat f) noexcept {
  switch (f) {
    case CacheFormat::native: return "native";
    case CacheFormat::fp8_mla: return "fp8_mla";
    case CacheFormat::fp8_row: return "fp8_row";
  }
  return "?";
}

Variant DecodeArgs::variant() const {
  return {q.ndim == 4 ? static_cast<int>(q.shape[3]) : 0,
          out.ndim == 4 ? static_cast<int>(out.shape[3]) : 0, !v_cache.present()};
}

namespace {

// `arg`: the tensor whose device names the call's device in the error.
void require_cuda(Device dev, const char* arg) {
  if (dev.type == DeviceType::cuda && !cuda::available())
    fail_arg(Status::no_device, arg, "a device this build can drive",
             "cuda:" + std::to_string(dev.id) +
                 (std::string(cuda::arch_list()).empty() ? " (built without CUDA)"
                                                         : " (no CUDA device visible)"));
}

// Fills the backend-independent part of a plan and the backend's cut of the work.
Plan configure(const detail::DecodeParams& p, const DecodeArgs& args) {
  const Device dev = args.q.device;
  require_cuda(dev, "q.device");
  Plan plan;
  plan.key = detail::plan_key(p, dev, args.path);
  if (dev.type == DeviceType::cuda) cuda::configure(p, dev.id, plan);
  return plan;
}

size_t bytes_for(const detail::DecodeParams& p, const Plan& plan) {
  return plan.key.device.type == DeviceType::cuda ? cuda::workspace_bytes(p, plan) : 0;
}

}  // namespace

size_t workspace_size(const DecodeArgs& args) {
  const detail::DecodeParams p = detail::validate(args);
  return bytes_for(p, configure(p, args));
}

Plan plan(const DecodeArgs& args, void* workspace, size_t workspace_bytes, Stream stream) {
  const detail::DecodeParams p = detail::validate(args);
  Plan pl = configure(p, args);
  const size_t need = bytes_for(p, pl);
  if (workspace_bytes < need)
    fail_arg(Status::invalid_argument, "workspace_bytes",
             ">= " + std::to_string(need) + " (from workspace_size)", workspace_bytes);
  if (need > 0 && workspace == nullptr)
    fail_arg(Status::invalid_argument, "workspace", "a non-null pointer", "nullptr");
  // The kernels read partial rows 16 bytes at a time and or flags atomically into the workspace.
  constexpr uintptr_t kWorkspaceAlign = 16;
  if (need > 0 && reinterpret_cast<uintptr_t>(workspace) % kWorkspaceAlign != 0)
    fail_arg(Status::invalid_argument, "workspace", "a 16-byte aligned pointer",
             "an address " + std::to_string(reinterpret_cast<uintptr_t>(workspace) %
                                            kWorkspaceAlign) +
                 " bytes past a 16-byte boundary");
  pl.workspace = workspace;
  pl.workspace_bytes = workspace_bytes;
  if (pl.key.device.type == DeviceType::cuda) cuda::plan(p, pl, stream);
  return pl;
}

void run(const Plan& plan, const DecodeArgs& args, Stream stream) {
  const detail::DecodeParams p = detail::validate(args);
  const PlanKey key = detail::plan_key(p, args.q.device, args.path);
  if (!(key == plan.key))
    fail_arg(Status::invalid_argument, "plan",
             "a plan made for these shapes (b, s_q, h_q, h_kv, d_k, d_v, page_size, "
             "max_pages_per_seq, causal, dtype, device, path)",
             "a plan made for other shapes");
  if (p.b == 0) return;
  if (key.device.type == DeviceType::cpu) {
    detail::validate_host_indices(p);
    cpu::decode_fast(p);
    return;
  }
  cuda::run(p, plan, stream);
  if (args.checked) check_errors(plan, stream);
}

void decode(const DecodeArgs& args, void* workspace, size_t workspace_bytes, Stream stream) {
  run(plan(args, workspace, workspace_bytes, stream), args, stream);
}

void decode_reference(const DecodeArgs& args) {
  const detail::DecodeParams p = detail::validate(args);
  if (args.q.device.type != DeviceType::cpu)
    fail_arg(Status::invalid_argument, "q.device", "cpu (the reference runs on the host)",
             "cuda:" + std::to_string(args.q.device.id));
  detail::validate_host_indices(p);
  cpu::decode_reference(p);
}

void append_kv(const AppendArgs& args, Stream stream) {
  const detail::AppendParams p = detail::validate_append(args);
  const Device dev = args.k_new.device;
  if (dev.type == DeviceType::cpu) {
    detail::validate_append_indices(p);  // raises before anything is written
    cpu::append_kv(p);
    return;
  }
  require_cuda(dev, "k_new.device");
  // Lengths and page indices stay on the device: the kernel checks each row (flashmfa.hpp).
  cuda::append_kv(p, dev.id, stream);
}

uint32_t read_error_flags(const Plan& plan, Stream stream) {
  if (plan.key.device.type != DeviceType::cuda) return 0;  // the CPU path raises instead
  if (plan.workspace == nullptr)
    fail_arg(Status::invalid_argument, "plan", "a plan returned by plan()", "an empty plan");
  return cuda::read_error_flags(plan, stream);
}

void check_errors(const Plan& plan, Stream stream) {
  const uint32_t flags = read_error_flags(plan, stream);
  if (flags == 0) return;
  std::string what;
  if (flags & kFlagPageOutOfRange) what += " a block-table page index outside [0, num_pages);";
  if (flags & kFlagSeqlenTooLong) what += " a length beyond max_pages_per_seq * page_size;";
  if (flags & kFlagSeqlenNegative) what += " a negative length;";
  throw Error(flags & kFlagPageOutOfRange ? Status::bad_page_index : Status::bad_seqlen,
              "flashmfa: the last run met and skipped" + what +
                  " results of the affected sequences are incomplete");
}

bool cuda_available() { return cuda::available(); }

std::string build_info() {
  std::string arch = cuda::arch_list();
  return "flashmfa " + std::to_string(kVersionMajor) + "." + std::to_string(kVersionMinor) + "." +
         std::to_string(kVersionPatch) + "; backends: cpu" +
         (arch.empty() ? std::string() : ", cuda (" + arch + ")");
}

}  // namespace flashmfa
