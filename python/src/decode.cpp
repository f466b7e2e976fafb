// flashmfa Python binding: the decode API (workspace_size, plan, run, decode, reference,
// error flags) and the Plan class. Thin adapters over flashmfa/flashmfa.hpp: every check is
// the core's; this file only imports arrays, asks the Python layer to allocate what the caller
// did not pass, and releases the GIL around the work.
//
// Allocation is a callback, alloc(kind, shape) -> array with kind in {"out", "lse",
// "workspace"}: the Python layer knows the caller's framework (torch in, torch out), the core
// knows the shapes, and each input is imported once per call.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <optional>
#include <string>

#include "arrays.hpp"
#include "flashmfa/flashmfa.hpp"

namespace flashmfa::python {
namespace {

using namespace nb::literals;

// A plan and the array its workspace pointer points into (kept alive as long as the plan).
struct PyPlan {
  Plan plan;
  std::optional<float> softmax_scale;
  nb::object workspace;
};

std::string device_str(Device d) {
  return d.type == DeviceType::cpu ? std::string("cpu") : "cuda:" + std::to_string(d.id);
}

Stream as_stream(uintptr_t s) { return reinterpret_cast<Stream>(s); }

// The kernel family a caller may ask for (DecodeArgs::Path), by name.
constexpr std::pair<const char*, DecodeArgs::Path> kPaths[] = {
    {"automatic", DecodeArgs::Path::automatic},
    {"portable", DecodeArgs::Path::portable},
    {"hopper", DecodeArgs::Path::hopper}};

DecodeArgs::Path parse_path(const std::string& name) {
  for (const auto& [n, path] : kPaths)
    if (name == n) return path;
  detail::fail_arg(Status::invalid_argument, "path", "one of automatic, portable, hopper",
                   "'" + name + "'");
}

const char* path_name(DecodeArgs::Path path) {
  for (const auto& [n, p] : kPaths)
    if (p == path) return n;
  return "?";
}

// One call's arguments: imported arrays, placeholders, and the DecodeArgs they fill.
struct Call {
  explicit Call(bool u16_is_bf16) : arrays(u16_is_bf16) {}
  ArrayImporter arrays;
  Placeholders placeholders;
  DecodeArgs args;
  bool out_missing = false, lse_missing = false;

  void inputs(nb::handle q, nb::handle k, nb::handle v, nb::handle bt, nb::handle sl,
              nb::handle k_scale, nb::handle v_scale) {
    args.q = arrays.input(q, "q");
    args.k_cache = arrays.input(k, "k_cache");
    args.v_cache = arrays.optional_input(v, "v_cache");
    args.block_table = arrays.input(bt, "block_table");
    args.seqlens_k = arrays.input(sl, "seqlens_k");
    args.k_scale = arrays.optional_input(k_scale, "k_scale");
    args.v_scale = arrays.optional_input(v_scale, "v_scale");
  }

  // d_v: from out if given, else head_dim_v, else the V cache, else the one supported
  // V-aliases-K variant with q's d_k (MLA: 576 -> 512), else d_k (MFA-KR).
  int64_t head_dim_v(const TensorView& out, std::optional<int64_t> requested) const {
    const int64_t d_k = args.q.ndim == 4 ? args.q.shape[3] : 0;
    if (out.present() && out.ndim == 4) {
      if (requested && *requested != out.shape[3])
        detail::fail_arg(Status::invalid_argument, "head_dim_v", "out.shape[3] = " +
                         std::to_string(out.shape[3]), *requested);
      return out.shape[3];
    }
    if (requested) return *requested;
    if (args.v_cache.present() && args.v_cache.ndim == 4) return args.v_cache.shape[3];
    for (const Variant& s : supported_variants())
      if (s.v_aliases_k && s.d_k == d_k) return s.d_v;
    return d_k;
  }

  // out and lse from the caller, or placeholders of the right shape until allocated.
  void outputs(nb::handle out, nb::handle lse, std::optional<int64_t> requested_d_v) {
    out_missing = out.is_none();
    lse_missing = lse.is_none();
    if (!out_missing) args.out = arrays.output(out, "out");
    if (!lse_missing) args.lse = arrays.output(lse, "lse");
    const TensorView& q = args.q;
    const int64_t b = q.ndim == 4 ? q.shape[0] : 0, s_q = q.ndim == 4 ? q.shape[1] : 0;
    const int64_t h_q = q.ndim == 4 ? q.shape[2] : 0;
    const int64_t d_v = head_dim_v(args.out, requested_d_v);  // checks a given out too
    if (out_missing) args.out = placeholders.out(q.dtype, q.device, b, s_q, h_q, d_v);
    if (lse_missing) args.lse = placeholders.lse(q.device, b, h_q, s_q);
  }

  // Replaces the placeholders by arrays from alloc (after validation passed).
  nb::tuple allocate_outputs(nb::handle out, nb::handle lse, nb::handle alloc) {
    nb::object o = nb::borrow(out), l = nb::borrow(lse);
    if ((out_missing || lse_missing) && alloc.is_none())
      detail::fail_arg(Status::invalid_argument, out_missing ? "out" : "lse",
                       "an array (no allocator was given)", "None");
    const TensorView& p = args.out;
    if (out_missing) {
      o = alloc("out", nb::make_tuple(p.shape[0], p.shape[1], p.shape[2], p.shape[3]));
      args.out = arrays.output(o, "out");
    }
    if (lse_missing) {
      l = alloc("lse", nb::make_tuple(args.lse.shape[0], args.lse.shape[1], args.lse.shape[2]));
      args.lse = arrays.output(l, "lse");
    }
    return nb::make_tuple(o, l);
  }

  // The caller's workspace, or one from alloc when the plan needs bytes.
  nb::object workspace(nb::handle given, nb::handle alloc, size_t need, ArrayImporter::Bytes& b) {
    nb::object ws = nb::borrow(given);
    if (ws.is_none() && need > 0) {
      if (alloc.is_none())
        detail::fail_arg(Status::invalid_argument, "workspace",
                         "an array of >= " + std::to_string(need) + " bytes", "None");
      ws = alloc("workspace", nb::make_tuple(need));
    }
    if (!ws.is_none()) b = arrays.workspace(ws, args.q.device);
    return ws;
  }
};

size_t py_workspace_size(nb::handle q, nb::handle k, nb::handle v, nb::handle bt, nb::handle sl,
                         std::optional<int64_t> head_dim_v, std::optional<float> softmax_scale,
                         bool causal, const std::string& path, bool u16_is_bf16,
    nb::handle k_scale, nb::handle v_scale) {
  Call c(u16_is_bf16);
  c.inputs(q, k, v, bt, sl, k_scale, v_scale);
  c.outputs(nb::none(), nb::none(), head_dim_v);
  c.args.softmax_scale = softmax_scale;
  c.args.causal = causal;
  c.args.path = parse_path(path);
  return workspace_size(c.args);
}

PyPlan py_plan(nb::handle q, nb::handle k, nb::handle v, nb::handle bt, nb::handle sl,
               std::optional<int64_t> head_dim_v, std::optional<float> softmax_scale,
               bool causal, const std::string& path, nb::handle workspace, nb::handle alloc,
               uintptr_t stream, bool u16_is_bf16,
    nb::handle k_scale, nb::handle v_scale) {
  Call c(u16_is_bf16);
  c.inputs(q, k, v, bt, sl, k_scale, v_scale);
  c.outputs(nb::none(), nb::none(), head_dim_v);
  c.args.softmax_scale = softmax_scale;
  c.args.causal = causal;
  c.args.path = parse_path(path);
  const size_t need = workspace_size(c.args);
  ArrayImporter::Bytes ws;
  PyPlan p;
  p.softmax_scale = softmax_scale;
  p.workspace = c.workspace(workspace, alloc, need, ws);
  nb::gil_scoped_release unlocked;
  p.plan = plan(c.args, ws.data, ws.size, as_stream(stream));
  return p;
}

// softmax_scale: None uses the plan's (the scale does not change the schedule).
nb::tuple py_run(const PyPlan& p, nb::handle q, nb::handle k, nb::handle v, nb::handle bt,
                 nb::handle sl, nb::handle out, nb::handle lse, std::optional<float> softmax_scale,
                 nb::handle alloc, bool checked, uintptr_t stream, bool u16_is_bf16,
    nb::handle k_scale, nb::handle v_scale) {
  Call c(u16_is_bf16);
  c.inputs(q, k, v, bt, sl, k_scale, v_scale);
  c.outputs(out, lse, p.plan.key.variant.d_v);
  c.args.softmax_scale = softmax_scale ? softmax_scale : p.softmax_scale;
  c.args.causal = p.plan.key.causal;
  c.args.path = p.plan.key.path;
  c.args.checked = checked;
  workspace_size(c.args);  // validates before anything is allocated
  nb::tuple result = c.allocate_outputs(out, lse, alloc);
  nb::gil_scoped_release unlocked;
  run(p.plan, c.args, as_stream(stream));
  return result;
}

nb::tuple py_decode(nb::handle q, nb::handle k, nb::handle v, nb::handle bt, nb::handle sl,
                    nb::handle out, nb::handle lse, std::optional<int64_t> head_dim_v,
                    std::optional<float> softmax_scale, bool causal, const std::string& path,
                    bool checked, nb::handle workspace, nb::handle alloc, uintptr_t stream,
                    bool u16_is_bf16,
    nb::handle k_scale, nb::handle v_scale) {
  Call c(u16_is_bf16);
  c.inputs(q, k, v, bt, sl, k_scale, v_scale);
  c.outputs(out, lse, head_dim_v);
  c.args.softmax_scale = softmax_scale;
  c.args.causal = causal;
  c.args.path = parse_path(path);
  c.args.checked = checked;
  const size_t need = workspace_size(c.args);
  nb::tuple result = c.allocate_outputs(out, lse, alloc);
  ArrayImporter::Bytes ws;
  nb::object keep = c.workspace(workspace, alloc, need, ws);
  nb::gil_scoped_release unlocked;
  decode(c.args, ws.data, ws.size, as_stream(stream));
  return result;
}

nb::tuple py_reference(nb::handle q, nb::handle k, nb::handle v, nb::handle bt, nb::handle sl,
                       nb::handle out, nb::handle lse, std::optional<int64_t> head_dim_v,
                       std::optional<float> softmax_scale, bool causal, nb::handle alloc,
                       bool u16_is_bf16,
    nb::handle k_scale, nb::handle v_scale) {
  Call c(u16_is_bf16);
  c.inputs(q, k, v, bt, sl, k_scale, v_scale);
  c.outputs(out, lse, head_dim_v);
  c.args.softmax_scale = softmax_scale;
  c.args.causal = causal;
  if (c.args.q.device.type != DeviceType::cpu)  // refuse before allocating anything
    decode_reference(c.args);
  workspace_size(c.args);
  nb::tuple result = c.allocate_outputs(out, lse, alloc);
  nb::gil_scoped_release unlocked;
  decode_reference(c.args);
  return result;
}

void py_append_kv(nb::handle k_new, nb::handle v_new, nb::handle k_cache, nb::handle v_cache,
                  nb::handle k_scale, nb::handle v_scale, nb::handle bt, nb::handle sl,
                  uintptr_t stream, bool u16_is_bf16, nb::handle error_flags) {
  ArrayImporter arrays(u16_is_bf16);
  AppendArgs a;
  a.k_new = arrays.input(k_new, "k_new");
  a.v_new = arrays.optional_input(v_new, "v_new");
  a.k_cache = arrays.output(k_cache, "k_cache");
  if (!v_cache.is_none()) a.v_cache = arrays.output(v_cache, "v_cache");
  if (!k_scale.is_none()) a.k_scale = arrays.output(k_scale, "k_scale");
  if (!v_scale.is_none()) a.v_scale = arrays.output(v_scale, "v_scale");
  a.block_table = arrays.input(bt, "block_table");
  a.seqlens_k = arrays.input(sl, "seqlens_k");
  if (!error_flags.is_none()) a.error_flags = arrays.output(error_flags, "error_flags");
  nb::gil_scoped_release unlocked;
  append_kv(a, as_stream(stream));
}

std::string plan_repr(const PyPlan& p) {
  const PlanKey& k = p.plan.key;
  return "flashmfa.Plan(device=" + device_str(k.device) + ", dtype=" + dtype_name(k.dtype) +
         ", variant=" + k.variant.name() + ", cache=" + cache_format_name(k.cache) +
         ", b=" + std::to_string(k.batch) +
         ", s_q=" + std::to_string(k.s_q) + ", h_q=" + std::to_string(k.h_q) +
         ", h_kv=" + std::to_string(k.h_kv) + ", page_size=" + std::to_string(k.page_size) +
         ", max_pages_per_seq=" + std::to_string(k.max_pages) +
         ", causal=" + (k.causal ? "True" : "False") + ", path=" + path_name(k.path) +
         ", workspace_bytes=" + std::to_string(p.plan.workspace_bytes) + ")";
}

}  // namespace

void bind_decode(nb::module_& m) {
  nb::class_<PyPlan>(m, "Plan",
                     "A decode plan: the shapes it was made for, how the work is cut, and the "
                     "workspace holding its scheduling metadata (kept alive by the plan).")
      .def_prop_ro("device", [](const PyPlan& p) { return device_str(p.plan.key.device); })
      .def_prop_ro("dtype", [](const PyPlan& p) { return dtype_name(p.plan.key.dtype); })
      .def_prop_ro("variant", [](const PyPlan& p) { return p.plan.key.variant; })
      .def_prop_ro("batch", [](const PyPlan& p) { return p.plan.key.batch; })
      .def_prop_ro("s_q", [](const PyPlan& p) { return p.plan.key.s_q; })
      .def_prop_ro("h_q", [](const PyPlan& p) { return p.plan.key.h_q; })
      .def_prop_ro("h_kv", [](const PyPlan& p) { return p.plan.key.h_kv; })
      .def_prop_ro("page_size", [](const PyPlan& p) { return p.plan.key.page_size; })
      .def_prop_ro("max_pages_per_seq", [](const PyPlan& p) { return p.plan.key.max_pages; })
      .def_prop_ro("causal", [](const PyPlan& p) { return p.plan.key.causal; })
      .def_prop_ro("softmax_scale", [](const PyPlan& p) { return p.softmax_scale; })
      .def_prop_ro("path", [](const PyPlan& p) { return path_name(p.plan.key.path); })
      .def_prop_ro("cache_format",
                   [](const PyPlan& p) { return cache_format_name(p.plan.key.cache); })
      .def_prop_ro("kernel", [](const PyPlan& p) { return p.plan.kernel; })
      .def_prop_ro("num_parts", [](const PyPlan& p) { return p.plan.num_parts; })
      .def_prop_ro("block_m", [](const PyPlan& p) { return p.plan.block_m; })
      .def_prop_ro("block_n", [](const PyPlan& p) { return p.plan.block_n; })
      .def_prop_ro("num_slots", [](const PyPlan& p) { return p.plan.num_slots; })
      .def_prop_ro("workspace_bytes", [](const PyPlan& p) { return p.plan.workspace_bytes; })
      .def_prop_ro("workspace", [](const PyPlan& p) { return p.workspace; })
      .def("__repr__", &plan_repr);

  m.def("workspace_size", &py_workspace_size, "q"_a, "k_cache"_a, "v_cache"_a.none(),
        "block_table"_a, "seqlens_k"_a, "head_dim_v"_a.none(), "softmax_scale"_a.none(),
        "causal"_a, "path"_a, "u16_is_bf16"_a,
        "k_scale"_a.none() = nb::none(), "v_scale"_a.none() = nb::none());
  m.def("plan", &py_plan, "q"_a, "k_cache"_a, "v_cache"_a.none(), "block_table"_a,
        "seqlens_k"_a, "head_dim_v"_a.none(), "softmax_scale"_a.none(), "causal"_a, "path"_a,
        "workspace"_a.none(), "alloc"_a.none(), "stream"_a, "u16_is_bf16"_a,
        "k_scale"_a.none() = nb::none(), "v_scale"_a.none() = nb::none());
  m.def("run", &py_run, "plan"_a, "q"_a, "k_cache"_a, "v_cache"_a.none(), "block_table"_a,
        "seqlens_k"_a, "out"_a.none(), "lse"_a.none(), "softmax_scale"_a.none(),
        "alloc"_a.none(), "checked"_a, "stream"_a, "u16_is_bf16"_a,
        "k_scale"_a.none() = nb::none(), "v_scale"_a.none() = nb::none());
  m.def("decode", &py_decode, "q"_a, "k_cache"_a, "v_cache"_a.none(), "block_table"_a,
        "seqlens_k"_a, "out"_a.none(), "lse"_a.none(), "head_dim_v"_a.none(),
        "softmax_scale"_a.none(), "causal"_a, "path"_a, "checked"_a, "workspace"_a.none(),
        "alloc"_a.none(), "stream"_a, "u16_is_bf16"_a,
        "k_scale"_a.none() = nb::none(), "v_scale"_a.none() = nb::none());
  m.def("reference", &py_reference, "q"_a, "k_cache"_a, "v_cache"_a.none(), "block_table"_a,
        "seqlens_k"_a, "out"_a.none(), "lse"_a.none(), "head_dim_v"_a.none(),
        "softmax_scale"_a.none(), "causal"_a, "alloc"_a.none(), "u16_is_bf16"_a,
        "k_scale"_a.none() = nb::none(), "v_scale"_a.none() = nb::none());
  m.def("append_kv", &py_append_kv, "k_new"_a, "v_new"_a.none(), "k_cache"_a,
        "v_cache"_a.none(), "k_scale"_a.none(), "v_scale"_a.none(), "block_table"_a,
        "seqlens_k"_a, "stream"_a, "u16_is_bf16"_a, "error_flags"_a.none() = nb::none());
  m.def(
      "read_error_flags",
      [](const PyPlan& p, uintptr_t stream) {
        nb::gil_scoped_release unlocked;
        return read_error_flags(p.plan, as_stream(stream));
      },
      "plan"_a, "stream"_a);
  m.def(
      "check_errors",
      [](const PyPlan& p, uintptr_t stream) {
        nb::gil_scoped_release unlocked;
        check_errors(p.plan, as_stream(stream));
      },
      "plan"_a, "stream"_a);
}

}  // namespace flashmfa::python
