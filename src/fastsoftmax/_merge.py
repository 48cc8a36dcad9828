"""Merge attention results computed over disjoint sets of keys.

Attention over keys ``K = K_1 ∪ ... ∪ K_n`` splits exactly into per-shard results:
with ``lse_i`` the logsumexp of a query row's scores over ``K_i`` and ``out_i`` the
softmax-weighted sum of the values in ``K_i``,

    lse = logsumexp_i(lse_i)
    out = sum_i exp(lse_i - lse) * out_i

The weights are computed as ``exp(lse_i - m) / sum_j exp(lse_j - m)`` with ``m`` the
largest ``lse_i``, in float64, so the rounding of ``lse`` itself does not enter them.
"""

from collections.abc import Sequence

import numpy as np

__all__ = ["merge_attention"]

_FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def _check_pair(index, pair):
    """Return ``(out, lse)`` of one partial result as arrays, or raise."""
    if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
        raise TypeError(
            f"parts[{index}] must be an (out, lse) pair, got {type(pair).__name__}"
        )
    out, lse = (np.asarray(item) for item in pair)
    for name, array in (
        (f"parts[{index}][0] (out)", out),
        (f"parts[{index}][1] (lse)", lse),
    ):
        if array.dtype not in _FLOAT_DTYPES:
            raise TypeError(
                f"{name} has unsupported dtype {array.dtype}; expected float16, "
                "float32 or float64"
            )
    if out.ndim < 1 or out.shape[:-1] != lse.shape:
        raise ValueError(
            f"parts[{index}] has out shape {out.shape} and lse shape {lse.shape}; "
            "lse must have the shape of out without its last axis"
        )
    return out, lse


def merge_attention(parts):
    """Combine attention results over disjoint key sets into the result over all.

    Parameters
    ----------
    parts : sequence of (out, lse) pairs
        One pair per key shard, as returned by
        ``fastsoftmax.attention(..., return_lse=True)`` for the same queries:
        ``out`` of shape ``(..., L, Dv)`` and ``lse`` of shape ``(..., L)``, the
        same shapes in every pair. A query row that could attend no key of a
        shard has ``lse = -inf`` there, and that shard's ``out`` row is ignored
        whatever it contains.

    Returns
    -------
    out : ndarray
        Attention output over the union of the key sets, of the shape of the
        partial outputs and the dtype they promote to.
    lse : ndarray
        Logsumexp of each row's scores over all keys, of the shape of the partial
        lse arrays and the dtype they promote to. Rows that attend no key in any
        shard get ``out = 0`` and ``lse = -inf``.

    Raises
    ------
    TypeError
        If an item of ``parts`` is not a pair, or an array is not float16,
        float32 or float64.
    ValueError
        If ``parts`` is empty or the shapes differ between pairs or do not match
        between ``out`` and ``lse``.

    Notes
    -----
    Any NaN ``lse_i`` makes the row NaN. When some ``lse_i`` are ``+inf``, those
    shards share the row equally and the others get weight 0. This is exact only
    when each of them contains the same number of ``+inf`` scores, because an lse
    of ``+inf`` does not record how many there were.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsoftmax import merge_attention
    >>> out_a, lse_a = np.ones((2, 3)), np.zeros(2)
    >>> out_b, lse_b = np.zeros((2, 3)), np.array([0.0, -np.inf])
    >>> out, lse = merge_attention([(out_a, lse_a), (out_b, lse_b)])
    >>> out[:, 0]
    array([0.5, 1. ])
    """
    if isinstance(parts, (np.ndarray, str)) or not isinstance(parts, Sequence):
        raise TypeError(
            f"parts must be a sequence of (out, lse) pairs, got {type(parts).__name__}"
        )
    if len(parts) == 0:
        raise ValueError("parts must contain at least one (out, lse) pair")
    pairs = [_check_pair(index, pair) for index, pair in enumerate(parts)]
    out_shape, lse_shape = pairs[0][0].shape, pairs[0][1].shape
    for index, (out, _) in enumerate(pairs):
        if out.shape != out_shape:
            raise ValueError(
                f"parts[{index}] has out shape {out.shape}, but parts[0] has "
                f"{out_shape}; every shard must cover the same queries"
            )
    out_dtype = np.result_type(*(out for out, _ in pairs))
    lse_dtype = np.result_type(*(lse for _, lse in pairs))

    # Step 1: the largest partial lse of each row, the shift for the weights.
    lses = np.stack([lse.astype(np.float64) for _, lse in pairs])
    peak = np.max(lses, axis=0)
    shift = np.where(np.isfinite(peak), peak, 0.0)

    # Step 2: unnormalised weights exp(lse_i - m); rows whose peak is +inf share
    # equally among their +inf shards.
    with np.errstate(invalid="ignore"):
        weights = np.exp(lses - shift)
        weights = np.where(
            np.isposinf(peak), (lses == np.inf).astype(np.float64), weights
        )
        total = np.sum(weights, axis=0)

    # Step 3: the weighted sum of the partial outputs. A zero weight drops its
    # shard, so a fully masked shard contributes nothing even if it contains NaN.
    merged = np.zeros(out_shape, dtype=np.float64)
    for (out, _), weight in zip(pairs, weights, strict=True):
        contribution = weight[..., np.newaxis] * out
        merged += np.where(weight[..., np.newaxis] == 0, 0.0, contribution)
    with np.errstate(divide="ignore", invalid="ignore"):
        merged /= np.where(total == 0, 1.0, total)[..., np.newaxis]
        lse = np.where(np.isposinf(peak), np.inf, shift + np.log(total))
    lse = np.where(np.isneginf(peak), -np.inf, lse)
    merged[np.isnan(peak)] = np.nan
    return merged.astype(out_dtype), lse.astype(lse_dtype).reshape(lse_shape)
