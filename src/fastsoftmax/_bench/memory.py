"""Peak extra memory of one attention call, measured in a fresh Python process.

Run as ``python -m fastsoftmax._bench.memory SPEC`` with a JSON SPEC, the process
builds the inputs and makes one warm-up call on small inputs, so that lazy imports,
thread pools and first-use buffers are already in the baseline. It then records its
resident set size, makes the measured call and prints the growth of the peak
resident set size as JSON.

On Linux, writing ``5`` to ``/proc/self/clear_refs`` resets the peak (VmHWM) to the
current resident set size, so the growth is exact to the page. Elsewhere the
growth of ``getrusage().ru_maxrss`` is used, which reads 0 when the call stays
below a peak reached earlier in the process.
"""

import json
import subprocess
import sys

MEMORY_TIMEOUT_SECONDS = 600


def measure_peak_memory(case_fields, implementation, threads):
    """Return the peak extra memory of one call, measured in a subprocess.

    Parameters
    ----------
    case_fields : dict
        Fields of an ``AttentionCase``.
    implementation : {"fastsoftmax", "reference", "torch"}
        Which attention to call.
    threads : int
        Thread count of the call.

    Returns
    -------
    dict
        ``{"extra_kib": int, "method": str}``, or ``{"error": str}`` when the
        subprocess failed.
    """
    spec = {"case": case_fields, "implementation": implementation, "threads": threads}
    command = [sys.executable, "-m", "fastsoftmax._bench.memory", json.dumps(spec)]
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=MEMORY_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {MEMORY_TIMEOUT_SECONDS} s"}
    if completed.returncode != 0:
        lines = completed.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit status {completed.returncode}"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _read_status_kib(field):
    """Return a ``/proc/self/status`` field such as VmRSS in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not found in /proc/self/status")


def _reset_peak():
    """Reset the peak resident set size and return (baseline KiB, method name)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return _read_status_kib("VmRSS"), "VmHWM"
    except OSError:
        return _max_rss_kib(), "ru_maxrss"


def _read_peak(method):
    """Return the peak resident set size in KiB, read by ``method``."""
    if method == "VmHWM":
        return _read_status_kib("VmHWM")
    return _max_rss_kib()


def _max_rss_kib():
    import resource

    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in bytes on macOS and in KiB on Linux and the BSDs.
    return max_rss // 1024 if sys.platform == "darwin" else max_rss


def _run(spec):
    """Measure one call as ``spec`` describes and return the result dict."""
    from dataclasses import replace

    from .attention_cases import AttentionCase, make_call, make_inputs
    from .peers import Peers

    implementation = spec["implementation"]
    threads = spec["threads"]
    peers = Peers(use_scipy=False, use_torch=implementation == "torch")
    peers.set_threads(threads)

    case = AttentionCase(**spec["case"])
    small_case = replace(
        case, batch=1, heads=1, q_len=min(case.q_len, 8), kv_len=min(case.kv_len, 8)
    )
    small_call = make_call(
        implementation, small_case, *make_inputs(small_case), peers.torch
    )
    small_call(threads)

    q, k, v = make_inputs(case)
    call = make_call(implementation, case, q, k, v, peers.torch)
    baseline, method = _reset_peak()
    result = call(threads)
    peak = _read_peak(method)
    del result
    return {"extra_kib": max(0, peak - baseline), "method": method}


if __name__ == "__main__":
    print(json.dumps(_run(json.loads(sys.argv[1]))))
