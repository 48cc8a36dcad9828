"""The benchmark suite behind ``python -m fastsoftmax bench``.

The suite ships inside the package so that the command works from an installed
wheel; the scripts in the repository's ``bench/`` folder only call it.

``softmax_cases`` and ``attention_cases`` define the cases and how each is timed,
``timing`` the interleaved timing loop, ``memory`` the peak-memory measurement in a
subprocess, ``peers`` the optional libraries compared against and ``report`` the
Markdown output.
"""

import dataclasses
import sys

from . import attention_cases, softmax_cases
from .peers import Peers
from .report import Progress, environment_lines, load_average_text
from .timing import FULL_SETTINGS, QUICK_SETTINGS, SMOKE_SETTINGS

SUITES = ("softmax", "attention")


def select_cases(suite, mode, filters):
    """Return the cases of ``suite`` for ``mode`` whose names contain every filter.

    Parameters
    ----------
    suite : {"softmax", "attention"}
        Which suite.
    mode : {"full", "quick", "smoke"}
        Which case list.
    filters : sequence of str
        Substrings that a case name must all contain.
    """
    module = softmax_cases if suite == "softmax" else attention_cases
    cases = getattr(module, f"{mode}_cases")()
    return [case for case in cases if all(text in case.name for text in filters)]


def run(
    *,
    command,
    suites=SUITES,
    mode="full",
    filters=(),
    thread_counts=(1,),
    budget=None,
    use_scipy=True,
    use_torch=True,
    measure_memory=True,
    stream=None,
    progress_stream=None,
):
    """Run the selected benchmark cases and print a Markdown report.

    Parameters
    ----------
    command : str
        The command line, printed in the report header.
    suites : sequence of str, optional
        Suites to run, from ``SUITES``.
    mode : {"full", "quick", "smoke"}, optional
        Case list and timing limits.
    filters : sequence of str, optional
        Substrings that a case name must all contain.
    thread_counts : sequence of int, optional
        Thread counts to measure.
    budget : float, optional
        Seconds of timing per case; the mode's default when None.
    use_scipy, use_torch : bool, optional
        Whether to compare against SciPy and PyTorch when they are installed.
    measure_memory : bool, optional
        Whether to measure the peak memory of attention calls.
    stream, progress_stream : file, optional
        Where the report and the progress line go; stdout and stderr by default.

    Returns
    -------
    int
        0 when every selected case ran, 1 when none was selected.
    """
    stream = stream if stream is not None else sys.stdout
    settings = {
        "full": FULL_SETTINGS,
        "quick": QUICK_SETTINGS,
        "smoke": SMOKE_SETTINGS,
    }[mode]
    if budget is not None:
        settings = dataclasses.replace(settings, budget=budget)

    softmax_selected = (
        select_cases("softmax", mode, filters) if "softmax" in suites else []
    )
    attention_selected = []
    attention_missing = False
    if "attention" in suites:
        attention_selected = select_cases("attention", mode, filters)
        if attention_selected and not attention_cases.attention_available():
            attention_missing = True
            attention_selected = []
    if not softmax_selected and not attention_selected and not attention_missing:
        print("No benchmark case matches the filters; see --list.", file=sys.stderr)
        return 1

    peers = Peers(use_scipy=use_scipy, use_torch=use_torch)
    print("## fastsoftmax benchmarks\n", file=stream)
    print("\n".join(environment_lines(command, thread_counts, peers)), file=stream)
    stream.flush()

    progress = Progress(
        len(softmax_selected) + len(attention_selected), progress_stream
    )
    try:
        if softmax_selected:
            results = []
            for case in softmax_selected:
                progress.step(case.name)
                results.append(
                    softmax_cases.run_case(case, thread_counts, peers, settings)
                )
            progress.finish()
            print(
                "\n" + softmax_cases.format_results(results, thread_counts, peers),
                file=stream,
            )
            stream.flush()
        if attention_missing:
            print(f"\n{attention_cases.UNAVAILABLE_MESSAGE}", file=stream)
        if attention_selected:
            results = []
            for case in attention_selected:
                progress.step(case.name)
                results.append(
                    attention_cases.run_case(
                        case, thread_counts, peers, settings, measure_memory
                    )
                )
            progress.finish()
            print(
                "\n" + attention_cases.format_results(results, thread_counts, peers),
                file=stream,
            )
    finally:
        progress.finish()
        peers.restore_threads()
    note = "1-minute average, including this run's own threads"
    print("\n" + load_average_text("at end", note), file=stream)
    return 0
