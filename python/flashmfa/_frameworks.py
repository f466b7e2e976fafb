"""How flashmfa meets the caller's array framework (private).

flashmfa's native code reads every array through DLPack and depends on no framework. What it
cannot know is how to *make* an array the caller will want back, and which CUDA stream is
current for the caller. This module answers both from the type of ``q``:

==============  =====================================  =========================================
framework       outputs and workspace                  stream when ``stream=None``
==============  =====================================  =========================================
torch           ``torch.empty(..., device=q.device)``  ``torch.cuda.current_stream(q.device)``
numpy           ``numpy.empty``                        none (CPU)
CuPy            ``cupy.empty`` on ``q.device``         ``cupy.cuda.get_current_stream()``
array API       ``xp.empty(..., device=q.device)``     the default stream (pass ``stream=``)
==============  =====================================  =========================================

Frameworks are looked up in ``sys.modules`` only, so importing flashmfa imports none of them.

numpy has no bfloat16. Arrays of ``ml_dtypes.bfloat16`` (the numpy extension dtype JAX uses)
are handed to the native code as their uint16 bit pattern with a flag that reads uint16 as
bf16; outputs come back as ``ml_dtypes.bfloat16``. Plain numpy users pass float16.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Sequence

# The dtype each allocation kind gets (see _core's alloc callback): out has q's dtype.
_LSE_DTYPE = "float32"
_WORKSPACE_DTYPE = "uint8"


def _is_instance(x: Any, module: str, cls: str) -> bool:
    mod = sys.modules.get(module)
    return mod is not None and isinstance(x, getattr(mod, cls))


def stream_handle(stream: Any) -> int:
    """A cudaStream_t as an int, from an int or a stream object of any framework."""
    if isinstance(stream, int):
        return stream
    protocol = getattr(stream, "__cuda_stream__", None)  # the CUDA stream protocol
    if protocol is not None:
        return int(protocol()[1])
    for attr in ("cuda_stream", "ptr"):  # torch.cuda.Stream, cupy.cuda.Stream
        handle = getattr(stream, attr, None)
        if isinstance(handle, int):
            return handle
    raise TypeError(
        "flashmfa: stream: expected an int (a cudaStream_t) or a stream object "
        f"(torch.cuda.Stream, cupy.cuda.Stream, __cuda_stream__), got {type(stream).__name__}"
    )


class Caller:
    """The framework of one call's arrays: allocation, current stream, bf16 bit patterns."""

    __slots__ = ("q", "kind", "mod", "u16_is_bf16", "ext_stream")

    def __init__(self, q: Any) -> None:
        self.q = q
        self.u16_is_bf16 = False
        self.ext_stream: Optional[int] = None  # an explicit stream= of this call
        if _is_instance(q, "torch", "Tensor"):
            self.kind, self.mod = "torch", sys.modules["torch"]
        elif _is_instance(q, "numpy", "ndarray"):
            self.kind, self.mod = "numpy", sys.modules["numpy"]
            self.u16_is_bf16 = q.dtype.name == "bfloat16"
        elif _is_instance(q, "cupy", "ndarray"):
            self.kind, self.mod = "cupy", sys.modules["cupy"]
        elif hasattr(q, "__array_namespace__"):
            self.kind, self.mod = "array_api", q.__array_namespace__()
        else:
            self.kind, self.mod = "unknown", None

    # -- arguments and results --------------------------------------------------------------

    def arg(self, x: Any) -> Any:
        """x as the native code reads it (numpy bfloat16 as its uint16 bit pattern)."""
        if self.kind == "numpy" and x is not None and _is_numpy_bf16(x):
            return x.view(self.mod.uint16)
        return x

    def result(self, x: Any) -> Any:
        """An output as the caller gets it back (undoes arg's bit-pattern view)."""
        if self.u16_is_bf16:
            return x.view(self.q.dtype)
        return x

    # -- allocation (the native code's alloc callback) --------------------------------------

    def alloc(self, kind: str, shape: Sequence[int]) -> Any:
        """An uninitialized array like q's: kind "out" (q's dtype), "lse" or "workspace"."""
        q, mod = self.q, self.mod
        if self.kind == "torch":
            dtype = {"out": q.dtype, "lse": mod.float32, "workspace": mod.uint8}[kind]
            if self.ext_stream and q.device.type == "cuda":  # 0: the legacy default stream
                # Allocate on the stream the kernels run on: torch's caching allocator hands a
                # freed block only to later allocations on that same stream, so a workspace or
                # output dropped after the call cannot be reused under a kernel still running.
                ext = mod.cuda.ExternalStream(self.ext_stream, device=q.device)
                with mod.cuda.stream(ext):
                    return mod.empty(tuple(shape), dtype=dtype, device=q.device)
            return mod.empty(tuple(shape), dtype=dtype, device=q.device)
        if self.kind == "numpy":
            dtype = {"out": q.dtype, "lse": _LSE_DTYPE, "workspace": _WORKSPACE_DTYPE}[kind]
            return self.arg(mod.empty(tuple(shape), dtype=dtype))
        if self.kind == "cupy":
            dtype = {"out": q.dtype, "lse": _LSE_DTYPE, "workspace": _WORKSPACE_DTYPE}[kind]
            with q.device:
                return mod.empty(tuple(shape), dtype=dtype)
        if self.kind == "array_api":
            dtype = {"out": q.dtype, "lse": mod.float32, "workspace": mod.uint8}[kind]
            return mod.empty(tuple(shape), dtype=dtype, device=q.device)
        raise self._cannot_allocate(kind)

    def metadata_int32(self, shape: Sequence[int], like: Any, fill: str) -> Any:
        """An int32 array on like's device: fill is "empty" (uninitialized), "zeros" or
        "arange" (0, 1, ..., 1-D). For FlashMLA's metadata and flashmfa's workspace."""
        mod, kind = self.mod, self.kind
        if kind == "torch":
            if fill == "arange":
                return mod.arange(shape[0], dtype=mod.int32, device=like.device)
            make = mod.zeros if fill == "zeros" else mod.empty
            return make(tuple(shape), dtype=mod.int32, device=like.device)
        if kind in ("numpy", "cupy", "array_api"):
            extra = {"device": like.device} if kind == "array_api" else {}
            dtype = mod.int32
            fill_with = mod.zeros if fill == "zeros" else mod.empty
            make = (lambda: mod.arange(shape[0], dtype=dtype, **extra)) if fill == "arange" else (
                lambda: fill_with(tuple(shape), dtype=dtype, **extra))
            if kind == "cupy":
                with like.device:
                    return make()
            return make()
        raise self._cannot_allocate("metadata")

    def _cannot_allocate(self, kind: str) -> TypeError:
        return TypeError(
            f"flashmfa: {kind}: cannot allocate an array like q ({type(self.q).__name__}: not "
            f"torch, numpy, CuPy or an array-API array); pass {kind}= explicitly"
        )

    # -- streams ----------------------------------------------------------------------------

    def stream(self, stream: Optional[Any]) -> int:
        """The stream to run on: the explicit one, else the framework's current one."""
        if stream is not None:
            self.ext_stream = stream_handle(stream)
            return self.ext_stream
        if self.kind == "torch":
            device = self.q.device
            if device.type != "cuda":
                return 0
            # The same handle current_stream(device).cuda_stream gives (the capture stream
            # during graph capture), without building a Stream object: ~0.3 us instead of ~5.
            raw = getattr(self.mod._C, "_cuda_getCurrentRawStream", None)
            if raw is not None:
                return raw(device.index)
            return self.mod.cuda.current_stream(device).cuda_stream
        if self.kind == "cupy":
            return self.mod.cuda.get_current_stream().ptr
        return 0  # the legacy default stream; ignored on the CPU

    # -- lse conventions ----------------------------------------------------------------------

    def neg_inf_to_pos_inf(self, lse: Any) -> Any:
        """Rewrites lse's -inf (rows with nothing to attend) as +inf, in place where possible."""
        inf = float("inf")
        if self.kind == "torch":
            # One elementwise kernel, legal in graph capture; NaN stays NaN (a real error).
            return lse.nan_to_num_(nan=float("nan"), posinf=inf, neginf=inf)
        if self.kind in ("numpy", "cupy"):
            return self.mod.nan_to_num(lse, copy=False, nan=float("nan"), posinf=inf, neginf=inf)
        if self.mod is None:
            raise TypeError(f"flashmfa: lse: cannot rewrite arrays of type {type(lse).__name__}")
        return self.mod.where(lse == -inf, self.mod.asarray(inf, dtype=lse.dtype), lse)


def _is_numpy_bf16(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return getattr(dtype, "name", None) == "bfloat16" and _is_instance(x, "numpy", "ndarray")
