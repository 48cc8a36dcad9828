"""Fast, exact softmax, log_softmax, logsumexp and attention for NumPy arrays."""

__version__ = "0.1.0"

from . import reference  # noqa: E402
from ._api import (  # noqa: E402
    get_config,
    log_softmax,
    logsumexp,
    set_simd,
    show_config,
    softmax,
)
from ._merge import merge_attention  # noqa: E402
from .attention import attention  # noqa: E402

__all__ = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "attention",
    "merge_attention",
    "get_config",
    "show_config",
    "set_simd",
    "reference",
]
