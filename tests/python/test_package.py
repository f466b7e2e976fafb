"""The installed package: what it says about itself, and what it ships."""

from __future__ import annotations

import pathlib
import re

import pytest

import flashmfa


def test_build_info_names_backends_and_cuda_state():
    info = flashmfa.build_info()
    assert info.startswith(f"flashmfa {flashmfa.__version__}")
    assert "backends: cpu" in info
    assert ("CUDA backend ON" in info) == flashmfa._core.built_with_cuda
    assert ("CUDA backend OFF" in info) != flashmfa._core.built_with_cuda
    assert isinstance(flashmfa.cuda_available(), bool)
    if not flashmfa._core.built_with_cuda:
        assert not flashmfa.cuda_available()


def test_version_matches_the_cmake_project():
    root = pathlib.Path(__file__).resolve().parents[2]
    cmake = (root / "CMakeLists.txt").read_text()
    assert re.search(r"project\(flashmfa\s+VERSION\s+" + re.escape(flashmfa.__version__), cmake)


def test_variant_presets():
    V = flashmfa.Variant
    assert (V.mla().d_k, V.mla().d_v, V.mla().v_aliases_k) == (576, 512, True)
    assert V.mfa() == V(256, 256, False)
    assert V.mfa_kr() == V(256, 256, True) and V.mfa_kr(128) == V(128, 128, True)
    assert V.mqa(64) == V(64, 64, False)
    assert V.mla() in flashmfa.supported_variants()
    assert flashmfa.is_supported(V.mfa()) and not flashmfa.is_supported(V(96, 96, False))
    assert len({V.mla(), V.mla(), V.mfa()}) == 2  # hashable by value
    assert "576" in V.mla().name and "V aliases K" in V.mla().name
    assert repr(V.mfa()) == "flashmfa.Variant(d_k=256, d_v=256, v_aliases_k=False)"


def test_error_flags_are_distinct_bits():
    flags = [flashmfa.FLAG_PAGE_OUT_OF_RANGE, flashmfa.FLAG_SEQLEN_TOO_LONG,
             flashmfa.FLAG_SEQLEN_NEGATIVE]
    assert all(f and f & (f - 1) == 0 for f in flags) and len(set(flags)) == 3


def test_typing_files_are_installed():
    pkg = pathlib.Path(flashmfa.__file__).parent
    assert (pkg / "py.typed").exists() and (pkg / "_core.pyi").exists()


def test_public_functions_have_docstrings():
    import flashmfa.flash_mla as flash_mla
    for fn in (flashmfa.decode, flashmfa.plan, flashmfa.run, flashmfa.workspace_size,
               flashmfa.reference, flashmfa.check_errors, flashmfa.read_error_flags,
               flashmfa.build_info, flashmfa.cuda_available, flash_mla.get_mla_metadata,
               flash_mla.flash_mla_with_kvcache):
        assert fn.__doc__ and len(fn.__doc__) > 40, fn.__name__


def test_cuda_tensors_in_a_build_without_cuda_raise_device_error():
    torch = pytest.importorskip("torch")
    if flashmfa._core.built_with_cuda or not torch.cuda.is_available():
        pytest.skip("needs a CPU-only build of flashmfa and a CUDA device")
    q = torch.zeros(1, 1, 16, 576, dtype=torch.bfloat16, device="cuda")
    k = torch.zeros(4, 64, 1, 576, dtype=torch.bfloat16, device="cuda")
    bt = torch.zeros(1, 4, dtype=torch.int32, device="cuda")
    sl = torch.zeros(1, dtype=torch.int32, device="cuda")
    with pytest.raises(flashmfa.DeviceError, match="without CUDA") as e:
        flashmfa.decode(q, k, None, bt, sl)
    assert e.value.status == "no_device"
