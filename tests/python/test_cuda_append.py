"""append_kv on CUDA torch tensors against the CPU append of the same tensors, byte for byte, in
every cache format (bf16 rows, e4m3 rows with per-row scales, FlashMLA's 656-byte rows); the
device-side checks of lying lengths and page indices (skipped, flagged in error_flags); the
caller's stream and CUDA-graph replay with new lengths."""

from __future__ import annotations

import pytest

from cuda_problems import require_cuda_backend, torch

import flashmfa

SENTINEL = 0xA5


@pytest.fixture(autouse=True)
def _cuda():
    require_cuda_backend()
    yield


def byte_view(t):
    return t.contiguous().view(torch.uint8)


class AppendCase:
    """Caches filled with a sentinel byte, each sequence on its own shuffled pages, random
    new rows (with 60x outliers and one all-zero row); tensors on the GPU, clones on the CPU."""

    def __init__(self, fmt, *, b=3, s_new=4, h_kv=2, page=16, lens=(4, 18, 77), seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.s_new, self.page = s_new, page
        d_k, d_v, has_v = {"native": (256, 256, True), "fp8_row": (256, 256, True),
                           "fp8_row_kr": (128, 128, False), "fp8_mla": (576, 512, False)}[fmt]
        pages = [-(-n // page) for n in lens]
        max_pages = max(pages) + 1
        num_pages = sum(pages) + 2  # two spare pages nothing owns
        perm = torch.randperm(num_pages, generator=gen).to(torch.int32)
        self.block_table = torch.full((b, max_pages), 2**31 - 1, dtype=torch.int32)
        at = 2
        for i, n in enumerate(pages):
            self.block_table[i, :n] = perm[at:at + n]
            at += n
        self.seqlens = torch.tensor(lens, dtype=torch.int32)

        def rows(d):
            x = torch.randn(b, s_new, h_kv, d, generator=gen)
            x = torch.where(torch.rand(x.shape, generator=gen) < 0.01, x * 60, x)
            x[0, 0, 0] = 0
            return x.to(torch.bfloat16)

        self.k_new = rows(d_k)
        self.v_new = rows(d_v) if has_v else None
        shape = (num_pages, page, h_kv)
        if fmt == "native":
            cache = lambda d: torch.full(shape + (d,), SENTINEL, dtype=torch.uint8).view(
                torch.bfloat16)
        else:
            cache = lambda d: torch.full(shape + (d,), SENTINEL, dtype=torch.uint8).view(
                torch.float8_e4m3fn)
        scales = lambda: torch.full(shape + (4,), SENTINEL, dtype=torch.uint8).view(
            torch.float32).squeeze(-1)
        if fmt == "fp8_mla":
            self.k_cache = torch.full(shape + (656,), SENTINEL, dtype=torch.uint8)
        else:
            self.k_cache = cache(2 * d_k if fmt == "native" else d_k)
        self.v_cache = (cache(2 * d_v if fmt == "native" else d_v) if has_v else None)
        row = fmt.startswith("fp8_row")
        self.k_scale = scales() if row else None
        self.v_scale = scales() if row and has_v else None

    def tensors(self, device):
        names = ("k_new", "v_new", "k_cache", "v_cache", "block_table", "seqlens", "k_scale",
                 "v_scale")
        return {n: None if getattr(self, n) is None else getattr(self, n).clone().to(device)
                for n in names}

    @staticmethod
    def append(t, error_flags=None, stream=None):
        flashmfa.append_kv(t["k_new"], t["v_new"], t["k_cache"], t["v_cache"], t["block_table"],
                           t["seqlens"], k_scale=t["k_scale"], v_scale=t["v_scale"],
                           error_flags=error_flags, stream=stream)


def assert_same_bytes(gpu, cpu):
    for name in ("k_cache", "v_cache", "k_scale", "v_scale"):
        if cpu[name] is None:
            continue
        got, want = byte_view(gpu[name].cpu()), byte_view(cpu[name])
        assert torch.equal(got, want), (
            f"{name}: {int((got != want).sum())} bytes differ from the CPU append")


@pytest.mark.parametrize("fmt", ["native", "fp8_row", "fp8_row_kr", "fp8_mla"])
@pytest.mark.parametrize("page", [1, 16, 64])
@torch.inference_mode()
def test_append_matches_the_cpu_bytes(fmt, page):
    case = AppendCase(fmt, page=page, lens=(4, max(4, page + 2), 77), seed=page)
    gpu, cpu = case.tensors("cuda"), case.tensors("cpu")
    flags = torch.zeros(1, dtype=torch.int32, device="cuda")
    case.append(cpu)
    case.append(gpu, error_flags=flags)
    torch.cuda.synchronize()
    assert int(flags) == 0
    assert not torch.equal(byte_view(cpu["k_cache"]), byte_view(case.k_cache)), "nothing written"
    assert_same_bytes(gpu, cpu)


@torch.inference_mode()
def test_bad_lengths_and_pages_are_skipped_and_flagged():
    case = AppendCase("fp8_mla", lens=(20, 18, 77))
    case.block_table[0, 1] = -1              # sequence 0 writes positions 16..19: page column 1
    case.seqlens[1] = case.s_new - 1          # a negative position
    gpu, cpu = case.tensors("cuda"), case.tensors("cpu")
    flags = torch.zeros(1, dtype=torch.int32, device="cuda")
    case.append(gpu, error_flags=flags)
    torch.cuda.synchronize()
    assert int(flags) == flashmfa.FLAG_PAGE_OUT_OF_RANGE | flashmfa.FLAG_SEQLEN_NEGATIVE
    with pytest.raises(flashmfa.ArgumentError, match=r"block_table\[0, 1\]"):
        case.append(cpu)  # the CPU refuses the whole call; only sequence 2 is valid
    for name in ("k_new", "block_table", "seqlens"):
        cpu[name] = cpu[name][2:]
    case.append(cpu)
    assert_same_bytes(gpu, cpu)
    capacity = case.block_table.shape[1] * case.page
    gpu["seqlens"].fill_(capacity + 1)
    flags.zero_()
    case.append(gpu, error_flags=flags)
    torch.cuda.synchronize()
    assert int(flags) == flashmfa.FLAG_SEQLEN_TOO_LONG
    assert_same_bytes(gpu, cpu)
    with pytest.raises(flashmfa.DTypeError, match=r"error_flags\.dtype"):
        case.append(gpu, error_flags=torch.zeros(1, dtype=torch.float32, device="cuda"))
    with pytest.raises(flashmfa.ArgumentError, match=r"error_flags\.device"):
        case.append(gpu, error_flags=torch.zeros(1, dtype=torch.int32))


@torch.inference_mode()
def test_runs_on_the_callers_stream_and_replays_in_a_graph():
    case = AppendCase("fp8_row", lens=(40, 40, 40))
    gpu, cpu = case.tensors("cuda"), case.tensors("cpu")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        case.append(gpu)  # warm-up outside capture, on the current (side) stream
    side.synchronize()
    case.append(cpu)
    assert_same_bytes(gpu, cpu)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        case.append(gpu)
    for lens in ((8, 12, 40), (30, 5, 21)):
        new = torch.randn(case.k_new.shape).to(torch.bfloat16)
        for t, value in ((gpu, new.cuda()), (cpu, new)):
            t["k_new"].copy_(value)
            t["seqlens"].copy_(torch.tensor(lens, dtype=torch.int32))
        graph.replay()
        torch.cuda.synchronize()
        case.append(cpu)
        assert_same_bytes(gpu, cpu)
