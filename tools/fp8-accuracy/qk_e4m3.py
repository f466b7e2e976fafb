"""Would e4m3 tensor-core products for MLA's S = Q K^T be accurate enough? (issue 8)

The Hopper MLA kernel widens FlashMLA's 656-byte FP8 rows to 16 bits in shared memory before
S = Q K^T (docs/perf-notes.md K, L.3), and that widening's shared-memory traffic bounds it. An
e4m3 x e4m3 wgmma on the raw latent would skip the widening for S (P V would still need V in
16 bits), but it needs Q in e4m3 too. This script measures what that costs in accuracy, on the
CPU, against decode on the unquantized bf16 cache (the same cases as accuracy.py):

  fp8 cache (today)   flashmfa.decode on the fp8_mla cache: Q in bf16, K widened to bf16
  emulated, today     the same computed here in numpy (checks the emulation against flashmfa)
  Q e4m3 / 128        the latent half of S from e4m3 Q (one scale per row and 128 values, the
                      cache's own groups) times the raw e4m3 latent, each group's fp32 sum
                      scaled by both scales; RoPE (64 bf16 values) and P V as today
  Q e4m3 / row        the same with one Q scale per row

    PYTHONPATH=<flashmfa install> python3 tools/fp8-accuracy/qk_e4m3.py
"""

from __future__ import annotations

import sys

import ml_dtypes
import numpy as np

import flashmfa

from accuracy import BF16, channel_gains, make_cache

E4M3 = ml_dtypes.float8_e4m3fn
LATENT, GROUP, ROPE = 512, 128, 64
E4M3_MAX = 448.0


def bf16(x):
    return np.asarray(x, np.float64).astype(BF16).astype(np.float64)


def split_rows(k8):
    """The 656-byte rows of one sequence [n, 656] -> e4m3 latent [n, 512], scales [n, 4] and
    RoPE [n, 64] as float64."""
    lat = k8[:, :LATENT].copy().view(E4M3).astype(np.float64)
    scales = k8[:, LATENT:LATENT + 16].copy().view(np.float32).astype(np.float64)
    rope = k8[:, LATENT + 16:].copy().view(BF16).astype(np.float64)
    return lat, scales, rope


def quantize_q(q_lat, per_group):
    """Q's latent part [h, 512] -> e4m3 values and scales [h, 4] (per 128 values or per row)."""
    g = q_lat.reshape(q_lat.shape[0], LATENT // GROUP, GROUP)
    amax = np.abs(g).max(axis=2 if per_group else (1, 2), keepdims=True)
    scale = np.where(amax > 0, amax / E4M3_MAX, 1.0)
    scale = np.broadcast_to(scale, (g.shape[0], g.shape[1], 1))
    q8 = (g / scale).astype(E4M3).astype(np.float64)
    return q8, scale[..., 0]


def decode_one(q, lat, scales, rope, softmax_scale, mode):
    """One sequence, s_q 1: q [h, 576] (bf16 values), the cache's rows split. Returns out [h, 512]
    and lse [h] (natural log)."""
    n = lat.shape[0]
    # V (and, today, K's latent): each value read as T(e4m3 * T(scale)) (common/fp8_dequant.cuh).
    wide = bf16(lat.reshape(n, 4, GROUP) * bf16(scales)[:, :, None]).reshape(n, LATENT)
    s_rope = q[:, LATENT:] @ rope.T
    if mode == "today":
        s = q[:, :LATENT] @ wide.T + s_rope
    else:
        q8, qs = quantize_q(q[:, :LATENT], per_group=mode == "group")
        k8 = lat.reshape(n, 4, GROUP)
        # sum over groups of qs[h, g] * ks[t, g] * (q8[h, g, :] . k8[t, g, :])
        dots = np.einsum("hgc,tgc->htg", q8, k8)
        s = np.einsum("htg,hg,tg->ht", dots, qs, scales) + s_rope
    logits = s * softmax_scale
    m = logits.max(axis=1, keepdims=True)
    p = np.exp(logits - m)
    l = p.sum(axis=1, keepdims=True)
    out = bf16(p) @ wide / l  # P rounded to 16 bits before P V, as the kernel does
    return out, (m + np.log(l))[:, 0]


def run_case(kind, temperature, seed, h_q=16, b=4, n=2048):
    rng = np.random.default_rng(seed)
    d_k, page = 576, 64
    k = make_cache(rng, b * n, d_k, 1, channel_gains(rng, d_k, kind, rope=ROPE), page)
    block_table = rng.permutation(k.shape[0]).astype(np.int32).reshape(b, n // page)
    seqlens = np.full(b, n, np.int32)
    q = rng.standard_normal((b, 1, h_q, d_k)).astype(BF16)
    scale = temperature / np.sqrt(d_k)
    out_ref, lse_ref = flashmfa.decode(q, k, None, block_table, seqlens, softmax_scale=scale)
    k8 = np.zeros(k.shape[:3] + (656,), np.uint8)
    for i in range(b):
        rows = k[block_table[i]].reshape(1, n, 1, d_k)
        flashmfa.append_kv(rows, None, k8, None, block_table[i:i + 1], seqlens[i:i + 1])
    out8, lse8 = flashmfa.decode(q, k8, None, block_table, seqlens, softmax_scale=scale,
                                 head_dim_v=LATENT)

    ref = np.asarray(out_ref, np.float64).reshape(b, h_q, LATENT)
    lse_r = np.asarray(lse_ref, np.float64).reshape(b, h_q)
    results = {"fp8 cache (today)": (np.asarray(out8, np.float64).reshape(b, h_q, LATENT),
                                     np.asarray(lse8, np.float64).reshape(b, h_q))}
    for label, mode in (("emulated, today", "today"), ("Q e4m3 / 128", "group"),
                        ("Q e4m3 / row", "row")):
        outs, lses = [], []
        for i in range(b):
            rows = k8[block_table[i]].reshape(n, 656)
            lat, scales, rope = split_rows(rows)
            o, l = decode_one(np.asarray(q[i, 0], np.float64), lat, scales, rope, scale, mode)
            outs.append(o)
            lses.append(l)
        results[label] = (np.stack(outs), np.stack(lses))

    rows_out = []
    for label, (o, l) in results.items():
        a, x = ref.reshape(-1, LATENT), o.reshape(-1, LATENT)
        cos = (a * x).sum(1) / np.sqrt((a * a).sum(1) * (x * x).sum(1))
        rel = np.abs(a - x).max(1) / np.abs(a).max(1)
        rows_out.append((label, kind, temperature, cos.min(), np.median(cos), np.median(rel),
                         rel.max(), np.abs(l - lse_r).max()))
    return rows_out


def main():
    w = sys.stdout.write
    w("| S = Q K^T from | channels | temperature | cos min | cos median | "
      "max abs err / max abs out, median row | worst row | max abs lse err |\n")
    w("|---|---|---|---|---|---|---|---|\n")
    seed = 1
    for kind in ("plain", "outliers", "rope-outliers"):
        for temperature in (1.0, 4.0):
            for c in run_case(kind, temperature, seed):
                w(f"| {c[0]} | {c[1]} | {c[2]:g} | {c[3]:.5f} | {c[4]:.6f} | {c[5]:.4f} | "
                  f"{c[6]:.4f} | {c[7]:.4f} |\n")
            seed += 1


if __name__ == "__main__":
    main()
