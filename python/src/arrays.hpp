// flashmfa Python binding: Python arrays as flashmfa::TensorView, without copying.
//
// Any object that exports DLPack (`__dlpack__`: torch, numpy >= 1.22, CuPy, JAX) or the buffer
// protocol is accepted. nanobind performs the import (it calls `__dlpack__()` with no stream
// argument, so the producer inserts no stream synchronization and the import is legal inside
// CUDA-graph capture); torch tensors are read through their attributes instead, which is the
// same information at a fraction of the cost. Either way flashmfa::from_dlpack maps the
// DLTensor fields, so dtype and device rules live in the core, not here.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstddef>
#include <vector>

#include "flashmfa/flashmfa.hpp"

namespace flashmfa::python {

namespace nb = nanobind;

// Holds the imported arrays of one call (so their memory outlives the call) and converts them.
class ArrayImporter {
 public:
  // numpy has no bfloat16: the Python layer passes ml_dtypes.bfloat16 arrays as their uint16
  // bit pattern and sets this, so that uint16 reads as bf16.
  explicit ArrayImporter(bool u16_is_bf16) : u16_is_bf16_(u16_is_bf16) {}

  // A tensor flashmfa only reads (read-only arrays are fine).
  TensorView input(nb::handle obj, const char* arg);
  // Same, where None means "absent" (the V cache).
  TensorView optional_input(nb::handle obj, const char* arg);
  // A tensor flashmfa writes: must be writable.
  TensorView output(nb::handle obj, const char* arg);

  // Raw bytes for a workspace: writable, contiguous, on `device`; any dtype.
  struct Bytes {
    void* data = nullptr;
    size_t size = 0;
  };
  Bytes workspace(nb::handle obj, Device device);

 private:
  template <class Array>
  TensorView view_of(const Array& a, const char* arg) const;
  // The DLTensor as a view, through the core's converter.
  TensorView finish(nb::dlpack::dltensor t, const char* arg) const;
  // torch tensors read through their attributes (cheaper than torch's __dlpack__); false for
  // anything else.
  bool torch_view(nb::handle obj, const char* arg, TensorView& v);

  bool u16_is_bf16_;
  std::vector<nb::ndarray<nb::ro>> read_only_;
  std::vector<nb::ndarray<>> writable_;
  std::vector<nb::object> tensors_;
};

// Stand-ins for out and lse where a call only needs their shapes (workspace_size, plan): each
// is a dense view at an address no caller array can have (see arrays.cpp). Nothing ever reads
// or writes through them: plan() reads only shapes and seqlens_k.
class Placeholders {
 public:
  TensorView out(DType dtype, Device device, int64_t b, int64_t s_q, int64_t h_q, int64_t d_v);
  TensorView lse(Device device, int64_t b, int64_t h_q, int64_t s_q);
};

}  // namespace flashmfa::python
