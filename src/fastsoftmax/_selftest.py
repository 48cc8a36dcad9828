"""Self-test of the installed build, run by ``python -m fastsoftmax check``.

Every SIMD path the CPU supports is forced in turn with ``set_simd`` and compared
against the plain NumPy functions in :mod:`fastsoftmax.reference` on random and
special-value inputs. The tolerances are loose enough for the reference's own
rounding (it exponentiates a rounded ``x - max``) and tight enough to catch a wrong
kernel: a broken build gives errors of whole units, not of a few hundred ulp.
The accuracy bound itself is checked by the test suite, not here.
"""

import numpy as np

import fastsoftmax
from fastsoftmax import reference

FUNCTIONS = ("softmax", "log_softmax", "logsumexp")
DTYPES = (np.float16, np.float32, np.float64)

# Tolerances in units of the dtype's machine epsilon. float16 is computed in
# float32 and rounded once, so it may differ from the reference by a rounding step.
ULPS = {np.dtype(np.float16): 2, np.dtype(np.float32): 64, np.dtype(np.float64): 64}


def random_inputs(dtype, rng):
    """Return (label, x, keyword arguments) triples of random scores."""

    def scores(shape):
        return (rng.standard_normal(shape) * 4).astype(dtype)

    wide = scores((7, 1000))
    mask = rng.random((7, 1000)) < 0.7
    return [
        ("(1,)", scores((1,)), {"axis": -1}),
        ("0-d", scores(()), {}),
        ("(5, 3) axis=0", scores((5, 3)), {"axis": 0}),
        ("(7, 1000)", wide, {"axis": -1}),
        ("(7, 1000) axis=0", wide, {"axis": 0}),
        ("(7, 1000) + 80", wide + dtype(80), {"axis": -1}),
        ("(7, 1000) with where", wide, {"axis": -1, "where": mask}),
        ("(3, 4, 129) axis=(0, 2)", scores((3, 4, 129)), {"axis": (0, 2)}),
        ("(33, 17) axis=None", scores((33, 17)), {"axis": None}),
        ("(1000, 7) transposed", scores((1000, 7)).T, {"axis": -1}),
        ("(9, 900)[:, ::3]", scores((9, 900))[:, ::3], {"axis": -1}),
        ("(2, 70000)", scores((2, 70000)), {"axis": -1}),
    ]


def special_inputs(dtype, rng):
    """Return (label, x, keyword arguments) triples with NaN, inf and extremes."""
    big = np.finfo(dtype).max / 2
    tiny = np.finfo(dtype).smallest_subnormal
    cases = []
    for width in (37, 1029):
        x = (rng.standard_normal((11, width)) * 4).astype(dtype)
        x[1, 5] = np.nan
        x[2, 3] = np.inf
        x[3, [0, width - 1]] = np.inf
        x[4, [1, 2]] = [np.inf, np.nan]
        x[5, ::2] = -np.inf
        x[6, :] = -np.inf
        x[7, :] = 0
        x[8, :2] = [big, -big]
        x[9, :] = tiny
        x[10, width - 1] = np.inf
        cases.append((f"(11, {width}) axis=-1", x, {"axis": -1}))
        cases.append((f"(11, {width}).T axis=0", x.T.copy(), {"axis": 0}))
    excluded = np.ones((4, 37), dtype=bool)
    excluded[2, :] = False
    cases += [
        ("(3, 0)", np.zeros((3, 0), dtype), {"axis": -1}),
        ("(0, 5)", np.zeros((0, 5), dtype), {"axis": -1}),
        ("(4, 37) row excluded by where", cases[0][1][:4], {"where": excluded}),
    ]
    return cases


def compare(actual, expected, function):
    """Return None if ``actual`` matches ``expected``, else a description of the gap.

    NaN must sit where the reference has NaN and infinities must match exactly.
    Finite softmax values may differ relatively by the dtype's tolerance;
    log-domain values by that tolerance times ``1 + |expected|``.
    """
    actual = np.asarray(actual)
    if actual.shape != expected.shape:
        return f"shape {actual.shape}, expected {expected.shape}"
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype}, expected {expected.dtype}"
    work_actual = actual.astype(np.float64)
    work_expected = expected.astype(np.float64)
    tolerance = ULPS[expected.dtype] * float(np.finfo(expected.dtype).eps)
    if function == "softmax":
        allowed = tolerance * np.abs(work_expected) + np.finfo(expected.dtype).tiny
    else:
        allowed = tolerance * (1 + np.abs(work_expected))
    with np.errstate(invalid="ignore"):
        special = ~np.isfinite(work_expected) | ~np.isfinite(work_actual)
        same_special = (work_actual == work_expected) | (
            np.isnan(work_actual) & np.isnan(work_expected)
        )
        close = np.abs(work_actual - work_expected) <= allowed
    bad = np.where(special, ~same_special, ~close)
    if not bad.any():
        return None
    first = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
    return (
        f"{int(bad.sum())} entries differ, first at {first}: got "
        f"{work_actual[first]:.9g}, expected {work_expected[first]:.9g}"
    )


def check_function(function, inputs):
    """Run ``function`` on every input and return None or the first failure."""
    fast = getattr(fastsoftmax, function)
    slow = getattr(reference, function)
    for label, x, kwargs in inputs:
        dtype = np.asarray(x).dtype
        try:
            actual = fast(x, **kwargs)
        except Exception as error:  # noqa: BLE001 - any error is a failed check
            return f"{dtype} {label}: {type(error).__name__}: {error}"
        problem = compare(actual, slow(x, **kwargs), function)
        if problem is not None:
            return f"{dtype} {label}: {problem}"
    return None


def attention_inputs(rng):
    """Return (label, q, k, v, keyword arguments) tuples for the attention check."""

    def normal(shape, dtype=np.float32):
        return rng.standard_normal(shape).astype(dtype)

    mask = rng.random((2, 3, 17, 23)) < 0.8
    mask[0, 1, 4, :] = False
    k_with_nan = normal((2, 3, 23, 16))
    k_with_nan[..., 22, :] = np.nan
    keep_all_but_last = np.ones(23, dtype=bool)
    keep_all_but_last[-1] = False
    q, k, v = normal((2, 3, 17, 16)), normal((2, 3, 23, 16)), normal((2, 3, 23, 8))
    return [
        ("float32 L=17 S=23 D=16 Dv=8", q, k, v, {}),
        (
            "float64",
            q.astype(np.float64),
            k.astype(np.float64),
            v.astype(np.float64),
            {},
        ),
        ("causal lower right", q, k, v, {"causal": True}),
        ("causal upper left", q, k, v, {"causal": "upper_left"}),
        ("boolean mask, one row fully masked", q, k, v, {"mask": mask}),
        ("float mask", q, k, v, {"mask": normal((17, 23))}),
        ("NaN in masked keys", q, k_with_nan, v, {"mask": keep_all_but_last}),
        ("scale 0.3", q, k, v, {"scale": 0.3}),
        ("return_lse", q, k, v, {"return_lse": True}),
        (
            "grouped-query, 8 query heads on 2",
            normal((1, 8, 6, 16)),
            normal((1, 2, 10, 16)),
            normal((1, 2, 10, 16)),
            {},
        ),
        ("2-D inputs, L=1", normal((1, 16)), normal((9, 16)), normal((9, 4)), {}),
    ]


def check_attention(inputs):
    """Compare ``attention`` with the reference; return None or the first failure."""
    for label, q, k, v, kwargs in inputs:
        try:
            actual = fastsoftmax.attention(q, k, v, **kwargs)
        except Exception as error:  # noqa: BLE001 - any error is a failed check
            return f"{label}: {type(error).__name__}: {error}"
        expected = reference.attention(q, k, v, **kwargs)
        if kwargs.get("return_lse"):
            pairs = [(actual[0], expected[0]), (actual[1], expected[1])]
        else:
            pairs = [(actual, expected)]
        for got, want in pairs:
            tolerance = 1e-4 if want.dtype == np.float32 else 1e-10
            if np.shape(got) != want.shape or np.asarray(got).dtype != want.dtype:
                return (
                    f"{label}: result {np.shape(got)} {np.asarray(got).dtype}, "
                    f"expected {want.shape} {want.dtype}"
                )
            if not np.allclose(got, want, rtol=tolerance, atol=tolerance):
                gap = np.nanmax(np.abs(np.asarray(got, np.float64) - want))
                return f"{label}: max abs difference {gap:.3g} above {tolerance:g}"
    return None


def check_threads(rng):
    """Return None if every function gives the same bits for 1 and 2+ threads."""
    x = (rng.standard_normal((64, 65536)) * 4).astype(np.float32)
    many = max(2, fastsoftmax.get_config()["threads"])
    for function in FUNCTIONS:
        fast = getattr(fastsoftmax, function)
        for axis in (-1, 0):
            try:
                one = fast(x, axis=axis, threads=1)
                several = fast(x, axis=axis, threads=many)
            except Exception as error:  # noqa: BLE001 - any error is a failed check
                return f"{function} axis={axis}: {type(error).__name__}: {error}"
            if one.tobytes() != several.tobytes():
                return f"{function} axis={axis}: threads=1 and threads={many} differ"
    return None


def run_checks(stream):
    """Run every check, print one line per check and a summary; return the exit code.

    Parameters
    ----------
    stream : file
        Where the lines go.

    Returns
    -------
    int
        0 when every check passed, 1 otherwise.
    """
    config = fastsoftmax.get_config()
    paths = list(config["simd_supported"])
    has_attention = hasattr(fastsoftmax, "attention") and hasattr(
        reference, "attention"
    )
    print(
        f"fastsoftmax {config['version']} self-test: SIMD paths {', '.join(paths)}; "
        f"OpenMP {'yes' if config['openmp'] else 'no'}; "
        f"{config['threads']} threads by default",
        file=stream,
    )
    outcomes = []

    def report(path, subject, what, problem):
        outcomes.append(problem is None)
        status = "PASS" if problem is None else "FAIL"
        detail = what if problem is None else f"{what}: {problem}"
        print(f"{status}  {path:<8} {subject:<12} {detail}", file=stream)
        stream.flush()

    dtype_names = ", ".join(np.dtype(dtype).name for dtype in DTYPES)
    original = config["simd"]
    try:
        for path in paths:
            fastsoftmax.set_simd(path)
            rng = np.random.default_rng(0)
            for function in FUNCTIONS:
                randoms = [i for d in DTYPES for i in random_inputs(d, rng)]
                problem = check_function(function, randoms)
                report(path, function, f"random inputs ({dtype_names})", problem)
                specials = [i for d in DTYPES for i in special_inputs(d, rng)]
                problem = check_function(function, specials)
                report(path, function, f"special values ({dtype_names})", problem)
            if has_attention:
                problem = check_attention(attention_inputs(rng))
                report(path, "attention", "against reference.attention", problem)
    finally:
        fastsoftmax.set_simd(original)

    rng = np.random.default_rng(1)
    report(original, "threads", "same bits for every thread count", check_threads(rng))
    if not has_attention:
        print("SKIP  attention not available in this build", file=stream)

    failed = outcomes.count(False)
    print(f"check: {outcomes.count(True)} passed, {failed} failed", file=stream)
    return 1 if failed else 0
