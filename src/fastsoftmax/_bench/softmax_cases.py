"""Softmax and log_softmax cases: fastsoftmax against NumPy, SciPy, PyTorch and a copy.

The copy (``np.copyto`` of the input into a preallocated array) reads and writes the
same bytes once. That is the least memory traffic any softmax needs, so the ratio of
fastsoftmax to copy shows how close the kernel runs to memory bandwidth.
"""

import itertools
from dataclasses import dataclass

import numpy as np

import fastsoftmax
from fastsoftmax import reference

from .report import format_ms, format_ratio, markdown_table
from .timing import Contestant, time_interleaved

OPS = ("softmax", "log_softmax")
DTYPES = ("float32", "float64")
AXES = (-1, 0)
FULL_SHAPES = (
    (4096, 4096),
    (65536, 128),
    (1024, 1024),
    (256, 1024),
    (64, 32000),
    (8, 256000),
    (2, 2**20),
)


@dataclass(frozen=True)
class SoftmaxCase:
    """One softmax benchmark: operation, dtype, input shape and axis."""

    op: str
    dtype: str
    shape: tuple
    axis: int

    @property
    def name(self):
        """Case name, the text that ``--filter`` matches."""
        return f"{self.op} {self.dtype} {format_shape(self.shape)} axis={self.axis}"


def format_shape(shape):
    """Format a shape as ``(4096, 4096)``, with a trailing comma for one dimension."""
    return (
        "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"
    )


def full_cases():
    """Return every softmax case of the full suite."""
    return [
        SoftmaxCase(op, dtype, shape, axis)
        for op, dtype, axis, shape in itertools.product(OPS, DTYPES, AXES, FULL_SHAPES)
    ]


def quick_cases():
    """Return the subset run by ``--quick``: one case of each variant.

    Only the first case is a large array (64 MiB), and the others stay at 8 MiB or
    less. The NumPy reference takes 0.3 to 1.2 s per call on a (4096, 4096) array,
    measured on a shared 2-core AVX-512 Xeon.
    """
    return [
        SoftmaxCase("softmax", "float32", (4096, 4096), -1),
        SoftmaxCase("softmax", "float32", (1024, 1024), -1),
        SoftmaxCase("softmax", "float32", (64, 32000), -1),
        SoftmaxCase("softmax", "float32", (1024, 1024), 0),
        SoftmaxCase("log_softmax", "float32", (1024, 1024), -1),
        SoftmaxCase("softmax", "float64", (1024, 1024), -1),
    ]


def smoke_cases():
    """Return tiny cases that exercise every code path of the suite in milliseconds."""
    return [
        SoftmaxCase("softmax", "float32", (64, 256), -1),
        SoftmaxCase("log_softmax", "float64", (64, 256), 0),
    ]


def make_input(shape, dtype, seed=0):
    """Return standard normal scores times 3, a typical spread of logits."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=np.dtype(dtype))
    x *= 3
    return x


def outputs_agree(actual, expected):
    """Return True if ``actual`` matches ``expected`` to a loose sanity tolerance."""
    tolerance = 1e3 * np.finfo(expected.dtype).eps
    return bool(
        np.allclose(actual, expected, rtol=tolerance, atol=tolerance, equal_nan=True)
    )


@dataclass
class SoftmaxResult:
    """Timings of one case keyed by contestant name, and the result check."""

    case: SoftmaxCase
    timings: dict
    fastsoftmax_agrees: bool


def run_case(case, thread_counts, peers, settings):
    """Time every implementation of ``case`` side by side.

    Parameters
    ----------
    case : SoftmaxCase
        The case to run.
    thread_counts : sequence of int
        Thread counts for fastsoftmax and PyTorch.
    peers : Peers
        Optional libraries to compare against.
    settings : TimingSettings
        Limits of the timing loop.

    Returns
    -------
    SoftmaxResult
    """
    x = make_input(case.shape, case.dtype)
    axis = case.axis
    fast_function = getattr(fastsoftmax, case.op)
    reference_function = getattr(reference, case.op)
    fast_out = np.empty_like(x)
    reference_out = np.empty_like(x)
    copy_out = np.empty_like(x)

    contestants = [
        Contestant("copy", lambda: np.copyto(copy_out, x)),
        Contestant("reference", lambda: reference_function(x, axis, out=reference_out)),
    ]
    if peers.scipy_special is not None:
        scipy_function = getattr(peers.scipy_special, case.op)
        contestants.append(Contestant("scipy", lambda: scipy_function(x, axis=axis)))
    for threads in thread_counts:
        contestants.append(
            Contestant(
                f"fastsoftmax@{threads}",
                lambda threads=threads: fast_function(
                    x, axis, out=fast_out, threads=threads
                ),
            )
        )
    if peers.torch is not None:
        torch_function = getattr(peers.torch, case.op)
        torch_x = peers.torch.from_numpy(x)
        torch_out = peers.torch.empty_like(torch_x)
        for threads in thread_counts:
            contestants.append(
                Contestant(
                    f"torch@{threads}",
                    lambda: torch_function(torch_x, axis, out=torch_out),
                    prepare=lambda threads=threads: peers.set_threads(threads),
                )
            )

    timings = time_interleaved(contestants, settings)
    # Both outputs hold the result of their last timed call.
    return SoftmaxResult(case, timings, outputs_agree(fast_out, reference_out))


def format_results(results, thread_counts, peers):
    """Return the Markdown tables of ``results``, one per operation and dtype."""
    header = ["shape", "axis", "threads", "fastsoftmax", "copy", "reference"]
    if peers.scipy_special is not None:
        header.append("scipy")
    if peers.torch is not None:
        header.append("torch")
    header += ["fs/copy", "ref/fs"]
    if peers.torch is not None:
        header.append("torch/fs")

    sections = []
    any_mismatch = False
    for op, dtype in itertools.product(OPS, DTYPES):
        group = [r for r in results if r.case.op == op and r.case.dtype == dtype]
        if not group:
            continue
        rows = []
        for result in group:
            any_mismatch |= not result.fastsoftmax_agrees
            rows += _format_case_rows(result, thread_counts, peers)
        sections.append(f"### {op}, {dtype}\n\n" + markdown_table(header, rows))

    sections.append(_legend(peers, any_mismatch))
    return "\n\n".join(sections)


def _format_case_rows(result, thread_counts, peers):
    """Return one table row per thread count for one case."""
    timings = {name: timing.median for name, timing in result.timings.items()}
    copy = timings["copy"]
    ref = timings["reference"]
    rows = []
    for threads in thread_counts:
        fast = timings[f"fastsoftmax@{threads}"]
        fast_cell = format_ms(fast) + ("" if result.fastsoftmax_agrees else " (!)")
        row = [
            format_shape(result.case.shape),
            str(result.case.axis),
            str(threads),
            fast_cell,
            format_ms(copy),
            format_ms(ref),
        ]
        if peers.scipy_special is not None:
            row.append(format_ms(timings["scipy"]))
        torch = timings.get(f"torch@{threads}")
        if peers.torch is not None:
            row.append(format_ms(torch))
        row += [format_ratio(fast, copy), format_ratio(ref, fast)]
        if peers.torch is not None:
            row.append(format_ratio(torch, fast))
        rows.append(row)
    return rows


def _legend(peers, any_mismatch):
    """Return the notes that explain the softmax tables."""
    lines = [
        "Times are medians in ms per call, measured side by side in interleaved "
        "rounds after a warm-up call.",
        "",
        "- fastsoftmax: `fastsoftmax.softmax` or `log_softmax` with a preallocated "
        "`out` and `threads=` set to the row's thread count.",
        "- copy: `np.copyto` of the input into a preallocated array: one read and one "
        "write of the same bytes, the memory-bandwidth yardstick.",
        "- reference: `fastsoftmax.reference`, the plain NumPy formula, writing into "
        "`out` but allocating its temporaries.",
    ]
    if peers.scipy_special is not None:
        lines.append(
            "- scipy: `scipy.special.softmax` or `log_softmax`, which allocate "
            "their result (they take no `out`)."
        )
    else:
        lines.append("- scipy: not installed, not measured.")
    if peers.torch is not None:
        lines.append(
            "- torch: `torch.softmax` or `torch.log_softmax` on `torch.from_numpy` "
            "of the same array, with `out=` and `torch.set_num_threads` set to the "
            "row's thread count."
        )
    else:
        lines.append("- torch: PyTorch not installed, not measured.")
    lines += [
        "- copy, reference and scipy run on one thread: rows with more threads "
        "repeat their one-thread times.",
        "- fs/copy: fastsoftmax time over copy time (1.00 means copy speed). "
        "ref/fs and torch/fs: how many times faster fastsoftmax is.",
    ]
    if any_mismatch:
        lines.append(
            "- (!): the fastsoftmax result differs from the reference by more than "
            "1000 machine epsilons; that time does not measure a correct result."
        )
    return "\n".join(lines)
