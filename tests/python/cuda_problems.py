"""GPU test data and a float32 PyTorch reference, following FlashMLA's own test: lengths from
normal(s_k, s_k / 2) floored at s_q, pages in random order, NaN in every unused cache row, a
sentinel page id past each sequence's end, and FlashMLA's tolerance check."""

from __future__ import annotations

import dataclasses
import math
import os
import random
from typing import Optional

import pytest

torch = pytest.importorskip("torch")

import flashmfa  # noqa: E402

SENTINEL_PAGE = 2147480000
# FlashMLA pads each block table to a multiple of this many tokens.
BLOCK_TABLE_PAD_TOKENS = 256


def require_cuda_backend():
    """Skips (or, with FLASHMFA_REQUIRE_CUDA=1, fails) where the GPU tests cannot run."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to torch")
    if not flashmfa.cuda_available():
        message = f"flashmfa has no usable CUDA backend here ({flashmfa.build_info()})"
        if os.environ.get("FLASHMFA_REQUIRE_CUDA") == "1":
            pytest.fail(message)
        pytest.skip(message)


@dataclasses.dataclass
class Case:
    b: int
    s_q: int
    s_k: int
    h_q: int = 128
    h_kv: int = 1
    varlen: bool = False
    causal: bool = False
    zero_lengths: bool = False
    page_size: int = 64
    d: int = 576
    d_v: int = 512
    dtype: str = "bfloat16"
    seed: int = 0

    def __str__(self) -> str:
        return (f"b{self.b}-sq{self.s_q}-sk{self.s_k}-h{self.h_q}/{self.h_kv}"
                f"{'-var' if self.varlen else ''}{'-causal' if self.causal else ''}"
                f"{'-zeros' if self.zero_lengths else ''}-p{self.page_size}-{self.dtype}")


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def make_data(c: Case, device="cuda"):
    """(cache_seqlens [b] i32, q [b, s_q, h_q, d], block_table [b, pages] i32,
    k_cache [num_pages, page, h_kv, d]) on device."""
    random.seed(c.seed)
    gen = torch.Generator(device="cpu").manual_seed(c.seed)
    dtype = getattr(torch, c.dtype)
    lengths = torch.full((c.b,), c.s_k, dtype=torch.int32)
    if c.varlen:
        for i in range(c.b):
            lengths[i] = max(int(random.normalvariate(c.s_k, c.s_k / 2)), c.s_q)
    if c.zero_lengths:
        lengths[torch.randn(c.b, generator=gen) > 0] = 0
    max_pad = cdiv(max(int(lengths.max()), 1), BLOCK_TABLE_PAD_TOKENS) * BLOCK_TABLE_PAD_TOKENS
    pages_per_seq = cdiv(max_pad, c.page_size)
    num_pages = c.b * pages_per_seq
    block_table = torch.randperm(num_pages, generator=gen).to(torch.int32).view(c.b, -1)
    dgen = torch.Generator(device=device).manual_seed(c.seed)
    q = torch.randn(c.b, c.s_q, c.h_q, c.d, generator=dgen, device=device)
    q = q.clamp_(-1, 1).to(dtype)
    k = torch.randn(num_pages, c.page_size, c.h_kv, c.d, generator=dgen, device=device)
    k = k.div_(10).clamp_(-1, 1).to(dtype)
    for i in range(c.b):
        n = int(lengths[i])
        used = cdiv(n, c.page_size)
        k[block_table[i, used:].long()] = float("nan")
        if n % c.page_size:
            k[int(block_table[i, used - 1]), n % c.page_size:] = float("nan")
        block_table[i, used:] = SENTINEL_PAGE
    return lengths.to(device), q, block_table.to(device), k


def reference(q, k_cache, block_table, seqlens, d_v: int, causal: bool,
              softmax_scale: Optional[float] = None):
    """float32 attention, batched: (out [b, s_q, h_q, d_v] f32, lse [b, h_q, s_q] f32 with
    +inf for rows with nothing to attend, FlashMLA's convention)."""
    b, s_q, h_q, d = q.shape
    page, h_kv = k_cache.shape[1], k_cache.shape[2]
    group = h_q // h_kv
    scale = softmax_scale if softmax_scale is not None else d ** -0.5
    pages = max(1, cdiv(int(seqlens.max()), page))
    table = block_table[:, :pages].long().clamp(0, k_cache.shape[0] - 1)  # sentinels: masked
    kv = k_cache[table].reshape(b, pages * page, h_kv, d).float()        # [b, T, h_kv, d]
    pos = torch.arange(pages * page, device=q.device)
    valid = pos[None, :] < seqlens[:, None]                               # [b, T]
    kv = torch.where(valid[:, :, None, None], kv, torch.zeros((), device=q.device))
    visible = valid[:, None, :].expand(b, s_q, -1)                        # [b, s_q, T]
    if causal:
        t = torch.arange(s_q, device=q.device)
        last = seqlens[:, None] - s_q + t[None, :]                        # [b, s_q]
        visible = visible & (pos[None, None, :] <= last[:, :, None])
    qf = q.float().view(b, s_q, h_kv, group, d)
    scores = torch.einsum("bskgd,btkd->bkgst", qf, kv) * scale            # [b, h_kv, g, s_q, T]
    scores = scores.masked_fill(~visible[:, None, None], float("-inf"))
    lse = scores.logsumexp(dim=-1)                                        # [b, h_kv, g, s_q]
    probs = torch.exp(scores - lse[..., None]).nan_to_num_(0.0)           # empty rows: 0
    out = torch.einsum("bkgst,btkd->bskgd", probs, kv[..., :d_v]).reshape(b, s_q, h_q, d_v)
    lse = lse.reshape(b, h_q, s_q)
    return out, torch.where(lse == float("-inf"), float("inf"), lse)


def assert_allclose(name, ans, ref, abs_tol: float, rel_tol: float,
                    cos_diff_tol: Optional[float] = None):
    """FlashMLA's check: inf/NaN at the same places, each element within abs_tol or
    rel_tol, and (for out) a cosine difference below cos_diff_tol."""
    assert ans.shape == ref.shape, f"{name}: shape {tuple(ans.shape)} vs {tuple(ref.shape)}"
    ans, ref = ans.float().clone(), ref.float().clone()
    for special in (float("inf"), float("-inf")):
        a_mask, r_mask = ans == special, ref == special
        assert torch.equal(a_mask, r_mask), (
            f"{name}: {special} at {int(a_mask.sum())} places, reference {int(r_mask.sum())}")
        ans[a_mask] = 0
        ref[r_mask] = 0
    assert not torch.isnan(ans).any(), f"{name}: {int(torch.isnan(ans).sum())} NaN"
    abs_err = (ans - ref).abs()
    rel_err = abs_err / (ref.abs() + 1e-6)
    bad = (abs_err >= abs_tol) & (rel_err >= rel_tol)
    assert not bad.any(), (
        f"{name}: {int(bad.sum())} of {bad.numel()} elements off; max abs err "
        f"{abs_err.max().item():.3g}, max rel err {rel_err[abs_err >= abs_tol].max().item():.3g}")
    if cos_diff_tol is not None:
        x, y = ans.double(), ref.double()
        denom = (x * x + y * y).sum().item()
        cos_diff = 0.0 if denom == 0 else 1 - 2 * (x * y).sum().item() / denom
        assert cos_diff < cos_diff_tol, f"{name}: cosine difference {cos_diff:.3g}"


# FlashMLA's tolerances (its dense decode test), out against the reference rounded to q's
# dtype as FlashMLA does.
OUT_TOL = dict(abs_tol=8e-4, rel_tol=2.01 / 128, cos_diff_tol=5e-6)
LSE_TOL = dict(abs_tol=1e-6, rel_tol=8.01 / 65536)


def check_against_reference(out, lse, q, k_cache, block_table, seqlens, d_v, causal,
                            softmax_scale=None):
    ref_out, ref_lse = reference(q, k_cache, block_table, seqlens, d_v, causal, softmax_scale)
    assert_allclose("out", out, ref_out.to(q.dtype), **OUT_TOL)
    assert_allclose("lse", lse, ref_lse, **LSE_TOL)


def scale_of(d: int) -> float:
    return 1 / math.sqrt(d)
