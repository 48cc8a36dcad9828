"""Run the attention benchmarks.

It is the same as ``python -m fastsoftmax bench --suite attention``.

The suite itself lives in ``fastsoftmax._bench`` so that ``python -m fastsoftmax
bench`` also works from an installed package. Other options pass through, e.g.
``python bench/attention_cases.py --threads 1 --no-memory``.
"""

import sys

from fastsoftmax._cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--suite", "attention", *sys.argv[1:]]))
