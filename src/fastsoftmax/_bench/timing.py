"""Interleaved wall-clock timing of several implementations of one benchmark case.

All implementations of a case are timed in rounds. Each round takes one sample of
every implementation, in an order rotated from round to round, so that a slow drift
of the machine (clock speed, other processes, cache state) affects them all alike. Each
sample runs a callable ``loops`` times, with ``loops`` chosen after a warm-up call
so that one sample lasts about ``sample_time`` seconds or more. Rounds continue until
``budget`` seconds have passed and at least ``min_rounds`` rounds are done, or
``max_rounds`` rounds are reached. The reported time is the median over rounds of
the time per call.
"""

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Contestant:
    """One implementation of a benchmark case.

    Attributes
    ----------
    name : str
        Key of the result, e.g. ``"fastsoftmax@1"``.
    call : callable
        Function without arguments that runs the implementation once.
    prepare : callable, optional
        Function without arguments run before each sample and not timed, e.g. to
        set a library's thread count.
    """

    name: str
    call: Callable[[], object]
    prepare: Callable[[], None] | None = None


@dataclass
class Timing:
    """Result of timing one contestant, in seconds per call."""

    median: float
    samples: list[float] = field(default_factory=list)
    loops: int = 1


@dataclass(frozen=True)
class TimingSettings:
    """Limits of the timing loop.

    Attributes
    ----------
    budget : float
        Seconds of timed rounds per case, after the warm-up.
    min_rounds, max_rounds : int
        Bounds on the number of rounds.
    sample_time : float
        Minimum duration in seconds of one sample; fast calls are repeated within
        a sample to reach it.
    """

    budget: float
    min_rounds: int
    max_rounds: int
    sample_time: float


FULL_SETTINGS = TimingSettings(
    budget=2.0, min_rounds=5, max_rounds=200, sample_time=5e-3
)
QUICK_SETTINGS = TimingSettings(
    budget=0.3, min_rounds=3, max_rounds=50, sample_time=2e-3
)
SMOKE_SETTINGS = TimingSettings(budget=0.0, min_rounds=1, max_rounds=1, sample_time=0.0)


def _time_sample(call, loops):
    """Return the wall-clock seconds of ``loops`` calls of ``call``."""
    start = time.perf_counter()
    for _ in range(loops):
        call()
    return time.perf_counter() - start


def time_interleaved(contestants, settings):
    """Time every contestant in interleaved rounds and return their timings.

    Parameters
    ----------
    contestants : sequence of Contestant
        Implementations of one case, with distinct names.
    settings : TimingSettings
        Budget and bounds of the timing loop.

    Returns
    -------
    dict of str to Timing
        Timing of each contestant, keyed by name.
    """
    loops = {}
    for contestant in contestants:
        if contestant.prepare is not None:
            contestant.prepare()
        # The warm-up call fills caches and pays for lazy setup and page faults.
        # When it already lasts a whole sample, it is slow enough to set loops = 1
        # without a second call; otherwise a second call calibrates ``loops``.
        once = _time_sample(contestant.call, 1)
        if once < settings.sample_time:
            once = _time_sample(contestant.call, 1)
        loops[contestant.name] = max(
            1, min(10_000, round(settings.sample_time / max(once, 1e-9)))
        )

    samples = {contestant.name: [] for contestant in contestants}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        rounds = 0
        while rounds < settings.max_rounds:
            shift = rounds % len(contestants)
            for contestant in [*contestants[shift:], *contestants[:shift]]:
                if contestant.prepare is not None:
                    contestant.prepare()
                count = loops[contestant.name]
                elapsed = _time_sample(contestant.call, count)
                samples[contestant.name].append(elapsed / count)
            rounds += 1
            spent = time.perf_counter() - start
            if rounds >= settings.min_rounds and spent >= settings.budget:
                break
    finally:
        if gc_was_enabled:
            gc.enable()

    return {
        name: Timing(statistics.median(values), values, loops[name])
        for name, values in samples.items()
    }
