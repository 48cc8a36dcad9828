"""Header, Markdown tables and the progress line of the benchmark report."""

import datetime
import os
import platform
import sys

import numpy as np

import fastsoftmax


def usable_cpu_count():
    """Return the number of CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_model():
    """Return the CPU model name, or ``platform.processor()`` where unknown."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment_lines(command, thread_counts, peers):
    """Return the Markdown bullet lines that describe the machine and versions.

    Parameters
    ----------
    command : str
        The command line that started the run.
    thread_counts : sequence of int
        Thread counts measured.
    peers : Peers
        The peer libraries found.
    """
    config = fastsoftmax.get_config()
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [
        f"- Command: `{command}`",
        f"- Date: {now:%Y-%m-%d %H:%M} UTC",
        f"- CPU: {cpu_model()}, {usable_cpu_count()} usable logical CPUs",
        f"- OS: {platform.system()} {platform.release()} ({platform.machine()})",
        f"- Python {platform.python_version()}, NumPy {np.__version__}, "
        f"fastsoftmax {fastsoftmax.__version__}",
        f"- SciPy: {peers.scipy_version or 'not installed'}",
        f"- PyTorch: {peers.torch_description or 'not installed'}",
        f"- fastsoftmax SIMD path: {config['simd']} "
        f"(supported: {', '.join(config['simd_supported'])})",
        f"- fastsoftmax OpenMP: {'yes' if config['openmp'] else 'no'}, "
        f"default threads: {config['threads']}",
        f"- Threads measured: {', '.join(str(t) for t in thread_counts)}",
        f"- NumPy BLAS threads: {peers.blas_description}",
        "- "
        + load_average_text(
            "at start",
            "1-minute average, near 0 on an idle machine; other processes that "
            "compete for the CPUs slow the multi-thread rows most",
        ),
    ]
    return lines


def load_average_text(when, note):
    """Return the 1-minute load average, which shows competing processes."""
    if not hasattr(os, "getloadavg"):
        return f"Load average {when}: unknown"
    return (
        f"Load average {when}: {os.getloadavg()[0]:.2f} over {usable_cpu_count()} "
        f"CPUs ({note})"
    )


def format_ms(seconds):
    """Format a duration in seconds as milliseconds with about 3 significant digits."""
    if seconds is None:
        return "–"
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    if ms >= 0.01:
        return f"{ms:.3f}"
    return f"{ms:.2g}"


def format_ratio(numerator, denominator):
    """Format ``numerator / denominator`` with two decimals, or a dash if missing."""
    if numerator is None or denominator is None or denominator <= 0:
        return "–"
    return f"{numerator / denominator:.2f}"


def format_mib(kib):
    """Format a size in KiB as MiB with 2 decimals below 10 MiB, else 1 decimal."""
    if kib is None:
        return "–"
    mib = kib / 1024
    return f"{mib:.2f}" if mib < 10 else f"{mib:.1f}"


def markdown_table(header, rows):
    """Return a Markdown table with right-aligned columns after the first one.

    Parameters
    ----------
    header : sequence of str
        Column titles.
    rows : sequence of sequence of str
        Cells, one sequence per row.
    """
    widths = [len(title) for title in header]
    for row in rows:
        widths = [
            max(width, len(cell)) for width, cell in zip(widths, row, strict=True)
        ]

    def line(cells):
        padded = [cells[0].ljust(widths[0])]
        padded += [
            cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * widths[0]] + ["-" * (width - 1) + ":" for width in widths[1:]]
    return "\n".join([line(header), "| " + " | ".join(rule) + " |", *map(line, rows)])


class Progress:
    """A progress line on stderr: rewritten in place on a terminal, else one per step.

    Parameters
    ----------
    total : int
        Number of steps.
    stream : file, optional
        Where to write; stderr by default.
    """

    def __init__(self, total, stream=None):
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.in_place = self.stream.isatty()
        self.width = 0

    def step(self, label):
        """Announce that step ``label`` starts."""
        self.done += 1
        text = f"[{self.done}/{self.total}] {label}"
        if self.in_place:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self):
        """Clear the progress line on a terminal."""
        if self.in_place and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
