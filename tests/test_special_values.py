"""Special values: NaN, infinities, exclusion by ``where``, empty and 0-d slices.

Each rule is checked with its expected values written out (not taken from the
reference), on every memory layout and along axis -1 and axis 0, with the
special entry placed first, in the middle, last and at positions that fall in a
SIMD tail (index n - 1 for n = 17, 33 and 1023, index 15 and 16). The rows of a
test sit in one array, so a special value in one slice must not leak into the
slices next to it.
"""

import numpy as np
import pytest
from _support import (
    ACCURACY_ULP,
    FUNCTION_NAMES,
    LAYOUTS,
    assert_matches_reference,
    assert_within_ulp,
    fast_function,
    reference_function,
    ulp_distance,
)

LENGTHS = (17, 33, 1023)

# "transposed" is left out because, for 2-D rows, it lays memory out as "F" does.
SPECIAL_LAYOUTS = [layout for layout in LAYOUTS if layout != "transposed"]


def dtype_layout_params():
    """Return (dtype, layout) pairs: every layout for float32 and float64."""
    pairs = [
        (dtype, layout)
        for dtype in (np.float32, np.float64)
        for layout in SPECIAL_LAYOUTS
    ]
    pairs += [(np.float16, "C"), (np.float16, "byteswapped")]
    return [
        pytest.param(dtype, layout, id=f"{np.dtype(dtype).name}-{layout}")
        for dtype, layout in pairs
    ]


DTYPE_LAYOUTS = dtype_layout_params()
AXES = [pytest.param(-1, id="axis-1"), pytest.param(0, id="axis0")]


def positions(n):
    """Return the positions a special entry is placed at in a slice of ``n``."""
    candidates = [0, n // 2, n - 1, 15, 16, 31, 32]
    return sorted({p for p in candidates if p < n})


def finite_rows(rng, count, n, dtype):
    """Return ``count`` rows of ``n`` normal values in ``dtype``."""
    return (2.0 * rng.standard_normal((count, n))).astype(dtype)


def run(name, rows, axis, layout, where=None):
    """Apply ``name`` to ``rows`` laid out by ``layout``, one slice per row.

    With axis 0 the rows become columns of the input. The result comes back one
    row per slice (softmax, log_softmax) or one value per slice (logsumexp).
    """
    values = rows if axis == -1 else rows.T
    x = LAYOUTS[layout](values)
    kwargs = {}
    if where is not None:
        kwargs["where"] = where if axis == -1 else where.T
    result = fast_function(name)(x, axis=axis, **kwargs)
    if name != "logsumexp" and axis == 0:
        result = result.T
    return result


def out_dtype(dtype):
    return np.dtype(dtype).newbyteorder("=")


# --- NaN ----------------------------------------------------------------------


def check_nan_makes_slice_nan(name, dtype, layout, axis, rng, n):
    spots = positions(n)
    rows = finite_rows(rng, len(spots) + 3, n, dtype)
    for row, p in enumerate(spots):
        rows[row, p] = np.nan
    # NaN together with +inf and with -inf.
    rows[-3, 0] = np.inf
    rows[-3, n - 1] = np.nan
    rows[-2, n // 2] = -np.inf
    rows[-2, n - 1] = np.nan
    # The last row has no special value and stays finite.

    result = run(name, rows, axis, layout)

    special = result[:-1]
    assert np.all(np.isnan(special)), f"non-NaN output in a slice with NaN, n={n}"
    assert np.all(np.isfinite(result[-1])), f"NaN leaked into a finite slice, n={n}"


# --- +inf ---------------------------------------------------------------------


def posinf_rows(rng, n, dtype):
    """Return rows with k = 1, 2 or 3 entries at +inf, and the list of positions.

    The other entries mix finite values, -inf and the largest finite value.
    """
    layouts = [[p] for p in positions(n)]
    layouts += [[0, n - 1], [0, n // 2, n - 1], [n - 2, n - 1]]
    rows = finite_rows(rng, len(layouts), n, dtype)
    info = np.finfo(dtype)
    for row, spots in enumerate(layouts):
        rows[row, (spots[0] + 1) % n] = -np.inf
        rows[row, (spots[-1] + n // 3) % n] = info.max
        rows[row, spots] = np.inf
    return rows, layouts


def check_posinf_entries_share(name, dtype, layout, axis, rng, n):
    rows, layouts = posinf_rows(rng, n, dtype)
    result = run(name, rows, axis, layout)
    dtype = out_dtype(dtype)

    for row, spots in enumerate(layouts):
        k = len(spots)
        others = np.ones(n, dtype=bool)
        others[spots] = False
        context = f"+inf at {spots}, n={n}"
        if name == "softmax":
            share = dtype.type(1) / dtype.type(k)
            np.testing.assert_array_equal(result[row, spots], share, err_msg=context)
            np.testing.assert_array_equal(result[row, others], 0, err_msg=context)
        elif name == "log_softmax":
            exact = np.full(k, -np.log(np.longdouble(k)))
            assert_within_ulp(result[row, spots], exact, ACCURACY_ULP)
            np.testing.assert_array_equal(result[row, others], -np.inf, err_msg=context)
        else:
            assert result[row] == np.inf, context


# --- all -inf, all excluded, -inf entries ---------------------------------------


def expected_empty_value(name):
    return 0.0 if name == "softmax" else -np.inf


def check_all_neginf_slice(name, dtype, layout, axis, rng, n):
    rows = finite_rows(rng, 2, n, dtype)
    rows[0] = -np.inf
    result = run(name, rows, axis, layout)

    np.testing.assert_array_equal(result[0], expected_empty_value(name))
    assert np.all(np.isfinite(result[1])), "the finite slice is not finite"


def check_all_excluded_slice(name, dtype, layout, axis, rng, n):
    rows = finite_rows(rng, 3, n, dtype)
    # Excluded entries may hold anything, NaN and +inf included.
    rows[0, 0] = np.nan
    rows[1, n - 1] = np.inf
    where = np.zeros(rows.shape, dtype=bool)
    where[2] = True
    result = run(name, rows, axis, layout, where=where)

    np.testing.assert_array_equal(result[:2], expected_empty_value(name))
    assert np.all(np.isfinite(result[2])), "the included slice is not finite"


def check_excluded_entries_take_no_part(name, dtype, layout, axis, rng, n):
    spots = positions(n)
    rows = finite_rows(rng, len(spots), n, dtype)
    where = rng.random(rows.shape) < 0.7
    for row, p in enumerate(spots):
        rows[row, p] = np.nan
        rows[row, (p + 1) % n] = np.inf
        where[row, p] = False
        where[row, (p + 1) % n] = False
        where[row, (p + 2) % n] = True
    result = run(name, rows, axis, layout, where=where)

    expected = reference_function(name)(rows, axis=-1, where=where)
    work = rows.astype(np.float32 if dtype == np.float16 else dtype)
    assert_matches_reference(
        name, result, expected, np.where(where, work, 0), n, out_dtype(dtype)
    )
    if name != "logsumexp":
        np.testing.assert_array_equal(result[~where], expected_empty_value(name))


def check_neginf_entries_get_zero(name, dtype, layout, axis, rng, n):
    spots = positions(n)
    rows = finite_rows(rng, len(spots), n, dtype)
    for row, p in enumerate(spots):
        rows[row, p] = -np.inf
    result = run(name, rows, axis, layout)

    expected = reference_function(name)(rows, axis=-1)
    assert_matches_reference(
        name, result, expected, np.where(np.isinf(rows), 0, rows), n, out_dtype(dtype)
    )
    if name != "logsumexp":
        at_neginf = np.isneginf(rows)
        np.testing.assert_array_equal(result[at_neginf], expected_empty_value(name))


# --- huge finite values and equal values --------------------------------------


def check_huge_values_do_not_overflow(name, dtype, layout, axis, rng, n):
    big = np.finfo(dtype).max
    rows = np.empty((4, n), dtype=dtype)
    rows[0] = big
    rows[1] = -big
    rows[2] = -big
    rows[2, n // 2] = big
    rows[3] = big * rng.uniform(0.5, 1.0, n)
    result = run(name, rows, axis, layout)
    dtype = out_dtype(dtype)

    if name == "softmax":
        share = np.full(n, 1 / np.longdouble(n))
        assert_within_ulp(result[0], share, ACCURACY_ULP)
        assert_within_ulp(result[1], share, ACCURACY_ULP)
        one_hot = np.zeros(n, dtype=dtype)
        one_hot[n // 2] = 1
        np.testing.assert_array_equal(result[2], one_hot)
        assert np.all(np.isfinite(result[3])), "softmax of huge values overflowed"
        assert abs(float(np.sum(result[3], dtype=np.float64)) - 1) < 1e-2
    elif name == "log_softmax":
        log_share = np.full(n, -np.log(np.longdouble(n)))
        assert_within_ulp(result[0], log_share, ACCURACY_ULP)
        assert_within_ulp(result[1], log_share, ACCURACY_ULP)
        assert result[2, n // 2] == 0, "the only large entry has log_softmax 0"
        assert np.all(np.isfinite(result[3])), "log_softmax of huge values overflowed"
    else:
        # max + log(n) and -max + log(n) round back to +-max in every float dtype.
        np.testing.assert_array_equal(result[:3], [big, -big, big])
        assert np.isfinite(result[3]), "logsumexp of huge values overflowed"


def check_equal_values_share_equally(name, dtype, layout, axis, rng, n):
    info = np.finfo(dtype)
    constants = [0.0, 1.0, 7.25, 88.5, float(info.smallest_subnormal), -1e4]
    constants = [c for c in constants if abs(c) <= info.max]
    rows = np.empty((len(constants) + 1, n), dtype=dtype)
    for row, c in enumerate(constants):
        rows[row] = c
    # A random row with the same value planted at each position.
    rows[-1] = finite_rows(rng, 1, n, dtype)[0]
    spots = positions(n)
    rows[-1, spots] = rows[-1, n // 3]
    spots = sorted(set(spots) | {n // 3})
    result = run(name, rows, axis, layout)

    if name == "logsumexp":
        for row in range(len(constants)):
            exact = np.longdouble(rows[row, 0]) + np.log(np.longdouble(n))
            assert_within_ulp(result[row : row + 1], np.array([exact]), ACCURACY_ULP)
        return
    for row, c in enumerate(constants):
        np.testing.assert_array_equal(
            result[row], result[row, 0], err_msg=f"unequal shares of {c}, n={n}"
        )
    planted = result[-1, spots]
    np.testing.assert_array_equal(
        planted, planted[0], err_msg=f"unequal results at {spots}, n={n}"
    )
    if name == "softmax":
        exact = np.full(n, 1 / np.longdouble(n))
    else:
        exact = np.full(n, -np.log(np.longdouble(n)))
    assert_within_ulp(result[0], exact, ACCURACY_ULP)


RULES = {
    "nan": check_nan_makes_slice_nan,
    "posinf": check_posinf_entries_share,
    "all_neginf": check_all_neginf_slice,
    "all_excluded": check_all_excluded_slice,
    "excluded_entries": check_excluded_entries_take_no_part,
    "neginf_entries": check_neginf_entries_get_zero,
    "huge_values": check_huge_values_do_not_overflow,
    "equal_values": check_equal_values_share_equally,
}


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("dtype, layout", DTYPE_LAYOUTS)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
@pytest.mark.parametrize("rule", list(RULES))
def test_special_value_rule(rng, rule, name, dtype, layout, axis):
    for n in LENGTHS:
        RULES[rule](name, dtype, layout, axis, rng, n)


@pytest.mark.parametrize("name", FUNCTION_NAMES)
@pytest.mark.parametrize("rule", list(RULES))
def test_special_value_rule_on_simd_path(simd_path, rng, rule, name):
    for dtype in (np.float32, np.float64):
        for axis in (-1, 0):
            for n in (1, 2, 7, 8, 9, 16) + LENGTHS:
                if rule == "equal_values" or n >= 3:
                    RULES[rule](name, dtype, "C", axis, rng, n)


# --- empty slices and 0-d inputs ----------------------------------------------

EMPTY_CASES = [
    pytest.param((0,), 0, id="0-axis0"),
    pytest.param((0,), None, id="0-axisNone"),
    pytest.param((3, 0), -1, id="3x0-axis-1"),
    pytest.param((3, 0), 0, id="3x0-axis0"),
    pytest.param((0, 3), 0, id="0x3-axis0"),
    pytest.param((2, 0, 4), (1, 2), id="2x0x4-axis(1,2)"),
    pytest.param((2, 0), None, id="2x0-axisNone"),
]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int64])
@pytest.mark.parametrize("shape, axis", EMPTY_CASES)
def test_logsumexp_of_empty_slice_is_neginf(shape, axis, dtype):
    x = np.zeros(shape, dtype=dtype)
    got = fast_function("logsumexp")(x, axis=axis)
    expected_shape = np.sum(x, axis=axis).shape
    assert got.shape == expected_shape
    np.testing.assert_array_equal(got, np.full(expected_shape, -np.inf))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int64])
@pytest.mark.parametrize("shape, axis", EMPTY_CASES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_empty_input_gives_empty_result(name, shape, axis, dtype):
    x = np.zeros(shape, dtype=dtype)
    got = fast_function(name)(x, axis=axis)
    assert got.shape == shape
    assert got.dtype == (np.float64 if dtype == np.int64 else dtype)


ZERO_D_VALUES = [1.5, 0.0, -7.0, "max", "-max", "nan", "inf", "-inf"]


def zero_d_input(value, dtype):
    info = np.finfo(dtype)
    named = {"max": info.max, "-max": -info.max}
    return np.array(named.get(value, value), dtype=dtype)


def expected_zero_d(name, x):
    if np.isnan(x):
        return np.nan
    if name == "logsumexp":
        return x[()]
    if np.isneginf(x):
        return expected_empty_value(name)
    return 1.0 if name == "softmax" else 0.0


@pytest.mark.parametrize("axis", [-1, 0, None])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("value", ZERO_D_VALUES)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_zero_d_input_is_one_element_slice(name, value, dtype, axis):
    x = zero_d_input(value, dtype)
    got = fast_function(name)(x, axis=axis)
    assert np.shape(got) == ()
    assert np.asarray(got).dtype == dtype
    np.testing.assert_array_equal(got, expected_zero_d(name, x))


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_single_element_slices(name):
    x = np.array([[3.0], [np.inf], [-np.inf], [np.nan], [-1e308]])
    got = fast_function(name)(x, axis=-1)
    expected = [expected_zero_d(name, np.array(v)) for v in x[:, 0]]
    if name == "logsumexp":
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_array_equal(got[:, 0], expected)


def test_ulp_distance_counts_steps_across_zero():
    tiny = np.finfo(np.float32).smallest_subnormal
    a = np.array([tiny, -0.0, np.inf, np.nan, 1.0], dtype=np.float32)
    b = np.array(
        [
            -tiny,
            0.0,
            np.finfo(np.float32).max,
            np.nan,
            np.nextafter(np.float32(1), np.float32(2)),
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(ulp_distance(a, b), [2, 0, 2.0**62, 0, 1])
