"""flashmfa.flash_mla: a drop-in for FlashMLA's Python API (dense decode).

An engine replaces ``import flash_mla`` by ``import flashmfa.flash_mla as flash_mla`` and
changes nothing else::

    tile_md, num_splits = flash_mla.get_mla_metadata(cache_seqlens, s_q * h_q // h_kv, h_kv)
    out, lse = flash_mla.flash_mla_with_kvcache(
        q, k_cache, block_table, cache_seqlens, 512, tile_md, num_splits, causal=True)

Shapes, dtypes and results are FlashMLA's: q [b, s_q, h_q, 576] bf16/fp16, k_cache
[num_blocks, page_size, h_kv, 576], V = the first ``head_dim_v`` columns of each cached row,
``softmax_scale`` defaults to ``q.shape[-1] ** -0.5``; returns out [b, s_q, h_q, head_dim_v]
in q's dtype and lse [b, h_q, s_q] float32, with lse = +inf (out = 0) for rows with nothing to
attend. Beyond FlashMLA it takes any power-of-two page size up to 256, any h_q that is a
multiple of h_kv, the other V-aliases-K head sizes flashmfa covers (256, 128, 64 with
``head_dim_v == d``), and CPU arrays (torch CPU tensors, numpy float16).

Both of FlashMLA's calling conventions work:

* **Original** (``get_mla_metadata(cache_seqlens, num_q_tokens_per_head_k, num_heads_k,
  ...)``): returns ``(tile_scheduler_metadata, num_splits)``, int32 arrays on cache_seqlens'
  device with FlashMLA's shapes, ``[num_sm_parts, 8]`` and ``[b + 1]``. flashmfa does not read
  them: every ``flash_mla_with_kvcache`` call plans on the device (one small scheduler kernel
  that reads ``cache_seqlens``, no host synchronization) into a workspace from the caller's
  allocator. So engines may copy them into persistent buffers for CUDA graphs as before, and a
  replayed graph picks up the new lengths. Contents: zeros and ``0, 1, ..., b`` (one split per
  sequence, monotonic as engines expect when padding).
* **Current** (``get_mla_metadata()`` or ``FlashMLASchedMeta()``, no ``cache_seqlens``):
  returns ``(FlashMLASchedMeta(), None)``. The first ``flash_mla_with_kvcache`` call with it
  plans into a workspace stored as ``meta.tile_scheduler_metadata``; later calls with the same
  object reuse that plan, which FlashMLA allows while shapes and ``cache_seqlens`` values stay
  the same (all layers of one step).

``is_fp8_kvcache=True`` takes FlashMLA's FP8 cache for dense decoding: k_cache [num_blocks,
page_size, h_kv, 656] of float8_e4m3fn (or uint8), each row 512 e4m3 latent values, four
float32 scales and 64 RoPE values in q's dtype, bf16 in FlashMLA (``flashmfa.append_kv``
writes it). On Hopper, at pages of 64 tokens or more, the MLA kernel reads it (its producer
warpgroup widens each tile to 16 bits in shared memory); other pages and other CUDA GPUs take
the portable kernel, which dequantizes in shared memory too.

Not supported (``NotImplementedError``): sparse attention (``indices``,
``attn_sink``, ``extra_k_cache`` and friends). Errors are flashmfa's: :class:`~flashmfa.\
ArgumentError` (a ValueError) and :class:`~flashmfa.DTypeError` (a TypeError) where FlashMLA
asserts.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional, Tuple

from . import _core
from ._frameworks import Caller

__all__ = ["FlashMLASchedMeta", "flash_mla_with_kvcache", "get_mla_metadata"]

# FlashMLA's metadata shapes, kept so that engines' persistent buffers have the sizes they
# expect: one row of TileSchedulerMetaDataSize int32 per SM part, and one SM part per
# BLOCK_SIZE_M query rows of a KV head.
TILE_SCHEDULER_METADATA_SIZE = 8
_FLASHMLA_BLOCK_SIZE_M = 64
# FlashMLA's API has no kernel choice: flashmfa picks the fastest kernel for the shape.
_PATH = "automatic"


@dataclasses.dataclass
class FlashMLASchedMeta:
    """Scheduling state of the current FlashMLA API: filled by the first
    :func:`flash_mla_with_kvcache` call that receives it, reused by later ones."""

    @dataclasses.dataclass
    class Config:
        b: int
        s_q: int
        h_q: int
        page_block_size: int
        h_k: int
        causal: bool
        is_fp8_kvcache: bool
        topk: Optional[int]
        extra_page_block_size: Optional[int]
        extra_topk: Optional[int]

    have_initialized: bool = False
    config: Optional[Config] = None
    # flashmfa's workspace (int32 [n]): the scheduling metadata the plan wrote on the device.
    tile_scheduler_metadata: Optional[Any] = None
    num_splits: Optional[Any] = None  # int32 [b + 1], 0, 1, ..., b (not read)
    _plan: Optional[_core.Plan] = dataclasses.field(default=None, repr=False, compare=False)
    _head_dim_v: Optional[int] = dataclasses.field(default=None, repr=False, compare=False)


def _argument_error(arg: str, expected: str, got: Any) -> _core.ArgumentError:
    err = _core.ArgumentError(f"flashmfa: {arg}: expected {expected}, got {got!r}")
    err.status = "invalid_argument"
    return err


@functools.lru_cache(maxsize=None)
def _cuda_sm_count(torch: Any, index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _sm_count(caller: Caller, like: Any) -> int:
    if caller.kind == "torch" and like.device.type == "cuda":
        index = like.device.index
        return _cuda_sm_count(caller.mod, caller.mod.cuda.current_device() if index is None
                              else index)
    return 1  # on the CPU the parts are a placeholder shape only


def get_mla_metadata(
    cache_seqlens: Optional[Any] = None,
    num_q_tokens_per_head_k: Optional[int] = None,
    num_heads_k: Optional[int] = None,
    num_heads_q: Optional[int] = None,
    is_fp8_kvcache: bool = False,
    topk: Optional[int] = None,
    **kwargs: Any,
) -> Tuple[Any, Any]:
    """FlashMLA's metadata call, in both of its forms.

    With ``cache_seqlens`` (original form; ``num_q_tokens_per_head_k`` = s_q * h_q // h_kv,
    also accepted under its first name ``num_heads_per_head_k``): returns
    ``(tile_scheduler_metadata int32 [num_sm_parts, 8], num_splits int32 [b + 1])`` on
    cache_seqlens' device. They are placeholders flashmfa never reads (it plans inside each
    call), safe to copy into persistent buffers for CUDA graphs.

    Without ``cache_seqlens`` (current form; any other arguments are ignored, as FlashMLA
    does): returns ``(FlashMLASchedMeta(), None)``.
    """
    if cache_seqlens is None:
        return FlashMLASchedMeta(), None
    if "num_heads_per_head_k" in kwargs:  # FlashMLA's first release named it so
        if num_q_tokens_per_head_k is not None:
            raise TypeError("flashmfa: get_mla_metadata: num_q_tokens_per_head_k given twice")
        num_q_tokens_per_head_k = kwargs.pop("num_heads_per_head_k")
    if kwargs:
        raise TypeError(f"flashmfa: get_mla_metadata: unexpected arguments {sorted(kwargs)}")
    del num_heads_q, is_fp8_kvcache, topk  # they only shape FlashMLA's own schedule
    for name, value in (("num_q_tokens_per_head_k", num_q_tokens_per_head_k),
                        ("num_heads_k", num_heads_k)):
        if not isinstance(value, int) or value < 1:
            raise _argument_error(name, "an int >= 1", value)
    if len(cache_seqlens.shape) != 1:
        raise _argument_error("cache_seqlens.shape", "[b]", tuple(cache_seqlens.shape))
    caller = Caller(cache_seqlens)
    row_tiles = -(-num_q_tokens_per_head_k // _FLASHMLA_BLOCK_SIZE_M)
    num_sm_parts = max(1, _sm_count(caller, cache_seqlens) // num_heads_k // row_tiles)
    tile_md = caller.metadata_int32((num_sm_parts, TILE_SCHEDULER_METADATA_SIZE), cache_seqlens,
                                    "zeros")
    num_splits = caller.metadata_int32((cache_seqlens.shape[0] + 1,), cache_seqlens, "arange")
    return tile_md, num_splits


def _itemsize(x: Any) -> int:
    if hasattr(x, "element_size"):  # torch
        return int(x.element_size())
    return int(getattr(x, "itemsize", 0) or getattr(getattr(x, "dtype", None), "itemsize", 0))


def _check_fp8_flag(is_fp8_kvcache: bool, k_cache: Any) -> None:
    """FlashMLA's FP8 cache (656-byte rows of float8_e4m3fn / uint8) iff is_fp8_kvcache."""
    one_byte = _itemsize(k_cache) == 1
    if is_fp8_kvcache and not one_byte:
        err = _core.DTypeError(
            "flashmfa: k_cache.dtype: expected float8_e4m3fn or uint8 (is_fp8_kvcache=True: "
            f"FlashMLA's 656-byte FP8 rows), got {getattr(k_cache, 'dtype', type(k_cache))}")
        err.status = "invalid_dtype"
        raise err
    if one_byte and not is_fp8_kvcache:
        raise _argument_error("is_fp8_kvcache", "True for a 1-byte (FP8) k_cache", False)


def _refuse_unsupported(**sparse: Any) -> None:
    given = sorted(name for name, value in sparse.items() if value is not None)
    if given:
        raise NotImplementedError(
            f"flashmfa.flash_mla: sparse attention is not supported (got {', '.join(given)})")


def _config(q: Any, k_cache: Any, causal: bool) -> FlashMLASchedMeta.Config:
    return FlashMLASchedMeta.Config(
        b=q.shape[0], s_q=q.shape[1], h_q=q.shape[2], page_block_size=k_cache.shape[1],
        h_k=k_cache.shape[2], causal=causal, is_fp8_kvcache=_itemsize(k_cache) == 1, topk=None,
        extra_page_block_size=None, extra_topk=None)


def _run_with_meta(meta: FlashMLASchedMeta, c: Caller, q: Any, k_cache: Any,
                   block_table: Any, cache_seqlens: Any, head_dim_v: int,
                   softmax_scale: float, causal: bool) -> Tuple[Any, Any]:
    if len(q.shape) != 4 or len(k_cache.shape) != 4:  # before reading shapes for the config
        return _core.decode(c.arg(q), c.arg(k_cache), None, block_table, cache_seqlens, None,
                            None, head_dim_v, softmax_scale, causal, _PATH, False, None,
                            c.alloc, c.stream(None), c.u16_is_bf16)  # raises the shape error
    config = _config(q, k_cache, causal)
    stream = c.stream(None)
    if not meta.have_initialized:
        def alloc_int32(kind: str, shape: Any) -> Any:  # FlashMLA's metadata is int32
            words = -(-shape[0] // 4)
            return c.metadata_int32((words,), q, "empty")
        meta._plan = _core.plan(c.arg(q), c.arg(k_cache), None, block_table, cache_seqlens,
                                head_dim_v, softmax_scale, causal, _PATH, None, alloc_int32,
                                stream, c.u16_is_bf16)
        meta._head_dim_v = head_dim_v
        meta.config = config
        meta.tile_scheduler_metadata = meta._plan.workspace
        meta.num_splits = c.metadata_int32((config.b + 1,), q, "arange")
        meta.have_initialized = True
    elif meta.config != config or meta._head_dim_v != head_dim_v or meta._plan is None:
        raise _argument_error(
            "tile_scheduler_metadata",
            f"a FlashMLASchedMeta used with the same shapes ({meta.config}, head_dim_v="
            f"{meta._head_dim_v}); make a new one when shapes or cache_seqlens change",
            f"{config}, head_dim_v={head_dim_v}")
    return _core.run(meta._plan, c.arg(q), c.arg(k_cache), None, block_table, cache_seqlens,
                     None, None, softmax_scale, c.alloc, False, stream, c.u16_is_bf16)


def flash_mla_with_kvcache(
    q: Any,
    k_cache: Any,
    block_table: Optional[Any],
    cache_seqlens: Optional[Any],
    head_dim_v: int,
    tile_scheduler_metadata: Any,
    num_splits: Optional[Any] = None,
    softmax_scale: Optional[float] = None,
    causal: bool = False,
    is_fp8_kvcache: bool = False,
    indices: Optional[Any] = None,
    attn_sink: Optional[Any] = None,
    extra_k_cache: Optional[Any] = None,
    extra_indices_in_kvcache: Optional[Any] = None,
    topk_length: Optional[Any] = None,
    extra_topk_length: Optional[Any] = None,
) -> Tuple[Any, Any]:
    """FlashMLA's decode call: attention of q over the paged cache, V aliasing K.

    Arguments:
        q: [b, s_q, h_q, d] bf16/fp16.
        k_cache: [num_blocks, page_block_size, h_kv, d], q's dtype; with is_fp8_kvcache
            [.., 656] float8_e4m3fn / uint8 (FlashMLA's FP8 MLA row).
        block_table: [b, max_num_blocks_per_seq] int32.
        cache_seqlens: [b] int32.
        head_dim_v: d_v; V is the first d_v columns of each cached row (512 for MLA).
        tile_scheduler_metadata, num_splits: from :func:`get_mla_metadata` (either form).
        softmax_scale: default ``d ** -0.5``.
        causal: with s_q > 1, query token t sees tokens ``j <= cache_seqlens[i] - s_q + t``.

    Returns:
        out [b, s_q, h_q, head_dim_v] in q's dtype and lse [b, h_q, s_q] float32 (+inf where
        a row has nothing to attend). GPU work runs on torch's current stream.
    """
    del num_splits  # the plan lives in the workspace (see the module docstring)
    _check_fp8_flag(is_fp8_kvcache, k_cache)
    _refuse_unsupported(indices=indices, attn_sink=attn_sink,
                        extra_k_cache=extra_k_cache,
                        extra_indices_in_kvcache=extra_indices_in_kvcache,
                        topk_length=topk_length, extra_topk_length=extra_topk_length)
    if block_table is None or cache_seqlens is None:
        raise _argument_error("block_table, cache_seqlens", "arrays (dense decode)",
                              (block_table, cache_seqlens))
    if softmax_scale is None:
        softmax_scale = q.shape[-1] ** -0.5
    c = Caller(q)
    if isinstance(tile_scheduler_metadata, FlashMLASchedMeta):
        out, lse = _run_with_meta(tile_scheduler_metadata, c, q, k_cache, block_table,
                                  cache_seqlens, head_dim_v, softmax_scale, causal)
    else:
        out, lse = _core.decode(c.arg(q), c.arg(k_cache), None, block_table, cache_seqlens,
                                None, None, head_dim_v, softmax_scale, causal, _PATH, False,
                                None, c.alloc, c.stream(None), c.u16_is_bf16)
    return c.result(out), c.neg_inf_to_pos_inf(lse)
