"""Tests of merge_attention against attention computed over all keys at once.

The partial results come from a small float64 NumPy attention below, so these
tests do not depend on the C attention kernel.
"""

import numpy as np
import pytest

from fastsoftmax import merge_attention, reference


def numpy_attention(q, k, v, mask=None, causal=False):
    """Return ``(out, lse)`` of scaled dot-product attention in float64.

    Shapes as in :func:`fastsoftmax.attention`: q ``(..., Hq, L, D)``, k
    ``(..., Hkv, S, D)``, v ``(..., Hkv, S, Dv)``; ``mask`` is boolean; ``causal``
    is False, "lower_right" or "upper_left".
    """
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    group = q.shape[-3] // k.shape[-3]
    k = np.repeat(k, group, axis=-3)
    v = np.repeat(v, group, axis=-3)
    scores = (q @ np.swapaxes(k, -1, -2)) / np.sqrt(q.shape[-1])
    rows, keys = scores.shape[-2:]
    allowed = np.ones((rows, keys), dtype=bool)
    if causal:
        offset = keys - rows if causal == "lower_right" else 0
        allowed = np.arange(keys) <= np.arange(rows)[:, np.newaxis] + offset
    if mask is not None:
        allowed = allowed & mask
    allowed = np.broadcast_to(allowed, scores.shape)
    lse = reference.logsumexp(scores, axis=-1, where=allowed)
    weights = reference.softmax(scores, axis=-1, where=allowed)
    return weights @ v, lse


def shard_bounds(keys, count):
    """Return ``count`` uneven (start, stop) ranges covering ``range(keys)``."""
    cuts = np.linspace(0, keys, count + 1) ** 1.3 / keys**0.3
    cuts = np.round(cuts).astype(int)
    cuts[-1] = keys
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def sharded_attention(q, k, v, mask, count):
    """Return the per-shard ``(out, lse)`` pairs over ``count`` key shards."""
    parts = []
    for start, stop in shard_bounds(k.shape[-2], count):
        shard_mask = None if mask is None else mask[..., start:stop]
        parts.append(
            numpy_attention(
                q, k[..., start:stop, :], v[..., start:stop, :], mask=shard_mask
            )
        )
    return parts


@pytest.fixture
def qkv():
    rng = np.random.default_rng(7)
    q = rng.normal(size=(2, 4, 5, 8))
    k = rng.normal(size=(2, 2, 21, 8)) * 2.0
    v = rng.normal(size=(2, 2, 21, 3))
    return q, k, v


@pytest.mark.parametrize("count", [1, 2, 7])
def test_merge_shards_output(qkv, count):
    q, k, v = qkv
    expected, _ = numpy_attention(q, k, v)
    out, _ = merge_attention(sharded_attention(q, k, v, None, count))
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("count", [1, 2, 7])
def test_merge_shards_lse(qkv, count):
    q, k, v = qkv
    _, expected = numpy_attention(q, k, v)
    _, lse = merge_attention(sharded_attention(q, k, v, None, count))
    np.testing.assert_allclose(lse, expected, rtol=1e-14)


def test_merge_single_shard_unchanged(qkv):
    q, k, v = qkv
    out, lse = numpy_attention(q, k, v)
    merged_out, merged_lse = merge_attention([(out, lse)])
    np.testing.assert_array_equal(merged_out, out)
    np.testing.assert_array_equal(merged_lse, lse)


@pytest.mark.parametrize("count", [2, 7])
def test_merge_masked_shards(qkv, count):
    q, k, v = qkv
    # Row 0 may attend only the first 3 keys, so later shards are fully masked
    # for it. Row 4 may attend no key at all.
    mask = np.ones((5, 21), dtype=bool)
    mask[0, 3:] = False
    mask[2, ::2] = False
    mask[4, :] = False
    expected_out, expected_lse = numpy_attention(q, k, v, mask=mask)
    out, lse = merge_attention(sharded_attention(q, k, v, mask, count))
    np.testing.assert_allclose(out, expected_out, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(lse, expected_lse, rtol=1e-14)


def test_merge_all_masked_row(qkv):
    q, k, v = qkv
    mask = np.ones((5, 21), dtype=bool)
    mask[1, :] = False
    out, lse = merge_attention(sharded_attention(q, k, v, mask, 7))
    np.testing.assert_array_equal(out[..., 1, :], 0.0)
    np.testing.assert_array_equal(lse[..., 1], -np.inf)


def test_merge_ignores_masked_shard_output(qkv):
    q, k, v = qkv
    out, lse = numpy_attention(q, k, v)
    garbage_out = np.full_like(out, np.nan)
    garbage_lse = np.full_like(lse, -np.inf)
    merged_out, merged_lse = merge_attention([(out, lse), (garbage_out, garbage_lse)])
    np.testing.assert_array_equal(merged_out, out)
    np.testing.assert_array_equal(merged_lse, lse)


def test_merge_all_shards_masked():
    out = np.zeros((3, 4))
    lse = np.full(3, -np.inf)
    merged_out, merged_lse = merge_attention([(out, lse), (out, lse)])
    np.testing.assert_array_equal(merged_out, 0.0)
    np.testing.assert_array_equal(merged_lse, -np.inf)


def test_merge_nan_lse_row():
    out = np.ones((2, 3))
    lse_a = np.array([0.0, np.nan])
    lse_b = np.array([1.0, 1.0])
    merged_out, merged_lse = merge_attention([(out, lse_a), (out, lse_b)])
    assert np.isnan(merged_out[1]).all()
    assert np.isnan(merged_lse[1])
    assert not np.isnan(merged_out[0]).any()


def test_merge_infinite_lse_shares_equally():
    out_a = np.full((1, 2), 1.0)
    out_b = np.full((1, 2), 3.0)
    out_c = np.full((1, 2), 100.0)
    lse_inf = np.array([np.inf])
    merged_out, merged_lse = merge_attention(
        [(out_a, lse_inf), (out_b, lse_inf), (out_c, np.array([5.0]))]
    )
    np.testing.assert_array_equal(merged_out, 2.0)
    np.testing.assert_array_equal(merged_lse, np.inf)


def test_merge_weights_by_lse():
    out_a = np.array([[1.0]])
    out_b = np.array([[4.0]])
    # Shard b has three times the probability mass of shard a.
    lse_a = np.array([0.0])
    lse_b = np.array([np.log(3.0)])
    merged_out, merged_lse = merge_attention([(out_a, lse_a), (out_b, lse_b)])
    np.testing.assert_allclose(merged_out, [[0.25 * 1.0 + 0.75 * 4.0]], rtol=1e-15)
    np.testing.assert_allclose(merged_lse, [np.log(4.0)], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_merge_keeps_dtype(qkv, dtype):
    q, k, v = qkv
    parts = [
        (out.astype(dtype), lse.astype(dtype))
        for out, lse in sharded_attention(q, k, v, None, 2)
    ]
    out, lse = merge_attention(parts)
    assert out.dtype == dtype
    assert lse.dtype == dtype


def test_merge_float32_accuracy(qkv):
    q, k, v = qkv
    expected, _ = numpy_attention(q, k, v)
    parts = [
        (out.astype(np.float32), lse.astype(np.float32))
        for out, lse in sharded_attention(q, k, v, None, 7)
    ]
    out, _ = merge_attention(parts)
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=1e-6)


def test_merge_promotes_mixed_dtypes():
    out32, lse32 = np.zeros((2, 3), np.float32), np.zeros(2, np.float32)
    out64, lse64 = np.zeros((2, 3)), np.zeros(2)
    out, lse = merge_attention([(out32, lse32), (out64, lse64)])
    assert out.dtype == np.float64
    assert lse.dtype == np.float64


def test_merge_accepts_lists():
    out, lse = merge_attention([([[1.0, 2.0]], [0.0]), ([[3.0, 4.0]], [0.0])])
    np.testing.assert_allclose(out, [[2.0, 3.0]], rtol=1e-15)


def test_merge_rejects_empty():
    with pytest.raises(ValueError, match="parts must contain at least one"):
        merge_attention([])


def test_merge_rejects_array_of_parts():
    with pytest.raises(TypeError, match="parts must be a sequence"):
        merge_attention(np.zeros((2, 2, 3)))


def test_merge_rejects_non_pair():
    out = np.zeros((2, 3))
    with pytest.raises(TypeError, match=r"parts\[1\] must be an \(out, lse\) pair"):
        merge_attention([(out, np.zeros(2)), (out,)])


def test_merge_rejects_integer_out():
    with pytest.raises(TypeError, match=r"parts\[0\]\[0\] \(out\) has unsupported"):
        merge_attention([(np.zeros((2, 3), dtype=np.int64), np.zeros(2))])


def test_merge_rejects_complex_lse():
    with pytest.raises(TypeError, match=r"parts\[0\]\[1\] \(lse\) has unsupported"):
        merge_attention([(np.zeros((2, 3)), np.zeros(2, dtype=np.complex128))])


def test_merge_rejects_lse_shape():
    with pytest.raises(ValueError, match=r"parts\[0\] has out shape \(2, 3\)"):
        merge_attention([(np.zeros((2, 3)), np.zeros(3))])


def test_merge_rejects_different_shards():
    first = (np.zeros((2, 3)), np.zeros(2))
    second = (np.zeros((4, 3)), np.zeros(4))
    with pytest.raises(ValueError, match=r"parts\[1\] has out shape \(4, 3\)"):
        merge_attention([first, second])
