"""What would smaller partial rows cost in accuracy? (docs/perf-notes.md M.7, next step 1)

Split sequences write one normalized f32 row o_k (d_v values) and its lse_k per part; the
combine merges them, out = sum_k exp(lse_k - lse) o_k, and rounds out to 16 bits. Halving the
partial bytes would shorten the MLA varlen tail (~34 MB of partials per call at h_q 128, half
read back from DRAM). This script measures, on the CPU, the error that 16-bit partial rows add
to out against the float64 definition, next to today's f32 rows, on MLA-shaped problems:

  f32          today: o_k stored as float32
  bf16         o_k rounded to bfloat16 (8-bit significand)
  fp16         o_k rounded to float16 (11-bit significand; overflows past 65504)
  fp16/scale   o_k / s_k in float16 with s_k = max|o_k| per row stored as f32 beside lse_k

Errors are in units of the bf16 rounding step at each row's largest value (|err| /
ulp_bf16(max_j |out_j|)): values near zero inside a row have tiny steps of their own that no
merge in any precision keeps (the f32 merge itself cancels there), so the row's scale is the
yardstick; reported as the median and the 99.99th percentile over all values, and the worst.

    python3 tools/partials-accuracy/partials.py
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

BF16 = ml_dtypes.bfloat16


def rnd(x, dt):
    return np.asarray(x).astype(dt).astype(np.float64)


def ulp_bf16(x):
    """The spacing of bfloat16 values at |x| (2^-7 relative; subnormals ignored)."""
    e = np.floor(np.log2(np.maximum(np.abs(x), 1e-30)))
    return np.exp2(e - 7)


def problem(rng, rows, n, d_k, d_v, outliers, v_scale):
    """bf16 Q [rows, d_k], K [n, d_k], V [n, d_v] with a few outlier channels in K and V."""
    q = rng.standard_normal((rows, d_k))
    k = rng.standard_normal((n, d_k))
    v = rng.standard_normal((n, d_v)) * v_scale
    if outliers:
        ch = rng.choice(d_k, 8, replace=False)
        k[:, ch] *= 20.0
        v[:, ch[ch < d_v]] *= 20.0
    return rnd(q, BF16), rnd(k, BF16), rnd(v, BF16)


def partials(q, k, v, cuts, scale):
    """Normalized o_k and lse_k (float64) of each piece [cuts[i], cuts[i + 1])."""
    out = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        s = (q @ k[a:b].T) * scale
        m = s.max(axis=1, keepdims=True)
        p = np.exp(s - m)
        l = p.sum(axis=1, keepdims=True)
        out.append(((p @ v[a:b]) / l, (m + np.log(l))[:, 0]))
    return out


def merge(parts, store):
    """The combine in float32 over stored partial rows, out rounded to bf16."""
    lse = np.stack([x[1] for x in parts]).astype(np.float32)
    m = lse.max(axis=0)
    w = np.exp(lse - m)
    tot = w.sum(axis=0)
    acc = np.zeros_like(parts[0][0], dtype=np.float32)
    for (o, _), wk in zip(parts, w):
        acc += wk[:, None] * store(o.astype(np.float32)).astype(np.float32)
    return rnd(acc / tot[:, None], BF16)


STORES = {
    "f32": lambda o: o,
    "bf16": lambda o: rnd(o, BF16),
    "fp16": lambda o: rnd(o, np.float16),
    "fp16/scale": lambda o: (lambda s: rnd(o / s, np.float16) * s)(
        np.maximum(np.abs(o).max(axis=1, keepdims=True), 1e-30).astype(np.float32)),
}


def main():
    rng = np.random.default_rng(0)
    d_k, d_v, rows = 576, 512, 128
    cases = [("MLA, 2 parts of 4k", 8192, [0, 4100, 8192], False, 1.0),
             ("MLA, 4 parts, outlier channels", 8192, [0, 1500, 4000, 6100, 8192], True, 1.0),
             ("MLA, 2 parts, |V| up to ~1e5", 4096, [0, 2000, 4096], False, 2.0e4)]
    print(f"{'case':34s} {'partials':11s} {'median':>8s} {'p99.99':>8s} {'worst':>8s}  (bf16 ulps of the row max)")
    for name, n, cuts, outl, vs in cases:
        q, k, v = problem(rng, rows, n, d_k, d_v, outl, vs)
        s = (q @ k.T) / np.sqrt(d_k)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        exact = (p @ v) / p.sum(axis=1, keepdims=True)
        parts = partials(q, k, v, cuts, 1.0 / np.sqrt(d_k))
        for label, store in STORES.items():
            with np.errstate(over="ignore", invalid="ignore"):
                got = merge(parts, store)
            err = np.abs(got - exact) / ulp_bf16(np.abs(exact).max(axis=1, keepdims=True))
            if not np.all(np.isfinite(got)):
                print(f"{name:34s} {label:11s} {'overflow: non-finite out':>26s}")
                continue
            print(f"{name:34s} {label:11s} {np.median(err):8.3f} {np.quantile(err, 0.9999):8.3f} "
                  f"{err.max():8.3f}")


if __name__ == "__main__":
    main()
