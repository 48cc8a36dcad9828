"""Fast, exact softmax, log_softmax, logsumexp and attention for NumPy arrays."""

from . import reference
from .attention import attention

__version__ = "0.1.0"

__all__ = ["attention", "reference"]
