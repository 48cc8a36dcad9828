"""Fast, exact softmax, log_softmax, logsumexp and attention for NumPy arrays."""

from . import reference
from ._merge import merge_attention

__version__ = "0.1.0"

__all__ = ["merge_attention", "reference"]
