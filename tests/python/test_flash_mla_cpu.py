"""flashmfa.flash_mla, FlashMLA's API, on CPU arrays (numpy float16): runs in CI."""

from __future__ import annotations

import numpy as np
import pytest

import flashmfa
import flashmfa.flash_mla as flash_mla
from problems import assert_close, make_problem, reference

F16_TOL = 2e-3
D_K, D_V = 576, 512


def mla_problem(seed, *, b=2, s_q=1, h_q=16, h_kv=1, page_size=64, lengths=None):
    return make_problem(np.random.default_rng(seed), b=b, s_q=s_q, h_q=h_q, h_kv=h_kv,
                        d_k=D_K, d_v=D_V, v_aliases_k=True, page_size=page_size,
                        lengths=lengths)


def flashmla_reference(p, causal):
    """FlashMLA's convention: lse = +inf where a row has nothing to attend."""
    out, lse = reference(p, causal=causal)
    return out, np.where(np.isneginf(lse), np.inf, lse)


def check(out, lse, p, causal):
    ref_out, ref_lse = flashmla_reference(p, causal)
    np.testing.assert_array_equal(np.isposinf(lse), np.isposinf(ref_lse))
    assert not np.isneginf(lse).any()
    finite = np.isfinite(ref_lse)
    # assert_close on the finite part (it expects the native -inf convention elsewhere)
    assert_close(out, np.where(finite, lse, -np.inf), ref_out,
                 np.where(finite, ref_lse, -np.inf), out_tol=F16_TOL)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("s_q", [1, 2])
def test_original_convention(causal, s_q):
    p = mla_problem(0, b=3, s_q=s_q, lengths=[100, 0, 64])
    tile_md, num_splits = flash_mla.get_mla_metadata(p.seqlens_k, s_q * 16 // 1, 1)
    assert tile_md.dtype == np.int32 and tile_md.ndim == 2
    assert tile_md.shape[1] == flash_mla.TILE_SCHEDULER_METADATA_SIZE
    assert num_splits.dtype == np.int32 and num_splits.shape == (4,)
    assert list(num_splits) == [0, 1, 2, 3]
    out, lse = flash_mla.flash_mla_with_kvcache(p.q, p.k_cache, p.block_table, p.seqlens_k,
                                                D_V, tile_md, num_splits, causal=causal)
    assert out.shape == (3, s_q, 16, D_V) and out.dtype == np.float16
    assert lse.shape == (3, 16, s_q) and lse.dtype == np.float32
    assert np.all(out[1] == 0) and np.all(np.isposinf(lse[1]))
    check(out, lse, p, causal)


def test_current_convention_plans_once_and_reuses():
    p = mla_problem(1, b=2, s_q=2, lengths=[130, 7])
    meta, none = flash_mla.get_mla_metadata()
    assert isinstance(meta, flash_mla.FlashMLASchedMeta) and none is None
    assert not meta.have_initialized
    out, lse = flash_mla.flash_mla_with_kvcache(p.q, p.k_cache, p.block_table, p.seqlens_k,
                                                D_V, meta, None, causal=True)
    assert meta.have_initialized
    assert meta.config == flash_mla.FlashMLASchedMeta.Config(
        b=2, s_q=2, h_q=16, page_block_size=64, h_k=1, causal=True, is_fp8_kvcache=False,
        topk=None, extra_page_block_size=None, extra_topk=None)
    assert meta.num_splits.dtype == np.int32 and meta.num_splits.shape == (3,)
    check(out, lse, p, True)
    for _ in range(2):  # other layers of the same step: same plan, new data
        q2 = np.random.default_rng(2).uniform(-1, 1, p.q.shape).astype(np.float16)
        out2, lse2 = flash_mla.flash_mla_with_kvcache(q2, p.k_cache, p.block_table,
                                                      p.seqlens_k, D_V, meta, None, causal=True)
        p.q = q2
        check(out2, lse2, p, True)


def test_current_convention_ignores_arguments_and_meta_can_be_built_directly():
    meta, none = flash_mla.get_mla_metadata(None, 64, 1, some_future_flag=True)
    assert isinstance(meta, flash_mla.FlashMLASchedMeta) and none is None
    p = mla_problem(3, lengths=[50, 9])
    out, lse = flash_mla.flash_mla_with_kvcache(p.q, p.k_cache, p.block_table, p.seqlens_k,
                                                D_V, flash_mla.FlashMLASchedMeta())
    check(out, lse, p, False)


def test_meta_reused_with_other_shapes_is_refused():
    p = mla_problem(4, lengths=[50, 9])
    meta, _ = flash_mla.get_mla_metadata()
    flash_mla.flash_mla_with_kvcache(p.q, p.k_cache, p.block_table, p.seqlens_k, D_V, meta)
    with pytest.raises(ValueError, match="tile_scheduler_metadata"):
        flash_mla.flash_mla_with_kvcache(p.q, p.k_cache, p.block_table, p.seqlens_k, D_V, meta,
                                         causal=True)


@pytest.mark.parametrize("page_size", [1, 16, 128, 256])
@pytest.mark.parametrize("h_q,h_kv", [(3, 1), (8, 2), (9, 3)])
def test_beyond_flashmla_page_sizes_and_kv_heads(page_size, h_q, h_kv):
    p = mla_problem(5, b=2, s_q=2, h_q=h_q, h_kv=h_kv, page_size=page_size, lengths=[1, 140])
    md, ns = flash_mla.get_mla_metadata(p.seqlens_k, 2 * h_q // h_kv, h_kv)
    out, lse = flash_mla.flash_mla_with_kvcache(p.q, p.k_cache, p.block_table, p.seqlens_k,
                                                D_V, md, ns, causal=True)
    check(out, lse, p, True)


def test_other_v_aliases_k_head_sizes():
    p = make_problem(np.random.default_rng(6), b=2, h_q=4, d_k=256, v_aliases_k=True,
                     page_size=64, lengths=[70, 3])
    md, ns = flash_mla.get_mla_metadata(p.seqlens_k, 4, 1)
    out, lse = flash_mla.flash_mla_with_kvcache(p.q, p.k_cache, p.block_table, p.seqlens_k,
                                                256, md, ns, softmax_scale=0.1)
    ref_out, ref_lse = reference(p, softmax_scale=0.1)
    assert_close(out, lse, ref_out, ref_lse, out_tol=F16_TOL)


def test_default_softmax_scale_is_d_k_to_the_minus_half():
    p = mla_problem(7, lengths=[33, 77])
    md, ns = flash_mla.get_mla_metadata(p.seqlens_k, 16, 1)
    a = flash_mla.flash_mla_with_kvcache(p.q, p.k_cache, p.block_table, p.seqlens_k, D_V,
                                         md, ns)
    b = flash_mla.flash_mla_with_kvcache(p.q, p.k_cache, p.block_table, p.seqlens_k, D_V,
                                         md, ns, softmax_scale=D_K ** -0.5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_metadata_argument_names_and_shapes():
    seqlens = np.array([5, 6, 7], np.int32)
    md, ns = flash_mla.get_mla_metadata(cache_seqlens=seqlens, num_q_tokens_per_head_k=128,
                                        num_heads_k=1, num_heads_q=128, is_fp8_kvcache=False,
                                        topk=None)
    assert md.shape == (1, 8) and ns.shape == (4,)
    md2, ns2 = flash_mla.get_mla_metadata(seqlens, num_heads_per_head_k=128, num_heads_k=1)
    assert md2.shape == md.shape and np.array_equal(ns2, ns)
    with pytest.raises(TypeError, match="unexpected"):
        flash_mla.get_mla_metadata(seqlens, 128, 1, not_an_argument=1)
    with pytest.raises(ValueError, match="num_heads_k"):
        flash_mla.get_mla_metadata(seqlens, 128, 0)


def test_unsupported_features_say_so():
    p = mla_problem(8, lengths=[5, 5])
    md, ns = flash_mla.get_mla_metadata(p.seqlens_k, 16, 1)
    args = (p.q, p.k_cache, p.block_table, p.seqlens_k, D_V, md, ns)
    with pytest.raises(flashmfa.DTypeError, match="float8_e4m3fn"):  # a 16-bit cache
        flash_mla.flash_mla_with_kvcache(*args, is_fp8_kvcache=True)
    with pytest.raises(NotImplementedError, match="indices"):
        flash_mla.flash_mla_with_kvcache(*args, indices=np.zeros((2, 1, 64), np.int32))
    with pytest.raises(ValueError, match="block_table"):
        flash_mla.flash_mla_with_kvcache(p.q, p.k_cache, None, p.seqlens_k, D_V, md, ns)


def test_errors_are_flashmfa_errors():
    p = mla_problem(9, lengths=[5, 5])
    md, ns = flash_mla.get_mla_metadata(p.seqlens_k, 16, 1)
    with pytest.raises(flashmfa.DTypeError, match="q.dtype"):
        flash_mla.flash_mla_with_kvcache(p.q.astype(np.float32), p.k_cache, p.block_table,
                                         p.seqlens_k, D_V, md, ns)
    with pytest.raises(flashmfa.ArgumentError, match="d_v"):
        flash_mla.flash_mla_with_kvcache(p.q, p.k_cache, p.block_table, p.seqlens_k, 600,
                                         md, ns)
