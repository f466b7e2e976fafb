"""flashmfa: decode attention over a paged KV cache (MLA, MFA, MFA-KR, MQA/GQA).

One call computes, for every sequence ``i``, query token ``t`` and query head ``h``, softmax
attention of ``q[i, t, h]`` over the first ``seqlens_k[i]`` cached tokens of KV head
``h // (h_q // h_kv)``, where token ``j`` lives in page ``block_table[i, j // page_size]`` at
slot ``j % page_size``::

    import torch, flashmfa
    q = torch.randn(b, 1, 128, 576, dtype=torch.bfloat16, device="cuda")   # MLA decode
    out, lse = flashmfa.decode(q, k_cache, None, block_table, seqlens_k)   # V = K[..., :512]

Shapes and dtypes (the C++ API's; see include/flashmfa/flashmfa.hpp):

============  ====================================  =========================================
argument      shape                                 dtype
============  ====================================  =========================================
q             [b, s_q, h_q, d_k]                    bf16 or f16
k_cache       [num_pages, page_size, h_kv, d_k]     q's, or FP8 (float8_e4m3fn / uint8, below)
v_cache       [num_pages, page_size, h_kv, d_v]     k_cache's; None: V is the first d_v columns
k_scale       [num_pages, page_size, h_kv]          float32; FP8 row caches only (``k_scale=``)
v_scale       [num_pages, page_size, h_kv]          float32; FP8 row caches with a V cache
block_table   [b, max_pages_per_seq]                int32
seqlens_k     [b]                                   int32
out           [b, s_q, h_q, d_v]                    q's (returned)
lse           [b, h_q, s_q]                         float32, natural log (returned)
============  ====================================  =========================================

FP8 caches (CPU and CUDA): FlashMLA's MLA row of 656 bytes per token (512 e4m3 latent
values, four float32 scales, 64 RoPE values in q's dtype), or for the other variants e4m3 rows
of d values with one float32 scale per row in ``k_scale`` / ``v_scale``; a value reads as
T(e4m3 * T(scale)), T = q's dtype. :func:`append_kv` writes new tokens in any format, on the
CPU and on CUDA.

Arrays are anything that exports DLPack or the buffer protocol (torch tensors on CPU or CUDA,
numpy arrays, CuPy, JAX); only the last dimension must be contiguous. numpy has no bfloat16:
numpy users pass float16 (or ``ml_dtypes.bfloat16`` arrays). A row with nothing to attend gets
out = 0 and lse = -inf (``flashmfa.flash_mla`` returns +inf there, as FlashMLA does).

Outputs and workspace not passed in are allocated with the caller's framework (torch in, torch
out, on q's device). GPU work runs on ``stream`` (an int ``cudaStream_t`` or a stream object),
by default the framework's current stream (torch's ``current_stream(q.device)``). For CUDA
graphs: ``plan`` before capture or inside it, then capture ``run`` with preallocated outputs;
``run`` neither allocates nor synchronizes with the host (unless ``checked=True``).

Errors raise :class:`ArgumentError` (a ValueError) for shapes and values,
:class:`DTypeError` (a TypeError) for dtypes, :class:`DeviceError` (a RuntimeError) when the
build or machine cannot drive the tensors' device; all derive from :class:`Error` and carry
the C++ message and ``.status``.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from . import _core
from ._core import (
    FLAG_PAGE_OUT_OF_RANGE,
    FLAG_SEQLEN_NEGATIVE,
    FLAG_SEQLEN_TOO_LONG,
    ArgumentError,
    DeviceError,
    DTypeError,
    Error,
    Plan,
    Variant,
    is_supported,
    supported_variants,
)
from ._frameworks import Caller as _Caller
from ._frameworks import stream_handle as _stream_handle

__version__: str = _core.__version__

__all__ = [
    "ArgumentError",
    "DTypeError",
    "DeviceError",
    "Error",
    "FLAG_PAGE_OUT_OF_RANGE",
    "FLAG_SEQLEN_NEGATIVE",
    "FLAG_SEQLEN_TOO_LONG",
    "Plan",
    "Variant",
    "append_kv",
    "build_info",
    "check_errors",
    "cuda_available",
    "decode",
    "is_supported",
    "plan",
    "read_error_flags",
    "reference",
    "run",
    "supported_variants",
    "workspace_size",
]

Array = Any  # anything exporting __dlpack__ or the buffer protocol


def workspace_size(
    q: Array,
    k_cache: Array,
    v_cache: Optional[Array],
    block_table: Array,
    seqlens_k: Array,
    *,
    head_dim_v: Optional[int] = None,
    softmax_scale: Optional[float] = None,
    k_scale: Optional[Array] = None,
    v_scale: Optional[Array] = None,
    causal: bool = False,
    path: str = "automatic",
) -> int:
    """Bytes of workspace :func:`plan` needs for these arguments (0 on the CPU). Host only.

    ``head_dim_v`` (d_v) defaults to ``v_cache.shape[-1]``, or without a V cache to the
    supported variant with V aliasing K for q's d_k (576 -> 512 for MLA, else d_k).
    ``path`` picks the CUDA kernel family: "automatic" (the fastest that covers the shape),
    "portable" (the sm_80 path every GPU runs) or "hopper" (sm_90a; raises
    :class:`ArgumentError` where it does not cover the shape). Ignored on the CPU.
    """
    c = _Caller(q)
    return _core.workspace_size(
        c.arg(q), c.arg(k_cache), c.arg(v_cache), block_table, seqlens_k,
        head_dim_v, softmax_scale, causal, path, c.u16_is_bf16, k_scale=k_scale, v_scale=v_scale,
    )


def plan(
    q: Array,
    k_cache: Array,
    v_cache: Optional[Array],
    block_table: Array,
    seqlens_k: Array,
    *,
    head_dim_v: Optional[int] = None,
    softmax_scale: Optional[float] = None,
    k_scale: Optional[Array] = None,
    v_scale: Optional[Array] = None,
    causal: bool = False,
    path: str = "automatic",
    workspace: Optional[Array] = None,
    stream: Any = None,
) -> Plan:
    """Validates the arguments and writes the scheduling metadata into a workspace.

    The workspace (``workspace=``, at least :func:`workspace_size` bytes, any dtype,
    contiguous, on q's device) is allocated with q's framework when not passed; the plan keeps
    it alive. On CUDA this launches the scheduler kernel on ``stream`` and does not
    synchronize. A plan stays valid while the shapes and the values of ``seqlens_k`` stay the
    same (across layers, for instance); replaying a captured plan + run picks up new lengths.
    ``head_dim_v`` and ``path`` as in :func:`workspace_size`.
    """
    c = _Caller(q)
    return _core.plan(
        c.arg(q), c.arg(k_cache), c.arg(v_cache), block_table, seqlens_k, head_dim_v,
        softmax_scale, causal, path, workspace, c.alloc, c.stream(stream), c.u16_is_bf16,
        k_scale=k_scale, v_scale=v_scale,
    )


def run(
    plan: Plan,
    q: Array,
    k_cache: Array,
    v_cache: Optional[Array],
    block_table: Array,
    seqlens_k: Array,
    *,
    out: Optional[Array] = None,
    lse: Optional[Array] = None,
    k_scale: Optional[Array] = None,
    v_scale: Optional[Array] = None,
    softmax_scale: Optional[float] = None,
    stream: Any = None,
    checked: bool = False,
) -> Tuple[Array, Array]:
    """Computes ``(out, lse)`` with a plan made for these shapes (causal, d_v, path and, unless
    ``softmax_scale`` is given, the scale come from the plan). Outputs not passed are
    allocated with q's framework; pass them for CUDA-graph capture. Never synchronizes unless
    ``checked``, which afterwards synchronizes and raises if a kernel skipped a bad page index
    or length (see :func:`check_errors`).
    """
    c = _Caller(q)
    o, l = _core.run(
        plan, c.arg(q), c.arg(k_cache), c.arg(v_cache), block_table, seqlens_k,
        c.arg(out), lse, softmax_scale, c.alloc, checked, c.stream(stream), c.u16_is_bf16,
        k_scale=k_scale, v_scale=v_scale,
    )
    return (out if out is not None else c.result(o)), l


def decode(
    q: Array,
    k_cache: Array,
    v_cache: Optional[Array],
    block_table: Array,
    seqlens_k: Array,
    *,
    out: Optional[Array] = None,
    lse: Optional[Array] = None,
    head_dim_v: Optional[int] = None,
    softmax_scale: Optional[float] = None,
    k_scale: Optional[Array] = None,
    v_scale: Optional[Array] = None,
    causal: bool = False,
    path: str = "automatic",
    workspace: Optional[Array] = None,
    stream: Any = None,
    checked: bool = False,
) -> Tuple[Array, Array]:
    """Plan + run in one call; returns ``(out, lse)``.

    ``v_cache=None`` means V is the first d_v columns of the K row (MLA, MFA-KR).
    ``softmax_scale`` defaults to ``1 / sqrt(d_k)``. With ``causal`` and s_q > 1, query token
    t sees cached tokens ``j <= seqlens_k[i] - s_q + t``. Outputs and workspace not passed are
    allocated with q's framework on q's device (through its caching allocator for torch).
    ``head_dim_v`` and ``path`` as in :func:`workspace_size`, ``checked`` as in :func:`run`.
    """
    c = _Caller(q)
    o, l = _core.decode(
        c.arg(q), c.arg(k_cache), c.arg(v_cache), block_table, seqlens_k, c.arg(out), lse,
        head_dim_v, softmax_scale, causal, path, checked, workspace, c.alloc, c.stream(stream),
        c.u16_is_bf16, k_scale=k_scale, v_scale=v_scale,
    )
    return (out if out is not None else c.result(o)), l


def reference(
    q: Array,
    k_cache: Array,
    v_cache: Optional[Array],
    block_table: Array,
    seqlens_k: Array,
    *,
    out: Optional[Array] = None,
    lse: Optional[Array] = None,
    head_dim_v: Optional[int] = None,
    softmax_scale: Optional[float] = None,
    k_scale: Optional[Array] = None,
    v_scale: Optional[Array] = None,
    causal: bool = False,
) -> Tuple[Array, Array]:
    """The float64 reference (CPU arrays only; slow by design): what the tests compare to."""
    c = _Caller(q)
    o, l = _core.reference(
        c.arg(q), c.arg(k_cache), c.arg(v_cache), block_table, seqlens_k, c.arg(out), lse,
        head_dim_v, softmax_scale, causal, c.alloc, c.u16_is_bf16, k_scale=k_scale,
        v_scale=v_scale,
    )
    return (out if out is not None else c.result(o)), l


def append_kv(
    k_new: Array,
    v_new: Optional[Array],
    k_cache: Array,
    v_cache: Optional[Array],
    block_table: Array,
    seqlens_k: Array,
    *,
    k_scale: Optional[Array] = None,
    v_scale: Optional[Array] = None,
    error_flags: Optional[Array] = None,
    stream: Any = None,
) -> None:
    """Writes the rows of ``s_new`` new tokens per sequence into their pages, in the cache's
    format (what an engine calls once per layer and step, before :func:`decode`).

    ``k_new`` [b, s_new, h_kv, d_k] (and ``v_new`` [b, s_new, h_kv, d_v], or None when V
    aliases K) in bf16/f16; token t of sequence i lands at position
    ``seqlens_k[i] - s_new + t`` (``seqlens_k``: the lengths after the append). 16-bit caches
    get the rows as they are; FP8 caches (float8_e4m3fn or uint8) get them quantized with
    scale = amax / 448: FlashMLA's 656-byte MLA row (k_cache [.., 656], four scales inline), or
    e4m3 rows with one float32 scale per row written to ``k_scale`` / ``v_scale``
    [num_pages, page_size, h_kv]. CPU and CUDA arrays write the same bytes.

    On the CPU a length below s_new or a bad page index raises before anything is written. On
    CUDA the work runs on ``stream`` without allocating or synchronizing (it can be captured in
    a CUDA graph), and the kernel checks lengths and page indices itself: it skips a sequence
    whose length is below s_new or beyond the block table and a row whose page index is outside
    the cache, writes nothing out of place, and ors the ``FLAG_*`` bits into ``error_flags``
    (an int32 array of shape [1] on the same device, which the caller reads and clears) when
    one is given. The CPU leaves ``error_flags`` as it is.
    """
    c = _Caller(k_new)
    _core.append_kv(c.arg(k_new), c.arg(v_new), c.arg(k_cache), c.arg(v_cache), k_scale, v_scale,
                    block_table, seqlens_k, c.stream(stream), c.u16_is_bf16,
                    error_flags=error_flags)


def _plan_stream(plan: Plan, stream: Any) -> int:
    if stream is not None:
        return _stream_handle(stream)
    # The workspace came from the caller's framework: its current stream is the default.
    return _Caller(plan.workspace).stream(None) if plan.workspace is not None else 0


def read_error_flags(plan: Plan, stream: Any = None) -> int:
    """Synchronizes ``stream``, then reads and clears the plan's device-side error flags
    (``FLAG_*`` bits: a bad page index or length that a kernel skipped). 0 on the CPU, where
    such arguments raise instead."""
    return _core.read_error_flags(plan, _plan_stream(plan, stream))


def check_errors(plan: Plan, stream: Any = None) -> None:
    """Like :func:`read_error_flags`, raising :class:`ArgumentError` if any flag was set."""
    _core.check_errors(plan, _plan_stream(plan, stream))


def cuda_available() -> bool:
    """True when this build has the CUDA backend and a CUDA device is visible."""
    return _core.cuda_available()


def build_info() -> str:
    """Version, backends and CUDA architectures, and whether CUDA can be used here."""
    info = _core.build_info()
    if not _core.built_with_cuda:
        return info + "; CUDA backend OFF (built without nvcc: CPU only)"
    visible = "yes" if _core.cuda_available() else "no"
    return info + "; CUDA backend ON; CUDA device visible: " + visible
