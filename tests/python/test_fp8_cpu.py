"""FP8 caches from Python on CPU arrays: append_kv writes FlashMLA's 656-byte MLA rows and e4m3
rows with per-row scales, decode and the FlashMLA drop-in (is_fp8_kvcache=True) read them.
Checked against an independent numpy decoding of the bytes: runs in CI."""

from __future__ import annotations

import numpy as np
import pytest

import flashmfa
import flashmfa.flash_mla as flash_mla
from problems import Problem, assert_close, cdiv, make_problem, reference

F16_TOL = 2e-3


def e4m3_to_float(bits: np.ndarray) -> np.ndarray:
    """OCP e4m3fn: 4 exponent bits (bias 7), 3 mantissa bits, S.1111.111 = NaN."""
    bits = bits.astype(np.int64)
    sign = np.where(bits & 0x80, -1.0, 1.0)
    e, m = (bits >> 3) & 15, bits & 7
    mag = np.where(e == 0, m * 2.0 ** -9, (1 + m / 8) * 2.0 ** (e - 7))
    mag = np.where((e == 15) & (m == 7), np.nan, mag)
    return sign * mag


def gather_rows(p: Problem, cache: np.ndarray, i: int) -> np.ndarray:
    """The first seqlens_k[i] rows of sequence i: [n, h_kv, d]."""
    n, page = int(p.seqlens_k[i]), cache.shape[1]
    pages = p.block_table[i, : cdiv(n, page)]
    return cache[pages].reshape(-1, *cache.shape[2:])[:n]


def fill_by_append(p: Problem, k8, v8=None, ks=None, vs=None):
    """Writes every visible row of p into the FP8 caches, one append_kv per sequence."""
    for i in range(p.q.shape[0]):
        n = int(p.seqlens_k[i])
        if n == 0:
            continue
        k_new = gather_rows(p, p.k_cache, i)[None]
        v_new = None if p.v_cache is None else gather_rows(p, p.v_cache, i)[None]
        flashmfa.append_kv(k_new, v_new, k8, v8, p.block_table[i:i + 1],
                           p.seqlens_k[i:i + 1], k_scale=ks, v_scale=vs)


def mla_fp8(p: Problem) -> np.ndarray:
    k8 = np.full(p.k_cache.shape[:3] + (656,), 0xFF, np.uint8)
    fill_by_append(p, k8)
    return k8


def dequantize_mla(k8: np.ndarray, dtype) -> np.ndarray:
    """[.., 656] bytes -> [.., 576] float64: latent * its group's scale, then the RoPE part."""
    scales = np.ascontiguousarray(k8[..., 512:528]).view(np.float32).astype(np.float64)
    latent = e4m3_to_float(k8[..., :512]) * np.repeat(scales, 128, axis=-1)
    rope = np.ascontiguousarray(k8[..., 528:656]).view(dtype).astype(np.float64)
    return np.concatenate([latent, rope], axis=-1)


def test_append_writes_flashmla_rows():
    p = make_problem(np.random.default_rng(3), b=2, h_q=16, d_k=576, d_v=512, page_size=16,
                     lengths=[40, 17])
    k8 = mla_fp8(p)
    for i in range(2):
        rows = gather_rows(p, k8, i)[:, 0]                   # [n, 656]
        x = gather_rows(p, p.k_cache, i)[:, 0].astype(np.float64)
        scales = np.ascontiguousarray(rows[:, 512:528]).view(np.float32)
        amax = np.abs(x[:, :512]).reshape(-1, 4, 128).max(axis=-1)
        np.testing.assert_allclose(scales, (amax / 448).astype(np.float32), rtol=1e-6)
        np.testing.assert_array_equal(  # RoPE: the input's bits
            np.ascontiguousarray(rows[:, 528:]).view(np.float16),
            gather_rows(p, p.k_cache, i)[:, 0, 512:])
        deq = dequantize_mla(rows, np.float16)[:, :512]
        step = np.abs(x[:, :512]) * 2.0 ** -4 + np.repeat(scales, 128, -1) * 2.0 ** -10
        assert np.all(np.abs(deq - x[:, :512]) <= step * 1.0001)
    # Rows past the lengths were not written (still the 0xFF fill).
    used = {(int(p.block_table[i, j // 16]), j % 16) for i in range(2)
            for j in range(int(p.seqlens_k[i]))}
    for page in range(k8.shape[0]):
        for slot in range(16):
            if (page, slot) not in used:
                assert np.all(k8[page, slot] == 0xFF)


@pytest.mark.parametrize("s_q,causal", [(1, False), (2, True)])
def test_decode_mla_fp8_matches_dequantized_reference(s_q, causal):
    p = make_problem(np.random.default_rng(4 + s_q), b=3, s_q=s_q, h_q=16, d_k=576, d_v=512,
                     page_size=16, lengths=[70, 0, 33])
    k8 = mla_fp8(p)
    out, lse = flashmfa.decode(p.q, k8, None, p.block_table, p.seqlens_k, causal=causal)
    deq = Problem(p.q, dequantize_mla(k8, np.float16), None, p.block_table, p.seqlens_k, 512)
    ref_out, ref_lse = reference(deq, causal=causal)
    assert_close(out, lse, ref_out, ref_lse, out_tol=F16_TOL)
    # The quantization error itself: against the unquantized cache.
    exact, _ = reference(p, causal=causal)
    assert np.max(np.abs(ref_out - exact)) < 0.05


def test_decode_row_format_with_scales():
    p = make_problem(np.random.default_rng(7), b=2, s_q=1, h_q=8, h_kv=2, d_k=128, d_v=128,
                     v_aliases_k=False, page_size=16, lengths=[50, 9])
    shape = p.k_cache.shape
    k8, v8 = np.full(shape, 0xFF, np.uint8), np.full(shape, 0xFF, np.uint8)
    ks, vs = np.full(shape[:3], np.nan, np.float32), np.full(shape[:3], np.nan, np.float32)
    fill_by_append(p, k8, v8, ks, vs)
    out, lse = flashmfa.decode(p.q, k8, v8, p.block_table, p.seqlens_k, k_scale=ks, v_scale=vs)
    deq = Problem(p.q, e4m3_to_float(k8) * ks[..., None], e4m3_to_float(v8) * vs[..., None],
                  p.block_table, p.seqlens_k, 128)
    ref_out, ref_lse = reference(deq)
    assert_close(out, lse, ref_out, ref_lse, out_tol=F16_TOL)
    pl = flashmfa.plan(p.q, k8, v8, p.block_table, p.seqlens_k, k_scale=ks, v_scale=vs)
    assert pl.cache_format == "fp8_row"
    with pytest.raises(flashmfa.ArgumentError, match="k_scale"):
        flashmfa.decode(p.q, k8, v8, p.block_table, p.seqlens_k, v_scale=vs)


def test_flash_mla_drop_in_reads_fp8_cache():
    p = make_problem(np.random.default_rng(9), b=2, s_q=2, h_q=16, d_k=576, d_v=512,
                     page_size=64, lengths=[130, 5])
    k8 = mla_fp8(p)
    md, ns = flash_mla.get_mla_metadata(p.seqlens_k, 2 * 16, 1, is_fp8_kvcache=True)
    out, lse = flash_mla.flash_mla_with_kvcache(p.q, k8, p.block_table, p.seqlens_k, 512, md,
                                                ns, causal=True, is_fp8_kvcache=True)
    deq = Problem(p.q, dequantize_mla(k8, np.float16), None, p.block_table, p.seqlens_k, 512)
    ref_out, ref_lse = reference(deq, causal=True)
    assert_close(out, lse, ref_out, ref_lse, out_tol=F16_TOL)
    meta, _ = flash_mla.get_mla_metadata()
    flash_mla.flash_mla_with_kvcache(p.q, k8, p.block_table, p.seqlens_k, 512, meta, None,
                                     causal=True, is_fp8_kvcache=True)
    assert meta.config.is_fp8_kvcache
    with pytest.raises(flashmfa.ArgumentError, match="is_fp8_kvcache"):
        flash_mla.flash_mla_with_kvcache(p.q, k8, p.block_table, p.seqlens_k, 512, md, ns)


def test_append_refuses_bad_lengths_before_writing():
    p = make_problem(np.random.default_rng(2), b=1, h_q=16, d_k=576, d_v=512, page_size=16,
                     lengths=[3])
    k8 = np.full(p.k_cache.shape[:3] + (656,), 0xAB, np.uint8)
    k_new = p.k_cache[:1, :4][None, :, :, 0:1].reshape(1, 4, 1, 576)
    with pytest.raises(flashmfa.ArgumentError, match=r"seqlens_k\[0\]"):
        flashmfa.append_kv(k_new, None, k8, None, p.block_table, p.seqlens_k)  # 3 < s_new 4
    assert np.all(k8 == 0xAB)


def test_append_accepts_error_flags_and_leaves_them_on_the_cpu():
    p = make_problem(np.random.default_rng(5), b=1, h_q=16, d_k=576, d_v=512, page_size=16,
                     lengths=[4])
    k8 = np.full(p.k_cache.shape[:3] + (656,), 0xAB, np.uint8)
    k_new = gather_rows(p, p.k_cache, 0)[None]
    flags = np.array([7], np.int32)  # the CPU raises instead of flagging: left as it is
    flashmfa.append_kv(k_new, None, k8, None, p.block_table, p.seqlens_k, error_flags=flags)
    assert flags[0] == 7 and not np.all(k8 == 0xAB)
    with pytest.raises(flashmfa.DTypeError, match=r"error_flags\.dtype"):
        flashmfa.append_kv(k_new, None, k8, None, p.block_table, p.seqlens_k,
                           error_flags=np.zeros(1, np.float32))
    with pytest.raises(flashmfa.ArgumentError, match=r"error_flags\.shape\[0\]"):
        flashmfa.append_kv(k_new, None, k8, None, p.block_table, p.seqlens_k,
                           error_flags=np.zeros(2, np.int32))
