"""Benchmark chunked softmax on a local Dask cluster against the in-memory call.

The input is a float32 array of ``--gib`` GiB (4 by default) in chunks of
``--chunk-mib`` MiB, holding uniform random scores in [0, 1) generated on the
workers. Uniform float32 is the cheapest generator, and the kernels' work does
not depend on the values. Softmax runs over the last axis, which spans
``--chunks-per-slice`` chunks, on a LocalCluster of ``--workers`` single-threaded
worker processes bound to 127.0.0.1. Each output block is written to a sink that
discards it, so nothing large travels back to the client.

Rows of the printed table:

* generate + store: the same pipeline without softmax, the cost of making the
  data and running the graph;
* dask, axis spans chunks: the two-stage plan of :mod:`fastsoftmax.dask`;
* dask, axis within chunks: the same bytes in chunks that hold whole slices, so
  every block goes through the C kernel;
* in-memory: ``fastsoftmax.softmax`` on one NumPy array with its default thread
  count, in the client process, once with a new output array and best of three
  into a preallocated one.

Throughput counts the input bytes once, and the speed ratio is against the
in-memory call with a new output array. Workers are restarted before each case,
and their peak memory is the maximum resident set size of the process
(``getrusage``), which includes the worker's own baseline, shown beside it. Run
with ``python bench/bench_dask.py``.
"""

import argparse
import os
import platform
import resource
import sys
import time

import numpy as np

import fastsoftmax

MIB = 2**20
GIB = 2**30


class DiscardSink:
    """Store target for ``dask.array.store`` that drops what it receives."""

    def __setitem__(self, index, value):
        pass


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=4.0, help="input size in GiB")
    parser.add_argument("--chunk-mib", type=int, default=64, help="chunk size in MiB")
    parser.add_argument(
        "--chunks-per-slice",
        type=int,
        default=4,
        help="chunks each softmax slice spans in the spanning case",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--skip-in-memory",
        action="store_true",
        help="skip the in-memory call, which needs twice the input size in RAM",
    )
    return parser.parse_args()


def array_layout(args):
    """Return the shape and the two chunkings of the benchmark array."""
    chunk_items = args.chunk_mib * MIB // 4
    columns = chunk_items // 64 * args.chunks_per_slice
    rows = int(args.gib * GIB // 4 // columns)
    spanning = (
        chunk_items // (columns // args.chunks_per_slice),
        columns // args.chunks_per_slice,
    )
    within = (chunk_items // columns, columns)
    return (rows, columns), spanning, within


def warm_up():
    """Import the modules a worker needs, outside the timed run."""
    import dask.array  # noqa: F401

    import fastsoftmax.dask  # noqa: F401


def peak_rss_mib():
    """Return the peak resident set size of this process in MiB (Linux units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_dask(args, shape, spanning, within):
    """Time the Dask cases; return table rows and the Dask versions."""
    import dask
    import dask.array as da
    import distributed

    import fastsoftmax.dask as fd

    rows = []
    with (
        distributed.LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):

        def make_input(chunks):
            rng = da.random.default_rng(0)
            return rng.random(shape, chunks=chunks, dtype=np.float32)

        cases = [
            ("generate + store", lambda: make_input(spanning), spanning),
            (
                "dask, axis spans chunks",
                lambda: fd.softmax(make_input(spanning), axis=-1),
                spanning,
            ),
            (
                "dask, axis within chunks",
                lambda: fd.softmax(make_input(within), axis=-1),
                within,
            ),
        ]
        for name, build, chunks in cases:
            # Fresh worker processes, so each case's peak RSS is its own.
            client.restart()
            client.run(warm_up)
            baseline = sorted(client.run(peak_rss_mib).values())
            result = build()
            start = time.perf_counter()
            da.store(result, DiscardSink(), lock=False, compute=True)
            seconds = time.perf_counter() - start
            peaks = sorted(client.run(peak_rss_mib).values())
            rows.append((name, chunks, seconds, baseline, peaks))
            print(f"{name}: {seconds:.2f} s", file=sys.stderr)
        versions = {"dask": dask.__version__, "distributed": distributed.__version__}
    return rows, versions


def run_in_memory(shape):
    """Time fastsoftmax.softmax on one NumPy array; return two table rows.

    The first call allocates its output, as ``softmax(x)`` does in use, and pays
    for the page faults of the fresh memory. The best of three calls into a
    preallocated ``out`` shows the kernel alone.
    """
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    start = time.perf_counter()
    out = fastsoftmax.softmax(x, axis=-1)
    fresh = time.perf_counter() - start
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        fastsoftmax.softmax(x, axis=-1, out=out)
        best = min(best, time.perf_counter() - start)
    return [
        ("in-memory, new output array", None, fresh, None, None),
        ("in-memory, preallocated out (best of 3)", None, best, None, None),
    ]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    args = parse_args()
    load_before = ", ".join(f"{load:.2f}" for load in os.getloadavg())
    shape, spanning, within = array_layout(args)
    nbytes = int(np.prod(shape)) * 4
    rows, versions = run_dask(args, shape, spanning, within)
    if not args.skip_in_memory:
        rows.extend(run_in_memory(shape))

    config = fastsoftmax.get_config()
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()}")
    print(f"load average before the run: {load_before}")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"dask {versions['dask']}, distributed {versions['distributed']}, "
        f"fastsoftmax {config['version']} (simd {config['simd']}, "
        f"openmp {config['openmp']}, threads {config['threads']})"
    )
    print(
        f"input: float32 {shape}, {nbytes / GIB:.2f} GiB; softmax over axis -1; "
        f"{args.workers} worker processes x 1 thread on 127.0.0.1"
    )
    print()
    print(
        "| case | chunks | chunk MiB | time (s) | GB/s | speed vs in-memory "
        "| worker peak RSS (MiB) | worker RSS at start (MiB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    # Ratios are against the in-memory call with a new output array.
    in_memory = None if args.skip_in_memory else rows[-2][2]
    for name, chunks, seconds, baseline, peaks in rows:
        chunk_mib = "-" if chunks is None else f"{np.prod(chunks) * 4 / MIB:.0f}"
        ratio = "-" if in_memory is None else f"{in_memory / seconds:.2f}x"
        peak_text = "-" if peaks is None else ", ".join(f"{p:.0f}" for p in peaks)
        base_text = "-" if baseline is None else ", ".join(f"{p:.0f}" for p in baseline)
        print(
            f"| {name} | {chunks or '-'} | {chunk_mib} | {seconds:.2f} | "
            f"{nbytes / seconds / 1e9:.2f} | {ratio} | {peak_text} | {base_text} |"
        )
    if not args.skip_in_memory:
        print()
        print(f"peak RSS of the in-memory process (MiB): {peak_rss_mib():.0f}")


if __name__ == "__main__":
    main()
