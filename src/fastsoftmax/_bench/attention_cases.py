"""Attention cases: fastsoftmax.attention against the NumPy reference and PyTorch SDPA.

Every implementation returns a newly allocated result (PyTorch's
``scaled_dot_product_attention`` takes no ``out``), so all pay the same allocation.
``causal=True`` in fastsoftmax aligns the causal mask to the lower right (query i
may attend key j when j <= i + S - L) and PyTorch's ``is_causal=True`` to the upper
left (j <= i). The two agree when L == S; for L != S PyTorch gets an explicit
lower-right boolean mask instead.
"""

from dataclasses import asdict, dataclass

import numpy as np

import fastsoftmax

from .memory import measure_peak_memory
from .report import format_mib, format_ms, format_ratio, markdown_table
from .timing import Contestant, time_interleaved

UNAVAILABLE_MESSAGE = "attention not available in this build"


@dataclass(frozen=True)
class AttentionCase:
    """One attention benchmark: q (B, H, L, D), k and v (B, H, S, D)."""

    batch: int
    heads: int
    q_len: int
    kv_len: int
    head_dim: int
    causal: bool = False
    dtype: str = "float32"

    @property
    def is_decode(self):
        """True for one query against a key/value cache."""
        return self.q_len == 1

    @property
    def name(self):
        """Case name, the text that ``--filter`` matches."""
        kind = "attention decode" if self.is_decode else "attention"
        dims = (
            f"B{self.batch} H{self.heads} L{self.q_len} S{self.kv_len} D{self.head_dim}"
        )
        causal = " causal" if self.causal else ""
        return f"{kind} {self.dtype} {dims}{causal}"

    @property
    def label(self):
        """Short case label for the tables."""
        return self.name.removeprefix("attention ").replace(f"{self.dtype} ", "")


def full_cases():
    """Return every attention case of the full suite."""
    return [
        AttentionCase(1, 12, 512, 512, 64),
        AttentionCase(4, 8, 1024, 1024, 128),
        AttentionCase(1, 12, 2048, 2048, 64, causal=True),
        AttentionCase(1, 32, 1, 4096, 128),
    ]


def quick_cases():
    """Return the subset run by ``--quick``."""
    return [AttentionCase(1, 12, 512, 512, 64), AttentionCase(1, 32, 1, 4096, 128)]


def smoke_cases():
    """Return tiny cases that exercise every code path of the suite in milliseconds."""
    return [
        AttentionCase(1, 2, 16, 16, 8, causal=True),
        AttentionCase(1, 2, 1, 64, 8),
    ]


def attention_available():
    """Return True if this build has ``fastsoftmax.attention``."""
    return hasattr(fastsoftmax, "attention")


def make_inputs(case, seed=0):
    """Return standard normal q, k and v for ``case``."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(case.dtype)
    q = rng.standard_normal((case.batch, case.heads, case.q_len, case.head_dim), dtype)
    k = rng.standard_normal((case.batch, case.heads, case.kv_len, case.head_dim), dtype)
    v = rng.standard_normal((case.batch, case.heads, case.kv_len, case.head_dim), dtype)
    return q, k, v


def make_call(implementation, case, q, k, v, torch=None):
    """Return a function without arguments that runs one attention call.

    Parameters
    ----------
    implementation : {"fastsoftmax", "reference", "torch"}
        Which attention to call.
    case : AttentionCase
        Supplies the causal flag and the sequence lengths.
    q, k, v : ndarray
        Inputs.
    torch : module, optional
        ``torch``, required for ``"torch"``.

    Returns
    -------
    callable
        Calls the attention and returns its result as it comes.
    """
    if implementation == "fastsoftmax":
        return lambda threads=None: fastsoftmax.attention(
            q, k, v, causal=case.causal, threads=threads
        )
    if implementation == "reference":
        return lambda threads=None: fastsoftmax.reference.attention(
            q, k, v, causal=case.causal
        )
    if implementation == "torch":
        tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
        sdpa = torch.nn.functional.scaled_dot_product_attention
        if case.causal and case.q_len != case.kv_len:
            rows = torch.arange(case.q_len).unsqueeze(1)
            columns = torch.arange(case.kv_len).unsqueeze(0)
            lower_right = columns <= rows + (case.kv_len - case.q_len)
            return lambda threads=None: sdpa(tq, tk, tv, attn_mask=lower_right)
        return lambda threads=None: sdpa(tq, tk, tv, is_causal=case.causal)
    raise ValueError(f"unknown attention implementation {implementation!r}")


def outputs_agree(actual, expected):
    """Return True if two attention outputs match to a loose sanity tolerance."""
    tolerance = 1e-3 if expected.dtype == np.float32 else 1e-9
    return bool(np.allclose(actual, expected, rtol=tolerance, atol=tolerance))


@dataclass
class AttentionResult:
    """Timings, result checks and peak memory of one attention case."""

    case: AttentionCase
    timings: dict
    agrees: dict
    memory: dict
    reference_threads: tuple


def run_case(case, thread_counts, peers, settings, measure_memory=True):
    """Time every implementation of ``case`` side by side and measure peak memory.

    Parameters
    ----------
    case : AttentionCase
        The case to run.
    thread_counts : sequence of int
        Thread counts for fastsoftmax, PyTorch and the BLAS under the reference.
    peers : Peers
        Optional libraries to compare against.
    settings : TimingSettings
        Limits of the timing loop.
    measure_memory : bool, optional
        Whether to measure peak memory in subprocesses.

    Returns
    -------
    AttentionResult
    """
    q, k, v = make_inputs(case)
    latest = {}

    def keep_latest(key, call, threads):
        def run():
            latest[key] = call(threads)

        return run

    has_reference = hasattr(fastsoftmax.reference, "attention")
    implementations = ["fastsoftmax"]
    if has_reference:
        implementations.append("reference")
    if peers.torch is not None:
        implementations.append("torch")

    # The reference is NumPy code whose matrix products use NumPy's BLAS; it gets
    # a row per thread count only when the BLAS thread count can be limited.
    reference_threads = tuple(thread_counts) if peers.can_limit_blas else (None,)
    contestants = []
    for implementation in implementations:
        call = make_call(implementation, case, q, k, v, torch=peers.torch)
        counts = reference_threads if implementation == "reference" else thread_counts
        for threads in counts:
            name = implementation if threads is None else f"{implementation}@{threads}"
            contestants.append(
                Contestant(
                    name,
                    keep_latest(implementation, call, threads),
                    prepare=None
                    if threads is None
                    else (lambda threads=threads: peers.set_threads(threads)),
                )
            )
    if case.is_decode:
        k_copy, v_copy = np.empty_like(k), np.empty_like(v)

        def copy_k_and_v():
            np.copyto(k_copy, k)
            np.copyto(v_copy, v)

        contestants.append(Contestant("copy K,V", copy_k_and_v))

    timings = time_interleaved(contestants, settings)

    agrees = {}
    if has_reference:
        expected = latest["reference"]
        agrees["fastsoftmax"] = outputs_agree(latest["fastsoftmax"], expected)
        if "torch" in latest:
            agrees["torch"] = outputs_agree(latest["torch"].numpy(), expected)

    memory = {}
    if measure_memory:
        for implementation in implementations:
            memory[implementation] = measure_peak_memory(
                asdict(case), implementation, max(thread_counts)
            )
    return AttentionResult(case, timings, agrees, memory, reference_threads)


def format_results(results, thread_counts, peers):
    """Return the Markdown tables of the attention results and their notes."""
    has_reference = hasattr(fastsoftmax.reference, "attention")
    header = ["case", "threads", "fastsoftmax"]
    if has_reference:
        header.append("reference")
    if peers.torch is not None:
        header.append("torch SDPA")
    header += ["copy K,V"]
    if has_reference:
        header.append("ref/fs")
    if peers.torch is not None:
        header.append("torch/fs")
    header.append("fs/copy")

    rows = []
    mismatches = set()
    for result in results:
        mismatches |= {name for name, ok in result.agrees.items() if not ok}
        rows += _format_case_rows(result, thread_counts, peers, has_reference)
    sections = ["### attention, time\n\n" + markdown_table(header, rows)]

    if any(result.memory for result in results):
        sections.append(_format_memory_table(results, thread_counts, peers))
    legend = _legend(peers, has_reference, mismatches, thread_counts)
    if any(result.case.causal for result in results):
        legend += (
            "\n- causal: fastsoftmax `causal=True` aligns the mask to the lower right "
            "and PyTorch `is_causal=True` to the upper left. They agree when L == S; "
            "for L != S PyTorch gets the lower-right mask as a boolean `attn_mask`."
        )
    failures = [
        f"- Memory measurement of {name} on {result.case.label} failed: "
        f"{measurement['error']}"
        for result in results
        for name, measurement in result.memory.items()
        if "error" in measurement
    ]
    sections.append("\n".join([legend, *failures]))
    return "\n\n".join(sections)


def _format_case_rows(result, thread_counts, peers, has_reference):
    """Return one table row per thread count for one attention case."""
    timings = {name: timing.median for name, timing in result.timings.items()}
    flag = {name: "" if ok else " (!)" for name, ok in result.agrees.items()}
    copy = timings.get("copy K,V")
    rows = []
    for threads in thread_counts:
        fast = timings[f"fastsoftmax@{threads}"]
        row = [
            result.case.label,
            str(threads),
            format_ms(fast) + flag.get("fastsoftmax", ""),
        ]
        ref = None
        if has_reference:
            ref_key = (
                "reference"
                if None in result.reference_threads
                else f"reference@{threads}"
            )
            ref = timings[ref_key]
            row.append(format_ms(ref))
        torch = timings.get(f"torch@{threads}")
        if peers.torch is not None:
            row.append(format_ms(torch) + flag.get("torch", ""))
        row.append(format_ms(copy))
        if has_reference:
            row.append(format_ratio(ref, fast))
        if peers.torch is not None:
            row.append(format_ratio(torch, fast))
        row.append(format_ratio(fast, copy))
        rows.append(row)
    return rows


def _format_memory_table(results, thread_counts, peers):
    """Return the Markdown table of peak extra memory per call."""
    names = ["fastsoftmax", "reference", "torch"]
    titles = {
        "fastsoftmax": "fastsoftmax",
        "reference": "reference",
        "torch": "torch SDPA",
    }
    present = [n for n in names if any(n in r.memory for r in results)]
    header = ["case", "result"] + [titles[n] for n in present]
    rows = []
    for result in results:
        case = result.case
        result_kib = (
            case.batch
            * case.heads
            * case.q_len
            * case.head_dim
            * np.dtype(case.dtype).itemsize
            / 1024
        )
        row = [case.label, format_mib(result_kib)]
        for name in present:
            row.append(_format_memory_cell(result.memory.get(name)))
        rows.append(row)
    return (
        f"### attention, peak extra memory per call (MiB, {max(thread_counts)} "
        "threads)\n\n" + markdown_table(header, rows)
    )


def _format_memory_cell(measurement):
    if measurement is None:
        return "–"
    if "error" in measurement:
        return "failed"
    return format_mib(measurement["extra_kib"])


def _legend(peers, has_reference, mismatches, thread_counts):
    """Return the notes that explain the attention tables."""
    lines = [
        "Times are medians in ms per call, measured side by side in interleaved "
        "rounds after a warm-up call; float32, scale 1/sqrt(D).",
        "",
        "- fastsoftmax: `fastsoftmax.attention(q, k, v, causal=..., threads=...)` "
        "with the row's thread count.",
    ]
    if has_reference:
        lines.append(
            "- reference: `fastsoftmax.reference.attention`, the NumPy formula that "
            "builds the full score matrix."
        )
    else:
        lines.append("- reference: not available in this build, not measured.")
    if peers.torch is not None:
        lines.append(
            "- torch SDPA: `torch.nn.functional.scaled_dot_product_attention` on "
            "`torch.from_numpy` of the same arrays, `torch.set_num_threads` set to "
            "the row's thread count."
        )
    else:
        lines.append("- torch SDPA: PyTorch not installed, not measured.")
    lines += [
        f"- BLAS threads: {peers.blas_description}.",
        "- copy K,V (decode only): `np.copyto` of k and of v into preallocated "
        "arrays on one thread. It reads the key/value cache once, as decoding "
        "must, and also writes as many bytes, which attention does not.",
        "- ref/fs and torch/fs: how many times faster fastsoftmax is. "
        "fs/copy: fastsoftmax time over the K,V copy time.",
        "- Peak extra memory: growth of the peak resident set size of a fresh "
        f"process during one call at {max(thread_counts)} threads, after a warm-up "
        "call on small inputs. On Linux the peak (VmHWM) is reset just before the "
        "call; elsewhere it is the growth of `ru_maxrss`, which reads 0 when the call "
        "stays below an earlier peak. It includes the newly allocated result "
        "(the result column) and memory a library keeps for later calls, and it "
        "misses memory allocated but never touched.",
    ]
    for name in sorted(mismatches):
        lines.append(
            f"- (!): the {name} result differs from the reference beyond a 1e-3 "
            "tolerance; that time does not measure a correct result."
        )
    return "\n".join(lines)
