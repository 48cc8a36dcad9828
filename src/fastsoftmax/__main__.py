"""Entry point of ``python -m fastsoftmax``; see :mod:`fastsoftmax._cli`."""

import sys

from fastsoftmax._cli import main

if __name__ == "__main__":
    sys.exit(main())
