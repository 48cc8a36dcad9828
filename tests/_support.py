"""Shared helpers for the test suite: ulp arithmetic, memory layouts and oracles.

Two kinds of comparison appear in the tests:

* against :mod:`fastsoftmax.reference`, which evaluates the textbook formula in the
  input's own precision and so carries its own rounding error (see
  :func:`assert_matches_reference` for the tolerance this allows);
* against an oracle computed in higher precision (``float64`` for ``float32``
  inputs, ``np.longdouble`` or mpmath for ``float64`` inputs), where the fast
  functions must stay within ``ACCURACY_ULP`` of the correctly rounded value.
"""

import math

import mpmath
import numpy as np

import fastsoftmax
from fastsoftmax import reference

#: Bound on every output of the fast functions, in ulp of the output dtype,
#: measured against the correctly rounded exact value.
ACCURACY_ULP = 4

FUNCTION_NAMES = ("softmax", "log_softmax", "logsumexp")

#: SIMD paths this CPU runs, as reported by the package at import time.
SIMD_PATHS = tuple(fastsoftmax.get_config()["simd_supported"])

#: True when ``np.longdouble`` carries at least 64 significant bits (x87 extended
#: or binary128), which makes it a sound oracle for ``float64`` results.
LONGDOUBLE_IS_EXTENDED = np.finfo(np.longdouble).nmant >= 63


def fast_function(name):
    """Return the fast function called ``name``."""
    return getattr(fastsoftmax, name)


def reference_function(name):
    """Return the reference function called ``name``."""
    return getattr(reference, name)


def work_dtype(dtype):
    """Return the dtype results of ``dtype`` inputs are computed in."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize == 2:
        return np.dtype(np.float32)
    if dtype.kind == "f":
        return dtype.newbyteorder("=")
    return np.dtype(np.float64)


def result_dtype(dtype):
    """Return the dtype results of ``dtype`` inputs are returned in."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return dtype.newbyteorder("=")
    return np.dtype(np.float64)


# ---------------------------------------------------------------------------
# ulp arithmetic
# ---------------------------------------------------------------------------

_UINT_OF_FLOAT = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def ulp_distance(a, b):
    """Return the number of representable steps between ``a`` and ``b``.

    Both arrays have the same floating dtype. ``+0.0`` and ``-0.0`` are the same
    point, so the distance from the smallest positive subnormal to ``-0.0`` is 1.
    Two NaNs are at distance 0. A NaN against a number, and an infinity against
    anything but the same infinity, are at distance ``2**62`` so that no ulp bound
    accepts them.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    assert a.dtype == b.dtype, f"dtypes differ: {a.dtype} and {b.dtype}"
    native = a.dtype.newbyteorder("=")
    a = np.array(a, dtype=native, order="C")
    b = np.array(b, dtype=native, order="C")
    uint = _UINT_OF_FLOAT[native.itemsize]
    sign_bit = uint(1) << uint(8 * native.itemsize - 1)

    bits_a = a.view(uint)
    bits_b = b.view(uint)
    magnitude_a = (bits_a & ~sign_bit).astype(np.uint64)
    magnitude_b = (bits_b & ~sign_bit).astype(np.uint64)
    same_sign = (bits_a & sign_bit) == (bits_b & sign_bit)
    zero_involved = (magnitude_a == 0) | (magnitude_b == 0)

    # Same sign, or one side a zero of either sign: the steps are the difference of
    # the magnitudes. Opposite signs: the steps down to zero and back up.
    difference = np.maximum(magnitude_a, magnitude_b) - np.minimum(
        magnitude_a, magnitude_b
    )
    distance = np.where(
        same_sign | zero_involved, difference, magnitude_a + magnitude_b
    ).astype(np.float64)

    far = float(2**62)
    nan_a = np.isnan(a)
    nan_b = np.isnan(b)
    distance = np.where(nan_a & nan_b, 0.0, distance)
    distance = np.where(nan_a ^ nan_b, far, distance)
    infinite = (np.isinf(a) | np.isinf(b)) & ~(nan_a | nan_b)
    distance = np.where(infinite & (a != b), far, distance)
    distance = np.where(infinite & (a == b), 0.0, distance)
    return distance


def ulp_at(exact, dtype):
    """Return the ulp of ``dtype`` at the real values ``exact``.

    ``exact`` is an array in a wider type (float64 or longdouble). The ulp of a
    subnormal or zero value is the smallest subnormal of ``dtype``; infinities get
    the ulp of the largest binade.
    """
    info = np.finfo(dtype)
    magnitude = np.abs(np.asarray(exact))
    magnitude = np.where(np.isfinite(magnitude), magnitude, float(info.max))
    _, exponent = np.frexp(magnitude)
    # magnitude = m * 2**exponent with 0.5 <= m < 1, so floor(log2) = exponent - 1.
    binade = np.where(magnitude == 0, info.minexp, exponent - 1)
    binade = np.maximum(binade, info.minexp)
    return np.ldexp(np.ones_like(magnitude), (binade - info.nmant).astype(np.int32))


def correctly_rounded(exact, dtype):
    """Return ``exact`` (float64, longdouble or a list of mpf) rounded to ``dtype``.

    Rounding float64 to float32 or longdouble to float64 is a single rounding.
    mpmath values go through float64 first, a double rounding that can move a
    float32 result by one ulp only when the float64 value lands exactly on a
    float32 midpoint.
    """
    if isinstance(exact, list):
        exact = np.array([float(value) for value in exact], dtype=np.float64)
    return np.asarray(exact).astype(dtype)


def describe_worst(distance, got, expected, x=None):
    """Return a message naming the largest ulp distance and where it occurs."""
    flat_index = int(np.argmax(distance))
    index = (
        np.unravel_index(flat_index, np.shape(distance)) if np.ndim(distance) else ()
    )
    message = (
        f"max ulp error {distance.max():.6g} at index {index}: "
        f"got {np.asarray(got)[index]!r}, expected {np.asarray(expected)[index]!r}"
    )
    if x is not None and np.size(x) <= 16:
        message += f"; input {np.asarray(x)!r}"
    return message


def assert_within_ulp(got, exact, bound, x=None):
    """Assert every element of ``got`` lies within ``bound`` ulp of ``exact``.

    ``exact`` is the oracle in a wider type. It is rounded to ``got.dtype`` and the
    distance is counted in representable steps. Zeros, subnormals and infinities
    are therefore measured exactly, and an infinity matches only itself.
    """
    got = np.asarray(got)
    expected = correctly_rounded(exact, got.dtype)
    distance = ulp_distance(got, expected)
    if distance.size == 0:
        return
    assert distance.max() <= bound, describe_worst(distance, got, expected, x)


def assert_same_up_to_accuracy(got, expected):
    """Assert two results of the fast functions differ by at most 2 * ACCURACY_ULP.

    Both are within ``ACCURACY_ULP`` of the same exact value, so they are within
    twice that of each other, whatever order the kernel summed in.
    """
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.shape == expected.shape, f"shape {got.shape} != {expected.shape}"
    assert got.dtype == expected.dtype, f"dtype {got.dtype} != {expected.dtype}"
    distance = ulp_distance(got, expected)
    if distance.size == 0:
        return
    assert distance.max() <= 2 * ACCURACY_ULP, describe_worst(distance, got, expected)


# ---------------------------------------------------------------------------
# Memory layouts: the same logical values in differently laid out memory
# ---------------------------------------------------------------------------


def layout_c(values):
    return np.ascontiguousarray(values).copy()


def layout_f(values):
    return np.asfortranarray(values).copy(order="K")


def layout_transposed(values):
    """Return a view with reversed axes of a C array holding ``values``."""
    return np.ascontiguousarray(np.transpose(values)).copy().T


def layout_negative(values):
    """Return a view with a negative stride on every axis."""
    axes = tuple(range(np.ndim(values)))
    return np.flip(np.flip(values, axis=axes).copy(), axis=axes)


def layout_strided(values):
    """Return a view that takes every second element of a larger array."""
    values = np.asarray(values)
    big = np.zeros(tuple(2 * n + 1 for n in values.shape), dtype=values.dtype)
    view = big[(Ellipsis, *(slice(1, None, 2) for _ in values.shape))]
    view[...] = values
    return view


def layout_unaligned(values):
    """Return a C-ordered view that starts one byte into a byte buffer."""
    values = np.asarray(values)
    raw = np.zeros(values.nbytes + values.dtype.itemsize + 1, dtype=np.uint8)
    view = raw[1 : 1 + values.nbytes].view(values.dtype).reshape(values.shape)
    view[...] = values
    return view


def layout_byteswapped(values):
    """Return a copy stored in the opposite byte order."""
    values = np.asarray(values)
    return values.astype(values.dtype.newbyteorder("S"))


LAYOUTS = {
    "C": layout_c,
    "F": layout_f,
    "transposed": layout_transposed,
    "negative_strides": layout_negative,
    "strided": layout_strided,
    "unaligned": layout_unaligned,
    "byteswapped": layout_byteswapped,
}


# ---------------------------------------------------------------------------
# Comparison against the reference
# ---------------------------------------------------------------------------


def reduced_size(shape, axis):
    """Return the number of elements in each slice along ``axis``."""
    ndim = max(len(shape), 1)
    shape = tuple(shape) or (1,)
    if axis is None:
        axes = range(ndim)
    elif isinstance(axis, tuple):
        axes = axis
    else:
        axes = (axis,)
    return math.prod(shape[a % ndim] for a in axes)


def reference_error_eps(n, magnitude):
    """Return a bound on the reference's own error, in units of the work dtype's eps.

    The reference evaluates ``exp(x - max) / sum(exp(x - max))`` in the work dtype:

    * ``x - max`` rounds with relative error eps/2, which ``exp`` turns into a
      relative error of ``|x - max| * eps / 2``, up to ``magnitude * eps``;
    * ``exp``, the division and ``log`` add about one eps each;
    * the sum of ``n`` terms uses NumPy's pairwise summation, whose error grows
      like ``log2(n)`` eps from a base estimated at 16 eps, because NumPy adds
      blocks of 128 elements through 8 partial sums;
    * a reduction NumPy cannot run pairwise (several or strided axes) adds in
      sequence. Its worst case is ``n`` eps, but its error on random positive
      terms grows like ``sqrt(n)`` eps, the estimate used here.

    For softmax the bound is relative; for log_softmax and logsumexp it is
    absolute, because the error of ``log(sum)`` and of the shift do not shrink
    with the result.
    """
    if n <= 1:
        sum_eps = 0.0
    else:
        sum_eps = 16.0 + 2.0 * math.log2(n) + math.sqrt(n) / 4.0
    return 4.0 + magnitude + sum_eps


def assert_matches_reference(function_name, got, expected, x_work, n, out_dtype):
    """Assert a fast result equals the reference result up to rounding.

    Non-finite values of the reference must match exactly (NaN positions,
    infinities with their sign). Finite values may differ by the
    fast kernel's bound plus the reference's own error: ``ACCURACY_ULP`` ulp of
    the output dtype plus :func:`reference_error_eps` eps of the work dtype,
    relative for softmax and absolute for the log functions. A float16 result
    rounds a float32 computation, so it may differ by one more float16 ulp.
    """
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.shape == expected.shape, f"shape {got.shape} != {expected.shape}"
    assert got.dtype == out_dtype, f"dtype {got.dtype} != {out_dtype}"
    if got.size == 0:
        return

    finite_input = np.asarray(x_work)[np.isfinite(x_work)]
    magnitude = float(np.max(np.abs(finite_input), initial=0.0))
    eps = float(np.finfo(work_dtype(out_dtype)).eps)
    reference_eps = reference_error_eps(n, magnitude)

    nonfinite_expected = ~np.isfinite(expected)
    np.testing.assert_array_equal(
        got[nonfinite_expected],
        expected[nonfinite_expected],
        err_msg="NaN or infinity differs from the reference",
    )
    np.testing.assert_array_equal(
        np.isfinite(got), ~nonfinite_expected, err_msg="finite positions differ"
    )

    finite = np.isfinite(expected)
    got_f = got[finite].astype(np.float64)
    expected_f = expected[finite].astype(np.float64)
    slack_ulp = ACCURACY_ULP + (1 if out_dtype == np.float16 else 0)
    allowed = slack_ulp * ulp_at(expected_f, out_dtype)
    if function_name == "softmax":
        allowed = allowed + reference_eps * eps * np.abs(expected_f)
    else:
        allowed = allowed + reference_eps * eps * (1.0 + np.abs(expected_f))
    if expected_f.size == 0:
        return
    error = np.abs(got_f - expected_f)
    worst = int(np.argmax(error / allowed))
    assert np.all(error <= allowed), (
        f"{function_name}: difference {error[worst]:.3g} exceeds {allowed[worst]:.3g} "
        f"at finite element {worst}: got {got_f[worst]!r}, "
        f"reference {expected_f[worst]!r}"
    )


def compare_with_reference(function_name, x, axis=-1, **kwargs):
    """Run the fast and the reference function on ``x`` and compare the results."""
    got = fast_function(function_name)(x, axis=axis, **kwargs)
    x_array = np.asarray(x)
    # The reference receives the same values in native byte order: a byte-swapped
    # input differs from it only in layout.
    native = x_array.astype(x_array.dtype.newbyteorder("="))
    expected = reference_function(function_name)(
        x if native.dtype == x_array.dtype else native, axis=axis, **kwargs
    )
    x_work = x_array.astype(work_dtype(x_array.dtype))
    n = reduced_size(x_array.shape, axis) if x_array.size else 0
    assert_matches_reference(
        function_name, got, expected, x_work, n, result_dtype(x_array.dtype)
    )
    return got


# ---------------------------------------------------------------------------
# Oracles in higher precision
# ---------------------------------------------------------------------------


def _oracle_rows(function_name, rows, wide):
    """Return the exact results of ``rows`` (2-D, finite) along axis -1 in ``wide``.

    Every shift ``x - max`` is exact in ``wide`` unless ``x`` and ``max`` differ
    by more than 29 binades (float32 in float64) or 11 (float64 in longdouble).
    Its rounding then stays far below an ulp of the output.
    ``log(sum)`` is computed as ``log1p`` of the sum without one maximal term, so
    it stays accurate when the sum is close to 1.
    """
    rows = np.asarray(rows).astype(wide)
    row_max = rows.max(axis=-1, keepdims=True)
    shifted = rows - row_max
    terms = np.exp(shifted)
    # The sum without one maximal term (which is exactly 1) keeps its relative
    # accuracy when it is tiny, where 1 + rest would lose it.
    argmax = np.argmax(rows, axis=-1)[:, None]
    others = terms.copy()
    np.put_along_axis(others, argmax, 0, axis=-1)
    rest = others.sum(axis=-1, keepdims=True)
    log_sum = np.log1p(rest)
    if function_name == "softmax":
        return terms / (1 + rest)
    if function_name == "log_softmax":
        return shifted - log_sum
    return (row_max + log_sum)[:, 0]


def oracle(function_name, rows):
    """Return exact results for finite 2-D ``rows`` of float32 or float64, axis -1.

    float32 uses float64 arithmetic, float64 uses ``np.longdouble`` when it has
    at least 64 significant bits and mpmath otherwise (slow: keep rows short).
    """
    rows = np.asarray(rows)
    if rows.dtype == np.float32:
        return _oracle_rows(function_name, rows, np.float64)
    if LONGDOUBLE_IS_EXTENDED:
        return _oracle_rows(function_name, rows, np.longdouble)
    return np.array(
        [mpmath_oracle(function_name, row) for row in rows], dtype=np.float64
    )


def mpmath_oracle(function_name, row, digits=60):
    """Return exact results of one finite 1-D ``row`` as float64 values via mpmath.

    The results are rounded once from ``digits`` decimal digits to float64.
    """
    with mpmath.workdps(digits):
        values = [mpmath.mpf(float(v)) for v in np.asarray(row).ravel()]
        row_max = max(values)
        terms = [mpmath.exp(v - row_max) for v in values]
        total = mpmath.fsum(terms)
        if function_name == "softmax":
            result = [t / total for t in terms]
        elif function_name == "log_softmax":
            log_total = mpmath.log(total)
            result = [v - row_max - log_total for v in values]
        else:
            result = row_max + mpmath.log(total)
            return float(result)
        return np.array([float(r) for r in result], dtype=np.float64)
