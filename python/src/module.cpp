// flashmfa Python binding: the module flashmfa._core. Exceptions, variants, build facts; the
// decode API itself is bound in decode.cpp. The public Python API (flashmfa/__init__.py) wraps
// these with framework-aware allocation and stream selection.
//
// Errors. flashmfa::Error becomes a subclass of flashmfa.Error that is also the built-in
// exception Python code expects, carrying the C++ message and the status name (.status):
//
//   status                                                  exception        also a
//   invalid_dtype                                           DTypeError       TypeError
//   invalid_argument, unsupported, bad_page_index,
//   bad_seqlen                                              ArgumentError    ValueError
//   no_device, cuda_error                                   DeviceError      RuntimeError
//
// no_device is a RuntimeError: the arguments are fine, the build or the machine cannot run
// them (CUDA tensors in a CPU-only build, or no visible GPU).
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>

#include "flashmfa/flashmfa.hpp"

#ifndef FLASHMFA_PY_WITH_CUDA
#define FLASHMFA_PY_WITH_CUDA 0
#endif

namespace flashmfa::python {

namespace nb = nanobind;
using namespace nb::literals;

void bind_decode(nb::module_& m);  // decode.cpp

namespace {

// The exception classes (module attributes hold the references).
PyObject* g_error = nullptr;
PyObject* g_argument_error = nullptr;
PyObject* g_dtype_error = nullptr;
PyObject* g_device_error = nullptr;

PyObject* class_for(Status s) {
  switch (s) {
    case Status::invalid_dtype: return g_dtype_error;
    case Status::no_device:
    case Status::cuda_error: return g_device_error;
    case Status::ok:
    case Status::invalid_argument:
    case Status::unsupported:
    case Status::bad_page_index:
    case Status::bad_seqlen: return g_argument_error;
  }
  return g_error;
}

void raise_error(const Error& e) {
  PyObject* cls = class_for(e.status());
  nb::str message(e.what());
  PyObject* exc = PyObject_CallOneArg(cls, message.ptr());
  if (exc == nullptr) return;  // constructing it failed: that error is already set
  nb::str status(status_name(e.status()));
  PyObject_SetAttrString(exc, "status", status.ptr());
  PyErr_SetObject(cls, exc);
  Py_DECREF(exc);
}

PyObject* new_exception(nb::module_& m, const char* name, const char* doc, PyObject* bases) {
  const std::string qualified = std::string("flashmfa.") + name;
  PyObject* cls = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases, nullptr);
  if (cls == nullptr) throw nb::python_error();
  m.attr(name) = nb::borrow(cls);
  Py_DECREF(cls);  // the module attribute keeps it alive
  return cls;
}

void bind_errors(nb::module_& m) {
  g_error = new_exception(m, "Error",
                          "Base class of flashmfa's errors. `.status` names the C++ "
                          "flashmfa::Status (e.g. 'invalid_argument').",
                          PyExc_Exception);
  nb::object value_bases = nb::make_tuple(nb::handle(g_error), nb::handle(PyExc_ValueError));
  g_argument_error = new_exception(m, "ArgumentError",
                                   "A bad shape, stride, length, page index or value, or a "
                                   "combination no kernel covers.",
                                   value_bases.ptr());
  nb::object type_bases = nb::make_tuple(nb::handle(g_error), nb::handle(PyExc_TypeError));
  g_dtype_error = new_exception(m, "DTypeError",
                                "A wrong dtype, or an argument that is not an array.",
                                type_bases.ptr());
  nb::object runtime_bases =
      nb::make_tuple(nb::handle(g_error), nb::handle(PyExc_RuntimeError));
  g_device_error = new_exception(m, "DeviceError",
                                 "The tensors live on a device this build or machine cannot "
                                 "drive, or the CUDA runtime reported an error.",
                                 runtime_bases.ptr());
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      raise_error(e);
    }
  });
}

void bind_variant(nb::module_& m) {
  nb::class_<Variant>(m, "Variant",
                      "What one cached token holds per KV head (d_k), the width of V (d_v), and "
                      "whether V is the first d_v columns of the K row (no V cache).")
      .def(nb::init<>())
      .def(
          "__init__",
          [](Variant* v, int d_k, int d_v, bool v_aliases_k) {
            new (v) Variant{d_k, d_v, v_aliases_k};
          },
          "d_k"_a, "d_v"_a, "v_aliases_k"_a = false)
      .def_rw("d_k", &Variant::d_k)
      .def_rw("d_v", &Variant::d_v)
      .def_rw("v_aliases_k", &Variant::v_aliases_k)
      .def_static("mla", &Variant::mla,
                  "DeepSeek-V2/V3 absorbed MLA: 576-wide latent rows, V = first 512 columns.")
      .def_static("mfa", &Variant::mfa, "Step-3 MFA: separate 256-wide K and V caches.")
      .def_static("mfa_kr", &Variant::mfa_kr, "d"_a = Variant::mfa_kr().d_k,
                  "MFA with key reuse: V is the cached K row itself.")
      .def_static("mqa", &Variant::mqa, "d"_a, "Plain MQA/GQA with separate K and V caches.")
      .def_prop_ro("name", &Variant::name)
      .def("__eq__", [](const Variant& a, const Variant& b) { return a == b; })
      .def("__hash__",
           [](const Variant& v) {
             return nb::hash(nb::make_tuple(v.d_k, v.d_v, v.v_aliases_k));
           })
      .def("__repr__", [](const Variant& v) {
        return "flashmfa.Variant(d_k=" + std::to_string(v.d_k) +
               ", d_v=" + std::to_string(v.d_v) +
               ", v_aliases_k=" + (v.v_aliases_k ? "True" : "False") + ")";
      });
  m.def("supported_variants", &supported_variants,
        "Every (d_k, d_v, V aliases K) combination some kernel covers.");
  m.def("is_supported", &is_supported, "variant"_a);
}

}  // namespace

}  // namespace flashmfa::python

NB_MODULE(_core, m) {
  using namespace flashmfa;
  m.doc() = "flashmfa's native binding (use the flashmfa package, not this module)";
  // Test runners and user code may still hold Variants and Plans at interpreter exit; that is
  // not a leak worth a warning.
  nanobind::set_leak_warnings(false);
  python::bind_errors(m);
  python::bind_variant(m);
  python::bind_decode(m);
  m.def("build_info", &build_info, "Version, backends and CUDA architectures of the core.");
  m.def("cuda_available", &cuda_available, "Built with CUDA and a CUDA device is visible.");
  m.attr("built_with_cuda") = static_cast<bool>(FLASHMFA_PY_WITH_CUDA);
  m.attr("__version__") = std::to_string(kVersionMajor) + "." + std::to_string(kVersionMinor) +
                          "." + std::to_string(kVersionPatch);
  m.attr("FLAG_PAGE_OUT_OF_RANGE") = static_cast<uint32_t>(kFlagPageOutOfRange);
  m.attr("FLAG_SEQLEN_TOO_LONG") = static_cast<uint32_t>(kFlagSeqlenTooLong);
  m.attr("FLAG_SEQLEN_NEGATIVE") = static_cast<uint32_t>(kFlagSeqlenNegative);
}
