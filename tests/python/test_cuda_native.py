"""The native API and the drop-in module on CUDA tensors: every variant, CUDA-graph capture and
replay with changed lengths, non-default streams, and the GPU error paths."""

from __future__ import annotations

import pytest

from cuda_problems import (Case, check_against_reference, make_data, reference,
                           require_cuda_backend, torch)

import flashmfa
import flashmfa.flash_mla as flash_mla

# A sleep long enough that work queued behind it on one stream is still pending when another
# stream would run (torch.cuda._sleep counts GPU clock cycles).
BUSY_CYCLES = 200_000_000


@pytest.fixture(autouse=True)
def _cuda():
    require_cuda_backend()
    yield


def native_reference(q, k, v, block_table, seqlens, d_v, causal):
    """The native convention (lse = -inf where nothing is attended), any V."""
    if v is None:
        return reference(q, k, block_table, seqlens, d_v, causal)
    # Separate V: run the aliasing reference on [K | V] rows and split the result.
    kv = torch.cat([k, v], dim=-1)
    q_pad = torch.cat([q, torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype,
                                      device=q.device)], dim=-1)
    scale = q.shape[-1] ** -0.5
    out, lse = reference(q_pad, kv, block_table, seqlens, kv.shape[-1], causal, scale)
    return out[..., k.shape[-1]:], lse


@pytest.mark.parametrize("variant", flashmfa.supported_variants(), ids=lambda v: v.name)
@pytest.mark.parametrize("causal", [False, True])
@torch.inference_mode()
def test_every_variant_matches_the_reference(variant, causal):
    c = Case(6, 2, 140, h_q=16, h_kv=2, varlen=True, causal=causal, d=variant.d_k,
             d_v=variant.d_v, zero_lengths=True, page_size=16)
    seqlens, q, block_table, k = make_data(c)
    v = None
    if not variant.v_aliases_k:
        v = torch.randn(*k.shape[:-1], variant.d_v, device="cuda").div_(10).to(k.dtype)
    out, lse = flashmfa.decode(q, k, v, block_table, seqlens, causal=causal)
    ref_out, ref_lse = native_reference(q, k, v, block_table, seqlens, variant.d_v, causal)
    ref_lse = torch.where(ref_lse == float("inf"), float("-inf"), ref_lse)
    assert torch.equal(lse == float("-inf"), ref_lse == float("-inf"))
    finite = ref_lse.isfinite()
    torch.testing.assert_close(lse[finite], ref_lse[finite], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.float(), ref_out.to(q.dtype).float(), atol=8e-4,
                               rtol=2.01 / 128)


@pytest.mark.parametrize("path", ["automatic", "portable", "hopper"])
@torch.inference_mode()
def test_kernel_paths(path):
    c = Case(6, 2, 4096, varlen=True, causal=True)
    seqlens, q, block_table, k = make_data(c)
    try:
        out, lse = flashmfa.decode(q, k, None, block_table, seqlens, causal=True, path=path)
    except flashmfa.ArgumentError as e:  # a path that does not cover the shape says so
        assert path == "hopper" and e.status == "unsupported", e
        return
    lse = torch.where(lse == float("-inf"), float("inf"), lse)
    check_against_reference(out, lse, q, k, block_table, seqlens, 512, True)


@torch.inference_mode()
def test_plan_run_workspace_from_torch():
    c = Case(6, 1, 4096, varlen=True)
    seqlens, q, block_table, k = make_data(c)
    size = flashmfa.workspace_size(q, k, None, block_table, seqlens)
    assert size > 0
    ws = torch.empty(size, dtype=torch.uint8, device="cuda")
    plan = flashmfa.plan(q, k, None, block_table, seqlens, workspace=ws)
    assert plan.workspace is ws and plan.device == "cuda:0" and plan.workspace_bytes == size
    out = torch.empty(6, 1, 128, 512, dtype=q.dtype, device="cuda")
    lse = torch.empty(6, 128, 1, dtype=torch.float32, device="cuda")
    got = flashmfa.run(plan, q, k, None, block_table, seqlens, out=out, lse=lse)
    assert got[0] is out and got[1] is lse
    lse_flashmla = torch.where(lse == float("-inf"), float("inf"), lse)
    check_against_reference(out, lse_flashmla, q, k, block_table, seqlens, 512, False)
    plan2 = flashmfa.plan(q, k, None, block_table, seqlens)  # workspace from torch
    assert isinstance(plan2.workspace, torch.Tensor) and plan2.workspace.is_cuda


def _lengths(b, seed, s_k=600):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, s_k, (b,), generator=g, dtype=torch.int32)
    lengths[0] = 0  # an empty sequence on every replay
    return lengths


@pytest.mark.parametrize("convention", ["original", "current", "native"])
@torch.inference_mode()
def test_cuda_graph_replay_with_changed_lengths(convention):
    c = Case(8, 2, 1024, h_q=64, h_kv=1, page_size=64, causal=True)
    seqlens, q, block_table, k = make_data(c)
    block_table = torch.arange(block_table.numel(), dtype=torch.int32,
                               device="cuda").view_as(block_table)
    k = torch.randn_like(k, dtype=torch.float32).div_(10).to(k.dtype)  # no NaN: all valid
    seqlens.copy_(_lengths(c.b, 0).cuda())
    tile_md = num_splits = None
    if convention == "original":
        md, ns = flash_mla.get_mla_metadata(seqlens, c.s_q * c.h_q, 1)
        tile_md, num_splits = md.clone(), ns.clone()  # the engine's persistent buffers

    def step():
        if convention == "native":
            out = torch.empty(c.b, c.s_q, c.h_q, 512, dtype=q.dtype, device="cuda")
            lse = torch.empty(c.b, c.h_q, c.s_q, dtype=torch.float32, device="cuda")
            plan = flashmfa.plan(q, k, None, block_table, seqlens, causal=True)
            return flashmfa.run(plan, q, k, None, block_table, seqlens, out=out, lse=lse)
        meta, splits = (tile_md, num_splits) if convention == "original" else (
            flash_mla.get_mla_metadata()[0], None)
        results = []
        for _layer in range(2):  # two layers: the current form plans once, reuses once
            results.append(flash_mla.flash_mla_with_kvcache(q, k, block_table, seqlens, 512,
                                                            meta, splits, causal=True))
        return results[-1]

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside capture, as engines do
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out, lse = step()
    for seed in range(1, 4):
        new = _lengths(c.b, seed).cuda()
        seqlens.copy_(new)
        q.copy_(torch.randn_like(q, dtype=torch.float32).clamp_(-1, 1).to(q.dtype))
        if convention == "original":  # the engine refreshes its persistent buffers
            md, ns = flash_mla.get_mla_metadata(seqlens, c.s_q * c.h_q, 1)
            tile_md.copy_(md)
            num_splits.copy_(ns)
        graph.replay()
        torch.cuda.synchronize()
        got_lse = lse  # the graph's output buffer; flash_mla already turned -inf into +inf
        if convention == "native":
            got_lse = torch.where(lse == float("-inf"), float("inf"), lse)
        check_against_reference(out, got_lse, q, k, block_table, seqlens, 512, True)


@pytest.mark.parametrize("how", ["current_stream", "stream_argument", "stream_object"])
@torch.inference_mode()
def test_work_runs_on_the_callers_stream(how):
    c = Case(6, 1, 4096, h_q=128, varlen=True)
    seqlens, q, block_table, k = make_data(c)
    q_new = torch.randn_like(q, dtype=torch.float32).clamp_(-1, 1).to(q.dtype)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        torch.cuda._sleep(BUSY_CYCLES)  # q changes late on s: a kernel on another stream
        q.copy_(q_new)                 # would read the old q
    if how == "current_stream":
        with torch.cuda.stream(s):
            out, lse = flashmfa.decode(q, k, None, block_table, seqlens)
    else:
        stream = s.cuda_stream if how == "stream_argument" else s
        out = torch.empty(6, 1, 128, 512, dtype=q.dtype, device="cuda")
        lse = torch.empty(6, 128, 1, dtype=torch.float32, device="cuda")
        ws = torch.empty(flashmfa.workspace_size(q, k, None, block_table, seqlens),
                         dtype=torch.uint8, device="cuda")
        flashmfa.decode(q, k, None, block_table, seqlens, out=out, lse=lse, workspace=ws,
                        stream=stream)
    s.synchronize()
    lse = torch.where(lse == float("-inf"), float("inf"), lse)
    check_against_reference(out, lse, q_new, k, block_table, seqlens, 512, False)


@torch.inference_mode()
def test_wrong_device_and_layout_errors():
    c = Case(2, 1, 140)
    seqlens, q, block_table, k = make_data(c)
    with pytest.raises(flashmfa.ArgumentError, match=r"k_cache\.device"):
        flashmfa.decode(q, k.cpu(), None, block_table, seqlens)
    with pytest.raises(flashmfa.ArgumentError, match=r"seqlens_k\.device"):
        flashmfa.decode(q, k, None, block_table, seqlens.cpu())
    with pytest.raises(flashmfa.ArgumentError, match=r"q\.strides\[3\]"):
        flashmfa.decode(q.transpose(2, 3).contiguous().transpose(2, 3), k, None, block_table,
                        seqlens)
    with pytest.raises(flashmfa.DTypeError, match=r"seqlens_k\.dtype"):
        flashmfa.decode(q, k, None, block_table, seqlens.long())
    with pytest.raises(flashmfa.DTypeError, match=r"q\.dtype"):
        flash_mla.flash_mla_with_kvcache(q.float(), k, block_table, seqlens, 512,
                                         *flash_mla.get_mla_metadata(seqlens, 128, 1))
    with pytest.raises(flashmfa.ArgumentError, match="workspace"):
        flashmfa.decode(q, k, None, block_table, seqlens,
                        workspace=torch.empty(16, dtype=torch.uint8))
    with pytest.raises(flashmfa.ArgumentError, match="workspace_bytes"):
        flashmfa.decode(q, k, None, block_table, seqlens,
                        workspace=torch.empty(1, dtype=torch.uint8, device="cuda"))


def test_tensors_that_require_grad_are_read():
    c = Case(2, 1, 140)
    seqlens, q, block_table, k = make_data(c)
    q.requires_grad_(True)
    out, lse = flashmfa.decode(q, k, None, block_table, seqlens)
    lse = torch.where(lse == float("-inf"), float("inf"), lse)
    check_against_reference(out, lse, q.detach(), k, block_table, seqlens, 512, False)


@torch.inference_mode()
def test_bad_page_index_and_length_are_skipped_and_flagged():
    c = Case(4, 1, 256, page_size=64)
    seqlens, q, block_table, k = make_data(c)
    bad = block_table.clone()
    bad[1, 0] = k.shape[0] + 5          # outside the cache: skipped, flagged
    long = seqlens.clone()
    long[2] = bad.shape[1] * 64 + 1     # longer than the block table: clamped, flagged
    plan = flashmfa.plan(q, k, None, bad, long)
    flashmfa.run(plan, q, k, None, bad, long)
    flags = flashmfa.read_error_flags(plan)
    assert flags & flashmfa.FLAG_PAGE_OUT_OF_RANGE and flags & flashmfa.FLAG_SEQLEN_TOO_LONG
    assert flashmfa.read_error_flags(plan) == 0  # reading clears
    with pytest.raises(flashmfa.ArgumentError, match="page index") as e:
        flashmfa.decode(q, k, None, bad, seqlens, checked=True)
    assert e.value.status == "bad_page_index"
    plan = flashmfa.plan(q, k, None, block_table, seqlens)
    out, lse = flashmfa.run(plan, q, k, None, block_table, seqlens)
    flashmfa.check_errors(plan)  # a clean run raises nothing

