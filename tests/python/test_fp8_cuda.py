"""FP8 caches on CUDA tensors: decode, plan/run and the FlashMLA drop-in (is_fp8_kvcache=True)
read caches written by append_kv (FlashMLA's 656-byte MLA rows, e4m3 rows with per-row scales),
checked against an independent numpy decoding of the same bytes. Skipped without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from cuda_problems import require_cuda_backend, torch
from problems import Problem, assert_close, make_problem, reference
from test_fp8_cpu import dequantize_mla, e4m3_to_float, fill_by_append, mla_fp8

import flashmfa
import flashmfa.flash_mla as flash_mla

# fp16 outputs: half an ulp of P and out, the FP8 path's extra rounding of K to fp16.
F16_TOL = 2e-3


@pytest.fixture(autouse=True)
def _cuda():
    require_cuda_backend()
    yield


def cuda(x):
    return None if x is None else torch.from_numpy(np.ascontiguousarray(x)).cuda()


def host(x):
    return x.cpu().numpy()


@pytest.mark.parametrize("s_q,causal,h_q", [(1, False, 16), (2, True, 16), (1, False, 128)])
def test_decode_mla_fp8(s_q, causal, h_q):
    p = make_problem(np.random.default_rng(20 + s_q + h_q), b=3, s_q=s_q, h_q=h_q, d_k=576,
                     d_v=512, page_size=64, lengths=[700, 0, 65])
    k8 = mla_fp8(p)
    out, lse = flashmfa.decode(cuda(p.q), cuda(k8), None, cuda(p.block_table), cuda(p.seqlens_k),
                               causal=causal)
    deq = Problem(p.q, dequantize_mla(k8, np.float16), None, p.block_table, p.seqlens_k, 512)
    ref_out, ref_lse = reference(deq, causal=causal)
    assert_close(host(out), host(lse), ref_out, ref_lse, out_tol=F16_TOL)


@pytest.mark.parametrize("d,v_aliases_k,h_kv", [(256, False, 1), (256, True, 1), (128, False, 2),
                                                (64, True, 2)])
def test_decode_row_format(d, v_aliases_k, h_kv):
    p = make_problem(np.random.default_rng(30 + d + h_kv), b=2, s_q=2, h_q=8 * h_kv, h_kv=h_kv,
                     d_k=d, d_v=d, v_aliases_k=v_aliases_k, page_size=16, lengths=[300, 9])
    shape = p.k_cache.shape
    k8 = np.full(shape, 0xFF, np.uint8)
    ks = np.full(shape[:3], np.nan, np.float32)
    v8 = None if v_aliases_k else np.full(shape, 0xFF, np.uint8)
    vs = None if v_aliases_k else np.full(shape[:3], np.nan, np.float32)
    fill_by_append(p, k8, v8, ks, vs)
    args = (cuda(p.q), cuda(k8), cuda(v8), cuda(p.block_table), cuda(p.seqlens_k))
    out, lse = flashmfa.decode(*args, causal=True, k_scale=cuda(ks), v_scale=cuda(vs))
    k_deq = e4m3_to_float(k8) * ks[..., None]
    v_deq = None if v_aliases_k else e4m3_to_float(v8) * vs[..., None]
    deq = Problem(p.q, k_deq, v_deq, p.block_table, p.seqlens_k, d)
    ref_out, ref_lse = reference(deq, causal=True)
    assert_close(host(out), host(lse), ref_out, ref_lse, out_tol=F16_TOL)
    pl = flashmfa.plan(*args, causal=True, k_scale=cuda(ks), v_scale=cuda(vs))
    assert pl.cache_format == "fp8_row"


def test_flash_mla_drop_in_reads_fp8_cache_on_cuda():
    p = make_problem(np.random.default_rng(11), b=2, s_q=2, h_q=16, d_k=576, d_v=512,
                     page_size=64, lengths=[1000, 5])
    k8 = mla_fp8(p)
    q, k, bt, lens = cuda(p.q), cuda(k8).view(torch.float8_e4m3fn), cuda(p.block_table), \
        cuda(p.seqlens_k)
    md, ns = flash_mla.get_mla_metadata(lens, 2 * 16, 1, is_fp8_kvcache=True)
    out, lse = flash_mla.flash_mla_with_kvcache(q, k, bt, lens, 512, md, ns, causal=True,
                                                is_fp8_kvcache=True)
    deq = Problem(p.q, dequantize_mla(k8, np.float16), None, p.block_table, p.seqlens_k, 512)
    ref_out, ref_lse = reference(deq, causal=True)
    assert_close(host(out), host(lse), ref_out, ref_lse, out_tol=F16_TOL)
