"""FP8 cache accuracy study (issue 8): decode on an FP8 cache written by flashmfa.append_kv
against decode on the unquantized bf16 cache, on activation statistics with outlier channels.

Runs on the CPU backend (the numbers are properties of the formats, not of a device):

    PYTHONPATH=<flashmfa install> python3 tools/fp8-accuracy/accuracy.py > docs/fp8-accuracy.md

Each case draws a paged cache whose rows are N(0, 1) per channel times a per-channel gain:
1.0 everywhere, except "outliers" where 1% of the channels carry gains of 20-50x (the
massive-activation channels reported for LLM keys), and "rope-outliers" where the 64 RoPE
channels of MLA carry them (unquantized in FlashMLA's layout). Queries are N(0, 1); the
softmax scale is 1/sqrt(d_k) times a temperature that makes attention peaked (tokens that
dominate) or flat. Reported per output row: cosine similarity to the bf16-cache output, max
absolute error relative to the row's max |out|, and the lse error.
"""

from __future__ import annotations

import sys

import ml_dtypes
import numpy as np

import flashmfa

BF16 = ml_dtypes.bfloat16


def make_cache(rng, n_tokens, d, h_kv, gains, page_size=64):
    pages = -(-n_tokens // page_size)
    rows = rng.standard_normal((pages * page_size, h_kv, d)) * gains
    return rows.reshape(pages, page_size, h_kv, d).astype(BF16)


def channel_gains(rng, d, kind, rope=0):
    g = np.ones(d)
    if kind == "outliers":
        idx = rng.choice(d - rope, size=max(1, (d - rope) // 100), replace=False)
        g[idx] = rng.uniform(20, 50, size=idx.size)
    elif kind == "rope-outliers":
        g[d - rope:] = rng.uniform(20, 50, size=rope)
    return g


def run_case(name, d_k, d_v, aliases, h_q, kind, temperature, seed, b=4, n=2048):
    rng = np.random.default_rng(seed)
    h_kv, page = 1, 64
    mla = d_k == 576
    gains = channel_gains(rng, d_k, kind, rope=64 if mla else 0)
    k = make_cache(rng, b * n, d_k, h_kv, gains, page)
    v = None if aliases else make_cache(rng, b * n, d_v, h_kv, channel_gains(rng, d_v, kind), page)
    pages_per_seq = n // page
    block_table = rng.permutation(k.shape[0]).astype(np.int32).reshape(b, pages_per_seq)
    seqlens = np.full(b, n, np.int32)
    q = rng.standard_normal((b, 1, h_q, d_k)).astype(BF16)
    scale = temperature / np.sqrt(d_k)
    out_ref, lse_ref = flashmfa.decode(q, k, v, block_table, seqlens, softmax_scale=scale)

    # The FP8 cache, written token by token per sequence as an engine would (all at once here).
    shape = k.shape[:3]
    k8 = np.zeros(shape + ((656,) if mla else (d_k,)), np.uint8)
    v8 = None if aliases else np.zeros(shape + (d_v,), np.uint8)
    ks = None if mla else np.zeros(shape, np.float32)
    vs = None if (mla or aliases) else np.zeros(shape, np.float32)
    for i in range(b):
        rows = k[block_table[i]].reshape(1, n, h_kv, d_k)
        vrows = None if aliases else v[block_table[i]].reshape(1, n, h_kv, d_v)
        flashmfa.append_kv(rows, vrows, k8, v8, block_table[i:i + 1], seqlens[i:i + 1],
                           k_scale=ks, v_scale=vs)
    out8, lse8 = flashmfa.decode(q, k8, v8, block_table, seqlens, softmax_scale=scale,
                                 k_scale=ks, v_scale=vs, head_dim_v=d_v)

    a = np.asarray(out_ref, np.float64).reshape(-1, d_v)
    o = np.asarray(out8, np.float64).reshape(-1, d_v)
    cos = (a * o).sum(1) / np.sqrt((a * a).sum(1) * (o * o).sum(1))
    rel = np.abs(a - o).max(1) / np.abs(a).max(1)
    dlse = np.abs(np.asarray(lse_ref, np.float64) - np.asarray(lse8, np.float64)).ravel()
    return (name, kind, temperature, cos.min(), np.median(cos), np.median(rel), rel.max(),
            dlse.max())


def main():
    cases = []
    seed = 1
    for name, d_k, d_v, aliases, h_q in [("MLA (fp8_mla)", 576, 512, True, 16),
                                         ("MFA (fp8_row)", 256, 256, False, 16),
                                         ("MFA-KR (fp8_row)", 256, 256, True, 16)]:
        kinds = ["plain", "outliers"] + (["rope-outliers"] if d_k == 576 else [])
        for kind in kinds:
            for temperature in (1.0, 4.0):
                cases.append(run_case(name, d_k, d_v, aliases, h_q, kind, temperature, seed))
                seed += 1
    w = sys.stdout.write
    w("| variant (format) | channels | temperature | cos min | cos median | "
      "max abs err / max abs out, median row | worst row | max abs lse err |\n")
    w("|---|---|---|---|---|---|---|---|\n")
    for c in cases:
        w(f"| {c[0]} | {c[1]} | {c[2]:g} | {c[3]:.5f} | {c[4]:.6f} | {c[5]:.4f} | {c[6]:.4f} | "
          f"{c[7]:.4f} |\n")


if __name__ == "__main__":
    main()
