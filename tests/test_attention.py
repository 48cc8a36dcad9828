"""Tests of fastsoftmax.attention against the NumPy reference (and PyTorch)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastsoftmax
from fastsoftmax import _attention
from fastsoftmax import reference as ref

# Tolerances per result dtype. The kernel and the reference add the D products
# and the S weighted values in different orders, so they agree to a few ulps
# of the largest value rather than bit for bit.
TOLERANCE = {
    np.float16: {"rtol": 2e-3, "atol": 2e-3},
    np.float32: {"rtol": 2e-5, "atol": 2e-6},
    np.float64: {"rtol": 1e-12, "atol": 1e-13},
}


def make_qkv(shape_q, shape_k, value_dim=None, dtype=np.float64, seed=0):
    """Return random q, k, v; v has the shape of k with last dim value_dim."""
    rng = np.random.default_rng(seed)
    shape_v = shape_k[:-1] + (shape_k[-1] if value_dim is None else value_dim,)
    q = rng.standard_normal(shape_q).astype(dtype)
    k = rng.standard_normal(shape_k).astype(dtype)
    v = rng.standard_normal(shape_v).astype(dtype)
    return q, k, v


def assert_matches_reference(q, k, v, **kwargs):
    """Assert that attention and the reference agree on output and lse."""
    out, lse = fastsoftmax.attention(q, k, v, return_lse=True, **kwargs)
    expected_out, expected_lse = ref.attention(q, k, v, return_lse=True, **kwargs)
    assert out.dtype == expected_out.dtype
    assert out.shape == expected_out.shape
    assert lse.shape == expected_lse.shape
    tolerance = TOLERANCE[out.dtype.type]
    np.testing.assert_allclose(out, expected_out, **tolerance)
    np.testing.assert_allclose(lse, expected_lse, **tolerance)
    return out, lse


SHAPES = [
    # (q shape, k shape, value_dim): L != S both ways, edge sizes, many blocks.
    pytest.param((2, 37, 16), (2, 91, 16), 16, id="L<S"),
    pytest.param((2, 91, 16), (2, 37, 16), 16, id="L>S"),
    pytest.param((3, 1, 32), (3, 200, 32), 32, id="L=1"),
    pytest.param((3, 45, 32), (3, 1, 32), 32, id="S=1"),
    pytest.param((2, 30, 1), (2, 40, 1), 1, id="D=1"),
    pytest.param((2, 30, 24), (2, 50, 24), 7, id="D!=Dv"),
    pytest.param((1, 150, 128), (1, 300, 128), 128, id="D=128-blocks"),
    pytest.param((1, 1, 128), (1, 1000, 128), 128, id="decode"),
    pytest.param((2, 130, 64), (2, 130, 64), 64, id="L=S-blocks"),
    pytest.param((70, 8), (33, 8), 5, id="2-D"),
]


@pytest.mark.parametrize("q_shape, k_shape, value_dim", SHAPES)
@pytest.mark.parametrize("causal", [False, "lower_right", "upper_left"])
def test_attention_shapes_against_reference(q_shape, k_shape, value_dim, causal):
    q, k, v = make_qkv(q_shape, k_shape, value_dim)
    assert_matches_reference(q, k, v, causal=causal)


@settings(max_examples=60, deadline=None)
@given(
    q_len=st.integers(1, 140),
    kv_len=st.integers(1, 140),
    head_dim=st.integers(1, 40),
    value_dim=st.integers(1, 20),
    kv_heads=st.integers(1, 3),
    group=st.integers(1, 3),
    causal=st.sampled_from([False, "lower_right", "upper_left"]),
    mask_kind=st.sampled_from(["none", "bool", "float"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_attention_random_problems(
    q_len, kv_len, head_dim, value_dim, kv_heads, group, causal, mask_kind, dtype, seed
):
    q, k, v = make_qkv(
        (kv_heads * group, q_len, head_dim),
        (kv_heads, kv_len, head_dim),
        value_dim,
        dtype=dtype,
        seed=seed,
    )
    rng = np.random.default_rng(seed)
    mask = None
    if mask_kind == "bool":
        mask = rng.random((q_len, kv_len)) < 0.7
    elif mask_kind == "float":
        mask = np.where(
            rng.random((q_len, kv_len)) < 0.2, -np.inf, rng.random((q_len, kv_len))
        )
    assert_matches_reference(q, k, v, mask=mask, causal=causal)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_attention_dtypes_against_reference(dtype):
    q, k, v = make_qkv((2, 3, 70, 16), (2, 3, 90, 16), dtype=dtype)
    out, _ = assert_matches_reference(q, k, v, causal=True)
    assert out.dtype == dtype


@pytest.mark.parametrize(
    "dtypes, expected",
    [
        ((np.float16, np.float32, np.float16), np.float32),
        ((np.float32, np.float64, np.float32), np.float64),
        ((np.float32, np.int32, np.float32), np.float64),
        ((np.int64, np.int64, np.int64), np.float64),
        ((np.bool_, np.float32, np.float32), np.float64),
    ],
)
def test_attention_promotes_mixed_dtypes(dtypes, expected):
    q, k, v = make_qkv((2, 10, 4), (2, 12, 4))
    q, k, v = (x.astype(t) for x, t in zip((q * 2, k * 2, v * 2), dtypes, strict=True))
    out, _ = assert_matches_reference(q, k, v)
    assert out.dtype == expected


def test_attention_float16_close_to_float64():
    q, k, v = make_qkv((4, 50, 32), (4, 60, 32))
    out16 = fastsoftmax.attention(*(x.astype(np.float16) for x in (q, k, v)))
    exact = ref.attention(*(x.astype(np.float16).astype(np.float64) for x in (q, k, v)))
    np.testing.assert_allclose(out16.astype(np.float64), exact, rtol=2e-3, atol=2e-3)


def test_attention_byte_swapped_input():
    q, k, v = make_qkv((2, 20, 8), (2, 30, 8))
    swapped = q.astype(q.dtype.newbyteorder(">"))
    out = fastsoftmax.attention(swapped, k, v)
    np.testing.assert_allclose(out, ref.attention(q, k, v), **TOLERANCE[np.float64])


def test_attention_broadcasts_batch_dimensions():
    q, _, _ = make_qkv((3, 1, 2, 20, 8), (1, 8))
    _, k, v = make_qkv((1, 8), (1, 4, 2, 25, 8), seed=1)
    out, lse = assert_matches_reference(q, k, v)
    assert out.shape == (3, 4, 2, 20, 8)
    assert lse.shape == (3, 4, 2, 20)


@pytest.mark.parametrize("q_heads, kv_heads", [(8, 2), (6, 1), (4, 4)])
def test_attention_grouped_query_heads(q_heads, kv_heads):
    q, k, v = make_qkv((2, q_heads, 33, 16), (2, kv_heads, 47, 16), value_dim=12)
    out, _ = assert_matches_reference(q, k, v, causal=True)
    group = q_heads // kv_heads
    # Query head h must use key/value head h // group.
    for h in range(q_heads):
        expected = ref.attention(
            q[:, h], k[:, h // group], v[:, h // group], causal=True
        )
        np.testing.assert_allclose(out[:, h], expected, **TOLERANCE[np.float64])


def test_attention_bool_mask():
    q, k, v = make_qkv((2, 3, 40, 16), (2, 3, 70, 16))
    mask = np.random.default_rng(5).random((2, 3, 40, 70)) < 0.7
    assert_matches_reference(q, k, v, mask=mask)


def test_attention_float_mask():
    q, k, v = make_qkv((2, 3, 40, 16), (2, 3, 70, 16))
    mask = np.random.default_rng(6).standard_normal((2, 3, 40, 70))
    mask[:, :, :, ::3] = -np.inf
    assert_matches_reference(q, k, v, mask=mask)


@pytest.mark.parametrize("mask_shape", [(70,), (40, 1), (3, 1, 70), (2, 1, 1, 70)])
def test_attention_broadcast_mask(mask_shape):
    q, k, v = make_qkv((2, 3, 40, 16), (2, 3, 70, 16))
    mask = np.random.default_rng(7).random(mask_shape) < 0.6
    assert_matches_reference(q, k, v, mask=mask, causal="upper_left")


def test_attention_float_mask_with_causal():
    q, k, v = make_qkv((2, 40, 16), (2, 70, 16), dtype=np.float32)
    mask = np.random.default_rng(8).standard_normal((40, 70)).astype(np.float32)
    assert_matches_reference(q, k, v, mask=mask, causal=True)


@pytest.mark.parametrize("scale", [None, 0, 0.0, -0.5, 3])
def test_attention_scale(scale):
    q, k, v = make_qkv((2, 30, 16), (2, 50, 16))
    assert_matches_reference(q, k, v, scale=scale)


def test_attention_scale_zero_gives_mean_of_values():
    q, k, v = make_qkv((2, 30, 16), (2, 50, 16))
    out = fastsoftmax.attention(q, k, v, scale=0)
    expected = np.broadcast_to(v.mean(axis=-2, keepdims=True), out.shape)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-13)


def test_attention_fully_masked_rows():
    q, k, v = make_qkv((2, 10, 8), (2, 20, 8))
    mask = np.ones((10, 20), dtype=bool)
    mask[3] = False
    out, lse = assert_matches_reference(q, k, v, mask=mask)
    assert np.all(out[:, 3] == 0)
    assert np.all(np.isneginf(lse[:, 3]))


@pytest.mark.parametrize("causal", [True, "upper_left"])
def test_attention_causal_rows_without_keys(causal):
    # L > S: with lower-right alignment the first L - S rows see no key.
    q, k, v = make_qkv((1, 9, 4), (1, 5, 4))
    out, lse = assert_matches_reference(q, k, v, causal=causal)
    if causal is True:
        assert np.all(out[0, :4] == 0)
        assert np.all(np.isneginf(lse[0, :4]))
        assert np.all(np.isfinite(lse[0, 4:]))
    else:
        assert np.all(np.isfinite(lse[0]))


def test_attention_causal_alignment_l2_s5():
    # Lower-right: row 0 attends keys 0..3, row 1 keys 0..4. Upper-left: 0, 0..1.
    q = np.zeros((2, 1))
    k = np.zeros((5, 1))
    v = np.arange(5, dtype=np.float64)[:, np.newaxis]
    lower = fastsoftmax.attention(q, k, v, causal="lower_right")
    upper = fastsoftmax.attention(q, k, v, causal="upper_left")
    np.testing.assert_allclose(lower[:, 0], [1.5, 2.0], rtol=1e-15)
    np.testing.assert_allclose(upper[:, 0], [0.0, 0.5], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_attention_nonfinite_masked_keys_do_not_leak(dtype, bad):
    q, k, v = make_qkv((2, 70, 16), (2, 90, 16), dtype=dtype)
    mask = np.ones((70, 90), dtype=bool)
    mask[:, 5] = False
    mask[:, 77] = False
    k[:, 5] = bad
    v[:, 5] = bad
    v[:, 77, 3] = bad
    out, lse = assert_matches_reference(q, k, v, mask=mask)
    clean = fastsoftmax.attention(q, np.nan_to_num(k), np.nan_to_num(v), mask=mask)
    assert np.all(np.isfinite(out))
    assert np.all(np.isfinite(lse))
    np.testing.assert_allclose(out, clean, **TOLERANCE[dtype])


def test_attention_nonfinite_keys_past_causal_limit():
    q, k, v = make_qkv((1, 64, 16), (1, 64, 16), dtype=np.float32)
    k[0, 40:] = np.nan
    v[0, 40:] = np.inf
    out = fastsoftmax.attention(q, k, v, causal=True)
    assert np.all(np.isfinite(out[0, :40]))


def test_attention_float_mask_neg_inf_excludes_nan_key():
    q, k, v = make_qkv((1, 8, 4), (1, 6, 4))
    mask = np.zeros((8, 6))
    mask[:, 2] = -np.inf
    v[0, 2] = np.nan
    out, _ = assert_matches_reference(q, k, v, mask=mask)
    assert np.all(np.isfinite(out))


def test_attention_nan_in_allowed_key_makes_row_nan():
    q, k, v = make_qkv((1, 8, 4), (1, 6, 4))
    k[0, 2] = np.nan
    out, lse = assert_matches_reference(q, k, v)
    assert np.all(np.isnan(out))
    assert np.all(np.isnan(lse))


def test_attention_nan_in_float_mask_makes_row_nan():
    q, k, v = make_qkv((1, 8, 4), (1, 6, 4))
    mask = np.zeros((8, 6))
    mask[2, 3] = np.nan
    out, lse = assert_matches_reference(q, k, v, mask=mask)
    assert np.all(np.isnan(out[0, 2]))
    assert np.isnan(lse[0, 2])
    assert np.all(np.isfinite(np.delete(out[0], 2, axis=0)))


def test_attention_inf_in_allowed_value_reaches_output():
    q, k, v = make_qkv((1, 8, 4), (1, 6, 4))
    v[0, 2, 1] = np.inf
    out, _ = assert_matches_reference(q, k, v)
    assert np.all(np.isposinf(out[0, :, 1]))


def test_attention_infinite_scores_share_weight():
    q = np.array([[1.0]])
    k = np.array([[np.inf], [1.0], [np.inf]])
    v = np.array([[2.0], [100.0], [4.0]])
    out, lse = assert_matches_reference(q, k, v)
    assert out[0, 0] == 3.0
    assert np.isposinf(lse[0])


@pytest.mark.parametrize(
    "make_view",
    [
        pytest.param(lambda x: np.asfortranarray(x), id="fortran"),
        pytest.param(
            lambda x: np.swapaxes(np.swapaxes(x, -1, -2).copy(), -1, -2),
            id="transposed",
        ),
        pytest.param(lambda x: np.repeat(x, 2, axis=-1)[..., ::2], id="strided"),
        pytest.param(
            lambda x: x[..., ::-1, ::-1].copy()[..., ::-1, ::-1], id="negative-strides"
        ),
    ],
)
def test_attention_noncontiguous_inputs(make_view):
    q, k, v = make_qkv((2, 3, 40, 16), (2, 3, 70, 16), value_dim=12)
    views = [make_view(x) for x in (q, k, v)]
    out = fastsoftmax.attention(*views, causal=True)
    expected = ref.attention(q, k, v, causal=True)
    np.testing.assert_allclose(out, expected, **TOLERANCE[np.float64])


def test_attention_stride_zero_keys():
    q, k, v = make_qkv((2, 20, 8), (2, 1, 8))
    k_wide = np.broadcast_to(k, (2, 30, 8))
    v_wide = np.broadcast_to(v, (2, 30, 8))
    out = fastsoftmax.attention(q, k_wide, v_wide)
    np.testing.assert_allclose(out, np.broadcast_to(v, out.shape), rtol=1e-14)


@pytest.mark.parametrize(
    "q_shape, k_shape, value_dim",
    [
        ((2, 0, 8), (2, 5, 8), 8),
        ((2, 5, 8), (2, 0, 8), 8),
        ((0, 5, 8), (0, 6, 8), 8),
        ((2, 5, 8), (2, 6, 8), 0),
    ],
)
def test_attention_empty_dimensions(q_shape, k_shape, value_dim):
    q, k, v = make_qkv(q_shape, k_shape, value_dim)
    assert_matches_reference(q, k, v)


def test_attention_no_keys_gives_zeros():
    q, k, v = make_qkv((2, 5, 8), (2, 0, 8))
    out, lse = fastsoftmax.attention(q, k, v, return_lse=True)
    assert np.all(out == 0)
    assert np.all(np.isneginf(lse))


def test_attention_lists_are_accepted():
    out = fastsoftmax.attention([[1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], [[1.0], [3.0]])
    expected = ref.attention(
        np.array([[1.0, 0.0]]),
        np.array([[1.0, 0.0], [0.0, 1.0]]),
        np.array([[1.0], [3.0]]),
    )
    np.testing.assert_allclose(out, expected, rtol=1e-15)


def test_attention_writes_into_out():
    q, k, v = make_qkv((2, 3, 20, 8), (2, 3, 30, 8), dtype=np.float32)
    out = np.empty((2, 3, 20, 8), dtype=np.float32)
    result = fastsoftmax.attention(q, k, v, out=out)
    assert result is out
    np.testing.assert_allclose(out, ref.attention(q, k, v), **TOLERANCE[np.float32])


def test_attention_writes_into_strided_float16_out():
    q, k, v = make_qkv((2, 20, 8), (2, 30, 8), dtype=np.float16)
    buffer = np.zeros((2, 20, 16), dtype=np.float16)
    out = buffer[..., ::2]
    result = fastsoftmax.attention(q, k, v, out=out)
    assert result is out
    np.testing.assert_allclose(out, ref.attention(q, k, v), **TOLERANCE[np.float16])
    assert np.all(buffer[..., 1::2] == 0)


def test_attention_out_may_alias_q():
    q, k, v = make_qkv((2, 40, 8), (2, 30, 8))
    expected = ref.attention(q, k, v)
    fastsoftmax.attention(q, k, v, out=q)
    np.testing.assert_allclose(q, expected, **TOLERANCE[np.float64])


def test_attention_2d_out():
    q, k, v = make_qkv((20, 8), (30, 8), value_dim=4)
    out = np.empty((20, 4))
    fastsoftmax.attention(q, k, v, out=out)
    np.testing.assert_allclose(out, ref.attention(q, k, v), **TOLERANCE[np.float64])


def test_attention_bitwise_identical_for_any_thread_count():
    q, k, v = make_qkv((2, 4, 200, 32), (2, 2, 150, 32), dtype=np.float32)
    results = [
        fastsoftmax.attention(q, k, v, causal=True, return_lse=True, threads=t)
        for t in (1, 2, 3, 7)
    ]
    for out, lse in results[1:]:
        assert np.array_equal(out, results[0][0])
        assert np.array_equal(lse, results[0][1])


def test_attention_accepts_huge_thread_count():
    q, k, v = make_qkv((2, 4, 100, 16), (2, 4, 100, 16))
    out = fastsoftmax.attention(q, k, v, threads=2**40)
    np.testing.assert_array_equal(out, fastsoftmax.attention(q, k, v, threads=1))


def test_attention_default_threads_from_environment(monkeypatch):
    q, k, v = make_qkv((2, 4, 100, 16), (2, 4, 100, 16))
    monkeypatch.setenv("FASTSOFTMAX_NUM_THREADS", "2")
    out = fastsoftmax.attention(q, k, v)
    np.testing.assert_array_equal(out, fastsoftmax.attention(q, k, v, threads=1))


def test_attention_ignores_bad_thread_environment(monkeypatch, caplog):
    q, k, v = make_qkv((2, 4, 8), (2, 4, 8))
    monkeypatch.setenv("FASTSOFTMAX_NUM_THREADS", "zero")
    with caplog.at_level("WARNING", logger="fastsoftmax"):
        result = fastsoftmax.attention(q, k, v)
    np.testing.assert_array_equal(result, fastsoftmax.attention(q, k, v, threads=1))
    assert "FASTSOFTMAX_NUM_THREADS" in caplog.text


@pytest.mark.parametrize("path", _attention.simd_supported())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attention_every_simd_path(path, dtype):
    q, k, v = make_qkv((2, 70, 16), (2, 90, 16), dtype=dtype)
    mask = np.random.default_rng(9).random((70, 90)) < 0.8
    previous = fastsoftmax.set_simd(path)
    try:
        assert_matches_reference(q, k, v, mask=mask, causal=True)
        assert _attention.simd_name() == path
    finally:
        fastsoftmax.set_simd(previous)


def test_set_simd_rejects_unknown_path():
    with pytest.raises(ValueError, match="SIMD path 'sse9'"):
        _attention.set_simd("sse9")


VALID = ((2, 5, 8), (2, 4, 8), (2, 4, 8))

ERROR_CASES = [
    # (q, k, v shapes, keyword arguments, exception, match)
    (((5,), (4, 3), (4, 3)), {}, ValueError, "q must have at least 2 dimensions"),
    (((2, 5, 8), (2, 4, 7), (2, 4, 8)), {}, ValueError, "same last dimension D"),
    (((2, 5, 8), (2, 4, 8), (2, 3, 8)), {}, ValueError, "k and v must have the same"),
    (((2, 5, 8), (2, 4, 8), (3, 4, 8)), {}, ValueError, "k and v must have the same"),
    (((3, 5, 8), (2, 4, 8), (2, 4, 8)), {}, ValueError, r"Hq = 3 .* Hkv = 2"),
    (((2, 2, 5, 8), (3, 2, 4, 8), (3, 2, 4, 8)), {}, ValueError, "do not broadcast"),
    (((2, 5, 0), (2, 4, 0), (2, 4, 3)), {}, ValueError, "scale=None"),
    (VALID, {"scale": np.inf}, ValueError, "scale must be finite"),
    (VALID, {"scale": np.nan}, ValueError, "scale must be finite"),
    (VALID, {"scale": "1"}, TypeError, "scale must be a real"),
    (VALID, {"causal": "diagonal"}, ValueError, "causal must be"),
    (VALID, {"causal": 1}, TypeError, "causal must be"),
    (VALID, {"threads": 0}, ValueError, "threads must be at least 1"),
    (VALID, {"threads": 1.5}, TypeError, "threads must be an int"),
    (VALID, {"mask": np.ones((5, 4), np.int8)}, TypeError, "mask has unsupported"),
    (VALID, {"mask": np.ones((5, 3), bool)}, ValueError, r"mask with shape \(5, 3\)"),
    (VALID, {"mask": np.ones((3, 5, 4), bool)}, ValueError, "not broadcastable"),
]


@pytest.mark.parametrize("function", [fastsoftmax.attention, ref.attention])
@pytest.mark.parametrize("shapes, kwargs, error, match", ERROR_CASES)
def test_attention_rejects_invalid_arguments(function, shapes, kwargs, error, match):
    q, k, v = (np.ones(shape) for shape in shapes)
    with pytest.raises(error, match=match):
        function(q, k, v, **kwargs)


@pytest.mark.parametrize(
    "name, dtype",
    [("q", np.complex128), ("k", object), ("v", "U3"), ("q", "datetime64[s]")],
)
def test_attention_rejects_unsupported_dtypes(name, dtype):
    shapes = {"q": (2, 5, 4), "k": (2, 3, 4), "v": (2, 3, 4)}
    arrays = {key: np.ones(shape) for key, shape in shapes.items()}
    arrays[name] = np.zeros(shapes[name], dtype=dtype)
    with pytest.raises(TypeError, match=f"{name} has unsupported dtype"):
        fastsoftmax.attention(arrays["q"], arrays["k"], arrays["v"])


@pytest.mark.parametrize(
    "out, error, match",
    [
        (np.empty((2, 5, 3)), ValueError, r"out has shape \(2, 5, 3\)"),
        (np.empty((2, 5, 4), np.float32), TypeError, "out has dtype float32"),
        ([[0.0]], TypeError, "out must be a numpy.ndarray"),
    ],
)
def test_attention_rejects_bad_out(out, error, match):
    q, k, v = np.ones((2, 5, 4)), np.ones((2, 3, 4)), np.ones((2, 3, 4))
    with pytest.raises(error, match=match):
        fastsoftmax.attention(q, k, v, out=out)


def test_attention_rejects_read_only_out():
    q, k, v = np.ones((2, 5, 4)), np.ones((2, 3, 4)), np.ones((2, 3, 4))
    out = np.empty((2, 5, 4))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        fastsoftmax.attention(q, k, v, out=out)


PEAK_MEMORY_SCRIPT = """
import json, resource, sys
import numpy as np
import fastsoftmax
heads, length, dim = 2, 4096, 64
rng = np.random.default_rng(0)
q, k, v = (rng.standard_normal((heads, length, dim), dtype=np.float32) for _ in "qkv")
out = np.empty_like(q)
fastsoftmax.attention(q[:, :64], k[:, :64], v[:, :64], threads=2)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
fastsoftmax.attention(q, k, v, out=out, threads=2)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"extra_kib": after - before}))
"""


def test_attention_memory_does_not_grow_with_score_matrix():
    # The score matrix of this call would take 2 * 4096 * 4096 * 4 bytes =
    # 128 MiB; the kernel's scratch is a few blocks per thread.
    result = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    extra_kib = json.loads(result.stdout)["extra_kib"]
    assert extra_kib < 16 * 1024


def test_attention_against_torch():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    q, k, v = make_qkv((2, 4, 50, 16), (2, 4, 80, 16), value_dim=8, dtype=np.float32)
    mask = np.random.default_rng(3).random((50, 80)) < 0.8
    mask[:, 0] = True
    cases = [
        ({}, {}),
        ({"causal": "upper_left"}, {"is_causal": True}),
        ({"mask": mask}, {"attn_mask": torch.from_numpy(mask)}),
        ({"scale": 0.3}, {"scale": 0.3}),
    ]
    for ours_kwargs, torch_kwargs in cases:
        out = fastsoftmax.attention(q, k, v, **ours_kwargs)
        expected = functional.scaled_dot_product_attention(
            *(torch.from_numpy(x) for x in (q, k, v)), **torch_kwargs
        ).numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_attention_against_torch_grouped_query():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    q, k, v = make_qkv((1, 8, 30, 16), (1, 2, 40, 16), dtype=np.float32)
    out = fastsoftmax.attention(q, k, v, causal="upper_left")
    expected = functional.scaled_dot_product_attention(
        *(torch.from_numpy(x) for x in (q, k, v)), is_causal=True, enable_gqa=True
    ).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
