"""Run the softmax benchmarks.

It is the same as ``python -m fastsoftmax bench --suite softmax``.

The suite itself lives in ``fastsoftmax._bench`` so that ``python -m fastsoftmax
bench`` also works from an installed package. Other options pass through, e.g.
``python bench/softmax_cases.py --quick -k float32``.
"""

import sys

from fastsoftmax._cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--suite", "softmax", *sys.argv[1:]]))
