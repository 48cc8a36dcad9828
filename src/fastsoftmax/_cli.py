"""The ``python -m fastsoftmax`` command and its ``demo``, ``check`` and ``bench``."""

import argparse
import shlex
import sys

import numpy as np

import fastsoftmax

DEMO_SCORES = [2.0, 1.0, 0.1]


def format_vector(values):
    """Format numbers as ``[0.659, 0.242, 0.099]``."""
    return "[" + ", ".join(f"{value:.3f}" for value in values) + "]"


def run_demo(stream):
    """Print softmax, log_softmax, logsumexp and attention on tiny inputs."""
    config = fastsoftmax.get_config()
    print(
        f"fastsoftmax {config['version']}: SIMD path {config['simd']}, "
        f"OpenMP {'on' if config['openmp'] else 'off'}, "
        f"{config['threads']} threads by default",
        file=stream,
    )
    scores = np.array(DEMO_SCORES)
    probabilities = fastsoftmax.softmax(scores)
    log_probabilities = fastsoftmax.log_softmax(scores)
    normaliser = fastsoftmax.logsumexp(scores)
    print(
        f"""
Scores turned into proportions, and the same in the log domain:

  scores               {DEMO_SCORES}
  softmax(scores)      {format_vector(probabilities)}  (sum {probabilities.sum():.3f})
  log_softmax(scores)  {format_vector(log_probabilities)}
  logsumexp(scores)    {normaliser:.3f}  (log_softmax = scores - logsumexp)""",
        file=stream,
    )
    print(file=stream)
    _print_attention_demo(stream)
    print(
        "\nTest this build with `python -m fastsoftmax check` and time it with\n"
        "`python -m fastsoftmax bench --quick`.",
        file=stream,
    )


def _print_attention_demo(stream):
    """Print a three-key attention example, plain and causal."""
    if not hasattr(fastsoftmax, "attention"):
        print("attention not available in this build", file=stream)
        return
    keys = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    queries = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    # One-hot values make each output row equal to that query's attention weights.
    values = np.eye(3)
    plain = fastsoftmax.attention(queries, keys, values)
    causal = fastsoftmax.attention(queries, keys, values, causal=True)
    print(
        "Attention, out = softmax(q @ k.T / sqrt(2)) @ v, with keys k0 = [1, 0], "
        "k1 = [0, 1],\nk2 = [-1, 0] and one-hot values, so each output row shows "
        "the weights of k0, k1, k2:\n",
        file=stream,
    )
    for title, result in (("attention", plain), ("causal=True", causal)):
        print(f"  {title}", file=stream)
        for index, (query, row) in enumerate(zip(queries, result, strict=True)):
            query_text = f"q{index} = [{query[0]:g}, {query[1]:g}]"
            print(f"    {query_text:<14} {format_vector(row)}", file=stream)
    print("\n  With causal=True, query i attends keys 0 to i only.", file=stream)


def parse_budget(text):
    """Return the --budget value in seconds; reject values that are not positive."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(
            f"invalid budget {text!r}: expected a positive number of seconds"
        )
    return seconds


def parse_thread_counts(text):
    """Parse ``"1,all"`` into a sorted tuple of distinct positive thread counts."""
    from ._bench.report import usable_cpu_count

    counts = set()
    for item in text.split(","):
        item = item.strip()
        if item == "all":
            counts.add(usable_cpu_count())
            continue
        try:
            count = int(item)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid thread count {item!r}: expected a positive integer or 'all'"
            ) from None
        if count < 1:
            raise argparse.ArgumentTypeError(
                f"invalid thread count {count}: must be at least 1"
            )
        counts.add(count)
    return tuple(sorted(counts))


def build_parser():
    """Return the argument parser of ``python -m fastsoftmax``."""
    parser = argparse.ArgumentParser(
        prog="python -m fastsoftmax",
        description="Fast, exact softmax, log_softmax, logsumexp and attention for "
        "NumPy arrays. Without a command, runs the demo.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="show softmax, log_softmax and attention on tiny inputs (the default)",
        description="Show softmax, log_softmax, logsumexp and attention on tiny "
        "inputs.",
    )
    commands.add_parser(
        "check",
        help="test this build against the NumPy reference on every SIMD path",
        description="Compare softmax, log_softmax, logsumexp and attention with "
        "fastsoftmax.reference on random and special-value inputs, on every SIMD "
        "path this CPU supports. Prints one line per check and exits with status 1 "
        "if any check fails.",
    )
    bench = commands.add_parser(
        "bench",
        help="time fastsoftmax against NumPy, SciPy, PyTorch and np.copyto",
        description="Time fastsoftmax against the NumPy reference, SciPy and "
        "PyTorch (when installed) and np.copyto of the same bytes, side by side, "
        "and print Markdown tables. The full suite takes several minutes; a "
        "progress line goes to stderr.",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="run a subset of the cases with fewer repeats (under a minute)",
    )
    bench.add_argument(
        "--suite",
        choices=("all", "softmax", "attention"),
        default="all",
        help="which suite to run (default: all)",
    )
    bench.add_argument(
        "-k",
        "--filter",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only cases whose name contains TEXT, e.g. 'float32' or "
        "'(4096, 4096)'; repeat to require several (see --list)",
    )
    bench.add_argument(
        "--threads",
        type=parse_thread_counts,
        default="1,all",
        metavar="LIST",
        help="comma-separated thread counts to measure; 'all' is the number of "
        "usable CPUs (default: 1,all)",
    )
    bench.add_argument(
        "--budget",
        type=parse_budget,
        metavar="SECONDS",
        help="seconds of timing per case after the warm-up (default: 2, or 0.3 "
        "with --quick); each case still runs its minimum number of rounds",
    )
    bench.add_argument(
        "--no-torch", action="store_true", help="do not compare against PyTorch"
    )
    bench.add_argument(
        "--no-scipy", action="store_true", help="do not compare against SciPy"
    )
    bench.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the peak-memory measurement of attention calls",
    )
    bench.add_argument(
        "--list", action="store_true", help="print the selected case names and exit"
    )
    # Tiny cases and a single round, for the test suite.
    bench.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    return parser


def run_bench(args, stream):
    """Run or list the benchmark cases that ``args`` select; return the exit code."""
    from . import _bench

    if args.smoke:
        mode = "smoke"
    elif args.quick:
        mode = "quick"
    else:
        mode = "full"
    suites = _bench.SUITES if args.suite == "all" else (args.suite,)
    if args.list:
        for suite in suites:
            for case in _bench.select_cases(suite, mode, args.filter):
                print(case.name, file=stream)
        return 0
    command = "python -m fastsoftmax " + shlex.join(args.argv)
    return _bench.run(
        command=command,
        suites=suites,
        mode=mode,
        filters=args.filter,
        thread_counts=args.threads,
        budget=args.budget,
        use_scipy=not args.no_scipy,
        use_torch=not args.no_torch,
        measure_memory=not args.no_memory,
        stream=stream,
    )


def main(argv=None, stream=None):
    """Run ``python -m fastsoftmax`` with ``argv`` and return the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments after ``python -m fastsoftmax``; ``sys.argv[1:]`` by default.
    stream : file, optional
        Where the output goes; stdout by default.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    stream = stream if stream is not None else sys.stdout
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.command == "check":
        from ._selftest import run_checks

        return run_checks(stream)
    if args.command == "bench":
        return run_bench(args, stream)
    run_demo(stream)
    return 0
