"""Tests of fastsoftmax.dask against exact values and the in-memory functions.

Exact values come from mpmath at 50 digits, and chunked results must stay within
``ULP_BOUND`` of them. When the reduced axes lie in single chunks, the blocks go
through the C kernel, so the result must equal the in-memory call bit for bit.
"""

import mpmath
import numpy as np
import pytest
from numpy.exceptions import AxisError

import fastsoftmax

da = pytest.importorskip("dask.array")
fd = pytest.importorskip("fastsoftmax.dask")

# Measured bound of the chunk-spanning path, in ulp of the output dtype.
ULP_BOUND = {np.float16: 1.0, np.float32: 1.0, np.float64: 4.0}

FUNCTIONS = ["softmax", "log_softmax", "logsumexp"]


# --- exact values ------------------------------------------------------------


def exact_row(row, kind):
    """Return the exact results of one finite slice as mpmath numbers."""
    values = [mpmath.mpf(float(item)) for item in row if item != -np.inf]
    peak = max(values)
    others = list(values)
    others.remove(peak)
    # log1p of the sum without the peak's 1 keeps tiny log_softmax values exact.
    log_total = mpmath.log1p(mpmath.fsum(mpmath.exp(item - peak) for item in others))
    if kind == "logsumexp":
        return [peak + log_total]
    results = []
    for item in row:
        if item == -np.inf:
            results.append(mpmath.mpf(0) if kind == "softmax" else mpmath.mpf("-inf"))
        elif kind == "softmax":
            results.append(mpmath.exp(item - peak - log_total))
        else:
            results.append((item - peak) - log_total)
    return results


def exact(x, axis, kind, where=None, keepdims=False):
    """Return the exact results as a float64 pair ``(hi, lo)``, hi + lo exact.

    Entries excluded by ``where`` count as ``-inf``; every slice must hold a
    finite included entry.
    """
    x = np.asarray(x, dtype=np.float64)
    if where is not None:
        x = np.where(where, x, -np.inf)
    axes = tuple(range(x.ndim)) if axis is None else np.atleast_1d(axis).tolist()
    axes = [a % x.ndim for a in axes]
    kept = [a for a in range(x.ndim) if a not in axes]
    rows = np.transpose(x, kept + axes).reshape(
        -1, int(np.prod([x.shape[a] for a in axes]))
    )
    with mpmath.workdps(50):
        values = [exact_row(row, kind) for row in rows]
        hi = np.array([[float(v) for v in row] for row in values])
        lo = np.array(
            [
                [float(v - float(v)) if mpmath.isfinite(v) else 0.0 for v in row]
                for row in values
            ]
        )
    if kind == "logsumexp":
        shape = [x.shape[a] for a in kept]
        hi, lo = hi.reshape(shape), lo.reshape(shape)
        if keepdims:
            hi = np.expand_dims(hi, tuple(axes))
            lo = np.expand_dims(lo, tuple(axes))
        return hi, lo
    shape = [x.shape[a] for a in kept + axes]
    order = np.argsort(kept + axes)
    return (
        np.transpose(hi.reshape(shape), order),
        np.transpose(lo.reshape(shape), order),
    )


def ulp_error(actual, expected):
    """Return the largest error of ``actual`` in ulp of its dtype."""
    hi, lo = expected
    dtype = actual.dtype.type
    finite = np.isfinite(hi)
    unit = np.spacing(np.abs(hi.astype(dtype))).astype(np.float64)
    with np.errstate(invalid="ignore"):
        error = np.abs((actual.astype(np.float64) - hi) - lo) / unit
    return float(np.max(error[finite], initial=0.0))


def assert_same_specials(actual, expected):
    """Assert NaN and infinite entries match, and finite entries agree to 8 ulp."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    infinite = np.isinf(expected)
    np.testing.assert_array_equal(actual[infinite], expected[infinite])
    finite = np.isfinite(expected)
    # Both sides are within 4 ulp of the exact value.
    np.testing.assert_array_max_ulp(actual[finite], expected[finite], maxulp=8)


def scores(shape, dtype, seed=0, spread=3.0, offset=0.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * spread + offset).astype(dtype)


def run(kind, x, axis=-1, **kwargs):
    """Call the dask function ``kind`` and compute it on the threaded scheduler."""
    return getattr(fd, kind)(x, axis, **kwargs).compute(scheduler="threads")


# --- schedulers --------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture(params=["threads", "distributed"])
def compute(request):
    """Return a function that computes dask collections on one scheduler."""
    if request.param == "threads":
        return lambda *arrays: da.compute(*arrays, scheduler="threads")
    client = request.getfixturevalue("client")
    return lambda *arrays: tuple(client.compute(list(arrays), sync=True))


# --- accuracy ----------------------------------------------------------------


# float16 cannot hold the offset scores, so it runs with the small spread only.
SPANNING_CASES = [
    (dtype, spread, offset)
    for dtype in (np.float16, np.float32, np.float64)
    for spread, offset in ((3.0, 0.0), (300.0, 1000.0), (30.0, -5000.0))
    if dtype != np.float16 or offset == 0.0
]


@pytest.mark.parametrize("kind", FUNCTIONS)
@pytest.mark.parametrize(("dtype", "spread", "offset"), SPANNING_CASES)
def test_spanning_axis_within_bound(kind, dtype, spread, offset):
    x = scores((4, 90), dtype, spread=spread, offset=offset)
    result = run(kind, da.from_array(x, chunks=(3, 17)))
    assert ulp_error(result, exact(x, -1, kind)) <= ULP_BOUND[dtype]


@pytest.mark.parametrize("kind", FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [0, (0, 2), None])
def test_spanning_axes_within_bound(kind, dtype, axis):
    x = scores((9, 4, 6), dtype, seed=1, spread=30.0)
    result = run(kind, da.from_array(x, chunks=(4, 3, 4)), axis)
    assert ulp_error(result, exact(x, axis, kind)) <= ULP_BOUND[dtype]


@pytest.mark.parametrize("kind", FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_spanning_where_within_bound(kind, dtype):
    x = scores((5, 40), dtype, seed=2, spread=30.0)
    where = np.random.default_rng(3).random((5, 40)) > 0.3
    where[:, 0] = True
    result = run(kind, da.from_array(x, chunks=(2, 9)), where=where)
    assert ulp_error(result, exact(x, -1, kind, where=where)) <= ULP_BOUND[dtype]


@pytest.mark.parametrize("kind", FUNCTIONS)
@pytest.mark.parametrize("axis", [-1, 0, (0, 2)])
def test_spanning_slabs_within_bound(kind, axis, monkeypatch):
    # Slabs of a few entries split every block, so partial sums accumulate
    # across slabs when axis 0 is reduced.
    monkeypatch.setattr(fd, "_SLAB_ITEMS", 5)
    x = scores((9, 4, 6), np.float64, seed=13, spread=30.0)
    result = run(kind, da.from_array(x, chunks=(4, 3, 4)), axis)
    assert ulp_error(result, exact(x, axis, kind)) <= ULP_BOUND[np.float64]


@pytest.mark.parametrize("kind", FUNCTIONS)
def test_special_values_in_slabs(kind, monkeypatch):
    monkeypatch.setattr(fd, "_SLAB_ITEMS", 3)
    x = special_rows().astype(np.float32)
    result = run(kind, da.from_array(x, chunks=(3, 4)))
    assert_same_specials(result, getattr(fastsoftmax, kind)(x))


def test_spanning_many_chunks_within_bound():
    # Enough chunks for a tree reduction with intermediate combine steps.
    x = scores((2, 400), np.float64, seed=4, spread=30.0)
    result = run("softmax", da.from_array(x, chunks=(1, 3)))
    assert ulp_error(result, exact(x, -1, "softmax")) <= ULP_BOUND[np.float64]


@pytest.mark.parametrize("kind", FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("axis", [-1, 0, (0, 1)])
def test_within_chunk_equals_in_memory(kind, dtype, axis):
    x = scores((6, 8, 10), dtype, seed=5)
    chunks = tuple(
        n if i in np.atleast_1d(axis) % 3 else 3 for i, n in enumerate(x.shape)
    )
    result = run(kind, da.from_array(x, chunks=chunks), axis)
    np.testing.assert_array_equal(result, getattr(fastsoftmax, kind)(x, axis))


@pytest.mark.parametrize("kind", FUNCTIONS)
def test_spanning_close_to_in_memory(kind):
    x = scores((6, 50), np.float32, seed=6)
    result = run(kind, da.from_array(x, chunks=(6, 7)))
    expected = getattr(fastsoftmax, kind)(x)
    # Each is within 4 ulp of the exact value, so they are within 8 of each other.
    np.testing.assert_array_max_ulp(result, expected, maxulp=8)


@pytest.mark.parametrize("kind", FUNCTIONS)
def test_dtype_matches_in_memory(kind):
    for dtype in (np.float16, np.float32, np.float64, np.int32, np.bool_):
        x = np.ones((3, 8), dtype=dtype)
        result = getattr(fd, kind)(da.from_array(x, chunks=(3, 3)))
        assert result.dtype == getattr(fastsoftmax, kind)(x).dtype


# --- special values at chunk borders -------------------------------------------


def special_rows():
    """Return rows of 12 scores whose special values sit at borders of 4-chunks."""
    x = np.tile(np.linspace(-3.0, 3.0, 12), (7, 1))
    x[0, 3] = np.nan  # last entry of the first chunk
    x[1, [3, 4, 11]] = np.inf  # three +inf entries in three chunks
    x[2, 4:8] = -np.inf  # a whole chunk of -inf
    x[3, :] = -np.inf  # an all -inf slice
    x[4, 8] = np.inf  # a single +inf entry, first of the last chunk
    x[5, [0, 7]] = -np.inf  # -inf on both sides of a border
    x[6, 4] = np.nan
    x[6, 5] = np.inf  # NaN wins over +inf
    return x


@pytest.mark.parametrize("kind", FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_at_borders(kind, dtype, compute):
    x = special_rows().astype(dtype)
    (result,) = compute(getattr(fd, kind)(da.from_array(x, chunks=(3, 4))))
    assert_same_specials(result, getattr(fastsoftmax, kind)(x))


def test_infinite_entries_share_across_chunks():
    x = special_rows()
    result = run("softmax", da.from_array(x, chunks=(3, 4)))
    np.testing.assert_allclose(result[1, [3, 4, 11]], 1.0 / 3.0, rtol=1e-15)


def test_log_softmax_infinite_entries_across_chunks():
    x = special_rows()
    result = run("log_softmax", da.from_array(x, chunks=(3, 4)))
    np.testing.assert_allclose(result[1, [3, 4, 11]], -np.log(3.0), rtol=1e-15)


@pytest.mark.parametrize("kind", FUNCTIONS)
def test_excluded_chunk_ignores_nan(kind, compute):
    x = scores((3, 12), np.float64, seed=7)
    x[:, 4:8] = np.nan  # the whole middle chunk, excluded below
    where = np.ones(12, dtype=bool)
    where[4:8] = False
    (result,) = compute(getattr(fd, kind)(da.from_array(x, chunks=(3, 4)), where=where))
    assert_same_specials(result, getattr(fastsoftmax, kind)(x, where=where))


@pytest.mark.parametrize("kind", FUNCTIONS)
def test_all_excluded_slice(kind):
    x = scores((3, 12), np.float64, seed=8)
    where = np.ones((3, 12), dtype=bool)
    where[1] = False
    result = run(kind, da.from_array(x, chunks=(3, 4)), where=where)
    assert_same_specials(result, getattr(fastsoftmax, kind)(x, where=where))


@pytest.mark.parametrize("kind", FUNCTIONS)
def test_where_as_dask_array(kind):
    x = scores((4, 12), np.float32, seed=9)
    where = np.arange(12) % 3 != 0
    dask_where = da.from_array(where, chunks=5)
    result = run(kind, da.from_array(x, chunks=(2, 4)), where=dask_where)
    assert_same_specials(result, getattr(fastsoftmax, kind)(x, where=where))


# --- shapes and arguments ----------------------------------------------------


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [1, (0, 2), None])
def test_logsumexp_keepdims(keepdims, axis):
    x = scores((5, 6, 7), np.float64, seed=10)
    result = run(
        "logsumexp", da.from_array(x, chunks=(2, 4, 3)), axis, keepdims=keepdims
    )
    expected = fastsoftmax.logsumexp(x, axis, keepdims=keepdims)
    assert result.shape == expected.shape
    np.testing.assert_array_max_ulp(result, expected, maxulp=8)


@pytest.mark.parametrize("kind", FUNCTIONS)
def test_zero_dimensional_input(kind):
    result = run(kind, da.asarray(np.float64(2.5)))
    expected = getattr(fastsoftmax, kind)(np.float64(2.5))
    assert result.shape == expected.shape
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("kind", FUNCTIONS)
def test_list_input(kind):
    values = [[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]]
    result = run(kind, values)
    np.testing.assert_array_equal(result, getattr(fastsoftmax, kind)(values))


@pytest.mark.parametrize("kind", FUNCTIONS)
def test_integer_input_spanning(kind):
    x = np.arange(24, dtype=np.int64).reshape(2, 12)
    result = run(kind, da.from_array(x, chunks=(2, 5)))
    assert ulp_error(result, exact(x, -1, kind)) <= ULP_BOUND[np.float64]


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
def test_empty_slices(kind):
    x = np.empty((0, 12))
    result = run(kind, da.from_array(x, chunks=(1, 5)))
    assert result.shape == (0, 12)


def test_logsumexp_empty_axis():
    x = np.empty((3, 0))
    result = run("logsumexp", da.from_array(x, chunks=(2, 1)))
    np.testing.assert_array_equal(result, np.full(3, -np.inf))


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
def test_output_keeps_chunks(kind):
    x = da.from_array(scores((6, 20), np.float32), chunks=(4, 6))
    assert getattr(fd, kind)(x).chunks == x.chunks


def test_threads_passed_to_kernel():
    x = scores((4, 30), np.float64, seed=11)
    result = run("softmax", da.from_array(x, chunks=(2, 30)), threads=2)
    np.testing.assert_array_equal(result, fastsoftmax.softmax(x))


def test_out_rebound_to_result():
    x = da.from_array(scores((4, 12), np.float64), chunks=(2, 5))
    out = da.zeros((4, 12), chunks=(2, 5))
    result = fd.softmax(x, out=out)
    assert result is out
    np.testing.assert_array_equal(out.compute(), fd.softmax(x).compute())


def test_out_rejects_numpy_array():
    x = da.ones((4, 12), chunks=(2, 5))
    with pytest.raises(TypeError, match="out must be a dask.array.Array"):
        fd.softmax(x, out=np.empty((4, 12)))


def test_out_rejects_shape():
    x = da.ones((4, 12), chunks=(2, 5))
    with pytest.raises(ValueError, match=r"out has shape \(4,\), expected \(4, 12\)"):
        fd.softmax(x, out=da.zeros(4))


def test_out_rejects_dtype():
    x = da.ones((4, 12), chunks=(2, 5))
    with pytest.raises(TypeError, match="out has dtype float32, expected float64"):
        fd.logsumexp(x, out=da.zeros(4, dtype=np.float32))


@pytest.mark.parametrize("kind", FUNCTIONS)
def test_rejects_axis_out_of_range(kind):
    with pytest.raises(AxisError):
        getattr(fd, kind)(da.ones((3, 4)), axis=2)


@pytest.mark.parametrize("kind", FUNCTIONS)
def test_rejects_repeated_axis(kind):
    with pytest.raises(ValueError, match="axis contains a repeated axis"):
        getattr(fd, kind)(da.ones((3, 4)), axis=(1, -1))


@pytest.mark.parametrize("kind", FUNCTIONS)
def test_rejects_complex(kind):
    with pytest.raises(TypeError, match="x has unsupported dtype complex128"):
        getattr(fd, kind)(da.ones((3, 4), dtype=np.complex128))


def test_rejects_non_boolean_where():
    with pytest.raises(TypeError, match="where must be a boolean array"):
        fd.softmax(da.ones((3, 4)), where=np.ones(4))


def test_rejects_where_shape():
    with pytest.raises(ValueError, match=r"where has shape \(3,\), which does not"):
        fd.softmax(da.ones((3, 4)), where=np.ones(3, dtype=bool))


def test_rejects_zero_threads():
    with pytest.raises(ValueError, match="threads must be at least 1"):
        fd.log_softmax(da.ones((3, 4)), threads=0)


# --- attention ----------------------------------------------------------------

needs_attention = pytest.mark.skipif(
    not hasattr(fastsoftmax, "attention"), reason="needs fastsoftmax.attention"
)


def attention_inputs(q_shape, k_shape, dv, dtype=np.float64, seed=12):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=q_shape).astype(dtype)
    k = rng.normal(size=k_shape).astype(dtype)
    v = rng.normal(size=k_shape[:-1] + (dv,)).astype(dtype)
    return q, k, v


def check_attention(q, k, v, q_chunks, k_chunks, compute=None, **kwargs):
    """Assert sharded attention matches the in-memory call, output and lse."""
    expected_out, expected_lse = fastsoftmax.attention(
        q, k, v, return_lse=True, **kwargs
    )
    mask = kwargs.pop("mask", None)
    if mask is not None and mask.ndim >= 2:
        mask = da.from_array(mask, chunks=mask.shape[:-2] + (4, 5))
    out, lse = fd.attention(
        da.from_array(q, chunks=q_chunks),
        da.from_array(k, chunks=k_chunks),
        v,
        mask=mask,
        return_lse=True,
        **kwargs,
    )
    out, lse = (compute or (lambda *a: da.compute(*a, scheduler="threads")))(out, lse)
    tolerance = (
        {"rtol": 1e-12, "atol": 1e-13}
        if q.dtype == np.float64
        else {"rtol": 2e-5, "atol": 2e-6}
    )
    np.testing.assert_allclose(out, expected_out, **tolerance)
    np.testing.assert_allclose(lse, expected_lse, **tolerance)


@needs_attention
@pytest.mark.parametrize("causal", [False, "lower_right", "upper_left"])
@pytest.mark.parametrize(("rows", "keys"), [(9, 23), (23, 9), (1, 17)])
def test_attention_shards_match(causal, rows, keys):
    q, k, v = attention_inputs((2, 4, rows, 8), (2, 2, keys, 8), 3)
    check_attention(q, k, v, (1, 4, 4, 8), (2, 2, 5, 8), causal=causal)


@needs_attention
@pytest.mark.parametrize("causal", [False, True, "upper_left"])
def test_attention_boolean_mask(causal):
    q, k, v = attention_inputs((2, 4, 9, 8), (2, 2, 23, 8), 3)
    mask = np.random.default_rng(13).random((4, 9, 23)) > 0.4
    mask[:, 3] = False  # a query row with no key
    mask[:, :, 5:10] = False  # a whole shard masked
    check_attention(q, k, v, (1, 4, 4, 8), (2, 2, 5, 8), causal=causal, mask=mask)


@needs_attention
def test_attention_float_mask_and_scale():
    q, k, v = attention_inputs((2, 4, 9, 8), (2, 2, 23, 8), 5)
    mask = np.random.default_rng(14).normal(size=(9, 23))
    check_attention(q, k, v, (2, 4, 3, 8), (2, 2, 6, 8), mask=mask, scale=-0.3)


@needs_attention
def test_attention_masked_shard_with_nan_keys():
    q, k, v = attention_inputs((4, 9, 8), (2, 23, 8), 3)
    mask = np.ones((9, 23), dtype=bool)
    mask[:, 10:15] = False
    k[:, 10:15] = np.nan
    v[:, 10:15] = np.inf
    check_attention(q, k, v, (4, 4, 8), (2, 5, 8), mask=mask)


@needs_attention
def test_attention_two_dimensional():
    q, k, v = attention_inputs((9, 8), (23, 8), 4, dtype=np.float32)
    check_attention(q, k, v, (4, 8), (7, 8), causal=True)


@needs_attention
def test_attention_broadcast_batch():
    q, k, v = attention_inputs((3, 1, 4, 9, 8), (2, 23, 8), 3, dtype=np.float32)
    check_attention(q, k, v, (1, 1, 4, 4, 8), (2, 5, 8), causal=True)


@needs_attention
def test_attention_on_schedulers(compute):
    q, k, v = attention_inputs((2, 4, 9, 8), (2, 2, 23, 8), 3)
    check_attention(q, k, v, (1, 4, 4, 8), (2, 2, 5, 8), compute=compute, causal=True)


@needs_attention
def test_attention_float16_close_to_in_memory():
    q, k, v = attention_inputs((4, 9, 8), (2, 23, 8), 3, dtype=np.float16)
    expected = fastsoftmax.attention(q, k, v, causal=True)
    out = fd.attention(q, da.from_array(k, chunks=(2, 5, 8)), v, causal=True)
    result = out.compute(scheduler="threads")
    assert result.dtype == np.float16
    # The shards merge in float32, so only the final rounding to float16 differs.
    np.testing.assert_array_max_ulp(result, expected, maxulp=1)


@needs_attention
def test_attention_integer_inputs():
    q = np.arange(24).reshape(3, 8) % 5
    k = np.arange(40).reshape(5, 8) % 3
    out = fd.attention(q, da.from_array(k, chunks=(2, 8)), k)
    result = out.compute(scheduler="threads")
    np.testing.assert_allclose(result, fastsoftmax.attention(q, k, k), rtol=1e-13)


@needs_attention
def test_attention_returns_output_only():
    q, k, v = attention_inputs((4, 9, 8), (2, 23, 8), 3)
    out = fd.attention(q, da.from_array(k, chunks=(2, 5, 8)), v)
    assert out.shape == (4, 9, 3)


@needs_attention
def test_attention_rejects_causal():
    q = da.ones((2, 4, 8))
    with pytest.raises(ValueError, match="causal must be False, True"):
        fd.attention(q, q, q, causal="upper")


@needs_attention
def test_attention_rejects_scale():
    q = da.ones((2, 4, 8))
    with pytest.raises(ValueError, match="scale must be finite"):
        fd.attention(q, q, q, scale=np.inf)


@needs_attention
def test_attention_rejects_complex_q():
    q = da.ones((2, 4, 8), dtype=np.complex128)
    k = da.ones((2, 4, 8))
    with pytest.raises(TypeError, match="q has unsupported dtype complex128"):
        fd.attention(q, k, k)


@needs_attention
def test_attention_rejects_zero_threads():
    q = da.ones((2, 4, 8))
    with pytest.raises(ValueError, match="threads must be at least 1"):
        fd.attention(q, q, q, threads=0)


def test_attention_rejects_heads():
    q = da.ones((3, 4, 8))
    k = da.ones((2, 4, 8))
    with pytest.raises(ValueError, match=r"q \(3, 4, 8\), k \(2, 4, 8\)"):
        fd.attention(q, k, k)


def test_attention_rejects_mask_dtype():
    q = da.ones((2, 4, 8))
    with pytest.raises(TypeError, match="mask has unsupported dtype int64"):
        fd.attention(q, q, q, mask=np.ones((4, 4), dtype=np.int64))


def test_attention_rejects_mask_shape():
    q = da.ones((2, 4, 8))
    with pytest.raises(ValueError, match=r"mask has shape \(3, 4\)"):
        fd.attention(q, q, q, mask=np.ones((3, 4), dtype=bool))


def test_attention_rejects_one_dimensional_k():
    q = da.ones((4, 8))
    with pytest.raises(ValueError, match="k must have at least 2 dimensions"):
        fd.attention(q, da.ones(8), q)


def test_dask_accepts_byte_swapped_floats():
    data = np.arange(6.0).astype(">f8")
    expected = fastsoftmax.softmax(data)
    within_chunk = fd.softmax(da.from_array(data, chunks=6)).compute()
    spanning = fd.softmax(da.from_array(data, chunks=3)).compute()
    np.testing.assert_array_equal(within_chunk, expected)
    np.testing.assert_allclose(spanning, expected, rtol=4 * np.finfo(np.float64).eps)


def test_dask_unknown_chunks_raise():
    x = da.from_array(np.arange(6.0), chunks=3)
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        fd.softmax(x[x > 2])
