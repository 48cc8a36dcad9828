"""Argument checking, ``out`` in all its forms, and inputs left unmodified.

Bad input must be rejected by the fast functions exactly when the reference
rejects it, with the same exception type and a message naming the argument.
"""

import re

import numpy as np
import pytest
from _support import (
    FUNCTION_NAMES,
    LAYOUTS,
    assert_matches_reference,
    assert_same_up_to_accuracy,
    compare_with_reference,
    fast_function,
    reference_function,
)
from numpy.exceptions import AxisError
from numpy.lib.stride_tricks import as_strided


def assert_both_raise(name, exception, match, x, **kwargs):
    """Assert fast and reference functions raise ``exception`` matching ``match``."""
    with pytest.raises(exception, match=match) as reference_info:
        reference_function(name)(x, **kwargs)
    with pytest.raises(exception, match=match) as fast_info:
        fast_function(name)(x, **kwargs)
    assert fast_info.type is reference_info.type


def outcome(function, x, kwargs):
    """Return ("raised", exception type) or ("returned", result) for one call."""
    try:
        return "returned", function(x, **kwargs)
    except Exception as error:  # noqa: BLE001 - the type is what is compared
        return "raised", type(error)


def assert_both_raise_or_neither(name, x, **kwargs):
    """Assert fast and reference agree on raising, and on the result if neither does."""
    reference_kind, reference_value = outcome(reference_function(name), x, kwargs)
    fast_kind, fast_value = outcome(fast_function(name), x, kwargs)
    assert fast_kind == reference_kind, (
        f"reference {reference_kind} {reference_value!r}, fast {fast_kind} "
        f"{fast_value!r}"
    )
    if reference_kind == "raised":
        assert fast_value is reference_value
    else:
        compare_with_reference(name, x, **kwargs)


X = np.arange(12, dtype=np.float64).reshape(3, 4) / 7


# --- axis ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "axis", [1.0, "0", [0], (0, 1.5), True, np.bool_(False)], ids=repr
)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_axis_of_wrong_type_raises(name, axis):
    assert_both_raise(name, TypeError, "axis", X, axis=axis)


@pytest.mark.parametrize("axis", [2, -3, 100, (0, 2), (-3,)], ids=repr)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_axis_out_of_range_raises(name, axis):
    assert_both_raise(name, AxisError, "axis", X, axis=axis)


@pytest.mark.parametrize("axis", [1, -2], ids=repr)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_axis_out_of_range_for_zero_d(name, axis):
    assert_both_raise(name, AxisError, "axis", np.float64(1.0), axis=axis)


@pytest.mark.parametrize("axis", [(0, 0), (1, -1), (0, 1, 0)], ids=repr)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_repeated_axis_raises(name, axis):
    assert_both_raise(name, ValueError, "axis", X, axis=axis)


@pytest.mark.parametrize(
    "axis", [np.int64(1), np.int8(-1), (np.int32(0),), (), (1, 0)], ids=repr
)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_unusual_valid_axis_agrees(name, axis):
    assert_both_raise_or_neither(name, X, axis=axis)


# --- where --------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [np.ones(3, dtype=bool), np.ones((4, 4), dtype=bool), np.ones((2, 3, 4), bool)],
    ids=["shape3", "shape4x4", "shape2x3x4"],
)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_where_not_broadcastable_raises(name, where):
    assert_both_raise(name, ValueError, "where", X, where=where)


@pytest.mark.parametrize(
    "where",
    [np.ones((3, 4)), np.ones((3, 4), dtype=np.int64), np.full((3, 4), "yes")],
    ids=["float", "int", "str"],
)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_where_of_wrong_dtype_raises(name, where):
    assert_both_raise(name, TypeError, "where", X, where=where)


# --- out ----------------------------------------------------------------------


def result_shape(name, shape, axis=-1):
    if name == "logsumexp":
        return np.sum(np.empty(shape), axis=axis).shape
    return shape


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_out_of_wrong_shape_raises(name):
    shape = result_shape(name, X.shape)
    wrong = np.empty(shape + (1,))
    assert_both_raise(name, ValueError, "out", X, out=wrong)


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_out_transposed_shape_raises(name):
    wrong = np.empty((4, 3)) if name != "logsumexp" else np.empty(4)
    assert_both_raise(name, ValueError, "out", X, out=wrong)


@pytest.mark.parametrize(
    "x_dtype, out_dtype",
    [
        (np.float64, np.float32),
        (np.float32, np.float64),
        (np.float16, np.float32),
        (np.int64, np.float32),
        (np.int64, np.int64),
        (np.float64, np.complex128),
    ],
    ids=lambda d: np.dtype(d).name,
)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_out_of_wrong_dtype_raises(name, x_dtype, out_dtype):
    x = X.astype(x_dtype)
    out = np.empty(result_shape(name, x.shape), dtype=out_dtype)
    assert_both_raise(name, TypeError, "out", x, out=out)


@pytest.mark.parametrize("out", [[0.0] * 4, 3.0, np.zeros(4).tolist()], ids=repr)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_out_not_an_ndarray_raises(name, out):
    assert_both_raise(name, TypeError, "out", X[0], out=out)


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_read_only_out_raises(name):
    out = np.empty(result_shape(name, X.shape))
    out.flags.writeable = False
    assert_both_raise(name, ValueError, "out", X, out=out)


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_byteswapped_out_agrees(name):
    out = np.empty(result_shape(name, X.shape), dtype=">f8")
    assert_both_raise_or_neither(name, X, out=out)


OUT_LAYOUTS = ["C", "F", "negative_strides", "strided", "unaligned"]


@pytest.mark.parametrize("axis", [-1, 0], ids=["axis-1", "axis0"])
@pytest.mark.parametrize("layout", OUT_LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_out_of_any_layout_receives_result(rng, name, dtype, layout, axis):
    x = rng.standard_normal((5, 37)).astype(dtype)
    shape = result_shape(name, x.shape, axis)
    out = LAYOUTS[layout](np.zeros(shape, dtype=dtype))

    returned = fast_function(name)(x, axis=axis, out=out)
    expected = fast_function(name)(x, axis=axis)

    assert returned is out
    assert_same_up_to_accuracy(out, expected)


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_out_for_integer_input_is_float64(name):
    x = np.arange(6).reshape(2, 3)
    out = np.empty(result_shape(name, x.shape))
    returned = fast_function(name)(x, out=out)
    assert returned is out
    assert_same_up_to_accuracy(out, fast_function(name)(x))


@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_out_follows_keepdims(rng, keepdims):
    x = rng.standard_normal((3, 4, 5))
    out = np.empty((3, 1, 5) if keepdims else (3, 5))
    returned = fast_function("logsumexp")(x, axis=1, keepdims=keepdims, out=out)
    assert returned is out
    expected = fast_function("logsumexp")(x, axis=1, keepdims=keepdims)
    assert_same_up_to_accuracy(out, expected)


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_out_for_one_dimensional_input(name):
    x = np.array([1.0, 2.0, 3.0])
    if name != "logsumexp":
        out = np.empty(3)
    else:
        out = np.empty(())
    returned = fast_function(name)(x, out=out)
    assert returned is out
    assert_same_up_to_accuracy(out, fast_function(name)(x))


# --- out overlapping the input --------------------------------------------------


@pytest.mark.parametrize("axis", [-1, 0], ids=["axis-1", "axis0"])
@pytest.mark.parametrize("layout", ["C", "F", "negative_strides", "strided"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_out_is_input_in_place(rng, name, dtype, layout, axis):
    x = LAYOUTS[layout](rng.standard_normal((7, 45)).astype(dtype))
    expected = fast_function(name)(x, axis=axis)

    returned = fast_function(name)(x, axis=axis, out=x)

    assert returned is x
    assert_same_up_to_accuracy(x, expected)


def overlapping_views(kind, dtype, rows, cols):
    """Return (x, out, buffer): two views of one buffer that partly overlap."""
    size = rows * cols
    itemsize = np.dtype(dtype).itemsize
    buffer = np.zeros(2 * size + 2 * cols + 1, dtype=dtype)
    if kind == "out_shifted_by_one":
        x = buffer[:size].reshape(rows, cols)
        out = buffer[1 : size + 1].reshape(rows, cols)
    elif kind == "out_shifted_by_half_row":
        x = buffer[cols // 2 : cols // 2 + size].reshape(rows, cols)
        out = buffer[:size].reshape(rows, cols)
    elif kind == "out_one_row_down":
        x = buffer[:size].reshape(rows, cols)
        out = buffer[cols : cols + size].reshape(rows, cols)
    elif kind == "out_reversed":
        x = buffer[:size].reshape(rows, cols)
        out = x[::-1, ::-1]
    elif kind == "out_transposed_over_input":
        x = buffer[:size].reshape(rows, cols)
        out = as_strided(
            buffer, shape=(rows, cols), strides=(itemsize, rows * itemsize)
        )
    elif kind == "out_interleaved":
        x = as_strided(
            buffer, shape=(rows, cols), strides=(2 * cols * itemsize, 2 * itemsize)
        )
        out = as_strided(
            buffer[1:], shape=(rows, cols), strides=(2 * cols * itemsize, itemsize)
        )
    else:
        raise AssertionError(kind)
    return x, out, buffer


OVERLAPS = [
    "out_shifted_by_one",
    "out_shifted_by_half_row",
    "out_one_row_down",
    "out_reversed",
    "out_transposed_over_input",
    "out_interleaved",
]


@pytest.mark.parametrize("axis", [-1, 0], ids=["axis-1", "axis0"])
@pytest.mark.parametrize("kind", OVERLAPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_out_partly_overlapping_input(rng, name, dtype, kind, axis):
    rows, cols = 6, 40
    x, out, buffer = overlapping_views(kind, dtype, rows, cols)
    buffer[...] = rng.standard_normal(buffer.shape)
    x_copy = x.copy()
    expected = fast_function(name)(x_copy, axis=axis)
    reference = reference_function(name)(x_copy, axis=axis)

    returned = fast_function(name)(x, axis=axis, out=out)

    assert returned is out
    assert_same_up_to_accuracy(out, expected)
    assert_matches_reference(
        name, out.copy(), reference, x_copy, x.shape[axis], np.dtype(dtype)
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [-1, 0], ids=["axis-1", "axis0"])
def test_logsumexp_out_overlapping_input(rng, dtype, axis):
    rows, cols = 6, 40
    buffer = rng.standard_normal(rows * cols + 1).astype(dtype)
    x = buffer[1:].reshape(rows, cols)
    expected = fast_function("logsumexp")(x.copy(), axis=axis)
    out = buffer[: x.shape[1 + axis]]  # the first results overwrite early inputs

    returned = fast_function("logsumexp")(x, axis=axis, out=out)

    assert returned is out
    assert_same_up_to_accuracy(out, expected)


# --- threads ------------------------------------------------------------------


@pytest.mark.parametrize("threads", [0, -1, -8], ids=repr)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_threads_below_one_raises(name, threads):
    assert_both_raise(name, ValueError, "threads", X, threads=threads)


@pytest.mark.parametrize("threads", [1.5, 2.0, True, False, "2", [2]], ids=repr)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_threads_of_wrong_type_raises(name, threads):
    assert_both_raise(name, TypeError, "threads", X, threads=threads)


@pytest.mark.parametrize("threads", [1, 2, 64, np.int64(3), None], ids=repr)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_valid_threads_agree(name, threads):
    assert_both_raise_or_neither(name, X, threads=threads)


# --- dtypes ---------------------------------------------------------------------

UNSUPPORTED = {
    "complex64": np.array([1 + 1j, 2], dtype=np.complex64),
    "complex128": np.array([1 + 1j, 2]),
    "object": np.array([1.0, 2.0], dtype=object),
    "str": np.array(["1.0", "2.0"]),
    "bytes": np.array([b"1", b"2"]),
    "datetime64": np.array(["2026-01-01", "2026-01-02"], dtype="datetime64[D]"),
    "timedelta64": np.array([1, 2], dtype="timedelta64[s]"),
    "longdouble": np.array([1.0, 2.0], dtype=np.longdouble),
    "void": np.zeros(2, dtype=[("a", np.float64)]),
}


@pytest.mark.parametrize("kind", list(UNSUPPORTED))
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_unsupported_dtype_raises(name, kind):
    x = UNSUPPORTED[kind]
    if kind == "longdouble" and np.dtype(np.longdouble) == np.float64:
        pytest.skip("longdouble is float64 on this platform")
    assert_both_raise(name, TypeError, re.escape(str(x.dtype)), x)


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_complex_python_list_raises(name):
    assert_both_raise(name, TypeError, "complex128", [1j, 2.0])


@pytest.mark.parametrize(
    "dtype",
    [">f2", ">f4", ">f8", ">i4", "<f4"],
)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_byte_order_agrees(name, dtype):
    assert_both_raise_or_neither(name, X.astype(dtype))


# --- inputs are never modified ----------------------------------------------------


def buffer_bytes(array):
    """Return the bytes of the whole buffer behind ``array``."""
    base = array
    while isinstance(base.base, np.ndarray):
        base = base.base
    return base.tobytes(order="A")


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32])
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_inputs_are_not_modified(rng, name, dtype, layout):
    values = (3 * rng.standard_normal((9, 33))).astype(dtype)
    if dtype != np.int32:
        values[0, 0] = np.nan
        values[1, 5] = np.inf
        values[2, :] = -np.inf
    x = LAYOUTS[layout](values)
    where = LAYOUTS[layout](rng.random((9, 33)) < 0.8)
    x_before = buffer_bytes(x)
    where_before = buffer_bytes(where)

    for axis in (-1, 0, None):
        fast_function(name)(x, axis=axis, where=where)
        fast_function(name)(x, axis=axis)

    assert buffer_bytes(x) == x_before
    assert buffer_bytes(where) == where_before


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_out_write_leaves_input_intact(rng, name):
    x = rng.standard_normal((4, 100))
    before = x.tobytes()
    out = np.empty_like(x)
    fast_function(name)(x, out=out)
    assert x.tobytes() == before


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_in_place_with_where(rng, name):
    x = rng.standard_normal((6, 50))
    where = rng.random(x.shape) < 0.7
    expected = fast_function(name)(x, where=where)

    returned = fast_function(name)(x, where=where, out=x)

    assert returned is x
    assert_same_up_to_accuracy(x, expected)


def test_logsumexp_out_with_where_and_keepdims(rng):
    x = rng.standard_normal((4, 6, 9))
    where = rng.random((1, 6, 9)) < 0.7
    out = np.empty((1, 6, 1))
    expected = reference_function("logsumexp")(
        x, axis=(0, 2), keepdims=True, where=where
    )

    returned = fast_function("logsumexp")(
        x, axis=(0, 2), keepdims=True, where=where, out=out
    )

    assert returned is out
    assert_matches_reference("logsumexp", out, expected, x, 36, np.dtype(np.float64))


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_masked_array_entries_are_excluded(name):
    data = np.array([[1.0, 2.0, 100.0], [3.0, -1.0, 0.5]])
    mask = np.array([[False, False, True], [True, False, False]])
    got = fast_function(name)(np.ma.array(data, mask=mask))
    expected = fast_function(name)(data, where=~mask)
    assert type(got) is np.ndarray
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(
        reference_function(name)(np.ma.array(data, mask=mask)),
        reference_function(name)(data, where=~mask),
    )


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_masked_array_combines_with_where(name):
    data = np.array([1.0, 2.0, 3.0, 4.0])
    masked = np.ma.array(data, mask=[True, False, False, False])
    where = np.array([True, True, False, True])
    got = fast_function(name)(masked, where=where)
    expected = fast_function(name)(data, where=np.array([False, True, False, True]))
    np.testing.assert_array_equal(got, expected)
