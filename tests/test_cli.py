"""Tests of ``python -m fastsoftmax``: demo, check and a tiny bench run."""

import io
import math
import subprocess
import sys

import numpy as np
import pytest

import fastsoftmax
from fastsoftmax import reference
from fastsoftmax._bench import attention_cases
from fastsoftmax._bench.memory import measure_peak_memory
from fastsoftmax._bench.report import markdown_table, usable_cpu_count
from fastsoftmax._bench.timing import Contestant, TimingSettings, time_interleaved
from fastsoftmax._cli import DEMO_SCORES, main, parse_thread_counts

needs_attention = pytest.mark.skipif(
    not hasattr(fastsoftmax, "attention"), reason="attention not in this build"
)
needs_reference_attention = pytest.mark.skipif(
    not hasattr(reference, "attention"), reason="reference.attention missing"
)


def run_cli(capsys, *argv):
    """Run the command with ``argv`` and return (exit status, stdout, stderr)."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def format_vector(values):
    return "[" + ", ".join(f"{value:.3f}" for value in values) + "]"


def exact_log_softmax():
    """Return log_softmax of the demo scores, computed with the math module."""
    normaliser = math.log(sum(math.exp(score) for score in DEMO_SCORES))
    return [score - normaliser for score in DEMO_SCORES]


def test_demo_is_default(capsys):
    _, default_output, _ = run_cli(capsys)
    _, demo_output, _ = run_cli(capsys, "demo")
    assert default_output == demo_output


def test_demo_exits_zero(capsys):
    status, _, _ = run_cli(capsys, "demo")
    assert status == 0


def test_demo_prints_proportions(capsys):
    _, output, _ = run_cli(capsys, "demo")
    proportions = [math.exp(value) for value in exact_log_softmax()]
    assert format_vector(proportions) in output


def test_demo_prints_log_probabilities(capsys):
    _, output, _ = run_cli(capsys, "demo")
    assert format_vector(exact_log_softmax()) in output


@needs_attention
def test_demo_causal_first_query_sees_first_key(capsys):
    _, output, _ = run_cli(capsys, "demo")
    assert "q0 = [2, 0]    [1.000, 0.000, 0.000]" in output


def test_demo_without_attention_says_so(capsys, monkeypatch):
    monkeypatch.delattr(fastsoftmax, "attention", raising=False)
    _, output, _ = run_cli(capsys, "demo")
    assert "attention not available in this build" in output


def test_module_entry_point_runs_demo():
    completed = subprocess.run(
        [sys.executable, "-m", "fastsoftmax"], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr


@pytest.mark.parametrize("command", ["demo", "check", "bench"])
def test_help_of_each_command(capsys, command):
    with pytest.raises(SystemExit) as excinfo:
        main([command, "--help"])
    assert excinfo.value.code == 0
    assert f"usage: python -m fastsoftmax {command}" in capsys.readouterr().out


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["frobnicate"])
    assert excinfo.value.code == 2


@pytest.fixture(scope="module")
def check_run():
    """Run ``check`` once on this build; return (exit status, output, SIMD paths)."""
    before = fastsoftmax.get_config()["simd"]
    stream = io.StringIO()
    status = main(["check"], stream=stream)
    after = fastsoftmax.get_config()["simd"]
    return status, stream.getvalue(), (before, after)


def test_check_passes_on_this_build(check_run):
    status, output, _ = check_run
    assert status == 0, output


def test_check_summary_counts_no_failure(check_run):
    _, output, _ = check_run
    assert output.rstrip().endswith(" 0 failed"), output


def test_check_covers_every_simd_path(check_run):
    _, output, _ = check_run
    checked = {line.split()[1] for line in output.splitlines() if line[:4] == "PASS"}
    assert set(fastsoftmax.get_config()["simd_supported"]) <= checked


@needs_attention
def test_check_covers_attention(check_run):
    _, output, _ = check_run
    assert "PASS  generic  attention" in output


def test_check_restores_simd_path(check_run):
    _, _, (before, after) = check_run
    assert after == before


def test_check_fails_on_wrong_softmax(capsys, monkeypatch):
    def slightly_wrong(x, *args, **kwargs):
        return reference.softmax(x, *args, **kwargs) * np.float16(1.01)

    monkeypatch.setattr(fastsoftmax, "softmax", slightly_wrong)
    status, output, _ = run_cli(capsys, "check")
    assert status == 1


def test_check_names_failing_function(capsys, monkeypatch):
    def dropping_nan(x, *args, **kwargs):
        result = reference.log_softmax(x, *args, **kwargs)
        return np.nan_to_num(result, nan=0.0, posinf=np.inf, neginf=-np.inf)

    monkeypatch.setattr(fastsoftmax, "log_softmax", dropping_nan)
    _, output, _ = run_cli(capsys, "check")
    failures = [line for line in output.splitlines() if line.startswith("FAIL")]
    assert failures
    assert all("log_softmax  special values" in line for line in failures)


def test_check_reports_exception_as_failure(capsys, monkeypatch):
    def broken(x, *args, **kwargs):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(fastsoftmax, "logsumexp", broken)
    _, output, _ = run_cli(capsys, "check")
    assert "RuntimeError: kernel exploded" in output


def test_bench_smoke_prints_softmax_tables(capsys):
    status, output, _ = run_cli(capsys, "bench", "--smoke", "--threads", "1,2")
    assert status == 0
    assert "### softmax, float32" in output
    assert "### log_softmax, float64" in output


def test_bench_smoke_reports_progress(capsys):
    _, _, errors = run_cli(
        capsys, "bench", "--smoke", "--suite", "softmax", "--threads", "1"
    )
    assert "[1/2] softmax float32 (64, 256) axis=-1" in errors


@needs_attention
def test_bench_smoke_prints_attention_tables(capsys):
    _, output, _ = run_cli(capsys, "bench", "--smoke", "--suite", "attention")
    assert "### attention, time" in output
    assert "### attention, peak extra memory" in output


def test_bench_without_attention_says_so(capsys, monkeypatch):
    monkeypatch.delattr(fastsoftmax, "attention", raising=False)
    status, output, _ = run_cli(capsys, "bench", "--smoke", "--suite", "attention")
    assert status == 0
    assert attention_cases.UNAVAILABLE_MESSAGE in output


def test_bench_header_names_command(capsys):
    argv = ["bench", "--smoke", "--suite", "softmax", "--threads", "1", "--no-torch"]
    _, output, _ = run_cli(capsys, *argv)
    assert "`python -m fastsoftmax " + " ".join(argv) + "`" in output


def test_bench_list_applies_filter(capsys):
    _, output, _ = run_cli(capsys, "bench", "--list", "-k", "float64", "-k", "axis=0")
    names = output.splitlines()
    assert names
    assert all("float64" in name and "axis=0" in name for name in names)


def test_bench_full_list_has_every_softmax_case(capsys):
    _, output, _ = run_cli(capsys, "bench", "--list", "--suite", "softmax")
    # 7 shapes, 2 dtypes, 2 operations, 2 axes.
    assert len(output.splitlines()) == 7 * 2 * 2 * 2


def test_bench_quick_list_is_subset_of_full(capsys):
    _, quick, _ = run_cli(capsys, "bench", "--list", "--quick")
    _, full, _ = run_cli(capsys, "bench", "--list")
    assert set(quick.splitlines()) < set(full.splitlines())


def test_bench_unmatched_filter_exits_1(capsys):
    status, _, errors = run_cli(capsys, "bench", "--smoke", "-k", "no such case")
    assert status == 1
    assert "No benchmark case matches" in errors


@pytest.mark.parametrize("text", ["0", "two", "1,-3"])
def test_bench_rejects_bad_threads(capsys, text):
    with pytest.raises(SystemExit) as excinfo:
        main(["bench", "--threads", text])
    assert excinfo.value.code == 2
    assert "--threads: invalid thread count" in capsys.readouterr().err


def test_parse_thread_counts_sorts_and_deduplicates():
    assert parse_thread_counts("all,1,1") == tuple(sorted({1, usable_cpu_count()}))


def test_time_interleaved_samples_every_round():
    calls = {"a": 0, "b": 0}
    prepared = []
    contestants = [
        Contestant("a", lambda: calls.__setitem__("a", calls["a"] + 1)),
        Contestant("b", lambda: None, prepare=lambda: prepared.append("b")),
    ]
    settings = TimingSettings(budget=0.0, min_rounds=4, max_rounds=4, sample_time=0)
    timings = time_interleaved(contestants, settings)
    assert len(timings["a"].samples) == 4
    assert len(timings["b"].samples) == 4
    # With sample_time=0 the warm-up call also sets loops = 1.
    assert calls["a"] == 1 + 4
    # One prepare for the warm-up, one per round.
    assert len(prepared) == 1 + 4


def test_time_interleaved_median_is_positive():
    contestants = [Contestant("sum", lambda: sum(range(1000)))]
    settings = TimingSettings(budget=0.0, min_rounds=3, max_rounds=3, sample_time=0)
    assert time_interleaved(contestants, settings)["sum"].median > 0


def test_markdown_table_rows_align():
    table = markdown_table(["case", "ms"], [["long case name", "1.5"], ["a", "12.25"]])
    assert len({len(line) for line in table.splitlines()}) == 1


@needs_reference_attention
def test_peak_memory_includes_result():
    case = attention_cases.AttentionCase(1, 8, 512, 512, 64)
    measurement = measure_peak_memory(vars(case), "reference", 1)
    # The result alone is 8 * 512 * 64 float32 values, 1 MiB; the reference
    # also builds the 8 MiB score matrix.
    assert measurement.get("extra_kib", 0) >= 8 * 1024
