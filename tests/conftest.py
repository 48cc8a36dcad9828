"""Fixtures shared by the test modules."""

import numpy as np
import pytest
from _support import SIMD_PATHS

import fastsoftmax


@pytest.fixture
def rng():
    """Return a generator with a fixed seed, so every failure reproduces."""
    return np.random.default_rng(20260415)


@pytest.fixture(params=SIMD_PATHS)
def simd_path(request):
    """Force each supported SIMD path in turn and restore the previous one after."""
    previous = fastsoftmax.set_simd(request.param)
    yield request.param
    fastsoftmax.set_simd(previous)


@pytest.fixture(autouse=True)
def restore_simd_path():
    """Check that no test leaves a different SIMD path selected than it found."""
    before = fastsoftmax.get_config()["simd"]
    yield
    after = fastsoftmax.get_config()["simd"]
    if after != before:
        fastsoftmax.set_simd(before)
        pytest.fail(f"SIMD path changed from {before!r} to {after!r} and was restored")
