"""softmax, log_softmax and logsumexp against the reference over a grid of inputs.

The grid crosses dtypes, shapes, memory layouts and axes. Each case runs the fast
and the reference function on the same array and compares them with
``assert_matches_reference``, whose tolerance covers the reference's own
rounding error (the reference works in the input's precision).
"""

import numpy as np
import pytest
from _support import (
    FUNCTION_NAMES,
    LAYOUTS,
    compare_with_reference,
    fast_function,
)

import fastsoftmax

FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def axis_id(axis):
    if axis is None:
        return "None"
    if isinstance(axis, tuple):
        return "(" + ",".join(str(a) for a in axis) + ")"
    return str(axis)


def shape_id(shape):
    return "x".join(str(n) for n in shape) if shape else "0d"


def grid_cases():
    """Return (shape, axis) pairs: every axis, negative axes, tuples and None."""
    table = {
        (): [-1, 0, None],
        (1,): [0, -1, None],
        (0,): [0, None],
        (2, 0): [0, 1, -1, None, (0, 1)],
        (0, 3): [0, 1, None],
        (781,): [-1],
        (1023,): [0],
        (3, 17): [0, 1, -2, -1, None, (0, 1)],
        (4, 5, 33): [0, 1, 2, -1, -3, None, (0, 1), (1, 2), (0, 2), (2, 0), (-1, -3)],
        (2, 3, 4, 5): [1, (1, 3), (0, 2, 3), (-1, -2), (0, 1, 2, 3)],
    }
    return [
        pytest.param(shape, axis, id=f"{shape_id(shape)}-axis{axis_id(axis)}")
        for shape, axes in table.items()
        for axis in axes
    ]


GRID = grid_cases()


def random_values(rng, shape, dtype):
    """Return values of ``dtype``: normal floats of scale 3, small ints, or bools."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        low = 0 if dtype.kind == "u" else -5
        return rng.integers(low, 6, size=shape).astype(dtype)
    return (3.0 * rng.standard_normal(shape)).astype(dtype)


def float_dtype_layouts():
    """Return (dtype, layout) pairs: every layout for float32 and float64, and the
    layouts that change how float16 is read for float16."""
    pairs = [
        (dtype, layout) for dtype in (np.float32, np.float64) for layout in LAYOUTS
    ]
    pairs += [(np.float16, layout) for layout in ("C", "strided", "byteswapped")]
    return [
        pytest.param(dtype, layout, id=f"{np.dtype(dtype).name}-{layout}")
        for dtype, layout in pairs
    ]


@pytest.mark.parametrize("shape, axis", GRID)
@pytest.mark.parametrize("dtype, layout", float_dtype_layouts())
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_float_grid_matches_reference(rng, name, dtype, layout, shape, axis):
    x = LAYOUTS[layout](random_values(rng, shape, dtype))
    compare_with_reference(name, x, axis)


#: Cases for integer and bool inputs, which share the float64 kernel.
SMALL_GRID = [
    case for case in GRID if case.values[0] in ((), (0,), (2, 0), (3, 17), (4, 5, 33))
]


@pytest.mark.parametrize("shape, axis", SMALL_GRID)
@pytest.mark.parametrize("layout", ["C", "negative_strides", "byteswapped"])
@pytest.mark.parametrize(
    "dtype",
    [np.bool_, np.int8, np.int64, np.uint16],
    ids=lambda d: np.dtype(d).name,
)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_integer_grid_matches_reference(rng, name, dtype, layout, shape, axis):
    x = LAYOUTS[layout](random_values(rng, shape, dtype))
    got = compare_with_reference(name, x, axis)
    assert got.dtype == np.float64


@pytest.mark.parametrize(
    "dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name
)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_long_row_matches_reference(rng, name, dtype):
    x = random_values(rng, (2**20,), dtype)
    compare_with_reference(name, x, -1)


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_long_strided_row_with_where(rng, name):
    x = LAYOUTS["strided"](random_values(rng, (2**20,), np.float32))
    where = rng.random(x.shape) < 0.9
    compare_with_reference(name, x, -1, where=where)


# --- where ------------------------------------------------------------------


def where_masks(rng, shape):
    """Return named boolean masks broadcastable to ``shape`` (ndim 2)."""
    rows, cols = shape
    return {
        "random": rng.random(shape) < 0.6,
        "all_true": np.ones(shape, dtype=bool),
        "all_false": np.zeros(shape, dtype=bool),
        "row_broadcast": (rng.random((1, cols)) < 0.6),
        "column_broadcast": (rng.random((rows, 1)) < 0.6),
        "one_dimensional": (rng.random(cols) < 0.6),
        "scalar_true": np.True_,
        "scalar_false": False,
        "list": (rng.random(cols) < 0.6).tolist(),
        "strided_view": (rng.random((rows, 2 * cols)) < 0.6)[:, ::2],
    }


WHERE_KINDS = list(where_masks(np.random.default_rng(0), (2, 2)))


@pytest.mark.parametrize("axis", [-1, 0, None, (0, 1)], ids=axis_id)
@pytest.mark.parametrize("layout", ["C", "F", "negative_strides", "unaligned"])
@pytest.mark.parametrize("kind", WHERE_KINDS)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_where_matches_reference(rng, name, kind, layout, axis):
    shape = (6, 37)
    x = LAYOUTS[layout](random_values(rng, shape, np.float32))
    where = where_masks(rng, shape)[kind]
    compare_with_reference(name, x, axis, where=where)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_where_on_zero_dimensional_input(name, dtype):
    x = np.array(1.5, dtype=dtype)
    for mask in (True, False):
        compare_with_reference(name, x, -1, where=np.array(mask))


# --- keepdims ---------------------------------------------------------------


@pytest.mark.parametrize("shape, axis", GRID)
@pytest.mark.parametrize("layout", ["C", "transposed", "strided"])
def test_logsumexp_keepdims_matches_reference(rng, layout, shape, axis):
    x = LAYOUTS[layout](random_values(rng, shape, np.float64))
    got = compare_with_reference("logsumexp", x, axis, keepdims=True)
    assert got.ndim == x.ndim


@pytest.mark.parametrize("axis", [-1, 0, (0, 2), None], ids=axis_id)
def test_logsumexp_keepdims_shape(rng, axis):
    x = random_values(rng, (3, 4, 5), np.float32)
    got = fastsoftmax.logsumexp(x, axis=axis, keepdims=True)
    expected_shape = np.sum(x, axis=axis, keepdims=True).shape
    assert got.shape == expected_shape


@pytest.mark.parametrize("axis", [-1, 0, (0, 2), None], ids=axis_id)
def test_logsumexp_shape_without_keepdims(rng, axis):
    x = random_values(rng, (3, 4, 5), np.float32)
    got = fastsoftmax.logsumexp(x, axis=axis)
    assert got.shape == np.sum(x, axis=axis).shape


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 0, (0, 2), None], ids=axis_id)
def test_result_shape_equals_input_shape(rng, name, axis):
    x = random_values(rng, (3, 4, 5), np.float32)
    got = fast_function(name)(x, axis=axis)
    assert got.shape == x.shape


# --- lists and Python scalars -------------------------------------------------

ARRAY_LIKES = {
    "float_list": [2.0, 1.0, 0.1],
    "int_list": [3, 1, 2],
    "bool_list": [True, False, True],
    "nested_list": [[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]],
    "tuple": (0.25, 0.5),
    "python_float": 2.5,
    "python_int": 7,
    "python_bool": True,
    "numpy_float32_scalar": np.float32(-3.0),
    "empty_list": [],
}


@pytest.mark.parametrize("axis", [-1, None], ids=axis_id)
@pytest.mark.parametrize("kind", list(ARRAY_LIKES))
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_array_like_matches_reference(name, kind, axis):
    compare_with_reference(name, ARRAY_LIKES[kind], axis)


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_nested_list_along_axis_zero(name):
    compare_with_reference(name, ARRAY_LIKES["nested_list"], 0)


def test_readme_example():
    got = fastsoftmax.softmax([2.0, 1.0, 0.1])
    np.testing.assert_allclose(got, [0.659, 0.242, 0.099], atol=5e-4)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_result_of_list_is_ndarray(name):
    got = fast_function(name)([1.0, 2.0])
    assert isinstance(got, np.ndarray)


# --- promoted dtypes, broadcast and read-only inputs ---------------------------


@pytest.mark.parametrize("axis", [-1, 0, None], ids=axis_id)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_float16_is_float32_result_rounded(rng, name, axis):
    x = random_values(rng, (7, 301), np.float16)
    got = fast_function(name)(x, axis=axis)
    in_float32 = fast_function(name)(x.astype(np.float32), axis=axis)
    np.testing.assert_array_equal(got, in_float32.astype(np.float16))


@pytest.mark.parametrize("dtype", [np.bool_, np.int16, np.int64, np.uint32])
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_integer_is_float64_result(rng, name, dtype):
    x = random_values(rng, (5, 129), dtype)
    got = fast_function(name)(x)
    np.testing.assert_array_equal(got, fast_function(name)(x.astype(np.float64)))


@pytest.mark.parametrize("axis", [-1, 0, None], ids=axis_id)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_broadcast_input_with_zero_strides(rng, name, axis):
    row = random_values(rng, (37,), np.float32)
    x = np.broadcast_to(row, (6, 37))
    assert x.strides[0] == 0
    compare_with_reference(name, x, axis)


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_zero_stride_along_reduced_axis(name):
    x = np.broadcast_to(np.float64(2.5), (5, 1023))
    got = compare_with_reference(name, x, -1)
    if name == "softmax":
        np.testing.assert_array_equal(got, got[0, 0])


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_read_only_input(rng, name):
    x = random_values(rng, (4, 65), np.float64)
    x.flags.writeable = False
    compare_with_reference(name, x, -1)
