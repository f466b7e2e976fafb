"""Random decode problems and an independent float64 reference, in numpy (no torch needed).

A problem is a paged cache laid out the way engines do it: pages of a random permutation, NaN
in every cache row past a sequence's end (they must never change a result), and a sentinel
page id in every block-table entry past it (it must never be read).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

# FlashMLA's test writes this past each sequence's last page: far outside any cache.
SENTINEL_PAGE = 2147480000


@dataclasses.dataclass
class Problem:
    q: np.ndarray            # [b, s_q, h_q, d_k]
    k_cache: np.ndarray      # [num_pages, page_size, h_kv, d_k]
    v_cache: Optional[np.ndarray]  # [num_pages, page_size, h_kv, d_v]; None: V aliases K
    block_table: np.ndarray  # [b, max_pages] int32
    seqlens_k: np.ndarray    # [b] int32
    d_v: int

    @property
    def args(self):
        return self.q, self.k_cache, self.v_cache, self.block_table, self.seqlens_k


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def make_problem(rng: np.random.Generator, *, b: int = 2, s_q: int = 1, h_q: int = 4,
                 h_kv: int = 1, d_k: int = 64, d_v: Optional[int] = None,
                 v_aliases_k: bool = True, page_size: int = 16, lengths=None,
                 dtype=np.float16, extra_pages: int = 1) -> Problem:
    """lengths: one int per sequence (default: random in [0, 3 * page_size])."""
    d_v = d_v if d_v is not None else d_k
    if lengths is None:
        lengths = rng.integers(0, 3 * page_size + 1, size=b)
    lengths = np.asarray(lengths, dtype=np.int32)
    max_pages = max(1, int(cdiv(int(lengths.max(initial=0)), page_size))) + extra_pages
    num_pages = b * max_pages + 1
    q = rng.uniform(-1, 1, size=(b, s_q, h_q, d_k)).astype(dtype)
    k = (rng.standard_normal((num_pages, page_size, h_kv, d_k)) / 4).astype(dtype)
    v = None if v_aliases_k else (
        rng.standard_normal((num_pages, page_size, h_kv, d_v)) / 4).astype(dtype)
    perm = rng.permutation(num_pages)[: b * max_pages].reshape(b, max_pages)
    block_table = perm.astype(np.int32)
    for i, n in enumerate(lengths):
        used = cdiv(int(n), page_size)
        for j in range(used, max_pages):  # pages past the end: NaN rows, sentinel id
            for cache in (k, v):
                if cache is not None:
                    cache[block_table[i, j]] = np.nan
            block_table[i, j] = SENTINEL_PAGE
        if n % page_size:
            for cache in (k, v):
                if cache is not None:
                    cache[block_table[i, used - 1], n % page_size:] = np.nan
    return Problem(q, k, v, block_table, lengths, d_v)


def reference(p: Problem, *, causal: bool = False, softmax_scale: Optional[float] = None):
    """float64 attention of p: (out [b, s_q, h_q, d_v] float64, lse [b, h_q, s_q] float64),
    out = 0 and lse = -inf for rows with nothing to attend."""
    b, s_q, h_q, d_k = p.q.shape
    page_size, h_kv = p.k_cache.shape[1], p.k_cache.shape[2]
    group = h_q // h_kv
    scale = softmax_scale if softmax_scale is not None else d_k ** -0.5
    out = np.zeros((b, s_q, h_q, p.d_v))
    lse = np.full((b, h_q, s_q), -np.inf)
    for i in range(b):
        n = int(p.seqlens_k[i])
        if n == 0:
            continue
        pages = p.block_table[i, : cdiv(n, page_size)]
        k = p.k_cache[pages].reshape(-1, h_kv, d_k)[:n].astype(np.float64)
        v = k[..., : p.d_v] if p.v_cache is None else (
            p.v_cache[pages].reshape(-1, h_kv, p.d_v)[:n].astype(np.float64))
        for t in range(s_q):
            last = n - s_q + t if causal else n - 1
            if last < 0:
                continue
            for h in range(h_q):
                s = scale * (k[: last + 1, h // group] @ p.q[i, t, h].astype(np.float64))
                m = s.max()
                w = np.exp(s - m)
                lse[i, h, t] = m + np.log(w.sum())
                out[i, t, h] = (w / w.sum()) @ v[: last + 1, h // group]
    return out, lse


def assert_close(out, lse, ref_out, ref_lse, *, out_tol: float, lse_tol: float = 1e-4):
    """out within out_tol (absolute, in the output's dtype), lse to lse_tol, -inf where the
    reference has -inf (and nowhere else), no NaN."""
    out = np.asarray(out, dtype=np.float64)
    lse = np.asarray(lse, dtype=np.float64)
    assert not np.isnan(out).any(), "NaN in out"
    assert not np.isnan(lse).any(), "NaN in lse"
    np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(ref_lse))
    finite = np.isfinite(ref_lse)
    np.testing.assert_allclose(lse[finite], ref_lse[finite], rtol=0, atol=lse_tol)
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=out_tol)
