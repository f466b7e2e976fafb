"""Error paths on CPU arrays: the C++ message arrives as a Python exception of the right type,
and nothing is written to the outputs."""

from __future__ import annotations

import numpy as np
import pytest

import flashmfa
from problems import SENTINEL_PAGE, make_problem


@pytest.fixture
def p():
    return make_problem(np.random.default_rng(0), b=2, s_q=1, h_q=4, h_kv=1, d_k=64,
                        v_aliases_k=False, page_size=16, lengths=[20, 5])


def raises(exc_type, *fragments):
    """pytest.raises that also checks message fragments (the C++ message text)."""
    class Check:
        def __enter__(self):
            self.ctx = pytest.raises(exc_type)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.ctx.__exit__(*exc)
            message = str(self.info.value)
            for f in fragments:
                assert f in message, f"{f!r} not in {message!r}"
            return handled
    return Check()


def test_exception_hierarchy():
    assert issubclass(flashmfa.ArgumentError, flashmfa.Error)
    assert issubclass(flashmfa.ArgumentError, ValueError)
    assert issubclass(flashmfa.DTypeError, TypeError)
    assert issubclass(flashmfa.DeviceError, RuntimeError)


def test_wrong_q_dtype_is_a_type_error(p):
    with raises(flashmfa.DTypeError, "q.dtype", "bf16 or f16", "f32") as e:
        flashmfa.decode(p.q.astype(np.float32), p.k_cache, p.v_cache, p.block_table,
                        p.seqlens_k)
    assert e.value.status == "invalid_dtype"


@pytest.mark.parametrize("dtype", [np.float64, np.bool_, np.complex64])
def test_dtypes_flashmfa_never_takes(p, dtype):
    with raises(TypeError, "q"):
        flashmfa.decode(p.q.astype(dtype), p.k_cache, p.v_cache, p.block_table, p.seqlens_k)


def test_index_dtype_must_be_int32(p):
    with raises(TypeError, "block_table.dtype", "i32"):
        flashmfa.decode(*p.args[:3], p.block_table.astype(np.int64), p.seqlens_k)
    with raises(TypeError, "seqlens_k.dtype", "i32"):
        flashmfa.decode(*p.args[:4], p.seqlens_k.astype(np.uint8))


def test_cache_dtype_must_match_q(p):
    with raises(TypeError, "k_cache.dtype", "(q's dtype) or f8_e4m3"):
        flashmfa.decode(p.q, p.k_cache.astype(np.float32), *p.args[2:])


def test_not_an_array(p):
    with raises(TypeError, "q", "DLPack", "list"):
        flashmfa.decode(p.q.tolist(), *p.args[1:])
    with raises(TypeError, "k_cache", "NoneType"):
        flashmfa.decode(p.q, None, *p.args[2:])


def test_shape_mismatch_is_a_value_error(p):
    with raises(flashmfa.ArgumentError, "seqlens_k.shape[0] (b)", "expected 2", "got 3") as e:
        flashmfa.decode(*p.args[:4], np.zeros(3, np.int32))
    assert e.value.status == "invalid_argument"
    with raises(ValueError, "q", "4 dimensions"):
        flashmfa.decode(p.q[0], *p.args[1:])
    with raises(ValueError, "v_cache.shape[2] (h_kv)"):
        flashmfa.decode(*p.args[:2], np.repeat(p.v_cache, 2, axis=2), *p.args[3:])
    with raises(ValueError, "q.shape[2] (h_q)", "multiple of h_kv"):
        flashmfa.decode(p.q[:, :, :3], np.repeat(p.k_cache, 2, axis=2),
                        np.repeat(p.v_cache, 2, axis=2), *p.args[3:])


def test_unsupported_head_dims(p):
    q = np.zeros((2, 1, 4, 96), np.float16)
    k = np.zeros((8, 16, 1, 96), np.float16)
    with raises(ValueError, "(d_k, d_v, V aliases K)", "(96, 96") as e:
        flashmfa.decode(q, k, None, p.block_table, p.seqlens_k)
    assert e.value.status == "unsupported"


def test_page_size_must_be_a_power_of_two(p):
    k = np.zeros((8, 12, 1, 64), np.float16)
    with raises(ValueError, "page_size", "power of two"):
        flashmfa.decode(p.q, k, k, p.block_table, p.seqlens_k)


def test_non_contiguous_last_dimension(p):
    q = np.zeros((2, 1, 4, 128), np.float16)[..., ::2]
    with raises(ValueError, "q.strides[3]", "contiguous"):
        flashmfa.decode(q, *p.args[1:])


def test_bad_page_index_and_lengths_on_cpu_raise_and_write_nothing(p):
    out = np.full((2, 1, 4, 64), 5, np.float16)
    lse = np.full((2, 4, 1), 5, np.float32)
    bad = p.block_table.copy()
    bad[0, 0] = SENTINEL_PAGE
    with raises(ValueError, "block_table[0, 0]", "page index") as e:
        flashmfa.decode(*p.args[:3], bad, p.seqlens_k, out=out, lse=lse)
    assert e.value.status == "bad_page_index"
    with raises(ValueError, "seqlens_k[1]", ">= 0") as e:
        flashmfa.decode(*p.args[:4], np.array([20, -1], np.int32), out=out, lse=lse)
    assert e.value.status == "bad_seqlen"
    too_long = p.block_table.shape[1] * p.k_cache.shape[1] + 1
    with raises(ValueError, "seqlens_k[0]", "max_pages_per_seq * page_size"):
        flashmfa.decode(*p.args[:4], np.array([too_long, 0], np.int32), out=out, lse=lse)
    assert np.all(out == 5) and np.all(lse == 5)


def test_bad_outputs(p):
    out = np.zeros((2, 1, 4, 64), np.float16)
    with raises(TypeError, "out.dtype", "must match q"):
        flashmfa.decode(*p.args, out=out.astype(np.float32))
    with raises(TypeError, "lse.dtype", "f32"):
        flashmfa.decode(*p.args, lse=np.zeros((2, 4, 1), np.float16))
    with raises(ValueError, "lse.shape[1] (h_q)"):
        flashmfa.decode(*p.args, lse=np.zeros((2, 3, 1), np.float32))
    out.setflags(write=False)
    with raises(ValueError, "out", "writable"):
        flashmfa.decode(*p.args, out=out)
    with raises(ValueError, "head_dim_v", "out.shape[3]"):
        flashmfa.decode(*p.args, out=np.zeros((2, 1, 4, 64), np.float16), head_dim_v=32)


def test_outputs_overlapping_inputs(p):
    with raises(ValueError, "out", "disjoint from q"):
        flashmfa.decode(*p.args, out=p.q)


def test_bad_softmax_scale(p):
    with raises(ValueError, "softmax_scale", "finite value > 0"):
        flashmfa.decode(*p.args, softmax_scale=-1.0)


def test_run_with_a_plan_for_other_shapes(p):
    plan = flashmfa.plan(*p.args)
    with raises(ValueError, "plan", "other shapes"):
        flashmfa.run(plan, p.q[:, :, :2], *p.args[1:])
    narrower = p.block_table[:, :1].copy()  # another max_pages_per_seq
    with raises(ValueError, "plan", "other shapes"):
        flashmfa.run(plan, *p.args[:3], narrower, np.array([16, 5], np.int32))


def test_reference_refuses_nothing_on_cpu_but_checks_args(p):
    with raises(TypeError, "q.dtype"):
        flashmfa.reference(p.q.astype(np.float32), *p.args[1:])


def test_bad_stream_argument(p):
    with raises(TypeError, "stream"):
        flashmfa.decode(*p.args, stream="default")


def test_workspace_must_be_an_array_on_qs_device(p):
    with raises(TypeError, "workspace"):
        flashmfa.decode(*p.args, workspace=[0] * 16)
    with raises(ValueError, "workspace", "contiguous"):
        flashmfa.decode(*p.args, workspace=np.zeros((16, 4), np.uint8)[:, ::2])


def test_path_names(p):
    for path in ("automatic", "portable", "hopper"):  # the CPU ignores the choice
        plan = flashmfa.plan(*p.args, path=path)
        assert plan.path == path
        flashmfa.run(plan, *p.args)
    with raises(ValueError, "path", "automatic, portable, hopper", "'fastest'"):
        flashmfa.decode(*p.args, path="fastest")
