"""The native API on CPU arrays (numpy float16): runs in CI, needs no torch and no GPU."""

from __future__ import annotations

import numpy as np
import pytest

import flashmfa
from problems import assert_close, make_problem, reference

F16_TOL = 2e-3  # out is a convex combination of f16 values: a few f16 ulps of 1

# (d_k, d_v, V aliases K) of every supported variant, named as the presets name them.
VARIANTS = {
    "mla": flashmfa.Variant.mla(),
    "mfa": flashmfa.Variant.mfa(),
    "mfa_kr256": flashmfa.Variant.mfa_kr(256),
    "mqa128": flashmfa.Variant.mqa(128),
    "mfa_kr128": flashmfa.Variant.mfa_kr(128),
    "mqa64": flashmfa.Variant.mqa(64),
    "mfa_kr64": flashmfa.Variant.mfa_kr(64),
}


def problem_for(variant: flashmfa.Variant, rng, **kw):
    return make_problem(rng, d_k=variant.d_k, d_v=variant.d_v,
                        v_aliases_k=variant.v_aliases_k, **kw)


def test_every_supported_variant_is_tested():
    assert set(VARIANTS.values()) == set(flashmfa.supported_variants())


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("causal", [False, True])
def test_decode_matches_reference_for_each_variant(name, causal):
    rng = np.random.default_rng(1)
    p = problem_for(VARIANTS[name], rng, b=3, s_q=2, h_q=4, h_kv=2, page_size=16,
                    lengths=[37, 0, 16])
    out, lse = flashmfa.decode(*p.args, causal=causal)
    assert out.dtype == np.float16 and out.shape == (3, 2, 4, p.d_v)
    assert lse.dtype == np.float32 and lse.shape == (3, 4, 2)
    assert_close(out, lse, *reference(p, causal=causal), out_tol=F16_TOL)
    # The core's own float64 reference agrees too (same binding, other implementation).
    ref_out, ref_lse = flashmfa.reference(*p.args, causal=causal)
    assert_close(out, lse, ref_out.astype(np.float64), ref_lse.astype(np.float64),
                 out_tol=F16_TOL)


@pytest.mark.parametrize("page_size", [1, 2, 16, 64, 256])
def test_page_sizes(page_size):
    rng = np.random.default_rng(page_size)
    p = make_problem(rng, b=3, s_q=1, h_q=8, h_kv=1, d_k=64, page_size=page_size,
                     lengths=[1, 300, 2 * page_size + 1])
    out, lse = flashmfa.decode(*p.args)
    assert_close(out, lse, *reference(p), out_tol=F16_TOL)


@pytest.mark.parametrize("h_q,h_kv", [(1, 1), (3, 1), (9, 3), (6, 2), (8, 8)])
@pytest.mark.parametrize("s_q", [1, 4])
def test_heads_and_query_tokens(h_q, h_kv, s_q):
    rng = np.random.default_rng(h_q * 10 + s_q)
    p = make_problem(rng, b=2, s_q=s_q, h_q=h_q, h_kv=h_kv, d_k=128, v_aliases_k=False,
                     lengths=[5, 40])
    for causal in (False, True):
        out, lse = flashmfa.decode(*p.args, causal=causal)
        assert_close(out, lse, *reference(p, causal=causal), out_tol=F16_TOL)


def test_empty_rows_give_zero_and_negative_infinity():
    rng = np.random.default_rng(3)
    # Sequence 1 is empty; with causal and s_q = 4, sequence 0 (length 2) has two query
    # tokens that see nothing (last = 2 - 4 + t < 0 for t < 2).
    p = make_problem(rng, b=2, s_q=4, h_q=2, d_k=64, lengths=[2, 0])
    out, lse = flashmfa.decode(*p.args, causal=True)
    assert np.all(out[1] == 0) and np.all(np.isneginf(lse[1]))
    assert np.all(out[0, :2] == 0) and np.all(np.isneginf(lse[0, :, :2]))
    assert np.all(np.isfinite(lse[0, :, 2:]))
    assert_close(out, lse, *reference(p, causal=True), out_tol=F16_TOL)


def test_all_sequences_empty():
    rng = np.random.default_rng(4)
    p = make_problem(rng, b=3, d_k=64, lengths=[0, 0, 0])
    out, lse = flashmfa.decode(*p.args)
    assert np.all(out == 0) and np.all(np.isneginf(lse))


def test_softmax_scale():
    rng = np.random.default_rng(5)
    p = make_problem(rng, b=2, h_q=4, d_k=64, lengths=[20, 33])
    out, lse = flashmfa.decode(*p.args, softmax_scale=0.3)
    assert_close(out, lse, *reference(p, softmax_scale=0.3), out_tol=F16_TOL)


def test_preallocated_outputs_are_written_and_returned():
    rng = np.random.default_rng(6)
    p = make_problem(rng, b=2, s_q=2, h_q=4, d_k=64, lengths=[20, 7])
    out = np.full((2, 2, 4, 64), 7, dtype=np.float16)
    lse = np.full((2, 4, 2), 7, dtype=np.float32)
    got_out, got_lse = flashmfa.decode(*p.args, out=out, lse=lse)
    assert got_out is out and got_lse is lse
    assert_close(out, lse, *reference(p), out_tol=F16_TOL)


def test_strided_views_in_and_out():
    """Only the last dimension must be contiguous: slices of larger buffers work."""
    rng = np.random.default_rng(7)
    p = make_problem(rng, b=2, s_q=1, h_q=4, h_kv=2, d_k=128, v_aliases_k=False,
                     lengths=[30, 45])
    q_big = np.zeros((2, 1, 8, 256), dtype=np.float16)
    q_big[:, :, ::2, :128] = p.q
    q = q_big[:, :, ::2, :128]                       # strided heads, padded rows
    out_big = np.zeros((2, 1, 4, 3, 128), dtype=np.float16)
    out = out_big[:, :, :, 1, :]                     # [2, 1, 4, 128] with head stride 384
    lse = np.zeros((2, 2, 4), dtype=np.float32).transpose(0, 2, 1)[:, :, :1]  # [b, h_q, 1]
    assert not q.flags.c_contiguous and not out.flags.c_contiguous
    flashmfa.decode(q, p.k_cache, p.v_cache, p.block_table, p.seqlens_k, out=out, lse=lse)
    assert_close(out, lse, *reference(p), out_tol=F16_TOL)
    assert np.all(out_big[:, :, :, 0] == 0) and np.all(out_big[:, :, :, 2] == 0)


def test_read_only_inputs_are_accepted():
    rng = np.random.default_rng(8)
    p = make_problem(rng, b=2, d_k=64, lengths=[9, 17])
    for a in p.args:
        if a is not None:
            a.setflags(write=False)
    out, lse = flashmfa.decode(*p.args)
    assert_close(out, lse, *reference(p), out_tol=F16_TOL)


def test_plan_and_run_reuse_a_plan():
    rng = np.random.default_rng(9)
    p = make_problem(rng, b=2, s_q=2, h_q=4, d_k=576, d_v=512, lengths=[70, 3])
    assert flashmfa.workspace_size(*p.args) == 0  # the CPU backend needs none
    plan = flashmfa.plan(*p.args, causal=True, softmax_scale=0.05)
    assert (plan.device, plan.dtype, plan.batch, plan.s_q, plan.h_q, plan.h_kv) == (
        "cpu", "f16", 2, 2, 4, 1)
    assert plan.variant == flashmfa.Variant.mla() and plan.causal
    assert plan.softmax_scale == pytest.approx(0.05) and plan.workspace is None
    assert "flashmfa.Plan(" in repr(plan)
    ref = reference(p, causal=True, softmax_scale=0.05)
    for _ in range(2):  # a plan serves many runs (layers)
        out, lse = flashmfa.run(plan, *p.args)
        assert_close(out, lse, *ref, out_tol=F16_TOL)
    assert flashmfa.read_error_flags(plan) == 0
    flashmfa.check_errors(plan)


def test_head_dim_v_defaults_and_override():
    rng = np.random.default_rng(10)
    p = make_problem(rng, b=1, d_k=576, d_v=512, lengths=[10])
    out, _ = flashmfa.decode(*p.args)
    assert out.shape[-1] == 512  # MLA: the aliasing variant for d_k = 576
    p = make_problem(rng, b=1, d_k=256, lengths=[10])
    out, _ = flashmfa.decode(*p.args)
    assert out.shape[-1] == 256  # MFA-KR
    out, _ = flashmfa.decode(*p.args, head_dim_v=256)
    assert out.shape[-1] == 256


def test_workspace_argument_is_accepted_on_cpu():
    rng = np.random.default_rng(11)
    p = make_problem(rng, b=1, d_k=64, lengths=[10])
    ws = np.zeros(64, dtype=np.uint8)
    out, lse = flashmfa.decode(*p.args, workspace=ws)
    assert_close(out, lse, *reference(p), out_tol=F16_TOL)


def test_numpy_bfloat16_through_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(12)
    p = make_problem(rng, b=2, s_q=1, h_q=4, d_k=64, lengths=[19, 40], dtype=np.float32)
    bf16 = ml_dtypes.bfloat16
    q, k = p.q.astype(bf16), p.k_cache.astype(bf16)
    out, lse = flashmfa.decode(q, k, None, p.block_table, p.seqlens_k)
    assert out.dtype == bf16
    p.q, p.k_cache = q.astype(np.float32), k.astype(np.float32)  # what bf16 holds
    assert_close(out.astype(np.float32), lse, *reference(p), out_tol=1.6e-2)
    out2 = np.zeros_like(out)
    got, _ = flashmfa.decode(q, k, None, p.block_table, p.seqlens_k, out=out2)
    assert got is out2 and np.array_equal(out2.view(np.uint16), out.view(np.uint16))


def test_torch_cpu_tensors_bf16():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    p = make_problem(rng, b=2, s_q=2, h_q=8, h_kv=2, d_k=128, v_aliases_k=False,
                     lengths=[33, 64], dtype=np.float32)
    q, k, v = (torch.from_numpy(a).to(torch.bfloat16) for a in (p.q, p.k_cache, p.v_cache))
    out, lse = flashmfa.decode(q, k, v, torch.from_numpy(p.block_table),
                               torch.from_numpy(p.seqlens_k), causal=True)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bfloat16
    assert lse.dtype == torch.float32 and out.device.type == "cpu"
    p.q, p.k_cache, p.v_cache = (t.float().numpy() for t in (q, k, v))
    assert_close(out.float().numpy(), lse.numpy(), *reference(p, causal=True), out_tol=1.6e-2)
