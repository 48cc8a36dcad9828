"""Determinism across thread counts, batches and positions, and every SIMD path.

A slice's result must be bitwise identical whatever the thread count, the batch
it sits in, its position in the array and the alignment of its first element.
Each SIMD path the CPU supports must match the reference and keep the accuracy
bound.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from _support import (
    ACCURACY_ULP,
    FUNCTION_NAMES,
    LAYOUTS,
    SIMD_PATHS,
    assert_within_ulp,
    compare_with_reference,
    fast_function,
    oracle,
)

import fastsoftmax

FLOATS = [
    pytest.param(np.float32, id="float32"),
    pytest.param(np.float64, id="float64"),
]

#: Shapes large enough that the kernel splits the work over threads: a few
#: million elements, many times any sensible serial threshold.
THREADED_CASES = [
    pytest.param((1024, 2048), -1, id="1024x2048-axis-1"),
    pytest.param((2048, 1024), 0, id="2048x1024-axis0"),
    pytest.param((4, 2**19), -1, id="4x2pow19-axis-1"),
    pytest.param((16, 64, 1024), 1, id="16x64x1024-axis1"),
]


@pytest.mark.parametrize("shape, axis", THREADED_CASES)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_thread_counts_give_identical_bits(rng, name, dtype, shape, axis):
    x = (5 * rng.standard_normal(shape)).astype(dtype)
    function = fast_function(name)

    one = function(x, axis=axis, threads=1)
    two = function(x, axis=axis, threads=2)
    default = function(x, axis=axis)
    three = function(x, axis=axis, threads=3)

    np.testing.assert_array_equal(two, one, err_msg="threads=2 differs from 1")
    np.testing.assert_array_equal(default, one, err_msg="threads=None differs")
    np.testing.assert_array_equal(three, one, err_msg="threads=3 differs from 1")


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_thread_counts_with_where_and_specials(rng, name):
    x = rng.standard_normal((512, 3001)).astype(np.float32)
    x[::7, 5] = np.nan
    x[::11, 100] = np.inf
    x[::13] = -np.inf
    where = rng.random(x.shape) < 0.9
    one = fast_function(name)(x, where=where, threads=1)
    two = fast_function(name)(x, where=where, threads=2)
    np.testing.assert_array_equal(two, one)


# --- a slice gives the same bits wherever it sits ---------------------------------


@pytest.mark.parametrize("n", [1, 7, 16, 17, 33, 781, 1023, 4099])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_row_alone_equals_row_in_batch(rng, name, dtype, n):
    batch = (4 * rng.standard_normal((37, n))).astype(dtype)
    function = fast_function(name)
    in_batch = function(batch, axis=-1)

    for index in (0, 1, 18, 36):
        alone = function(batch[index].copy(), axis=-1)
        np.testing.assert_array_equal(
            in_batch[index], alone, err_msg=f"row {index} of {n}"
        )
        as_batch_of_one = function(batch[index : index + 1], axis=-1)
        np.testing.assert_array_equal(
            in_batch[index], as_batch_of_one[0], err_msg=f"row {index} of {n}"
        )


@pytest.mark.parametrize("n", [17, 33, 1023])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_row_at_any_alignment(rng, name, dtype, n):
    row = (4 * rng.standard_normal(n)).astype(dtype)
    buffer = np.zeros(n + 16, dtype=dtype)
    function = fast_function(name)
    buffer[:n] = row
    first = function(buffer[:n])

    for offset in range(1, 16):
        buffer[...] = 0
        buffer[offset : offset + n] = row
        np.testing.assert_array_equal(
            function(buffer[offset : offset + n]), first, err_msg=f"offset {offset}"
        )


@pytest.mark.parametrize("n", [17, 1023])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_row_at_byte_offset(rng, name, dtype, n):
    # A view into a byte buffer at offset 1 is not aligned to its itemsize.
    row = (4 * rng.standard_normal(n)).astype(dtype)
    aligned = fast_function(name)(row)
    unaligned = fast_function(name)(LAYOUTS["unaligned"](row))
    np.testing.assert_array_equal(unaligned, aligned)


@pytest.mark.parametrize("cols", [1, 3, 8, 17, 64, 129])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_column_alone_equals_column_in_c_array(rng, name, dtype, cols):
    # axis 0 of a C array is vectorised across columns; each column must still
    # get the bits it gets alone.
    x = (4 * rng.standard_normal((301, cols))).astype(dtype)
    function = fast_function(name)
    together = function(x, axis=0)

    for column in sorted({0, cols // 2, cols - 1}):
        alone = function(x[:, column].copy(), axis=0)
        as_one_column = function(x[:, column : column + 1], axis=0)
        got = together[column] if name == "logsumexp" else together[:, column]
        one = as_one_column[0] if name == "logsumexp" else as_one_column[:, 0]
        np.testing.assert_array_equal(got, alone, err_msg=f"column {column}")
        np.testing.assert_array_equal(got, one, err_msg=f"column {column}")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_slice_in_any_batch_position(rng, name, dtype):
    row = (4 * rng.standard_normal(513)).astype(dtype)
    alone = fast_function(name)(row)
    for rows, index in ((2, 1), (9, 4), (64, 63)):
        batch = (4 * rng.standard_normal((rows, 513))).astype(dtype)
        batch[index] = row
        got = fast_function(name)(batch)[index]
        np.testing.assert_array_equal(got, alone, err_msg=f"row {index} of {rows}")


# --- every SIMD path ------------------------------------------------------------------


def test_simd_paths_include_generic():
    assert "generic" in SIMD_PATHS


def test_set_simd_returns_previous(simd_path):
    previous = fastsoftmax.set_simd("generic")
    assert previous == simd_path
    assert fastsoftmax.get_config()["simd"] == "generic"
    fastsoftmax.set_simd(simd_path)


def test_set_simd_selects_path(simd_path):
    assert fastsoftmax.get_config()["simd"] == simd_path


@pytest.mark.parametrize("name", ["avx1024", "", "AVX2x", "native"])
def test_set_simd_rejects_unknown_path(name):
    with pytest.raises(ValueError, match="(?i)simd|path"):
        fastsoftmax.set_simd(name)


@pytest.mark.parametrize("name", ["avx2", "avx512"])
def test_set_simd_rejects_unsupported_path(name):
    if name in SIMD_PATHS:
        pytest.skip(f"this CPU runs {name}")
    with pytest.raises(ValueError, match=name):
        fastsoftmax.set_simd(name)


SIMD_GRID = [
    pytest.param((1023,), -1, id="1023-axis-1"),
    pytest.param((5, 17), -1, id="5x17-axis-1"),
    pytest.param((33, 7), 0, id="33x7-axis0"),
    pytest.param((4, 5, 33), (0, 2), id="4x5x33-axis(0,2)"),
    pytest.param((3, 64), None, id="3x64-axisNone"),
]


@pytest.mark.parametrize("shape, axis", SIMD_GRID)
@pytest.mark.parametrize("layout", ["C", "F", "negative_strides", "unaligned"])
@pytest.mark.parametrize(
    "dtype", [np.float16, np.float32, np.float64], ids=lambda d: np.dtype(d).name
)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_simd_path_matches_reference(simd_path, rng, name, dtype, layout, shape, axis):
    x = LAYOUTS[layout]((3 * rng.standard_normal(shape)).astype(dtype))
    compare_with_reference(name, x, axis)


@pytest.mark.parametrize("n", [1, 3, 8, 15, 16, 17, 31, 33, 1024, 4099])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_simd_path_accuracy(simd_path, rng, name, dtype, n):
    rows = (20 * rng.standard_normal((6, n))).astype(dtype)
    got = fast_function(name)(rows, axis=-1)
    assert_within_ulp(got, oracle(name, rows), ACCURACY_ULP)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_simd_path_accuracy_axis0(simd_path, rng, name, dtype):
    x = (20 * rng.standard_normal((1024, 19))).astype(dtype)
    got = fast_function(name)(x, axis=0)
    rows = np.ascontiguousarray(x.T)
    assert_within_ulp(got.T, oracle(name, rows), ACCURACY_ULP)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_simd_paths_keep_determinism(simd_path, rng, name, dtype):
    x = (4 * rng.standard_normal((300, 1000))).astype(dtype)
    batch = fast_function(name)(x, threads=2)
    np.testing.assert_array_equal(fast_function(name)(x, threads=1), batch)
    np.testing.assert_array_equal(fast_function(name)(x[123]), batch[123])


# --- environment variables ----------------------------------------------------------


def config_in_subprocess(environment):
    """Return get_config() of a fresh interpreter run with extra ``environment``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FASTSOFTMAX_")
    }
    env.update(environment)
    code = "import json, fastsoftmax; print(json.dumps(fastsoftmax.get_config()))"
    completed = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(completed.stdout)


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_simd_environment_variable_selects_path(path):
    config = config_in_subprocess({"FASTSOFTMAX_SIMD": path})
    assert config["simd"] == path


def test_default_simd_path_is_last_supported():
    # simd_supported lists the paths from the most portable to the fastest.
    config = config_in_subprocess({})
    assert config["simd"] == SIMD_PATHS[-1]


@pytest.mark.parametrize("threads", [1, 3])
def test_threads_environment_variable_sets_default(threads):
    config = config_in_subprocess({"FASTSOFTMAX_NUM_THREADS": str(threads)})
    if not config["openmp"]:
        pytest.skip("built without OpenMP")
    assert config["threads"] == threads


def test_config_keys():
    config = fastsoftmax.get_config()
    expected = {"simd", "simd_supported", "openmp", "threads", "version"}
    assert expected <= set(config)


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5"])
def test_invalid_thread_environment_uses_cpu_count(value):
    default = config_in_subprocess({})["threads"]
    config = config_in_subprocess({"FASTSOFTMAX_NUM_THREADS": value})
    assert config["threads"] == default


def test_invalid_simd_environment_keeps_best_path():
    best = config_in_subprocess({})["simd"]
    config = config_in_subprocess({"FASTSOFTMAX_SIMD": "sse"})
    assert config["simd"] == best


def test_set_simd_ignores_letter_case():
    name = fastsoftmax.get_config()["simd"]
    previous = fastsoftmax.set_simd(name.upper())
    try:
        assert fastsoftmax.get_config()["simd"] == name
    finally:
        fastsoftmax.set_simd(previous)


def test_set_simd_rejects_non_string():
    with pytest.raises(TypeError, match="name"):
        fastsoftmax.set_simd(2)
