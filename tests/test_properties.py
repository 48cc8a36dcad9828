"""Property tests: rows sum to 1, shift invariance, log_softmax = log(softmax).

Hypothesis draws the rows; ``max_examples`` stays small to keep the suite fast.
"""

import numpy as np
import pytest
from _support import ACCURACY_ULP, fast_function, ulp_distance
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FAST = settings(max_examples=40, deadline=None)

DTYPES = st.sampled_from([np.float32, np.float64])


@st.composite
def finite_rows(draw, max_rows=4, max_length=300):
    """Draw a 2-D array of finite values whose spread keeps exp(x - max) normal."""
    dtype = draw(DTYPES)
    shape = draw(
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=max_length)
    )
    shape = (min(shape[0], max_rows), shape[1])
    elements = st.floats(-30, 30, width=np.dtype(dtype).itemsize * 8)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@FAST
@given(x=finite_rows())
def test_softmax_rows_sum_to_one(x):
    n = x.shape[-1]
    got = fast_function("softmax")(x, axis=-1)
    total = np.sum(got, axis=-1, dtype=np.float64)
    eps = np.finfo(x.dtype).eps
    assert np.all(np.abs(total - 1) <= max(n, ACCURACY_ULP) * eps), total


@FAST
@given(x=finite_rows(), shift=st.integers(-64, 64))
def test_softmax_is_shift_invariant(x, shift):
    # Rounding x to multiples of 2**-8 keeps x + shift exact, so both calls see
    # the same exact softmax and each is within ACCURACY_ULP of it.
    x = np.round(x * 256) / 256
    shifted = x + x.dtype.type(shift)
    np.testing.assert_array_equal(shifted - x.dtype.type(shift), x)
    for name in ("softmax", "log_softmax"):
        got = fast_function(name)(shifted, axis=-1)
        expected = fast_function(name)(x, axis=-1)
        distance = ulp_distance(got, expected)
        assert distance.max() <= 2 * ACCURACY_ULP, (name, distance.max())


@FAST
@given(x=finite_rows(), shift=st.integers(-64, 64))
def test_logsumexp_shifts_with_input(x, shift):
    x = np.round(x * 256) / 256
    shifted = x + x.dtype.type(shift)
    got = fast_function("logsumexp")(shifted, axis=-1)
    unshifted = fast_function("logsumexp")(x, axis=-1)
    # The exact results differ by exactly ``shift``, and each computed one is
    # within ACCURACY_ULP of its own ulp.
    allowed = ACCURACY_ULP * (
        np.spacing(np.abs(got)).astype(np.float64)
        + np.spacing(np.abs(unshifted)).astype(np.float64)
    )
    difference = got.astype(np.float64) - (unshifted.astype(np.float64) + shift)
    assert np.all(np.abs(difference) <= allowed)


@FAST
@given(x=finite_rows())
def test_log_softmax_is_log_of_softmax(x):
    softmax = fast_function("softmax")(x, axis=-1)
    log_softmax = fast_function("log_softmax")(x, axis=-1)
    normal = softmax >= np.finfo(x.dtype).smallest_normal
    # softmax is within ACCURACY_ULP ulp, a relative error of ACCURACY_ULP * eps.
    # log turns it into an absolute error of the same size, and log_softmax adds
    # its own ACCURACY_ULP ulp.
    eps = np.finfo(x.dtype).eps
    logged = np.log(softmax[normal].astype(np.float64))
    expected = log_softmax[normal].astype(np.float64)
    allowed = (
        ACCURACY_ULP * eps
        + ACCURACY_ULP * np.spacing(np.abs(log_softmax[normal])).astype(np.float64)
        + 1e-300
    )
    assert np.all(np.abs(logged - expected) <= allowed)


@pytest.mark.parametrize("axis", [0, 1, (0, 1), None])
def test_softmax_over_axes_sums_to_one(rng, axis):
    x = rng.standard_normal((40, 50))
    total = np.sum(fast_function("softmax")(x, axis=axis), axis=axis)
    np.testing.assert_allclose(total, 1, rtol=0, atol=2000 * np.finfo(float).eps)
