"""What would e4m3 tensor-core math cost in accuracy on an FP8 MFA-KR cache? (issue 8)

docs/perf-notes.md T measured the speed side on the H100 (measuring builds whose operands are in
the wrong layout): S = Q K^T in e4m3 from the raw tile alone gains nothing, both GEMMs in e4m3
are what could reach issue 8's 1.8x. This script measures the accuracy side, on the CPU, in
numpy (no flashmfa needed): MFA-KR, d 256, one KV head, h_q 64, against attention on the
unquantized bf16 cache (float64 arithmetic), on the cases of accuracy.py (N(0, 1) channels,
or 1% outlier channels of gain 20-50; a flat and a peaked softmax):

  bf16 math (today)   the fp8_row cache (e4m3, one f32 scale per token) dequantized to bf16, Q
                      in bf16, P rounded to bf16: what the kernel computes today
  Q e4m3              S from Q in e4m3 (one scale per row) times the raw e4m3 K, scaled by both
                      scales; P V as today (perf-notes T, mode 1)
  Q, P e4m3           also P V in e4m3: P times each token's scale, quantized with one scale per
                      row, times the raw e4m3 V (= K) (mode 2 / 3)

Reported per output row, over 4 sequences x 64 heads: cosine similarity to the bf16-cache
output, max absolute error relative to the row's max |out|, and the lse error.

    python3 tools/fp8-accuracy/kr_e4m3.py
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

BF16 = ml_dtypes.bfloat16
E4M3 = ml_dtypes.float8_e4m3fn
E4M3_MAX = 448.0
D, H_Q, N, B = 256, 64, 2048, 4


def bf16(x):
    return np.asarray(x, np.float64).astype(BF16).astype(np.float64)


def e4m3(x):
    return np.asarray(x, np.float64).astype(E4M3).astype(np.float64)


def quantize_rows(x):
    """Rows of x -> (e4m3 values, one scale per row), the fp8_row format's rule."""
    amax = np.abs(x).max(axis=-1, keepdims=True)
    scale = np.where(amax > 0, amax / E4M3_MAX, 1.0)
    return e4m3(x / scale), scale


def attend(s, v):
    """Softmax over the rows of s (already scaled), then P V; returns out and lse."""
    m = s.max(axis=-1, keepdims=True)
    p = np.exp(s - m)
    l = p.sum(axis=-1, keepdims=True)
    return (p @ v) / l, (m + np.log(l))[:, 0]


def variants(q, k, scale):
    """The three computations on one sequence: q [h, d] bf16 values, k [n, d] bf16 values."""
    k8, ks = quantize_rows(k)                 # the cache: e4m3 rows, a scale per token
    kd = bf16(k8 * ks)                        # today's 16-bit tile
    out = {}
    # bf16 math: S from bf16 Q and K; P rounded to bf16 before P V (the kernel's rounding).
    s = q @ kd.T * scale
    m = s.max(axis=-1, keepdims=True)
    p = np.exp(s - m)
    l = p.sum(axis=-1, keepdims=True)
    out["bf16 math (today)"] = ((bf16(p) @ kd) / l, (m + np.log(l))[:, 0])
    # Q e4m3: S from the raw cache.
    q8, qs = quantize_rows(q)
    s8 = (q8 @ k8.T) * qs * ks.T * scale
    m = s8.max(axis=-1, keepdims=True)
    p = np.exp(s8 - m)
    l = p.sum(axis=-1, keepdims=True)
    out["Q e4m3"] = ((bf16(p) @ kd) / l, (m + np.log(l))[:, 0])
    # Q, P e4m3: P times each token's scale, one scale per row, the raw e4m3 V.
    pv = p * ks.T
    p8, ps = quantize_rows(pv)
    out["Q, P e4m3"] = ((p8 @ k8) * ps / l, (m + np.log(l))[:, 0])
    return out


def main():
    rng = np.random.default_rng(2026)
    print("| math | channels | temperature | cos min | cos median | max err / max (median) | "
          "max err / max (worst) | lse err (worst) |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in ("plain", "outliers"):
        for temperature in (1.0, 4.0):
            stats = {}
            for _ in range(B):
                gains = np.ones(D)
                if kind == "outliers":
                    idx = rng.choice(D, size=D // 100, replace=False)
                    gains[idx] = rng.uniform(20, 50, size=idx.size)
                k = bf16(rng.standard_normal((N, D)) * gains)
                q = bf16(rng.standard_normal((H_Q, D)))
                scale = temperature / np.sqrt(D)
                ref, ref_lse = attend(q @ k.T * scale, k)
                for name, (o, lse) in variants(q, k, scale).items():
                    cos = (o * ref).sum(-1) / (np.linalg.norm(o, axis=-1) * np.linalg.norm(ref, axis=-1))
                    rel = np.abs(o - ref).max(-1) / np.abs(ref).max(-1)
                    st = stats.setdefault(name, [[], [], []])
                    st[0].append(cos)
                    st[1].append(rel)
                    st[2].append(np.abs(lse - ref_lse))
            for name, (cos, rel, dl) in stats.items():
                cos, rel, dl = np.concatenate(cos), np.concatenate(rel), np.concatenate(dl)
                print(f"| {name} | {kind} | {temperature:g} | {cos.min():.5f} | {np.median(cos):.5f} | "
                      f"{np.median(rel):.4f} | {rel.max():.4f} | {dl.max():.4f} |")


if __name__ == "__main__":
    main()
