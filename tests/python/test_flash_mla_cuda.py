"""flashmfa.flash_mla against a float32 PyTorch reference on the GPU, over the grid of FlashMLA's
own dense decode test as DESIGN.md section 5 lists it, with FlashMLA's tolerances: every
b x s_q x s_k x (h_q, h_kv) x varlen x causal combination (2304 cases, well under a minute on
an H100), plus zero-length sequences, other page sizes and fp16. FLASHMFA_QUICK_GRID=1 keeps
FlashMLA's h_q = 128 grid and a head-count sweep at small batches (504 cases)."""

from __future__ import annotations

import itertools
import os

import pytest

from cuda_problems import (Case, check_against_reference, make_data, require_cuda_backend,
                           torch)

import flashmfa.flash_mla as flash_mla

B = [1, 2, 6, 64]
S_Q = [1, 2, 4]
S_K = [20, 140, 4096]
HEADS = [(1, 1), (3, 1), (3, 3), (9, 1), (9, 3), (63, 1), (63, 3), (64, 1), (64, 2),
         (64, 8), (126, 1), (126, 2), (126, 3), (128, 1), (128, 2), (128, 8)]


def grid():
    if os.environ.get("FLASHMFA_QUICK_GRID") != "1":
        for b, s_q, s_k, (h_q, h_kv), varlen, causal in itertools.product(
                B, S_Q, S_K, HEADS, [False, True], [False, True]):
            yield Case(b, s_q, s_k, h_q, h_kv, varlen, causal)
        return
    for b, s_q, s_k, varlen, causal in itertools.product(B, S_Q, S_K, [False, True],
                                                         [False, True]):
        yield Case(b, s_q, s_k, 128, 1, varlen, causal)
    for (h_q, h_kv), b, s_q, s_k, causal in itertools.product(HEADS, [1, 6], [1, 4], S_K,
                                                              [False, True]):
        if (h_q, h_kv) != (128, 1):
            yield Case(b, s_q, s_k, h_q, h_kv, varlen=True, causal=causal)


CORNER_CASES = [
    # FlashMLA's corner case: some sequences have no cached token at all.
    Case(128, 2, 4096, varlen=True, causal=False, zero_lengths=True),
    Case(128, 2, 4096, varlen=True, causal=True, zero_lengths=True),
    Case(6, 4, 140, h_q=9, h_kv=3, varlen=True, causal=True, zero_lengths=True),
    # Beyond FlashMLA: other page sizes, and fp16.
    Case(6, 2, 140, varlen=True, causal=True, page_size=1),
    Case(6, 2, 140, varlen=True, causal=True, page_size=16),
    Case(6, 2, 4096, varlen=True, causal=False, page_size=256),
    Case(2, 1, 4096, h_q=64, h_kv=2, varlen=True, page_size=32),
    Case(6, 2, 4096, varlen=True, causal=True, dtype="float16"),
    Case(64, 1, 140, h_q=16, varlen=True, dtype="float16"),
]


@pytest.fixture(autouse=True)
def _cuda():
    require_cuda_backend()
    yield


def run_case(c: Case, convention: str):
    seqlens, q, block_table, k_cache = make_data(c)
    if convention == "original":
        tile_md, num_splits = flash_mla.get_mla_metadata(seqlens, c.s_q * c.h_q // c.h_kv,
                                                         c.h_kv)
        assert tile_md.dtype == torch.int32 and tile_md.device == seqlens.device
        assert num_splits.dtype == torch.int32 and num_splits.shape == (c.b + 1,)
    else:
        tile_md, num_splits = flash_mla.get_mla_metadata()
    out, lse = flash_mla.flash_mla_with_kvcache(q, k_cache, block_table, seqlens, c.d_v,
                                                tile_md, num_splits, causal=c.causal)
    assert out.shape == (c.b, c.s_q, c.h_q, c.d_v) and out.dtype == q.dtype
    assert lse.shape == (c.b, c.h_q, c.s_q) and lse.dtype == torch.float32
    assert out.device == q.device and lse.device == q.device
    check_against_reference(out, lse, q, k_cache, block_table, seqlens, c.d_v, c.causal)


@pytest.mark.parametrize("case", list(grid()), ids=str)
@torch.inference_mode()
def test_grid(case):
    run_case(case, "original")


@pytest.mark.parametrize("case", CORNER_CASES, ids=str)
@pytest.mark.parametrize("convention", ["original", "current"])
@torch.inference_mode()
def test_corner_cases(case, convention):
    run_case(case, convention)


@torch.inference_mode()
def test_current_convention_reuses_the_plan_across_layers():
    c = Case(6, 2, 4096, h_q=128, varlen=True, causal=True)
    seqlens, q, block_table, k_cache = make_data(c)
    meta, _ = flash_mla.get_mla_metadata()
    for layer in range(3):
        q_layer = torch.randn_like(q).clamp_(-1, 1)
        out, lse = flash_mla.flash_mla_with_kvcache(q_layer, k_cache, block_table, seqlens,
                                                    c.d_v, meta, None, causal=True)
        check_against_reference(out, lse, q_layer, k_cache, block_table, seqlens, c.d_v, True)
        if layer == 0:
            workspace = meta.tile_scheduler_metadata
            assert workspace.dtype == torch.int32 and workspace.is_cuda
        assert meta.tile_scheduler_metadata is workspace  # planned once


@torch.inference_mode()
def test_nan_in_unused_rows_never_leaks_and_sentinels_are_never_read():
    c = Case(2, 1, 140, varlen=True)
    seqlens, q, block_table, k_cache = make_data(c)
    md, ns = flash_mla.get_mla_metadata(seqlens, c.h_q, 1)
    out, lse = flash_mla.flash_mla_with_kvcache(q, k_cache, block_table, seqlens, c.d_v, md,
                                                ns)
    assert not out.isnan().any() and not lse.isnan().any()
    assert (block_table == 2147480000).any() and k_cache.isnan().any()


@torch.inference_mode()
def test_other_v_aliases_k_head_sizes():
    for d in (256, 128, 64):
        c = Case(6, 2, 140, h_q=16, h_kv=2, varlen=True, causal=True, d=d, d_v=d)
        seqlens, q, block_table, k_cache = make_data(c)
        md, ns = flash_mla.get_mla_metadata(seqlens, c.s_q * c.h_q // c.h_kv, c.h_kv)
        out, lse = flash_mla.flash_mla_with_kvcache(q, k_cache, block_table, seqlens, d, md, ns,
                                                    causal=True)
        check_against_reference(out, lse, q, k_cache, block_table, seqlens, d, True)
